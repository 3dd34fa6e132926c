"""FastAPI application: `python3 -m uvicorn app.main:app --host 0.0.0.0 --port 8000` from backend/.

Written for FastAPI 0.92 / Starlette 0.26 / pydantic 1.10 (Debian bookworm) as well as current
releases: start-up and shutdown use @app.on_event, since `lifespan=` does not exist in 0.92.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from datetime import datetime, timezone
from typing import Literal, Optional

import asyncpg
from fastapi import FastAPI, Query, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect, WebSocketState

from . import __version__, db
from .config import ConfigError, Settings, load_settings
from .events import Client, Hub, NotificationListener

log = logging.getLogger("kidney_genetics")

HEALTH_TIMEOUT = 2.0
DATABASE_DOWN_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, "cannot connect now"
)


def setup_logging(level: str) -> None:
    # Our own handler on stdout: uvicorn configures its loggers, not ours.
    logger = logging.getLogger("kidney_genetics")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    # uvicorn's own messages (access log included) follow the same level.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).setLevel(level.upper())


def load_settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"kidney-genetics-backend: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


def server_time() -> str:
    return datetime.now(timezone.utc).isoformat()


def create_app(settings: Optional[Settings] = None) -> FastAPI:
    settings = settings or load_settings_or_exit()
    setup_logging(settings.log_level)

    app = FastAPI(title="Kidney Genetics Database API", version=__version__)
    app.state.settings = settings
    app.state.pool = None
    hub = app.state.hub = Hub()
    listener = app.state.listener = NotificationListener(settings.database_url, hub.broadcast)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_credentials="*" not in settings.cors_origins,
            allow_methods=["GET", "OPTIONS"],
            allow_headers=["*"],
        )

    # A lost database is a 503 on every endpoint, not a 500 with a traceback: clients and proxies
    # can tell "try again later" from a bug.
    async def database_unavailable(_request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", db.describe(exc))
        return JSONResponse(status_code=503, content={"detail": "database unavailable"})

    for exc_class in DATABASE_DOWN_ERRORS:
        app.add_exception_handler(exc_class, database_unavailable)

    @app.on_event("startup")
    async def startup() -> None:
        safe_url = settings.safe_database_url()
        log.info("starting; database %s", safe_url)
        try:
            pool = await db.create_pool_with_retry(settings.database_url, settings.db_connect_timeout, safe_url)
        except db.StartupError as exc:
            log.error("cannot start: %s", exc)
            raise
        app.state.pool = pool
        async with pool.acquire() as conn:
            seeded = await db.create_schema_and_seed(conn)
        log.info("schema ready; %s", f"seeded {seeded} genes" if seeded else "existing data kept")
        listener.start()

    @app.on_event("shutdown")
    async def shutdown() -> None:
        hub.close_all()
        await listener.stop()
        if app.state.pool is not None:
            try:
                await asyncio.wait_for(app.state.pool.close(), timeout=5)
            except (asyncio.TimeoutError, OSError, asyncpg.InterfaceError):
                app.state.pool.terminate()

    @app.get("/api/health")
    async def health():
        try:
            await asyncio.wait_for(db.ping(app.state.pool), timeout=HEALTH_TIMEOUT)
            return {"status": "ok", "database": "connected"}
        except asyncio.TimeoutError:
            reason = f"no answer within {HEALTH_TIMEOUT:g}s"
        except Exception as exc:  # any failure means "not healthy", never a 500
            reason = db.describe(exc)
        log.warning("health check: database unreachable: %s", reason)
        return JSONResponse(status_code=503, content={"status": "error", "database": "unreachable", "detail": reason})

    @app.get("/api/genes")
    async def genes(
        page: int = Query(1, ge=1, le=100000),
        page_size: int = Query(20, ge=1, le=100),
        search: Optional[str] = Query(None, max_length=100),
        sort: Literal["symbol", "-symbol", "score", "-score"] = Query("symbol"),
    ):
        term = search.strip() if search else None
        return await db.list_genes(app.state.pool, page, page_size, term or None, sort)

    @app.get("/api/genes/{symbol}")
    async def gene(symbol: str):
        found = await db.get_gene(app.state.pool, symbol)
        if found is None:
            return JSONResponse(status_code=404, content={"detail": f"gene {symbol} not found"})
        return found

    @app.websocket("/ws/events")
    async def ws_events(websocket: WebSocket):
        await websocket.accept()
        client = hub.register()
        log.info("websocket client connected (clients=%d)", len(hub.clients))
        tasks = [
            asyncio.create_task(_send_loop(websocket, client, settings.ws_ping_interval)),
            asyncio.create_task(_receive_loop(websocket, client)),
            asyncio.create_task(client.closing.wait()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            hub.unregister(client)
            if websocket.application_state == WebSocketState.CONNECTED and websocket.client_state == WebSocketState.CONNECTED:
                try:
                    await websocket.close(code=client.close_code)
                except Exception:  # the peer may be gone already
                    pass
            log.info("websocket client disconnected (clients=%d)", len(hub.clients))

    return app


async def _send_loop(websocket: WebSocket, client: Client, ping_interval: float) -> None:
    """The only task that writes to the socket, so frames never interleave."""
    try:
        await websocket.send_json({"type": "hello", "server_time": server_time()})
        next_ping = time.monotonic() + ping_interval
        while True:
            try:
                message = await asyncio.wait_for(client.queue.get(), timeout=max(0.0, next_ping - time.monotonic()))
            except asyncio.TimeoutError:
                message = {"type": "ping", "server_time": server_time()}
                next_ping = time.monotonic() + ping_interval
            await websocket.send_json(message)
    except (WebSocketDisconnect, RuntimeError, OSError) as exc:
        log.debug("websocket send ended: %s", db.describe(exc))


async def _receive_loop(websocket: WebSocket, client: Client) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            text = (message.get("bytes") or b"").decode("utf-8", "replace")
        try:
            data = json.loads(text)
        except ValueError:
            client.send({"type": "error", "detail": "messages must be JSON objects"})
            continue
        if isinstance(data, dict) and data.get("type") == "ping":
            client.send({"type": "pong", "id": data.get("id")})
        else:
            client.send({"type": "error", "detail": 'unknown message; send {"type":"ping","id":...}'})


app = create_app()
