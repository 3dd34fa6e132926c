"""Configuration: every bad variable is named with a fix, and the process refuses to start."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from app.config import ConfigError, Settings, load_settings

from .conftest import BACKEND, base_database_url, free_port, url_with_database

GOOD_URL = "postgresql://kidney:secret@db:5432/kidney_genetics"


def problems(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    return str(info.value)


def test_defaults() -> None:
    settings = load_settings({"DATABASE_URL": GOOD_URL})
    assert settings == Settings(database_url=GOOD_URL)
    assert (settings.log_level, settings.ws_ping_interval, settings.db_connect_timeout) == ("info", 20.0, 30.0)
    assert settings.cors_origins == ()


def test_all_values_parsed() -> None:
    settings = load_settings({
        "DATABASE_URL": "postgres://u@h/db",
        "CORS_ORIGINS": " https://kidney-genetics.org/ , http://localhost:5173,, ",
        "LOG_LEVEL": "DEBUG",
        "WS_PING_INTERVAL": "0.5",
        "DB_CONNECT_TIMEOUT": "0",
    })
    assert settings.cors_origins == ("https://kidney-genetics.org", "http://localhost:5173")
    assert (settings.log_level, settings.ws_ping_interval, settings.db_connect_timeout) == ("debug", 0.5, 0.0)


def test_password_is_hidden_in_logs() -> None:
    assert load_settings({"DATABASE_URL": GOOD_URL}).safe_database_url() == "postgresql://kidney:***@db:5432/kidney_genetics"


def test_missing_database_url() -> None:
    message = problems({})
    assert "DATABASE_URL is not set" in message and "postgresql://" in message


@pytest.mark.parametrize("url", ["mysql://u:topsecret@h/db", "localhost:5432/db", "postgresql://u:topsecret@h:notaport/db", "postgresql:///db"])
def test_bad_database_url(url: str) -> None:
    message = problems({"DATABASE_URL": url})
    assert "DATABASE_URL" in message and "postgresql://" in message
    assert "topsecret" not in message, "the password must never be echoed"


@pytest.mark.parametrize(
    "name, value",
    [
        ("LOG_LEVEL", "verbose"),
        ("WS_PING_INTERVAL", "abc"),
        ("WS_PING_INTERVAL", "0"),
        ("WS_PING_INTERVAL", "-3"),
        ("WS_PING_INTERVAL", "inf"),
        ("DB_CONNECT_TIMEOUT", "soon"),
        ("DB_CONNECT_TIMEOUT", "-1"),
        ("CORS_ORIGINS", "kidney-genetics.org"),
    ],
)
def test_bad_variable_is_named(name: str, value: str) -> None:
    message = problems({"DATABASE_URL": GOOD_URL, name: value})
    assert f"{name}=" in message or f"{name} entry" in message
    assert "e.g." in message or "such as" in message, f"no example of a valid value in: {message}"


def test_all_problems_reported_at_once() -> None:
    message = problems({"LOG_LEVEL": "loud", "WS_PING_INTERVAL": "never"})
    for name in ("DATABASE_URL", "LOG_LEVEL", "WS_PING_INTERVAL"):
        assert name in message


def _uvicorn(env: dict[str, str], timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(free_port())],
        cwd=BACKEND, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **env},
        capture_output=True, text=True, timeout=timeout,
    )
    return proc, time.monotonic() - started


def test_process_exits_on_bad_config() -> None:
    proc, _ = _uvicorn({"DATABASE_URL": "mysql://x@y/z", "LOG_LEVEL": "loud"}, timeout=30)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "DATABASE_URL must start with postgresql://" in proc.stderr
    assert "LOG_LEVEL='loud'" in proc.stderr


def test_process_exits_when_database_stays_unreachable() -> None:
    closed = f"postgresql://kgdb:x@127.0.0.1:{free_port()}/kgdb"
    proc, took = _uvicorn({"DATABASE_URL": closed, "DB_CONNECT_TIMEOUT": "1.5"}, timeout=30)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "still unreachable after 1.5s" in output and "DB_CONNECT_TIMEOUT" in output, output
    assert 1.5 <= took < 20, f"gave up after {took:.1f}s, expected just over DB_CONNECT_TIMEOUT"


def test_process_exits_at_once_on_wrong_password() -> None:
    url = base_database_url()
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    wrong = parts._replace(netloc=f"{parts.username}:wrong-password@{parts.hostname}:{parts.port}").geturl()
    proc, took = _uvicorn({"DATABASE_URL": wrong, "DB_CONNECT_TIMEOUT": "60"}, timeout=45)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "refused the login" in output and "wrong-password" not in output, output
    assert took < 30, "a wrong password must not be retried for DB_CONNECT_TIMEOUT"


def test_process_exits_on_missing_database() -> None:
    proc, _ = _uvicorn({"DATABASE_URL": url_with_database(base_database_url(), "no_such_db"), "DB_CONNECT_TIMEOUT": "60"}, timeout=45)
    assert proc.returncode != 0
    assert "no_such_db" in proc.stdout + proc.stderr


def test_log_level_is_applied(make_database, start_server) -> None:
    url = make_database()
    quiet = start_server(url, LOG_LEVEL="warning")
    quiet.get("/api/genes")
    quiet.stop()  # stopped, so the log is complete
    assert "schema ready" not in quiet.log() and "GET /api/genes" not in quiet.log()
    verbose = start_server(url, LOG_LEVEL="debug")
    verbose.get("/api/genes")
    verbose.stop()
    assert "schema ready" in verbose.log() and "GET /api/genes" in verbose.log()
