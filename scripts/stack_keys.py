"""The local stack's keys, per data folder: no fixed key in a running stack (issue 18).

The first ``make demo`` run in a data folder (``.run/demo/<profile>``) makes every key of the
stack with :mod:`secrets` and writes them to ``<data folder>/secrets/`` (folder 0700, files
0600); later runs and ``devstack up`` on that folder use the same files (the demo carries the
folder over when it moves the previous run's state aside). The end-to-end stack makes its own
per session (tests/e2e/e2e_stack.py). The services read them through the kit's file settings
(creditrisk_kit.auth), re-read when a file changes, so a rotated key needs no restart:

* ``<identity>.key``: one credential (``<PREFIX>_CREDENTIAL_FILE`` of the service that presents
  it; the demo and the pipelines read theirs from it);
* ``api-keys.json``: ``{key: {subject, roles}}`` of every caller of the feature-, training- and
  drift-services and the registry-gateway (``<PREFIX>_AUTH_API_KEYS_FILE``);
* ``inference-gateway-api-keys.json``: the inference-gateway's callers
  (``INFERENCE_GATEWAY_AUTH_API_KEYS_FILE``);
* ``model-server-api-keys.json``: the model-server slots' callers
  (``MODEL_SERVER_AUTH_API_KEYS_FILE``: the inference-gateway scores, the admin);
* ``mlflow-<user>.password``: the password of each MLflow user of :data:`MLFLOW_USERS`
  (:func:`write_mlflow_passwords`): the mlflow process sets it
  (``CREDITRISK_MLFLOW_PASSWORD_<USER>_FILE``), the service logs in with it
  (``MLFLOW_TRACKING_PASSWORD_FILE``; both read once at start, creditrisk_kit.secrets).

A new identity is a line of :data:`IDENTITIES` (the file's name, its subject, its roles in each
keys file); nothing prints a key (:func:`read_key` for a shell: ``$(cat <folder>/secrets/...)``).
No heavy imports here (the demo's and the end-to-end tests' environments import it).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SECRETS = "secrets"
API_KEYS_FILE = "api-keys.json"
GATEWAY_API_KEYS_FILE = "inference-gateway-api-keys.json"
MODEL_SERVER_API_KEYS_FILE = "model-server-api-keys.json"

#: The pipeline's roles: it trains, registers and promotes, writes features and labels, logs
#: predictions and reads monitoring.
PIPELINE_ROLES = (
    "read_registry", "register", "promote", "train", "read_features", "write_features",
    "write_labels", "log_predictions", "read_monitoring",
)  # fmt: skip


@dataclass(frozen=True)
class Identity:
    """One key of the stack.

    Attributes:
        name: its file, ``secrets/<name>.key``.
        subject: the principal's subject (audit records, access logs).
        roles: its kit roles in ``api-keys.json`` (empty: not a caller of those services).
        gateway_roles: its kit roles in ``inference-gateway-api-keys.json`` (empty: not there).
        slot_roles: its kit roles in ``model-server-api-keys.json`` (empty: not there).
        service: a service's own identity (its subject is not prefixed, see :func:`write_keys`).
        holder: who presents it (docs/security.md's table of the stack's keys, checked against
            this tuple by tests/test_stack_keys.py).
    """

    name: str
    subject: str
    roles: tuple[str, ...] = ()
    gateway_roles: tuple[str, ...] = ()
    slot_roles: tuple[str, ...] = ()
    service: bool = False
    holder: str = ""


IDENTITIES = (
    # the demo's training pipeline (and the registry's promoter): the gateway's slots too
    Identity(
        "pipeline",
        "pipeline",
        PIPELINE_ROLES,
        ("read_registry",),
        holder="the pipelines (CREDITRISK_CREDENTIAL_FILE), the demo's feature pushes, labels and "
        "monitoring reads",
    ),
    Identity("admin", "admin", ("admin",), ("admin",), ("admin",), holder="an operator, by hand"),
    # the demo's example client of the inference-gateway: it scores, nothing else (least
    # privilege: the answers carry no feature values, which need read_features)
    Identity(
        "gateway-client",
        "client",
        (),
        ("predict",),
        holder="the demo's and the README's example client of the inference-gateway",
    ),
    # the services' own identities (<PREFIX>_CREDENTIAL_FILE)
    Identity(
        "inference-gateway",
        "inference-gateway",
        ("read_registry", "read_features", "log_predictions"),
        slot_roles=("predict",),
        service=True,
        holder="the inference-gateway (INFERENCE_GATEWAY_CREDENTIAL_FILE)",
    ),
    Identity(
        "drift-service",
        "drift-service",
        ("read_registry",),
        service=True,
        holder="the drift-service (DRIFT_SERVICE_CREDENTIAL_FILE)",
    ),
    Identity(
        "registry-gateway",
        "registry-gateway",
        ("read_features",),
        service=True,
        holder="the registry-gateway (REGISTRY_GATEWAY_CREDENTIAL_FILE)",
    ),
    Identity(
        "training-service",
        "training-service",
        ("read_features",),
        service=True,
        holder="the training-service (TRAINING_SERVICE_CREDENTIAL_FILE)",
    ),
)


#: The platform's MLflow users (training_service.mlflow_auth.PLATFORM_USERS), each with a password
#: file in the data folder's secrets.
MLFLOW_USERS = ("registry-gateway", "training-service", "model-server", "drift-service")


def secrets_dir(data_dir: Path) -> Path:
    """``<data_dir>/secrets``: where the stack's key files are."""
    return data_dir / SECRETS


