"""PostgreSQL access with asyncpg: pool, schema, seed and the queries behind the API."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import asyncpg

from . import seed

log = logging.getLogger("kidney_genetics.db")

CHANNEL = "kidney_events"
# Any constant works; it keeps two app instances from creating the schema at the same time.
SCHEMA_LOCK_KEY = 0x6B_67_64_62

# Scoring rule (the single place it is defined; the view below implements it):
#   score = sum of the weights of the DISTINCT evidence sources a gene has, so 0..100:
#     ClinGen 30, GenCC 25, PanelApp 20, Literature 15, HPO 10
#   (more rows from one source do not add up: independent sources are what makes a
#   gene-disease link credible).
#   classification by score: >= 70 Definitive, >= 45 Strong, >= 25 Moderate, otherwise Limited.
SOURCE_WEIGHTS = {"ClinGen": 30, "GenCC": 25, "PanelApp": 20, "Literature": 15, "HPO": 10}
CLASSIFICATION_THRESHOLDS = [(70, "Definitive"), (45, "Strong"), (25, "Moderate"), (0, "Limited")]


def classify(score: int) -> str:
    return next(label for threshold, label in CLASSIFICATION_THRESHOLDS if score >= threshold)


_weights_sql = ", ".join(f"('{s}', {w})" for s, w in SOURCE_WEIGHTS.items())
_sources_sql = ", ".join(f"'{s}'" for s in SOURCE_WEIGHTS)
_classification_sql = " ".join(
    f"WHEN score >= {t} THEN '{label}'" for t, label in CLASSIFICATION_THRESHOLDS[:-1]
) + f" ELSE '{CLASSIFICATION_THRESHOLDS[-1][1]}'"

# Idempotent: safe on every start-up, and on a database that already has the schema.
SCHEMA_SQL = f"""
CREATE TABLE IF NOT EXISTS genes (
    id              BIGSERIAL PRIMARY KEY,
    hgnc_id         TEXT NOT NULL UNIQUE CHECK (hgnc_id ~ '^HGNC:[0-9]+$'),
    approved_symbol TEXT NOT NULL UNIQUE CHECK (approved_symbol <> ''),
    name            TEXT NOT NULL DEFAULT '',
    aliases         TEXT[] NOT NULL DEFAULT '{{}}',
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS genes_symbol_lower_idx ON genes (lower(approved_symbol));

CREATE TABLE IF NOT EXISTS evidence (
    id         BIGSERIAL PRIMARY KEY,
    gene_id    BIGINT NOT NULL REFERENCES genes (id) ON DELETE CASCADE,
    source     TEXT NOT NULL CHECK (source IN ({_sources_sql})),
    detail     JSONB NOT NULL DEFAULT '{{}}'::jsonb,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS evidence_gene_id_idx ON evidence (gene_id);

-- A view, not a stored column: the score can never disagree with the evidence.
CREATE OR REPLACE VIEW gene_scores AS
WITH per_gene AS (
    SELECT g.id AS gene_id,
           COALESCE((SELECT sum(w.weight)
                       FROM (SELECT DISTINCT e.source FROM evidence e WHERE e.gene_id = g.id) d
                       JOIN (VALUES {_weights_sql}) AS w (source, weight) ON w.source = d.source), 0)::int AS score,
           (SELECT count(*) FROM evidence e WHERE e.gene_id = g.id)::int AS evidence_count
      FROM genes g
)
SELECT gene_id, score, CASE {_classification_sql} END AS classification, evidence_count
  FROM per_gene;

CREATE OR REPLACE FUNCTION kidney_genes_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER genes_touch BEFORE UPDATE ON genes
    FOR EACH ROW EXECUTE FUNCTION kidney_genes_touch();

-- Payloads stay small (NOTIFY caps them at 8000 bytes): clients refetch what they need.
CREATE OR REPLACE FUNCTION kidney_genes_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r genes;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    PERFORM pg_notify('{CHANNEL}', json_build_object(
        'table', 'genes', 'op', TG_OP, 'symbol', r.approved_symbol, 'hgnc_id', r.hgnc_id)::text);
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER genes_notify AFTER INSERT OR UPDATE OR DELETE ON genes
    FOR EACH ROW EXECUTE FUNCTION kidney_genes_notify();

CREATE OR REPLACE FUNCTION kidney_evidence_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r evidence;
    sym text;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    -- NULL when the gene itself is being deleted (cascade): its own event names it.
    SELECT approved_symbol INTO sym FROM genes WHERE id = r.gene_id;
    PERFORM pg_notify('{CHANNEL}', json_build_object(
        'table', 'evidence', 'op', TG_OP, 'symbol', sym, 'source', r.source, 'evidence_id', r.id)::text);
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER evidence_notify AFTER INSERT OR UPDATE OR DELETE ON evidence
    FOR EACH ROW EXECUTE FUNCTION kidney_evidence_notify();
"""


async def init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_schema_and_seed(conn: asyncpg.Connection) -> int:
    """Creates the schema and seeds an empty genes table. Returns the number of genes seeded."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK_KEY)
        await conn.execute(SCHEMA_SQL)
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM genes)"):
            return 0
        for hgnc_id, symbol, name, aliases in seed.GENES:
            gene_id = await conn.fetchval(
                "INSERT INTO genes (hgnc_id, approved_symbol, name, aliases) VALUES ($1, $2, $3, $4) RETURNING id",
                hgnc_id, symbol, name, aliases,
            )
            await conn.executemany(
                "INSERT INTO evidence (gene_id, source, detail) VALUES ($1, $2, $3::text::jsonb)",
                [(gene_id, source, json.dumps(detail)) for source, detail in seed.EVIDENCE.get(symbol, [])],
            )
        return len(seed.GENES)


class StartupError(RuntimeError):
    pass


# Errors that waiting will not fix: fail at once instead of retrying for DB_CONNECT_TIMEOUT.
_PERMANENT = (
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
)


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) and not text:
        text = "timed out"
    name = type(exc).__name__
    return f"{name}: {text}"[:200] if text else name


