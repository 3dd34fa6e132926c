"""Shared fixtures: fresh databases on the test cluster and real uvicorn processes.

Needs DATABASE_URL (a role allowed to CREATE DATABASE) and, for the outage tests, PG_SH + PG_DIR
to stop/start the cluster: scripts/test-backend.sh provides all of them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

BACKEND = Path(__file__).resolve().parents[1]
START_TIMEOUT = 30.0


def run(coro):
    return asyncio.run(coro)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Polls `check` until it returns something truthy; fails naming `what` and the last error."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            result = check()
            if result:
                return result
            last = repr(result)
        except Exception as exc:  # keep polling, but remember why
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what} (last: {last})")
        time.sleep(interval)


def base_database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        pytest.exit("DATABASE_URL is not set: run the suite with `bash scripts/test-backend.sh` from the repo root", 2)
    return url


def url_with_database(url: str, name: str) -> str:
    return urlsplit(url)._replace(path=f"/{name}").geturl()


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(base_database_url(), timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def make_database() -> Iterator[Callable[[], str]]:
    """Factory for empty databases, dropped afterwards (tests never share mutable state by accident)."""
    created: list[str] = []

    def make() -> str:
        name = f"kgdb_test_{secrets.token_hex(4)}"
        run(_admin(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return url_with_database(base_database_url(), name)

    yield make
    for name in created:
        run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def module_database() -> Iterator[str]:
    name = f"kgdb_test_{secrets.token_hex(4)}"
    run(_admin(f'CREATE DATABASE "{name}"'))
    yield url_with_database(base_database_url(), name)
    run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _execute(url: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def sql(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    """Runs SQL on its own connection, as another client of the database would."""
    return run(_execute(url, query, *args))


class Server:
    """A real `python3 -m uvicorn app.main:app` process on a free port."""

    def __init__(self, database_url: str, tmp_dir: Path, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws/events"
        self.log_path = tmp_dir / f"uvicorn-{self.port}.log"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "PYTHONUNBUFFERED": "1",  # the tests read the log while the server runs
            "PYTHONDONTWRITEBYTECODE": "1",
            **env,
        }
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Server":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=BACKEND, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )

        def ready() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"uvicorn exited with {self.proc.returncode} during start-up:\n{self.log()}")
            return httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200

        try:
            wait_until(ready, START_TIMEOUT, f"uvicorn on port {self.port} to report healthy")
        except BaseException:
            print(self.log(), file=sys.stderr)
            self.stop()
            raise
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=10, **kwargs)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(database_url: str, **env: str) -> Server:
        server = Server(database_url, tmp_path, **env)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


class PgControl:
    def __init__(self) -> None:
        self.pg_sh = os.environ.get("PG_SH")
        if not self.pg_sh or not os.environ.get("PG_DIR"):
            pytest.fail("PG_SH/PG_DIR are not set, so the test cannot stop the database: run `bash scripts/test-backend.sh`")

    def __call__(self, action: str) -> None:
        subprocess.run(["bash", self.pg_sh, action], check=True, timeout=60)

    def running(self) -> bool:
        return subprocess.run(["bash", self.pg_sh, "status"], capture_output=True, timeout=30).returncode == 0


@pytest.fixture
def pg_control() -> Iterator[PgControl]:
    control = PgControl()
    yield control
    # Whatever happened in the test, later tests need the database back.
    if not control.running():
        control("start")
