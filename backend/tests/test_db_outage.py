"""The database really goes away (the test cluster is stopped) and comes back."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from .conftest import run, wait_until
from .wsclient import connect, execute, hello, not_ping, recv_until


def test_health_503_while_database_down_then_recovers(make_database, start_server, pg_control) -> None:
    url = make_database()
    server = start_server(url, WS_PING_INTERVAL="1")
    wait_until(lambda: "listening for database events" in server.log(), 10, "the LISTEN connection")

    async def scenario() -> None:
        async with connect(server) as ws:
            await hello(ws)
            loop = asyncio.get_running_loop()

            await loop.run_in_executor(None, pg_control, "stop")
            started = time.monotonic()
            response = await loop.run_in_executor(None, lambda: server.get("/api/health"))
            took = time.monotonic() - started
            assert response.status_code == 503, response.text
            body = response.json()
            assert (body["status"], body["database"]) == ("error", "unreachable")
            assert body["detail"], "503 must say why"
            assert took < 4, f"health took {took:.1f}s while the database was down (limit is ~2s)"
            # Data endpoints say "unavailable", not 500.
            genes = await loop.run_in_executor(None, lambda: server.get("/api/genes"))
            assert genes.status_code == 503 and genes.json() == {"detail": "database unavailable"}
            # The server and its WebSocket clients stay up meanwhile.
            await ws.send(json.dumps({"type": "ping", "id": "during-outage"}))
            assert await recv_until(ws, not_ping, "pong during outage") == {"type": "pong", "id": "during-outage"}

            await loop.run_in_executor(None, pg_control, "start")
            await loop.run_in_executor(
                None, wait_until, lambda: server.get("/api/health").status_code == 200, 30, "health to recover"
            )
            assert server.get("/api/health").json() == {"status": "ok", "database": "connected"}
            assert server.get("/api/genes").status_code == 200

            # The LISTEN connection came back too: clients are told to resync, then get live events.
            assert (await recv_until(ws, not_ping, "resync after reconnect", timeout=30))["type"] == "resync"
            await execute(url, "UPDATE genes SET name = name WHERE approved_symbol = 'COL4A5'")
            event = await recv_until(ws, not_ping, "gene_updated after the database came back")
            assert (event["type"], event["symbol"]) == ("gene_updated", "COL4A5")

    run(scenario())


def test_health_503_for_a_server_whose_database_vanished_before_any_request(make_database, start_server, pg_control) -> None:
    # A fresh server, database stopped before it ever served a query on its pool connection.
    server = start_server(make_database())
    pg_control("stop")
    try:
        response = httpx.get(f"{server.url}/api/health", timeout=10)
        assert response.status_code == 503
        assert response.json()["database"] == "unreachable"
    finally:
        pg_control("start")
    wait_until(lambda: server.get("/api/health").status_code == 200, 30, "health to recover")
