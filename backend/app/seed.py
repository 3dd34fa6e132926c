"""Seed data: a small set of well-established kidney disease genes.

Facts are public: HGNC ids, approved symbols and names as in HGNC; Genomics England PanelApp panel
names; ClinGen gene-disease validity classifications; HPO terms. Rows are only included where the
fact could be checked; no PMIDs are seeded, because none could be verified here. Scores and
classifications are NOT stored here: they are derived from the evidence (see db.SCHEMA_SQL).
"""

from __future__ import annotations

# (hgnc_id, symbol, name, aliases)
GENES: list[tuple[str, str, str, list[str]]] = [
    ("HGNC:9008", "PKD1", "polycystin 1, transient receptor potential channel interacting", ["PBP", "TRPP1"]),
    ("HGNC:9009", "PKD2", "polycystin 2, transient receptor potential cation channel", ["TRPP2", "PC2"]),
    ("HGNC:9016", "PKHD1", "PKHD1 ciliary IPT domain containing fibrocystin/polyductin", ["FCYT"]),
    ("HGNC:2204", "COL4A3", "collagen type IV alpha 3 chain", []),
    ("HGNC:2206", "COL4A4", "collagen type IV alpha 4 chain", []),
    ("HGNC:2207", "COL4A5", "collagen type IV alpha 5 chain", ["ASLN", "ATS"]),
    ("HGNC:7908", "NPHS1", "NPHS1 adhesion molecule, nephrin", ["CNF", "NPHN"]),
    ("HGNC:13394", "NPHS2", "NPHS2 stomatin family member, podocin", ["SRN1", "PDCN"]),
    ("HGNC:12796", "WT1", "WT1 transcription factor", ["WAGR", "GUD"]),
    ("HGNC:11630", "HNF1B", "HNF1 homeobox B", ["TCF2"]),
    ("HGNC:8616", "PAX2", "paired box 2", []),
    ("HGNC:2023", "CLCN5", "chloride voltage-gated channel 5", ["CLC5", "DENTS"]),
    ("HGNC:10910", "SLC12A1", "solute carrier family 12 member 1", ["NKCC2", "BSC1"]),
]


def _panelapp(panel: str) -> tuple[str, dict]:
    return "PanelApp", {"panel": panel, "instance": "Genomics England"}


def _clingen(disease: str, moi: str) -> tuple[str, dict]:
    return "ClinGen", {"disease": disease, "classification": "Definitive", "mode_of_inheritance": moi}


def _gencc(disease: str) -> tuple[str, dict]:
    return "GenCC", {"disease": disease, "classification": "Definitive"}


def _hpo(term: str, label: str) -> tuple[str, dict]:
    return "HPO", {"term": term, "label": label}


RENAL_CYST = _hpo("HP:0000107", "Renal cyst")
HEPATIC_CYSTS = _hpo("HP:0001407", "Hepatic cysts")
HEMATURIA = _hpo("HP:0000790", "Hematuria")
HEARING = _hpo("HP:0000407", "Sensorineural hearing impairment")
NEPHROTIC = _hpo("HP:0000100", "Nephrotic syndrome")
PROTEINURIA = _hpo("HP:0000093", "Proteinuria")
FSGS = _hpo("HP:0000097", "Focal segmental glomerulosclerosis")
ADPKD = "autosomal dominant polycystic kidney disease"
ALPORT = "Alport syndrome"

EVIDENCE: dict[str, list[tuple[str, dict]]] = {
    "PKD1": [_panelapp("Cystic renal disease"), _clingen(ADPKD, "AD"), _gencc(ADPKD), RENAL_CYST, HEPATIC_CYSTS],
    "PKD2": [_panelapp("Cystic renal disease"), _clingen(ADPKD, "AD"), _gencc(ADPKD), RENAL_CYST, HEPATIC_CYSTS],
    "PKHD1": [
        _panelapp("Cystic renal disease"),
        _clingen("autosomal recessive polycystic kidney disease", "AR"),
        RENAL_CYST,
        HEPATIC_CYSTS,
    ],
    "COL4A5": [_panelapp("Proteinuric renal disease"), _clingen(ALPORT, "XL"), _gencc(ALPORT), HEMATURIA, HEARING],
    "COL4A3": [_panelapp("Proteinuric renal disease"), _clingen(ALPORT, "AR"), HEMATURIA],
    "COL4A4": [_panelapp("Proteinuric renal disease"), HEMATURIA],
    "NPHS1": [
        _panelapp("Proteinuric renal disease"),
        NEPHROTIC,
        PROTEINURIA,
    ],
    "NPHS2": [_panelapp("Proteinuric renal disease"), NEPHROTIC, FSGS],
    "WT1": [_panelapp("Proteinuric renal disease"), FSGS],
    "HNF1B": [_panelapp("Renal tubulopathies"), RENAL_CYST],
    "PAX2": [FSGS],
    "CLCN5": [
        _panelapp("Proteinuric renal disease"),
        _hpo("HP:0003126", "Low-molecular-weight proteinuria"),
        _hpo("HP:0002150", "Hypercalciuria"),
    ],
    "SLC12A1": [_panelapp("Renal tubulopathies"), _hpo("HP:0002900", "Hypokalemia")],
}
