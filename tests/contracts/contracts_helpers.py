"""Helpers of the contract tests: repository paths, the proto files, the pinned generator, uv.

A uniquely named module (not conftest) so that `import` cannot pick another directory's helpers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
CONTRACTS = ROOT / "libs" / "contracts"


def proto_files() -> list[str]:
    """Every contract .proto file, relative to protos/ (the import path), sorted."""
    return sorted(p.relative_to(PROTOS).as_posix() for p in (PROTOS / "creditrisk").rglob("*.proto"))


def wkt_include() -> str:
    """The well-known types shipped with the pinned grpcio-tools."""
    import grpc_tools

    return str(Path(grpc_tools.__file__).parent / "_proto")


def uv_binary() -> str:
    """uv: $UV, the repository's .tools/bin/uv, or uv on PATH."""
    for candidate in (os.environ.get("UV"), str(ROOT / ".tools" / "bin" / "uv"), shutil.which("uv")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail("uv not found: run `make setup` or set UV")


def python_for_uv() -> str:
    """The interpreter uv uses for new environments (scripts/find-python)."""
    found = subprocess.run(
        [str(ROOT / "scripts" / "find-python")],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "UV": uv_binary()},
    )
    return found.stdout.strip() or sys.executable
