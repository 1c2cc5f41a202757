"""The model-server loads its settings as every service does (the shared
``creditrisk_telemetry.configuration.load_or_exit``): ``python -m model_server`` exits 2 before
starting a runtime, naming each wrong variable (an alias under the name it was read by) and never
printing its value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from model_server.__main__ import mlserver_command, seldon_command
from model_server.settings import Settings, load_settings


def run(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MODEL_SERVER_") and k != "MLFLOW_TRACKING_URI"
    }
    return subprocess.run(
        [sys.executable, "-m", "model_server", *argv],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("what", ["seldon", "mlserver", "ready"])
def test_bad_variables_exit_2_naming_them_not_their_values(what: str) -> None:
    done = run(
        what,
        MODEL_SERVER_MODEL_NAME="credit-risk",
        MLFLOW_TRACKING_URI="ftp://user:hunter2@tracking",
        MODEL_SERVER_WARMUP_ROWS="0",
    )
    assert done.returncode == 2, done.stderr
    assert "invalid configuration of Settings:" in done.stderr
    assert "MODEL_SERVER_MLFLOW_TRACKING_URI: Value error, must be http(s)://" in done.stderr
    assert "MODEL_SERVER_WARMUP_ROWS: Input should be greater than or equal to 1" in done.stderr
    assert "hunter2" not in done.stderr


def test_missing_model_name_is_named() -> None:
    done = run("ready")
    assert done.returncode == 2
    assert "MODEL_SERVER_MODEL_NAME: Field required" in done.stderr


def test_trusted_keys_required_with_approvals() -> None:
    done = run("ready", MODEL_SERVER_MODEL_NAME="credit-risk")
    assert done.returncode == 2
    assert (
        "MODEL_SERVER_TRUSTED_KEYS_FILE is required while MODEL_SERVER_REQUIRE_APPROVAL is true"
        in done.stderr
    )


def test_good_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_SERVER_MODEL_NAME", "credit-risk")
    monkeypatch.setenv("MODEL_SERVER_TRUSTED_KEYS_FILE", "/nonexistent/trusted.pem")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000/")
    settings = load_settings()
    assert isinstance(settings, Settings)
    assert settings.mlflow_tracking_uri == "http://127.0.0.1:5000"


@pytest.mark.parametrize("what", ["seldon", "mlserver"])
def test_no_credential_source_exits_2_naming_the_settings(what: str, tmp_path: Path) -> None:
    """The slots check credentials: without a source (and not disabled) no runtime starts."""
    done = run(
        what,
        "--print",
        MODEL_SERVER_MODEL_NAME="credit-risk",
        MODEL_SERVER_TRUSTED_KEYS_FILE=str(tmp_path / "trusted.pem"),
    )
    assert done.returncode == 2, done.stderr
    assert "MODEL_SERVER_AUTH_API_KEYS_FILE" in done.stderr
    assert "MODEL_SERVER_AUTH_DISABLED=true" in done.stderr


@pytest.mark.parametrize("what", ["seldon", "mlserver"])
def test_an_unreadable_mlflow_password_file_exits_2_naming_it(what: str, tmp_path: Path) -> None:
    """The launcher reads ``MLFLOW_TRACKING_PASSWORD_FILE`` first (creditrisk_kit.secrets, the
    local stack's password file): a missing one stops it before a runtime starts."""
    missing = tmp_path / "secrets" / "mlflow-model-server.password"
    done = run(
        what, "--print", MODEL_SERVER_MODEL_NAME="credit-risk", MLFLOW_TRACKING_PASSWORD_FILE=str(missing)
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"MLFLOW_TRACKING_PASSWORD_FILE: cannot read {missing}: ")


def test_every_listener_binds_model_server_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``MODEL_SERVER_HOST`` (default 127.0.0.1) reaches both runtimes' commands."""
    monkeypatch.delenv("MODEL_SERVER_HOST", raising=False)
    monkeypatch.setenv("MODEL_SERVER_MODEL_NAME", "credit-risk")
    monkeypatch.setenv("MODEL_SERVER_TRUSTED_KEYS_FILE", str(tmp_path / "trusted.pem"))
    assert load_settings().host == "127.0.0.1"
    seldon = seldon_command(model="credit-risk", alias="champion", host="0.0.0.0")
    assert seldon.env["MODEL_SERVER_HOST"] == "0.0.0.0"
    assert seldon.argv[1:4] == ["-m", "model_server.launch", "seldon"]
    mlserver = mlserver_command(model="credit-risk", alias="champion", directory=tmp_path / "m", host="::1")
    assert json.loads((tmp_path / "m" / "settings.json").read_text())["host"] == "::1"
    assert mlserver.env["MODEL_SERVER_HOST"] == "::1"
    done = run(
        "mlserver",
        "--print",
        "--dir",
        str(tmp_path / "printed"),
        MODEL_SERVER_MODEL_NAME="credit-risk",
        MODEL_SERVER_TRUSTED_KEYS_FILE=str(tmp_path / "trusted.pem"),
        MODEL_SERVER_AUTH_DISABLED="true",
        MODEL_SERVER_HOST="10.1.2.3",
    )
    assert done.returncode == 0, done.stderr
    assert "MODEL_SERVER_HOST=10.1.2.3" in done.stdout
    assert json.loads((tmp_path / "printed" / "settings.json").read_text())["host"] == "10.1.2.3"
