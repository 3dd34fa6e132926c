"""Database change events: LISTEN on PostgreSQL and fan out to WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable

import asyncpg

from .db import CHANNEL, describe

log = logging.getLogger("kidney_genetics.events")

_ENTITY = {"genes": "gene", "evidence": "evidence"}
_VERB = {"INSERT": "added", "UPDATE": "updated", "DELETE": "deleted"}


def event_from_notification(payload: str) -> dict[str, Any] | None:
    """Maps a trigger payload to the message clients get, e.g. {"type": "gene_updated", ...}."""
    try:
        data = json.loads(payload)
        entity, verb = _ENTITY[data["table"]], _VERB[data["op"]]
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring unexpected %s payload: %.200s", CHANNEL, payload)
        return None
    event = {"type": f"{entity}_{verb}", "symbol": data.get("symbol"), "op": data["op"]}
    for key in ("hgnc_id", "source"):
        if data.get(key) is not None:
            event[key] = data[key]
    return event


class Client:
    """One WebSocket connection's outbox. A bounded queue: a client that stops reading is dropped
    rather than letting its backlog grow without limit."""

    def __init__(self, maxsize: int = 256):
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize)
        self.closing = asyncio.Event()
        self.close_code = 1000
        self.close_reason = ""

    def send(self, message: dict[str, Any]) -> bool:
        try:
            self.queue.put_nowait(message)
            return True
        except asyncio.QueueFull:
            self.close(1013, "too slow: event backlog full")
            return False

    def close(self, code: int, reason: str) -> None:
        if not self.closing.is_set():
            self.close_code, self.close_reason = code, reason
            self.closing.set()


class Hub:
    def __init__(self) -> None:
        self.clients: set[Client] = set()

    def register(self) -> Client:
        client = Client()
        self.clients.add(client)
        return client

    def unregister(self, client: Client) -> None:
        self.clients.discard(client)

    def broadcast(self, message: dict[str, Any]) -> None:
        for client in list(self.clients):
            if not client.send(message):
                log.warning("dropping a websocket client whose event backlog is full")
                self.unregister(client)

    def close_all(self, code: int = 1001, reason: str = "server shutting down") -> None:
        for client in list(self.clients):
            client.close(code, reason)


class NotificationListener:
    """Holds one dedicated connection LISTENing on CHANNEL and reconnects whenever it is lost.

    Notifications sent while disconnected are lost, so after a reconnect clients get a
    {"type": "resync"} message telling them to refetch."""

    def __init__(self, dsn: str, on_event: Callable[[dict[str, Any]], None], check_interval: float = 5.0):
        self.dsn = dsn
        self.on_event = on_event
        self.check_interval = check_interval
        self.listening = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="kidney-events-listener")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        event = event_from_notification(payload)
        if event:
            log.debug("event %s", event)
            self.on_event(event)

    async def _run(self) -> None:
        delay = 0.5
        connected_before = False
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(self.dsn, timeout=5)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c: lost.set())
                await conn.add_listener(CHANNEL, self._notified)
                delay = 0.5
                self.listening.set()
                log.info("listening for database events on channel %s", CHANNEL)
                if connected_before:
                    self.on_event({"type": "resync", "reason": "database connection was re-established"})
                connected_before = True
                while not lost.is_set():
                    try:
                        await asyncio.wait_for(lost.wait(), timeout=self.check_interval)
                    except asyncio.TimeoutError:
                        # A dropped network path does not always close the socket: probe it.
                        await conn.fetchval("SELECT 1", timeout=self.check_interval)
                log.warning("database event connection closed; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("database event listener: %s; retrying in %.1fs", describe(exc), delay)
            finally:
                self.listening.clear()
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
