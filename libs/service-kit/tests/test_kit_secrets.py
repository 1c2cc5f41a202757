"""creditrisk_kit.secrets.env_from_files: ``NAME_FILE`` -> ``NAME``; an unreadable file exits 2
naming ``NAME_FILE`` (never the value)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from creditrisk_kit import EXIT_BAD_CONFIGURATION
from creditrisk_kit.secrets import env_from_files


def test_a_file_gives_the_variable_its_stripped_content(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("  s3cret-value\n")
    env = {"MLFLOW_TRACKING_PASSWORD_FILE": str(secret), "MLFLOW_TRACKING_PASSWORD": "stale", "OTHER": "x"}
    done = env_from_files(["MLFLOW_TRACKING_PASSWORD", "UNSET_ONE"], env)
    assert done == ["MLFLOW_TRACKING_PASSWORD"]
    assert env["MLFLOW_TRACKING_PASSWORD"] == "s3cret-value"  # the file wins over a value
    assert "UNSET_ONE" not in env
    assert env["OTHER"] == "x"


def test_without_a_file_variable_nothing_changes(tmp_path: Path) -> None:
    env = {"A": "given", "B_FILE": ""}
    assert env_from_files(["A", "B"], env) == []
    assert env == {"A": "given", "B_FILE": ""}


@pytest.mark.parametrize("content", [None, " \n"])
def test_a_missing_or_empty_file_exits_2_naming_the_variable(
    content: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mlflow-model-server.password"
    if content is not None:
        path.write_text(content)
    env = {"MLFLOW_TRACKING_PASSWORD_FILE": str(path)}
    with pytest.raises(SystemExit) as exited:
        env_from_files(["MLFLOW_TRACKING_PASSWORD"], env)
    assert exited.value.code == EXIT_BAD_CONFIGURATION
    err = capsys.readouterr().err
    assert err.startswith("MLFLOW_TRACKING_PASSWORD_FILE: ")
    assert str(path) in err
    assert "MLFLOW_TRACKING_PASSWORD" not in env


def test_an_unreadable_file_exits_2_without_printing_a_value(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("never-shown\n")
    path.chmod(0o000)
    if _readable(path):  # root reads every file: a folder in its place cannot be read either
        path.chmod(0o600)
        path.unlink()
        path.mkdir()
    code = (
        "import os; from creditrisk_kit.secrets import env_from_files; "
        "env_from_files(['X_PASSWORD']); print(os.environ['X_PASSWORD'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"X_PASSWORD_FILE": str(path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == EXIT_BAD_CONFIGURATION, result.stderr
    assert result.stderr.startswith(f"X_PASSWORD_FILE: cannot read {path}: ")
    assert "never-shown" not in result.stderr + result.stdout


def _readable(path: Path) -> bool:
    try:
        path.read_bytes()
    except OSError:
        return False
    return True
