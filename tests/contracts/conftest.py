"""Fixtures of the contract tests."""

from __future__ import annotations

import subprocess
import sys

import pytest
from contracts_helpers import PROTOS, proto_files, wkt_include


@pytest.fixture(scope="session")
def descriptor_set(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A FileDescriptorSet of every contract file with source info (comments), built by protoc."""
    out = tmp_path_factory.mktemp("descriptors") / "creditrisk.binpb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            str(PROTOS),
            "-I",
            wkt_include(),
            "--include_source_info",
            "--include_imports",
            f"--descriptor_set_out={out}",
            *proto_files(),
        ],
        cwd=PROTOS,
        check=True,
    )
    return out.read_bytes()
