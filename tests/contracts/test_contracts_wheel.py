"""The built wheel of libs/contracts works on its own: every RPC's messages round-trip, stubs exist."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from contracts_helpers import CONTRACTS, proto_files, python_for_uv, uv_binary

pytestmark = pytest.mark.timeout(600)


def _run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    result = subprocess.run(args, capture_output=True, text=True, env=env, **kwargs)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_wheel_in_fresh_venv_roundtrips_every_rpc(tmp_path: Path) -> None:
    uv = uv_binary()
    dist = tmp_path / "dist"
    _run([uv, "build", "--wheel", "--out-dir", str(dist), str(CONTRACTS)])
    wheels = sorted(dist.glob("creditrisk_contracts-*.whl"))
    assert len(wheels) == 1, wheels

    venv = tmp_path / "venv"
    _run([uv, "venv", "--python", python_for_uv(), str(venv)])
    python = venv / "bin" / "python"
    # Only the wheel and its declared dependencies.
    _run([uv, "pip", "install", "--python", str(python), str(wheels[0])])

    script = Path(__file__).with_name("_wheel_roundtrip.py")
    # -I (isolated): neither the test's cwd nor the repository can shadow the installed package.
    result = _run(
        [str(python), "-I", "-W", "error::DeprecationWarning", str(script), *proto_files()], cwd=tmp_path
    )
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["files"] == len(proto_files())
    assert summary["services"] == 5
    assert summary["rpcs"] >= 35


def test_wheel_ships_type_information(tmp_path: Path) -> None:
    import zipfile

    dist = tmp_path / "dist"
    _run([uv_binary(), "build", "--wheel", "--out-dir", str(dist), str(CONTRACTS)])
    names = set(zipfile.ZipFile(next(dist.glob("*.whl"))).namelist())
    assert "creditrisk/py.typed" in names
    for proto in proto_files():
        stem = proto.removesuffix(".proto")
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi"):
            assert stem + suffix in names, f"{stem + suffix} missing from the wheel"
    for package in {str(Path(p).parent) for p in proto_files()} | {"creditrisk"}:
        assert f"{package}/__init__.py" in names
