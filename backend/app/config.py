"""Settings from the environment, validated once at start-up.

Every problem is reported together, each naming the variable and how to fix it, so a broken
deployment fails at once with one readable message instead of at the first request.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import parse_qs, urlsplit

LOG_LEVELS = ("debug", "info", "warning", "error")
EXAMPLE_URL = "postgresql://kidney:secret@db:5432/kidney_genetics"


class ConfigError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))

    def __str__(self) -> str:
        lines = ["invalid configuration:"] + [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


@dataclass(frozen=True)
class Settings:
    database_url: str
    cors_origins: tuple[str, ...] = ()
    log_level: str = "info"
    ws_ping_interval: float = 20.0
    db_connect_timeout: float = 30.0

    def safe_database_url(self) -> str:
        """The URL without its password, for logs."""
        parts = urlsplit(self.database_url)
        if parts.password is None:
            return self.database_url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return parts._replace(netloc=netloc).geturl()


def _seconds(env: Mapping[str, str], name: str, default: float, problems: list[str], allow_zero: bool) -> float:
    raw = env.get(name, "").strip()
    if raw == "":
        return default
    kind = "a number of seconds >= 0" if allow_zero else "a positive number of seconds"
    try:
        value = float(raw)
    except ValueError:
        problems.append(f"{name}={raw!r} is not a number; set it to {kind}, e.g. {name}={default:g}")
        return default
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        problems.append(f"{name}={raw!r} is out of range; set it to {kind}, e.g. {name}={default:g}")
        return default
    return value


def _database_url(env: Mapping[str, str], problems: list[str]) -> str:
    url = env.get("DATABASE_URL", "").strip()
    if not url:
        problems.append(f"DATABASE_URL is not set; set it to a PostgreSQL URL, e.g. DATABASE_URL={EXAMPLE_URL}")
        return ""
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError as exc:
        # The URL may hold a password: never echo it back.
        problems.append(f"DATABASE_URL is not a valid URL ({exc}); use the form {EXAMPLE_URL}")
        return ""
    if parts.scheme not in ("postgresql", "postgres"):
        problems.append(
            f"DATABASE_URL must start with postgresql:// or postgres:// (got {parts.scheme + '://' if parts.scheme else 'no scheme'}); "
            f"e.g. DATABASE_URL={EXAMPLE_URL}"
        )
        return ""
    if not parts.hostname and "host" not in parse_qs(parts.query):
        problems.append(f"DATABASE_URL has no host; use the form {EXAMPLE_URL}")
        return ""
    return url


def _cors_origins(env: Mapping[str, str], problems: list[str]) -> tuple[str, ...]:
    raw = env.get("CORS_ORIGINS", "")
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            problems.append(
                f"CORS_ORIGINS entry {origin!r} is not an origin; use a comma-separated list such as "
                "CORS_ORIGINS=https://kidney-genetics.org,http://localhost:5173 (or * for any)"
            )
    return origins


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    problems: list[str] = []
    database_url = _database_url(env, problems)
    cors_origins = _cors_origins(env, problems)
    log_level = env.get("LOG_LEVEL", "").strip().lower() or "info"
    if log_level not in LOG_LEVELS:
        problems.append(f"LOG_LEVEL={env.get('LOG_LEVEL')!r} is not one of {', '.join(LOG_LEVELS)}; e.g. LOG_LEVEL=info")
        log_level = "info"
    ws_ping_interval = _seconds(env, "WS_PING_INTERVAL", 20.0, problems, allow_zero=False)
    # 0 means a single connection attempt.
    db_connect_timeout = _seconds(env, "DB_CONNECT_TIMEOUT", 30.0, problems, allow_zero=True)
    if problems:
        raise ConfigError(problems)
    return Settings(
        database_url=database_url,
        cors_origins=cors_origins,
        log_level=log_level,
        ws_ping_interval=ws_ping_interval,
        db_connect_timeout=db_connect_timeout,
    )
