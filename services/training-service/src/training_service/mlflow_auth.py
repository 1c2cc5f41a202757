"""MLflow behind its own basic-auth app: the platform's users, their grants, and the server's set-up.

The tracking server runs as ``mlflow server --app-name basic-auth`` (MLflow's documented mechanism,
https://mlflow.org/docs/latest/self-hosting/security/basic-http-auth/): every REST call needs HTTP
basic credentials (401 without, 403 without the permission), ``/health`` excepted. The auth
configuration (``MLFLOW_AUTH_CONFIG_PATH``) sets ``default_permission = NO_PERMISSIONS``, so a user
reads or writes only what a grant below (or its own creation: MLflow gives the creator of an
experiment or a registered model MANAGE on it) allows:

==================  ==============================================================================
user                grants
==================  ==============================================================================
registry-gateway    MANAGE on every registered model (creates versions, moves aliases, sets tags);
                    READ on every experiment (reads runs and their artifacts to register them)
training-service    none beyond its own experiment, which it creates (MANAGE as creator): runs,
                    metrics, params, model and dataset artifacts
model-server        READ on registered models and experiments (aliases, versions, model artifacts)
drift-service       READ on registered models and experiments (a version's training dataset)
admin               MLflow's admin (every permission); only for set-up, its password never leaves
                    the data folder
==================  ==============================================================================

:func:`prepare` writes the configuration and provisions the users in MLflow's own auth store
(``mlflow.server.auth.sqlalchemy_store``, the store the server's user and permission endpoints
write), before the server starts: once ``/health`` answers, every user exists. It is idempotent: an
existing user gets the password given now, a grant is upserted.

Secrets: the admin password and the Flask secret key (CSRF of MLflow's sign-up page) are generated
once per data folder into ``<dir>/auth/secrets.json`` (mode 0600); the service users' passwords come
from the environment (``CREDITRISK_MLFLOW_PASSWORD_<USER>``, ``-`` as ``_``, upper case; the local
stack gives ``CREDITRISK_MLFLOW_PASSWORD_<USER>_FILE`` instead, a file of its data folder's
``secrets/``, which ``python -m training_service.mlflow_server`` reads into the variable first,
:func:`creditrisk_kit.secrets.env_from_files`) or, when unset, are generated and kept in the same
file. Nothing here logs a secret.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: The admin's user name (MLflow's ``admin_username``).
ADMIN_USERNAME = "admin"
#: Seconds a successful password check is cached by the server's worker (MLflow's
#: ``auth_cache_ttl_seconds``; 0, its default, hashes the password on every call).
AUTH_CACHE_TTL_S = 600
#: MLflow's permission names (``mlflow.server.auth.permissions``).
READ = "READ"
MANAGE = "MANAGE"


@dataclass(frozen=True)
class Grant:
    """One permission of a user: MLflow resource type, name/id pattern (``*``: all), permission."""

    resource_type: str
    pattern: str
    permission: str


#: The platform's MLflow users and their grants (see the module's table).
PLATFORM_USERS: dict[str, tuple[Grant, ...]] = {
    "registry-gateway": (Grant("registered_model", "*", MANAGE), Grant("experiment", "*", READ)),
    "training-service": (),
    "model-server": (Grant("registered_model", "*", READ), Grant("experiment", "*", READ)),
    "drift-service": (Grant("registered_model", "*", READ), Grant("experiment", "*", READ)),
}


def password_variable(username: str) -> str:
    """The environment variable that may give ``username``'s password (``CREDITRISK_MLFLOW_PASSWORD_X``)."""
    return "CREDITRISK_MLFLOW_PASSWORD_" + username.upper().replace("-", "_")


@dataclass(frozen=True)
class AuthSetup:
    """What :func:`prepare` made.

    Attributes:
        config_path: the auth ini (``MLFLOW_AUTH_CONFIG_PATH``).
        env: variables the server needs (``MLFLOW_AUTH_CONFIG_PATH``, ``MLFLOW_FLASK_SERVER_SECRET_KEY``).
        passwords: user name -> password, the admin's included.
    """

    config_path: Path
    env: dict[str, str]
    passwords: dict[str, str]


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (0600 from creation on)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, 0o600)


