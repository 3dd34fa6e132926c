"""Schema creation and seeding are idempotent, and the constraints hold."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from app import db, seed

from .conftest import run, sql

SEED_EVIDENCE = sum(len(rows) for rows in seed.EVIDENCE.values())


async def _init(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        await db.init_connection(conn)
        return await db.create_schema_and_seed(conn)
    finally:
        await conn.close()


def counts(url: str) -> tuple[int, int]:
    row = sql(url, "SELECT (SELECT count(*) FROM genes) AS g, (SELECT count(*) FROM evidence) AS e")[0]
    return row["g"], row["e"]


def test_seed_data_is_consistent() -> None:
    symbols = [symbol for _, symbol, _, _ in seed.GENES]
    assert len(set(symbols)) == len(symbols) == len({hgnc for hgnc, _, _, _ in seed.GENES})
    assert set(seed.EVIDENCE) <= set(symbols)


def test_seeds_exactly_what_the_seed_lists(make_database, monkeypatch) -> None:
    """Each listed gene once, with its aliases and its own evidence, whatever the list holds."""
    monkeypatch.setattr(seed, "GENES", [("HGNC:1", "AAA1", "gene a", ["A1", "A-1"]), ("HGNC:2", "BBB2", "gene b", [])])
    monkeypatch.setattr(seed, "EVIDENCE", {"AAA1": [("PanelApp", {"panel": "p"}), ("HPO", {"term": "HP:1"})]})
    url = make_database()
    assert run(_init(url)) == 2
    rows = sql(
        url,
        "SELECT g.hgnc_id, g.approved_symbol, g.name, g.aliases, array_remove(array_agg(e.source ORDER BY e.id), NULL) AS ev "
        "FROM genes g LEFT JOIN evidence e ON e.gene_id = g.id GROUP BY g.id ORDER BY g.hgnc_id",
    )
    assert [tuple(r) for r in rows] == [
        ("HGNC:1", "AAA1", "gene a", ["A1", "A-1"], ["PanelApp", "HPO"]),
        ("HGNC:2", "BBB2", "gene b", [], []),
    ]


def test_schema_and_seed_twice(make_database) -> None:
    url = make_database()
    assert run(_init(url)) == len(seed.GENES)
    assert counts(url) == (len(seed.GENES), SEED_EVIDENCE)
    assert run(_init(url)) == 0, "second start-up must not seed again"
    assert counts(url) == (len(seed.GENES), SEED_EVIDENCE)
    triggers = {r["tgname"] for r in sql(url, "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")}
    assert triggers == {"genes_touch", "genes_notify", "evidence_notify"}


def test_no_seed_when_genes_exist(make_database) -> None:
    url = make_database()
    run(_schema_only(url))
    sql(url, "INSERT INTO genes (hgnc_id, approved_symbol, name) VALUES ('HGNC:9008', 'PKD1', 'polycystin 1')")
    assert run(_init(url)) == 0
    assert counts(url) == (1, 0)


async def _schema_only(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(db.SCHEMA_SQL)
    finally:
        await conn.close()


def test_concurrent_start_ups_seed_once(make_database) -> None:
    url = make_database()

    async def both() -> list[int]:
        return await asyncio.gather(*(_init(url) for _ in range(3)))

    assert sorted(run(both())) == [0, 0, len(seed.GENES)]
    assert counts(url) == (len(seed.GENES), SEED_EVIDENCE)


def test_restarted_server_keeps_data(make_database, start_server) -> None:
    url = make_database()
    first = start_server(url)
    sql(url, "UPDATE genes SET name = 'edited by a curator' WHERE approved_symbol = 'WT1'")
    first.stop()
    second = start_server(url)
    assert "existing data kept" in second.log()
    assert second.get("/api/genes/WT1").json()["name"] == "edited by a curator"
    assert second.get("/api/genes").json()["total"] == len(seed.GENES)


@pytest.fixture(scope="module")
def seeded_database(module_database: str) -> str:
    run(_init(module_database))
    return module_database


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO evidence (gene_id, source) SELECT id, 'OMIM' FROM genes LIMIT 1",
        "INSERT INTO genes (hgnc_id, approved_symbol) VALUES ('9999', 'FAKE1')",
        "INSERT INTO genes (hgnc_id, approved_symbol) VALUES ('HGNC:9999999', 'PKD1')",
        "INSERT INTO genes (hgnc_id, approved_symbol) VALUES ('HGNC:9008', 'OTHER')",
        "INSERT INTO evidence (gene_id, source) VALUES (-1, 'HPO')",
    ],
)
def test_constraints(seeded_database: str, statement: str) -> None:
    with pytest.raises((asyncpg.CheckViolationError, asyncpg.UniqueViolationError, asyncpg.ForeignKeyViolationError)):
        sql(seeded_database, statement)


def test_updated_at_moves_on_update(make_database) -> None:
    url = make_database()
    run(_init(url))
    before = sql(url, "SELECT updated_at FROM genes WHERE approved_symbol = 'PAX2'")[0]["updated_at"]
    sql(url, "UPDATE genes SET aliases = '{PAX-2}' WHERE approved_symbol = 'PAX2'")
    after = sql(url, "SELECT updated_at FROM genes WHERE approved_symbol = 'PAX2'")[0]["updated_at"]
    assert after > before


def test_deleting_a_gene_deletes_its_evidence(make_database) -> None:
    url = make_database()
    run(_init(url))
    sql(url, "DELETE FROM genes WHERE approved_symbol = 'PKD1'")
    assert counts(url) == (len(seed.GENES) - 1, SEED_EVIDENCE - len(seed.EVIDENCE["PKD1"]))
