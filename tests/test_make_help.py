"""``make help`` lists every target a README names (``make demo``, ``PROFILE=real make demo``), and
each of them is a target of the Makefile."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".venv", "node_modules", ".tools", ".git", ".run"}


def documents() -> list[Path]:
    """Every README.md and docs/*.md."""
    found = [p for p in ROOT.rglob("*.md") if not SKIP & set(p.relative_to(ROOT).parts)]
    return sorted(p for p in found if p.name == "README.md" or p.parent == ROOT / "docs")


def named_targets() -> dict[str, list[str]]:
    """``make <target>`` in the documents: target -> where (``path:line``)."""
    named: dict[str, list[str]] = {}
    for doc in documents():
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            for target in re.findall(r"\bmake ([a-z][a-z0-9-]*)\b", line):
                named.setdefault(target, []).append(f"{doc.relative_to(ROOT)}:{number}")
    return named


def help_targets() -> set[str]:
    """The targets ``make help`` lists (lines ``make <target>  <what>``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    out = subprocess.run(
        ["make", "--no-print-directory", "-s", "-C", str(ROOT), "help"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return set(re.findall(r"^make ([a-z][a-z0-9-]*)\s", out, flags=re.MULTILINE))


def makefile_targets() -> set[str]:
    """The explicit rules of the Makefile (``name [name ...]:``, not ``NAME := value``)."""
    text = (ROOT / "Makefile").read_text()
    heads = re.findall(r"^([a-z][a-z0-9_ .-]*):(?!=)", text, flags=re.MULTILINE)
    return {name for head in heads for name in head.split()}


def test_the_documents_name_some_targets() -> None:
    assert {"setup", "demo", "test"} <= set(named_targets())


def test_every_target_a_document_names_is_in_make_help_and_the_makefile() -> None:
    listed, rules = help_targets(), makefile_targets()
    missing = {
        target: where
        for target, where in named_targets().items()
        if target not in listed or target not in rules
    }
    assert missing == {}, (
        f"not in `make help` {sorted(set(missing) - listed)}, no rule {sorted(set(missing) - rules)}"
    )


def test_every_target_make_help_lists_exists() -> None:
    assert help_targets() - makefile_targets() == set()
