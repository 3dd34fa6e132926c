"""WebSocket /ws/events with a real uvicorn process and the `websockets` client library."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import datetime, timezone

import pytest

from app.events import event_from_notification

from .conftest import Server, run, wait_until
from .wsclient import connect, execute, hello, not_ping, recv_until

PING_INTERVAL = 0.5


@pytest.fixture(scope="module")
def server(module_database, tmp_path_factory):
    server = Server(module_database, tmp_path_factory.mktemp("ws"), WS_PING_INTERVAL=str(PING_INTERVAL)).start()
    wait_until(lambda: "listening for database events" in server.log(), 10, "the LISTEN connection")
    yield server
    server.stop()


def test_hello_then_periodic_pings(server: Server) -> None:
    async def scenario() -> None:
        async with connect(server) as ws:
            message = await hello(ws)
            sent = datetime.fromisoformat(message["server_time"])
            assert sent.tzinfo is not None
            assert abs((datetime.now(timezone.utc) - sent).total_seconds()) < 60
            started = time.monotonic()
            for _ in range(3):
                ping = await recv_until(ws, lambda m: m["type"] == "ping", "server ping", timeout=5)
                datetime.fromisoformat(ping["server_time"])
            took = time.monotonic() - started
            assert took < 3 * PING_INTERVAL + 2, f"3 pings took {took:.1f}s with WS_PING_INTERVAL={PING_INTERVAL}"

    run(scenario())


def test_ping_pong_and_bad_messages(server: Server) -> None:
    async def scenario() -> None:
        async with connect(server) as ws:
            await hello(ws)
            await ws.send(json.dumps({"type": "ping", "id": "abc-1"}))
            assert await recv_until(ws, not_ping, "pong") == {"type": "pong", "id": "abc-1"}
            await ws.send(json.dumps({"type": "ping", "id": 42}))
            assert await recv_until(ws, not_ping, "pong") == {"type": "pong", "id": 42}
            await ws.send("not json")
            assert (await recv_until(ws, not_ping, "error reply"))["type"] == "error"
            await ws.send(json.dumps({"type": "subscribe"}))
            assert (await recv_until(ws, not_ping, "error reply"))["type"] == "error"
            # Still usable after bad input.
            await ws.send(json.dumps({"type": "ping", "id": 7}))
            assert await recv_until(ws, not_ping, "pong") == {"type": "pong", "id": 7}

    run(scenario())


def test_database_changes_are_pushed(server: Server, module_database: str) -> None:
    async def scenario() -> None:
        async with connect(server) as ws:
            await hello(ws)
            await execute(module_database, "UPDATE genes SET name = name || ' (edited)' WHERE approved_symbol = 'PKD1'")
            assert await recv_until(ws, not_ping, "gene_updated") == {
                "type": "gene_updated", "symbol": "PKD1", "op": "UPDATE", "hgnc_id": "HGNC:9008",
            }
            await execute(
                module_database,
                "INSERT INTO evidence (gene_id, source, detail) SELECT id, 'Literature', '{}' FROM genes WHERE approved_symbol = 'PKD2'",
            )
            assert await recv_until(ws, not_ping, "evidence_added") == {
                "type": "evidence_added", "symbol": "PKD2", "op": "INSERT", "source": "Literature",
            }
            await execute(
                module_database,
                "INSERT INTO genes (hgnc_id, approved_symbol, name) VALUES ('HGNC:99999990', 'TESTGENE1', 'test only')",
            )
            added = await recv_until(ws, not_ping, "gene_added")
            assert (added["type"], added["symbol"], added["op"]) == ("gene_added", "TESTGENE1", "INSERT")
            await execute(module_database, "DELETE FROM genes WHERE approved_symbol = 'TESTGENE1'")
            deleted = await recv_until(ws, not_ping, "gene_deleted")
            assert (deleted["type"], deleted["symbol"], deleted["op"]) == ("gene_deleted", "TESTGENE1", "DELETE")

    run(scenario())


def clients_now(server: Server) -> int | None:
    """Client count from the server's last connect/disconnect log line."""
    found = re.findall(r"websocket client (?:dis)?connected \(clients=(\d+)\)", server.log())
    return int(found[-1]) if found else None


async def until_clients(server: Server, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not (clients_now(server) == count or (count == 0 and clients_now(server) is None)):
        if time.monotonic() > deadline:
            raise AssertionError(f"server still reports clients={clients_now(server)} after {timeout:g}s, expected {count}")
        await asyncio.sleep(0.05)


def test_every_client_gets_events_and_gone_clients_are_removed(server: Server, module_database: str) -> None:
    async def scenario() -> None:
        await until_clients(server, 0)
        async with connect(server) as a, connect(server) as b:
            await hello(a)
            await hello(b)
            await until_clients(server, 2)
            await execute(module_database, "UPDATE genes SET aliases = aliases WHERE approved_symbol = 'NPHS1'")
            for ws in (a, b):
                assert (await recv_until(ws, not_ping, "gene_updated"))["symbol"] == "NPHS1"
            # A client that vanishes without a close frame (network cut) must be dropped too.
            a.transport.abort()
            await until_clients(server, 1)
            await execute(module_database, "UPDATE genes SET aliases = aliases WHERE approved_symbol = 'NPHS2'")
            assert (await recv_until(b, not_ping, "gene_updated"))["symbol"] == "NPHS2"
        await until_clients(server, 0)

    run(scenario())
    assert "Traceback" not in server.log(), server.log()


@pytest.mark.parametrize(
    "payload, expected",
    [
        ('{"table":"genes","op":"UPDATE","symbol":"PKD1","hgnc_id":"HGNC:9008"}',
         {"type": "gene_updated", "symbol": "PKD1", "op": "UPDATE", "hgnc_id": "HGNC:9008"}),
        ('{"table":"evidence","op":"DELETE","symbol":null,"source":"HPO","evidence_id":3}',
         {"type": "evidence_deleted", "symbol": None, "op": "DELETE", "source": "HPO"}),
        ('{"table":"other","op":"INSERT"}', None),
        ("not json", None),
    ],
)
def test_event_mapping(payload: str, expected: dict | None) -> None:
    assert event_from_notification(payload) == expected
