"""The committed generated code matches the protos; buf lint and breaking pass."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from contracts_helpers import CONTRACTS, ROOT

COMMITTED = CONTRACTS / "src" / "creditrisk"


def _differences(left: Path, right: Path) -> list[str]:
    cmp = filecmp.dircmp(left, right, ignore=["__pycache__"])
    out = [f"only committed: {left / n}" for n in cmp.left_only]
    out += [f"only regenerated: {right / n}" for n in cmp.right_only]
    out += [f"differs: {left / n}" for n in filecmp.cmpfiles(left, right, cmp.common_files, shallow=False)[1]]
    for sub in cmp.common_dirs:
        out += _differences(left / sub, right / sub)
    return out


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    subprocess.run([str(ROOT / "scripts" / "gen-protos"), str(tmp_path)], check=True, capture_output=True)
    diffs = _differences(COMMITTED, tmp_path / "creditrisk")
    assert not diffs, "generated code is stale: run make protos\n" + "\n".join(diffs)


def test_generation_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        subprocess.run(
            [str(ROOT / "scripts" / "gen-protos"), str(tmp_path / name)], check=True, capture_output=True
        )
    assert not _differences(tmp_path / "a" / "creditrisk", tmp_path / "b" / "creditrisk")


def test_check_protos_freshness_part_passes() -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "check-protos"), "--no-buf"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "generated code is fresh" in result.stdout


@pytest.fixture(scope="module")
def buf() -> str:
    """The buf CLI pinned in package.json (npm ci when node_modules is missing)."""
    binary = ROOT / "node_modules" / ".bin" / "buf"
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm not found: Node 20+ is needed for the pinned buf CLI")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=ROOT, check=True, capture_output=True)
    return str(binary)


def test_buf_lint_passes(buf: str) -> None:
    result = subprocess.run([buf, "lint"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_breaking_change_against_the_released_baseline(buf: str) -> None:
    result = subprocess.run(
        [buf, "breaking", "--against", "protos/baseline/creditrisk-v1.binpb"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_pinned_buf_version(buf: str) -> None:
    import json

    wanted = json.loads((ROOT / "package.json").read_text())["devDependencies"]["@bufbuild/buf"]
    got = subprocess.run([buf, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    assert got == wanted
