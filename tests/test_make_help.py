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
            for target in re.findall(r"\bmake ([a-z][a-z0-9/-]*[a-z0-9])\b", line):
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
    # "make lint          ..." and families of steps: "make test-suite/<...>  ...; make lint/<...>"
    return set(re.findall(r"(?:^|;\s*)make ([a-z][a-z0-9-]*/?)", out, flags=re.MULTILINE))


def listed(target: str, help_lines: set[str]) -> bool:
    """``target`` is in ``make help``: by name, or as a step of a family (``test-suite/``)."""
    return target in help_lines or any(h.endswith("/") and target.startswith(h) for h in help_lines)


def is_rule(target: str, rules: set[str]) -> bool:
    """An explicit rule, or a step target make knows (``make -n`` succeeds)."""
    if target in rules:
        return True
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    dry = subprocess.run(
        ["make", "-n", "-s", "-C", str(ROOT), "SETUP=", target], env=env, capture_output=True, timeout=120
    )
    return "/" in target and dry.returncode == 0


def makefile_targets() -> set[str]:
    """The explicit rules of the Makefile (``name [name ...]:``, not ``NAME := value``)."""
    text = (ROOT / "Makefile").read_text()
    heads = re.findall(r"^([a-z][a-z0-9_ .-]*):(?!=)", text, flags=re.MULTILINE)
    return {name for head in heads for name in head.split()}


def test_the_documents_name_some_targets() -> None:
    assert {"setup", "demo", "test"} <= set(named_targets())


def test_every_target_a_document_names_is_in_make_help_and_the_makefile() -> None:
    help_lines, rules = help_targets(), makefile_targets()
    unlisted = {t: w for t, w in named_targets().items() if not listed(t, help_lines)}
    no_rule = {t: w for t, w in named_targets().items() if not is_rule(t, rules)}
    assert unlisted == {}, f"not in `make help`: {unlisted}"
    assert no_rule == {}, f"no such target: {no_rule}"


def test_every_target_make_help_lists_exists() -> None:
    help_lines = help_targets()
    assert {h for h in help_lines if not h.endswith("/")} - makefile_targets() == set()
    assert {h for h in help_lines if h.endswith("/")} == {"test-suite/", "test-fast/", "lint/"}
    rules = makefile_targets()
    for member in ("test-suite/libs", "test-fast/libs", "test-fast/services/drift-service", "lint/ruff"):
        assert is_rule(member, rules), member  # each family's steps are targets make knows