def _secrets(auth_dir: Path, users: Mapping[str, object], environ: Mapping[str, str]) -> dict[str, str]:
    """The folder's secrets (generated once), the users' passwords from ``environ`` over them."""
    path = auth_dir / "secrets.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    wanted = {"flask_secret_key", f"password:{ADMIN_USERNAME}", *(f"password:{u}" for u in users)}
    changed = False
    for key in sorted(wanted - stored.keys()):
        stored[key] = secrets.token_urlsafe(24)
        changed = True
    if changed or not path.exists():
        _write_private(path, json.dumps(stored, indent=1, sort_keys=True))
    for user in users:
        given = environ.get(password_variable(user), "")
        if given:
            stored[f"password:{user}"] = given
    return stored


def auth_config(database_uri: str, admin_password: str) -> str:
    """The basic-auth ini: nobody may do anything without a grant; ``database_uri`` holds the users."""
    return (
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {ADMIN_USERNAME}\n"
        f"admin_password = {admin_password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
        # A password check is a deliberately slow hash (~0.5 s of CPU, seconds on a loaded 2-core
        # machine): without this cache every REST call pays it (logging a model makes ~30 calls).
        # One worker, and passwords change only before the server starts (prepare), so the cache
        # is never stale (MLflow's basic_auth.ini documents the trade-off for several workers).
        f"auth_cache_ttl_seconds = {AUTH_CACHE_TTL_S}\n"
    )


def provision(
    database_uri: str, users: Mapping[str, tuple[Grant, ...]], passwords: Mapping[str, str]
) -> None:
    """Create or update each user of ``users`` (and the admin) with its password and grants.

    Uses MLflow's auth store on ``database_uri`` (migrated to its newest schema first). A grant is
    upserted; a grant no longer listed is left as it is.

    Raises:
        KeyError: a user without a password in ``passwords``.
        mlflow.exceptions.MlflowException: the store refused (e.g. an invalid password).
    """
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(database_uri)
    for username, is_admin in [(ADMIN_USERNAME, True), *((u, False) for u in users)]:
        password = passwords[username]
        if store.has_user(username, use_primary=True):
            if not store.authenticate_user(username, password, use_primary=True):
                store.update_user(username, password=password)
        else:
            store.create_user(username, password, is_admin=is_admin)
    for username, grants in users.items():
        for grant in grants:
            store.grant_user_permission(username, grant.resource_type, grant.pattern, grant.permission)
    store.engine.dispose()


def prepare(
    data_dir: Path,
    *,
    users: Mapping[str, tuple[Grant, ...]] = PLATFORM_USERS,
    environ: Mapping[str, str] | None = None,
) -> AuthSetup:
    """Write ``<data_dir>/auth/basic_auth.ini`` and provision the users in ``<data_dir>/auth/users.db``.

    Args:
        data_dir: the tracking server's folder.
        users: user name -> grants (default: :data:`PLATFORM_USERS`).
        environ: where ``CREDITRISK_MLFLOW_PASSWORD_<USER>`` are read (default ``os.environ``).

    Returns:
        The ini's path, the server's extra environment and every user's password.
    """
    auth_dir = data_dir.resolve() / "auth"
    auth_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(auth_dir, 0o700)
    stored = _secrets(auth_dir, users, os.environ if environ is None else environ)
    passwords = {u: stored[f"password:{u}"] for u in [ADMIN_USERNAME, *users]}
    database_uri = f"sqlite:///{auth_dir / 'users.db'}"
    config_path = auth_dir / "basic_auth.ini"
    _write_private(config_path, auth_config(database_uri, passwords[ADMIN_USERNAME]))
    provision(database_uri, users, passwords)
    (auth_dir / "users.db").chmod(0o600)  # password hashes
    env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(config_path),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": stored["flask_secret_key"],
    }
    return AuthSetup(config_path=config_path, env=env, passwords=passwords)
