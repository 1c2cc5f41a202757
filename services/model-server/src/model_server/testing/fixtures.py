"""TEST FIXTURES ONLY: a real ``mlflow server``, runs logged by the training-service's own code in
ITS environment, and model versions registered exactly as the registry-gateway does (one version
tag ``registry.sha256.<key>`` per artifact file), aliases moved as the gateway moves them (a signed
approval ``creditrisk.approval.<alias>`` first, with :data:`SIGNING_KEY`, a key made per test
session). The model-server itself only reads the registry.

The server runs MLflow's basic-auth app with the platform's users (training_service.mlflow_auth);
:func:`use_mlflow_users` gives them passwords for the process (generated, the same on every server
it starts) and makes the process act as the ``registry-gateway`` user (the fixtures write the
registry as it does); a slot is given the ``model-server`` user's (:func:`mlflow_user_env`), a reader.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from creditrisk_model_artifacts import FAST_SCORER_DIR, MODEL_DIR, digest_tags, digests_from_tags, sha256_tree
from creditrisk_model_artifacts.signing import SigningKey, approval_tag, public_pem, sign_approval

SERVICE_DIR = Path(__file__).resolve().parents[3]
REPO_ROOT = SERVICE_DIR.parents[1]
TRAINING_DIR = REPO_ROOT / "services" / "training-service"
TRAINING_PYTHON = TRAINING_DIR / ".venv" / "bin" / "python"
MAKE_MODEL = SERVICE_DIR / "tests" / "make_model.py"
#: The platform's MLflow users (training_service.mlflow_auth.PLATFORM_USERS) and this process's
#: passwords for them.
MLFLOW_PASSWORDS = {
    user: secrets.token_urlsafe(18)
    for user in ("registry-gateway", "training-service", "model-server", "drift-service")
}


#: The slots' callers in the tests (``MODEL_SERVER_AUTH_API_KEYS``, :func:`use_api_keys`): a key
#: per role the slot checks, and one holding every other role (a lower role for every route).
API_KEYS = {
    "predict": secrets.token_urlsafe(18),
    "admin": secrets.token_urlsafe(18),
    "lower": secrets.token_urlsafe(18),
}
API_KEY_ROLES = {
    "predict": ["predict"],
    "admin": ["admin"],
    "lower": [
        "read_features", "write_features", "train", "read_registry", "register", "promote",
        "read_monitoring", "log_predictions", "write_labels", "read_artifacts",
    ],
}  # fmt: skip


def auth_headers(who: str = "predict") -> dict[str, str]:
    """The ``authorization`` header of the test key ``who`` (``predict``, ``admin``, ``lower``)."""
    return {"authorization": f"Bearer {API_KEYS[who]}"}


def use_api_keys() -> None:
    """Set ``MODEL_SERVER_AUTH_API_KEYS`` in ``os.environ`` to the test keys: the slots started
    with :func:`clean_env` and the Flask apps built in the test process check them."""
    os.environ["MODEL_SERVER_AUTH_API_KEYS"] = json.dumps(
        {key: {"subject": f"test-{who}", "roles": API_KEY_ROLES[who]} for who, key in API_KEYS.items()}
    )


def mlflow_user_env(user: str) -> dict[str, str]:
    """``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` of ``user`` (read by MLflow's client)."""
    return {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": MLFLOW_PASSWORDS[user]}


def use_mlflow_users() -> None:
    """Set in ``os.environ`` the users' passwords the server command provisions
    (``CREDITRISK_MLFLOW_PASSWORD_<USER>``) and the ``registry-gateway`` user's credentials."""
    for user, password in MLFLOW_PASSWORDS.items():
        os.environ["CREDITRISK_MLFLOW_PASSWORD_" + user.upper().replace("-", "_")] = password
    os.environ.update(mlflow_user_env("registry-gateway"))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The inherited environment without another venv's variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    env.update({"OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"})
    env.update(extra)
    return env


def start_process(
    argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own process group (stop with :func:`stop_process`)."""
    out = open(log, "ab")  # noqa: SIM115 - kept by the child
    return subprocess.Popen(
        argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd
    )


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """SIGTERM then SIGKILL the process group of ``proc`` (by its PID)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout_s)
    except ProcessLookupError:
        pass


def wait_http(
    url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None, status: int = 200
) -> float:
    """Poll ``url`` until it answers ``status``; returns the seconds waited."""
    start = time.monotonic()
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our URL
                if response.status == status:
                    return time.monotonic() - start
        except urllib.error.HTTPError as exc:
            if exc.code == status:
                return time.monotonic() - start
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode} before {url} answered")
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"{url} did not answer {status} within {timeout_s} s")
        time.sleep(0.2)


def mlflow_server_command(data_dir: Path, port: int) -> tuple[list[str], dict[str, str], str]:
    """The training-service's ``mlflow server`` command (1 worker, no job execution), run from ITS env."""
    out = (
        subprocess.run(
            [
                str(TRAINING_PYTHON),
                "-m",
                "training_service.mlflow_server",
                "--profile",
                "embedded",
                "--dir",
                str(data_dir),
                "--port",
                str(port),
                "--print",
            ],
            capture_output=True,
            text=True,
            check=True,
            env=clean_env(),
            timeout=120,
        )
        .stdout.strip()
        .splitlines()
    )
    argv = [line for line in out if "=" not in line or line.startswith(("sqlite", "postgresql"))]
    env = dict(
        line.split("=", 1) for line in out if "=" in line and not line.startswith(("sqlite", "postgresql"))
    )
    return argv, env, f"http://127.0.0.1:{port}"


def make_runs(tracking_uri: str, out_dir: Path) -> dict[str, str]:
    """Train and log the fixture runs with the training-service's code in ITS environment.

    Returns:
        ``{"lr": run_id, "hgb": run_id}``; ``out_dir/rows.parquet`` holds every German credit row's
        model inputs.
    """
    done = subprocess.run(
        [str(TRAINING_PYTHON), str(MAKE_MODEL), tracking_uri, str(out_dir)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"make_model.py failed: {done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@dataclass(frozen=True)
class Registered:
    """A registered version and its digests."""

    name: str
    version: str
    run_id: str
    digests: dict[str, str]


def register_version(
    tracking_uri: str, name: str, run_id: str, work: Path, *, tamper: str | None = None, digests: bool = True
) -> Registered:
    """Register the run's model as the gateway does: ``models:/m-...`` source, digest tags per file.

    Args:
        tamper: a digest key (``fast_scorer/model.onnx``) whose recorded digest is made wrong.
        digests: False registers without any digest tag.
    """
    import mlflow.artifacts
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    run = client.get_run(run_id)
    models = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"name = 'model' AND source_run_id = '{run_id}'",
    )
    model = max(models, key=lambda m: m.creation_timestamp or 0)
    work.mkdir(parents=True, exist_ok=True)
    model_dir = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=model.artifact_location, dst_path=str(work / "model"), tracking_uri=tracking_uri
        )
    )
    scorer_dir = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"{run.info.artifact_uri}/fast_scorer",
            dst_path=str(work / "scorer"),
            tracking_uri=tracking_uri,
        )
    )
    found = {**sha256_tree(model_dir, MODEL_DIR), **sha256_tree(scorer_dir, FAST_SCORER_DIR)}
    if tamper is not None:
        found[tamper] = "0" * 64
    tags = digest_tags(found) if digests else {}
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    mv = client.create_model_version(
        name=name, source=f"models:/{model.model_id}", run_id=run_id, tags=tags, model_id=model.model_id
    )
    return Registered(name, str(mv.version), run_id, found)


SIGNING_KEY = SigningKey.generate()
"""The fixtures' stand-in for the registry-gateway's signing key (this test session only)."""
_last_sequence = 0


def trusted_keys_file(directory: Path, key: SigningKey = SIGNING_KEY) -> Path:
    """Write ``key``'s public key as a trusted-keys file in ``directory``; its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "trusted-keys.pem"
    path.write_bytes(public_pem(key.public_key))
    return path


def next_sequence() -> int:
    """A sequence above every earlier one of this process (microseconds since the epoch)."""
    global _last_sequence
    _last_sequence = max(_last_sequence + 1, time.time_ns() // 1000)
    return _last_sequence


def set_alias(
    tracking_uri: str,
    name: str,
    alias: str,
    version: str,
    *,
    key: SigningKey | None = SIGNING_KEY,
    sequence: int | None = None,
) -> None:
    """Move an alias as the gateway's promotion does: the signed approval of the move on the version
    (over its digest tags, with ``sequence``, default :func:`next_sequence`), then the alias. With
    ``key`` None, or a version without digest tags, the alias moves unsigned (what a bypass does)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    digests = digests_from_tags(dict(client.get_model_version(name, version).tags or {}))
    if key is not None and digests:
        value = sign_approval(key, name, version, alias, digests, sequence or next_sequence())
        client.set_model_version_tag(name, version, approval_tag(alias), value)
    client.set_registered_model_alias(name, alias, version)


def model_input_rows(out_dir: Path) -> list[dict[str, Any]]:
    """Every German credit row as a JSON record (numbers as the source ints/floats, None dropped)."""
    import pandas as pd

    frame = pd.read_parquet(out_dir / "rows.parquet")
    records: list[dict[str, Any]] = []
    for row in frame.to_dict(orient="records"):
        rec: dict[str, Any] = {}
        for key, value in row.items():
            if value is None or (isinstance(value, float) and value != value):
                continue
            if isinstance(value, float) and value.is_integer() and key != "monthly_installment":
                value = int(value)  # integers travel as JSON integers, as a client sends them
            rec[key] = value
        records.append(rec)
    return records
