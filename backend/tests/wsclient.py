"""WebSocket and SQL helpers shared by the WebSocket and outage tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

import asyncpg
import websockets

from .conftest import Server

EVENT_TIMEOUT = 10.0


def connect(server: Server):
    return websockets.connect(server.ws_url, open_timeout=10, close_timeout=5)


async def recv_until(ws, predicate: Callable[[dict], bool], what: str, timeout: float = EVENT_TIMEOUT) -> dict:
    """Next message matching `predicate`, within a bounded wait that names what was missing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen: list[Any] = []
    while True:
        remaining = deadline - loop.time()
        try:
            if remaining <= 0:
                raise asyncio.TimeoutError
            message = json.loads(await asyncio.wait_for(ws.recv(), remaining))
        except asyncio.TimeoutError:
            raise AssertionError(f"no {what} within {timeout:g}s; received instead: {seen}") from None
        if predicate(message):
            return message
        seen.append(message)


def not_ping(message: dict) -> bool:
    return message.get("type") != "ping"


async def hello(ws) -> dict:
    message = json.loads(await asyncio.wait_for(ws.recv(), EVENT_TIMEOUT))
    assert message["type"] == "hello", message
    return message


async def execute(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()
