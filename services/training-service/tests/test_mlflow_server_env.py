"""The MLflow server's processes do not hold the platform users' passwords (attacker review of
issue 18: they were readable in /proc/<pid>/environ of the mlflow parent and its worker)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import pytest
from training_service import mlflow_server
from training_service.mlflow_auth import PLATFORM_USERS, password_variable


def test_the_server_is_started_without_the_users_passwords(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passwords = {user: secrets.token_urlsafe(18) for user in PLATFORM_USERS}
    for user, password in passwords.items():
        path = tmp_path / f"mlflow-{user}.password"
        path.write_text(password)
        monkeypatch.setenv(f"{password_variable(user)}_FILE", str(path))
        # recorded as absent, so the value main() reads from the file is removed after the test
        monkeypatch.setenv(password_variable(user), "")
        monkeypatch.delenv(password_variable(user))
    started: dict[str, Any] = {}

    def exec_instead(file: str, argv: list[str], env: dict[str, str]) -> None:
        started.update(file=file, argv=argv, env=env)

    monkeypatch.setattr(os, "execvpe", exec_instead)
    mlflow_server.main(["--profile", "embedded", "--dir", str(tmp_path / "mlflow"), "--port", "0"])
    assert started["argv"][1:4] == ["-m", "mlflow", "server"]
    env = started["env"]
    leaked = [name for name in env if name.startswith("CREDITRISK_MLFLOW_PASSWORD_")]
    assert leaked == []
    assert not [user for user, password in passwords.items() if password in "\n".join(env.values())]
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"]  # what the server itself needs stays
