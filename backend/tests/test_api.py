"""REST API against a real uvicorn process and a freshly seeded database."""

from __future__ import annotations

import pytest

from app import seed
from app.db import SOURCE_WEIGHTS, classify

from .conftest import Server, sql

ALLOWED_ORIGIN = "http://allowed.example"
SEEDED = sorted(symbol for _, symbol, _, _ in seed.GENES)
ITEM_KEYS = {"hgnc_id", "symbol", "name", "aliases", "score", "classification", "evidence_count"}


@pytest.fixture(scope="module")
def server(module_database, tmp_path_factory):
    server = Server(module_database, tmp_path_factory.mktemp("api"), CORS_ORIGINS=ALLOWED_ORIGIN).start()
    yield server
    server.stop()


def genes(server: Server, **params) -> dict:
    response = server.get("/api/genes", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def symbols(body: dict) -> list[str]:
    return [item["symbol"] for item in body["items"]]


def test_health_ok(server: Server) -> None:
    response = server.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "connected"}


def test_list_defaults(server: Server) -> None:
    body = genes(server)
    assert (body["total"], body["page"], body["page_size"]) == (len(SEEDED), 1, 20)
    assert symbols(body) == SEEDED
    assert all(set(item) == ITEM_KEYS for item in body["items"])
    pkd1 = next(item for item in body["items"] if item["symbol"] == "PKD1")
    assert pkd1 == {
        "hgnc_id": "HGNC:9008",
        "symbol": "PKD1",
        "name": "polycystin 1, transient receptor potential channel interacting",
        "aliases": ["PBP", "TRPP1"],
        "score": 85,
        "classification": "Definitive",
        "evidence_count": 5,
    }


def test_paging_covers_every_gene_once(server: Server) -> None:
    pages = [genes(server, page=p, page_size=5) for p in (1, 2, 3, 4)]
    assert [len(p["items"]) for p in pages] == [5, 5, 3, 0]
    assert all(p["total"] == len(SEEDED) and p["page_size"] == 5 for p in pages)
    assert [p["page"] for p in pages] == [1, 2, 3, 4]
    assert sum((symbols(p) for p in pages), []) == SEEDED


@pytest.mark.parametrize(
    "term, expected",
    [
        ("PKD", ["PKD1", "PKD2"]),
        ("pkd", ["PKD1", "PKD2"]),  # case-insensitive
        ("collagen", ["COL4A3", "COL4A4", "COL4A5"]),  # name
        ("nkcc2", ["SLC12A1"]),  # alias
        ("TCF2", ["HNF1B"]),  # previous symbol kept as alias
        ("podocin", ["NPHS2"]),
        ("%", []),  # LIKE wildcards are literal
        ("_", []),
        ("no-such-gene", []),
    ],
)
def test_search(server: Server, term: str, expected: list[str]) -> None:
    body = genes(server, search=term)
    assert symbols(body) == expected
    assert body["total"] == len(expected)


def test_search_total_counts_beyond_the_page(server: Server) -> None:
    body = genes(server, search="COL4", page_size=2)
    assert symbols(body) == ["COL4A3", "COL4A4"] and body["total"] == 3


def test_sort(server: Server) -> None:
    assert symbols(genes(server, sort="symbol")) == SEEDED
    assert symbols(genes(server, sort="-symbol")) == SEEDED[::-1]
    ascending = genes(server, sort="score")["items"]
    assert [(i["score"], i["symbol"]) for i in ascending] == sorted((i["score"], i["symbol"]) for i in ascending)
    descending = genes(server, sort="-score")["items"]
    assert [(-i["score"], i["symbol"]) for i in descending] == sorted((-i["score"], i["symbol"]) for i in descending)
    assert descending[0]["classification"] == "Definitive" and ascending[0]["symbol"] == "PAX2"


@pytest.mark.parametrize(
    "params",
    [
        {"page": 0},
        {"page": -1},
        {"page": "abc"},
        {"page_size": 0},
        {"page_size": 101},
        {"page_size": "ten"},
        {"sort": "name"},
        {"sort": "symbol;DROP TABLE genes"},
        {"search": "x" * 101},
    ],
)
def test_invalid_query_is_422(server: Server, params: dict) -> None:
    response = server.get("/api/genes", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][:2] == ["query", next(iter(params))]


def test_page_size_bounds_accepted(server: Server) -> None:
    assert len(genes(server, page_size=1)["items"]) == 1
    assert len(genes(server, page_size=100)["items"]) == len(SEEDED)


@pytest.mark.parametrize("asked", ["PKD1", "pkd1", "Pkd1"])
def test_gene_detail_case_insensitive(server: Server, asked: str) -> None:
    response = server.get(f"/api/genes/{asked}")
    assert response.status_code == 200
    gene = response.json()
    assert (gene["symbol"], gene["hgnc_id"], gene["score"], gene["classification"]) == ("PKD1", "HGNC:9008", 85, "Definitive")
    assert [e["source"] for e in gene["evidence"]] == ["PanelApp", "ClinGen", "GenCC", "HPO", "HPO"]
    assert gene["evidence"][3]["detail"] == {"term": "HP:0000107", "label": "Renal cyst"}
    assert all(set(e) == {"source", "detail", "created_at"} for e in gene["evidence"])
    assert gene["evidence_count"] == len(gene["evidence"])


def test_gene_not_found(server: Server) -> None:
    response = server.get("/api/genes/XYZ")
    assert response.status_code == 404
    assert response.json() == {"detail": "gene XYZ not found"}


def test_scores_follow_the_documented_rule(server: Server) -> None:
    for symbol in SEEDED:
        gene = server.get(f"/api/genes/{symbol}").json()
        expected = sum(SOURCE_WEIGHTS[s] for s in {e["source"] for e in gene["evidence"]})
        assert gene["score"] == expected, symbol
        assert gene["classification"] == classify(expected), symbol
    by_symbol = {i["symbol"]: i for i in genes(server, page_size=100)["items"]}
    assert {s: by_symbol[s]["classification"] for s in ("PKD2", "PKHD1", "NPHS2", "PAX2")} == {
        "PKD2": "Definitive", "PKHD1": "Strong", "NPHS2": "Moderate", "PAX2": "Limited",
    }


def test_cors(server: Server) -> None:
    allowed = server.get("/api/health", headers={"Origin": ALLOWED_ORIGIN})
    assert allowed.headers.get("access-control-allow-origin") == ALLOWED_ORIGIN
    other = server.get("/api/health", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_new_evidence_changes_score(server: Server, module_database: str) -> None:
    # Last in this module: it changes data the tests above read.
    assert server.get("/api/genes/PAX2").json()["score"] == 10
    sql(module_database,
        "INSERT INTO evidence (gene_id, source, detail) SELECT id, 'GenCC', '{\"note\": \"test\"}' FROM genes WHERE approved_symbol = 'PAX2'")
    gene = server.get("/api/genes/PAX2").json()
    assert (gene["score"], gene["classification"], gene["evidence_count"]) == (35, "Moderate", 2)