def key_file(data_dir: Path, name: str) -> Path:
    """The file of identity ``name``'s key (``<data_dir>/secrets/<name>.key``)."""
    return secrets_dir(data_dir) / f"{name}.key"


def read_key(data_dir: Path, name: str) -> str:
    """Identity ``name``'s key.

    Raises:
        FileNotFoundError: no key yet in ``data_dir`` (a demo run makes them), naming the file.
    """
    path = key_file(data_dir, name)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no key; `make demo` makes the stack's keys in its data folder")
    return path.read_text().strip()


def _write_private(path: Path, text: str) -> None:
    """``text`` to ``path`` (mode 0600) when it differs, by a rename (a reader never sees half a
    file; an unchanged file keeps its stamp, so no service reloads it for nothing)."""
    if path.exists() and path.read_text() == text:
        return
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(partial, path)


def new_keys(identities: tuple[Identity, ...] = IDENTITIES) -> dict[str, str]:
    """A fresh key for every identity (``secrets.token_urlsafe``, 256 bits), by name."""
    return {identity.name: secrets.token_urlsafe(32) for identity in identities}


def write_keys(
    data_dir: Path,
    keys: Mapping[str, str] | None = None,
    *,
    identities: tuple[Identity, ...] = IDENTITIES,
    subject_prefix: str = "demo-",
    extra_api_keys: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, str]:
    """Make ``<data_dir>/secrets/``: each identity's key file, kept when it exists (a later run
    reuses it), made with :mod:`secrets` otherwise (or taken from ``keys``), and the three API-key
    files from them.

    Args:
        data_dir: The stack's data folder.
        keys: Keys to use by identity name for files not there yet (default: new ones).
        identities: The stack's identities.
        subject_prefix: Prefixed to the users' subjects (``demo-pipeline``; the services' own
            subjects stay their names).
        extra_api_keys: More entries of ``api-keys.json`` (the end-to-end refusal test's keys).

    Returns:
        Every identity's key, by name (never print them).
    """
    folder = secrets_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    given = dict(keys or new_keys(identities))
    current: dict[str, str] = {}
    for identity in identities:
        path = key_file(data_dir, identity.name)
        if path.exists():
            current[identity.name] = path.read_text().strip()
        else:
            current[identity.name] = given.get(identity.name) or secrets.token_urlsafe(32)
            _write_private(path, current[identity.name] + "\n")

    def subject(identity: Identity) -> str:
        return identity.subject if identity.service else subject_prefix + identity.subject

    api_keys: dict[str, Any] = {
        current[i.name]: {"subject": subject(i), "roles": list(i.roles)} for i in identities if i.roles
    }
    api_keys.update(extra_api_keys or {})
    gateway = {
        current[i.name]: {"subject": subject(i), "roles": list(i.gateway_roles)}
        for i in identities
        if i.gateway_roles
    }
    slots = {
        current[i.name]: {"subject": subject(i), "roles": list(i.slot_roles)}
        for i in identities
        if i.slot_roles
    }
    _write_private(folder / API_KEYS_FILE, json.dumps(api_keys, indent=1) + "\n")
    _write_private(folder / MODEL_SERVER_API_KEYS_FILE, json.dumps(slots, indent=1) + "\n")
    _write_private(folder / GATEWAY_API_KEYS_FILE, json.dumps(gateway, indent=1) + "\n")
    return current


def mlflow_password_file(data_dir: Path, user: str) -> Path:
    """The file of MLflow ``user``'s password (``<data_dir>/secrets/mlflow-<user>.password``)."""
    return secrets_dir(data_dir) / f"mlflow-{user}.password"


def write_mlflow_passwords(
    data_dir: Path, passwords: Mapping[str, str] | None = None, *, users: tuple[str, ...] = MLFLOW_USERS
) -> dict[str, str]:
    """Each MLflow user's password file (mode 0600), kept when it exists (a later run and a stack
    started by hand reuse it), made with :mod:`secrets` otherwise (or taken from ``passwords``).

    Args:
        data_dir: The stack's data folder.
        passwords: Passwords to use by user for files not there yet (default: new ones).
        users: The MLflow users.

    Returns:
        Every user's password, by user (never print them).
    """
    folder = secrets_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    given = dict(passwords or {})
    current: dict[str, str] = {}
    for user in users:
        path = mlflow_password_file(data_dir, user)
        if path.exists():
            current[user] = path.read_text().strip()
        else:
            current[user] = given.get(user) or secrets.token_urlsafe(24)
            _write_private(path, current[user] + "\n")
    return current