async def create_pool_with_retry(dsn: str, timeout: float, safe_url: str) -> asyncpg.Pool:
    """Keeps trying for `timeout` seconds: the database often starts after the API (compose, k8s)."""
    deadline = time.monotonic() + timeout
    delay = 0.5
    attempt = 0
    while True:
        attempt += 1
        try:
            return await asyncpg.create_pool(
                dsn, min_size=1, max_size=10, timeout=5, command_timeout=30, init=init_connection
            )
        except _PERMANENT as exc:
            raise StartupError(
                f"database at {safe_url} refused the login: {describe(exc)}; "
                "check the user, password and database name in DATABASE_URL"
            ) from None  # the message has the cause; a chained traceback would only bury it
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StartupError(
                    f"database at {safe_url} still unreachable after {timeout:g}s "
                    f"({attempt} attempt{'s' if attempt > 1 else ''}); "
                    f"last error: {describe(exc)}; check that PostgreSQL is running and DATABASE_URL is right, "
                    "or raise DB_CONNECT_TIMEOUT"
                ) from None
            log.warning("database not reachable yet (%s); retrying for %.0fs more", describe(exc), remaining)
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 3.0)


# --- queries ---------------------------------------------------------------------------------

SORTS = {
    "symbol": "g.approved_symbol ASC",
    "-symbol": "g.approved_symbol DESC",
    "score": "s.score ASC, g.approved_symbol ASC",
    "-score": "s.score DESC, g.approved_symbol ASC",
}

_GENE_COLUMNS = """
    g.hgnc_id, g.approved_symbol AS symbol, g.name, g.aliases,
    s.score, s.classification, s.evidence_count
"""

_SEARCH_FILTER = """
    ($1::text IS NULL
     OR g.approved_symbol ILIKE $1 OR g.name ILIKE $1
     OR EXISTS (SELECT 1 FROM unnest(g.aliases) AS a (alias) WHERE a.alias ILIKE $1))
"""


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _gene(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "hgnc_id": row["hgnc_id"],
        "symbol": row["symbol"],
        "name": row["name"],
        "aliases": list(row["aliases"]),
        "score": row["score"],
        "classification": row["classification"],
        "evidence_count": row["evidence_count"],
    }


async def list_genes(pool: asyncpg.Pool, page: int, page_size: int, search: str | None, sort: str) -> dict[str, Any]:
    pattern = _like_pattern(search) if search else None
    order = SORTS[sort]  # whitelisted: never interpolate user input
    async with pool.acquire() as conn:
        total = await conn.fetchval(f"SELECT count(*) FROM genes g WHERE {_SEARCH_FILTER}", pattern)
        rows = await conn.fetch(
            f"""SELECT {_GENE_COLUMNS}
                  FROM genes g JOIN gene_scores s ON s.gene_id = g.id
                 WHERE {_SEARCH_FILTER}
                 ORDER BY {order}
                 LIMIT $2 OFFSET $3""",
            pattern, page_size, (page - 1) * page_size,
        )
    return {"items": [_gene(r) for r in rows], "total": total, "page": page, "page_size": page_size}


async def get_gene(pool: asyncpg.Pool, symbol: str) -> dict[str, Any] | None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            f"""SELECT g.id, g.updated_at, {_GENE_COLUMNS}
                  FROM genes g JOIN gene_scores s ON s.gene_id = g.id
                 WHERE lower(g.approved_symbol) = lower($1)
                 ORDER BY g.approved_symbol = $1 DESC
                 LIMIT 1""",
            symbol,
        )
        if row is None:
            return None
        evidence = await conn.fetch(
            "SELECT source, detail, created_at FROM evidence WHERE gene_id = $1 ORDER BY created_at, id",
            row["id"],
        )
    gene = _gene(row)
    gene["updated_at"] = row["updated_at"].isoformat()
    gene["evidence"] = [
        {"source": e["source"], "detail": e["detail"], "created_at": e["created_at"].isoformat()} for e in evidence
    ]
    return gene


async def ping(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.fetchval("SELECT 1")
