"""Nothing of the German credit product is written into the platform's code (issue 19).

The names are taken from the product itself, never listed here: the columns of its data file, and
every string constant of its Feast repository (entity, views, fields, sources, on-demand view,
feature services) and of its ``product.toml``, minus the platform's own vocabulary (timestamps,
tags, kinds). Every ``.py`` under ``services/*/src`` and ``libs/*/src`` is searched (generated
contract code, the test library ``libs/testing`` and a service's own ``testing`` package
excepted): a name with an underscore as a word,
a plain word (``purpose``, ``job``) only as a quoted string.

Names the contracts define as fields (``PredictRequest.applicant_id``, ``GroundTruth.applicant``)
stay for compatibility and are not searched: the contracts are checked by ``buf breaking`` instead.
``protected_attributes`` is both a German view and a key of every product file.
"""

from __future__ import annotations

import ast
import csv
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GERMAN = ROOT / "products" / "german_credit"
SKIP_PARTS = {".venv", "node_modules", ".tools", ".git", ".run", "__pycache__"}
#: The platform's own words, which the German product also uses.
PLATFORM_WORDS = {
    "event_timestamp",
    "created_timestamp",
    "application_timestamp",
    "label_timestamp",
    "version",
    "group",
    "model_input",
    "protected",
    "label",
    "numeric",
    "categorical",
    "int64",
    "string",
    "row_number",
    "bad",
    "good",
    "feature_repo",
    "python",
    "protected_attributes",
}
PROTO_FIELD = re.compile(r"^\s*(?:optional\s+|repeated\s+)?[\w.]+\s+(\w+)\s*=\s*\d+\s*;", re.MULTILINE)


def contract_fields() -> set[str]:
    """Every field name of the contracts (``protos/**/*.proto``)."""
    protos = (ROOT / "protos").rglob("*.proto")
    return {m.group(1) for f in protos for m in PROTO_FIELD.finditer(f.read_text())}


IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{2,}$")


def _strings(tree: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def _toml_strings(value: object) -> set[str]:
    """Every string value (keys are the product file's own vocabulary)."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return {s for v in value.values() for s in _toml_strings(v)}
    if isinstance(value, list):
        return {s for v in value for s in _toml_strings(v)}
    return set()


def german_names() -> set[str]:
    """Every identifier the German product defines."""
    names: set[str] = set()
    with (ROOT / "data" / "german_credit.csv").open() as f:
        names |= set(next(csv.reader(f)))
    for file in sorted((GERMAN / "feature_repo").glob("*.py")):
        tree = ast.parse(file.read_text())
        names |= _strings(tree)
        names |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    data = tomllib.loads((GERMAN / "product.toml").read_text())
    data.pop("ingest", None)
    names |= _toml_strings({k: v for k, v in data.items() if k != "product"})
    names |= set(data["drift"]["features"]) | set(data["serving"]["request_fields"])
    names.add(data_name := "german_credit")
    names.add(data_name.replace("_", "-"))
    return {n for n in names if IDENTIFIER.match(n) and n not in PLATFORM_WORDS} - contract_fields()


def _sources() -> list[Path]:
    files = [*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("libs/*/src/**/*.py")]
    return sorted(
        f
        for f in files
        if not SKIP_PARTS & set(f.parts)
        and not f.name.endswith(("_pb2.py", "_pb2_grpc.py", "_pb2.pyi"))
        and "libs/testing/" not in f.as_posix()
        and "testing" not in f.relative_to(ROOT).parts[3:]
    )


def _pattern(names: set[str]) -> re.Pattern[str]:
    worded = sorted((n for n in names if "_" in n), key=len, reverse=True)
    plain = sorted((n for n in names if "_" not in n), key=len, reverse=True)
    parts = []
    if worded:
        parts.append(r"(?<![A-Za-z0-9_])(?:" + "|".join(map(re.escape, worded)) + r")(?![A-Za-z0-9_])")
    if plain:
        parts.append(r"[\"'](?:" + "|".join(map(re.escape, plain)) + r")[\"']")
    return re.compile("|".join(parts), re.IGNORECASE)


def test_the_names_come_from_the_product() -> None:
    names = german_names()
    assert {"creditability", "credit_amount", "credit_risk_v1", "loan_request", "purpose", "housing"} <= names
    assert {"loan_affordability", "requested_credit_amount", "credit_label"} <= names
    assert {"applicant_id", "applicant"} <= contract_fields()
    assert not names & {"applicant_id", "applicant"}


def test_no_german_name_in_services_or_libraries() -> None:
    pattern = _pattern(german_names())
    hits = []
    for file in _sources():
        for number, line in enumerate(file.read_text().splitlines(), 1):
            found = pattern.search(line)
            if found:
                hits.append(f"{file.relative_to(ROOT)}:{number}: {found.group(0)}")
    assert not hits, f"{len(hits)} German names in platform code:\n" + "\n".join(hits[:60])


def test_the_search_finds_what_it_should() -> None:
    pattern = _pattern(german_names())
    assert pattern.search('LABEL = "creditability"')
    assert pattern.search("frame['purpose']")
    assert pattern.search("the credit_risk_v1 feature service")
    assert not pattern.search("a training job's purpose")
    assert pattern.search('view = "loan_request"')
