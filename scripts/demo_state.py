"""Where a ``make demo`` run keeps its state, per profile and per checkout, and how it is reset.

Everything of a run under ``.run/demo/<profile>/`` (stores, Evidently reports, the trace file
``traces/spans.jsonl``), a folder of mode 0700 (scripts/demo.py's ``fresh_state``, with the
supervisor's ``private_dir``); each run moves the previous run's folder to
``.run/demo/<profile>.previous``.
The real profile also keeps state on the shared PostgreSQL and Redis servers; those names carry a
short, stable id of the checkout (:func:`checkout_id`: a hash of its absolute path), so two
checkouts sharing one server never touch each other's stores:

* MLflow's database ``mlflow_demo_<id>`` (the previous run's renamed ``mlflow_demo_<id>_previous``);
* the drift-service's schema ``drift_demo_<id>`` in the DSN's database (likewise ``..._previous``);
* the feature store's Feast project ``credit_risk_demo_<id>``: it names the offline schema
  ``feast_credit_risk_demo_<id>``, the SQL registry's rows and the Redis key space; the ingestion
  reloads it in place on each run.

:func:`reset_real` touches only the names of one :class:`RealStores`. No heavy imports here (the
tests of ``tests/test_demo_state.py`` import it in the development environment).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from creditrisk_devstack.lockfile import LockHeldError, exclusive_lock

#: PostgreSQL truncates identifiers longer than this (NAMEDATALEN - 1).
MAX_IDENTIFIER = 63
PREVIOUS = "_previous"


#: The profiles a run may name (``PROFILE``); anything else would make ``.run/demo`` itself the
#: run's folder, and the reset would move every profile's results.
PROFILES = ("embedded", "real")


def checkout_id(root: Path) -> str:
    """8 hex digits that name the checkout at ``root`` (stable for one path, different for two;
    any path the file system holds, valid UTF-8 or not)."""
    return hashlib.sha256(os.fsencode(root.resolve())).hexdigest()[:8]


def check_profile(profile: str) -> str:
    """``profile`` when it is one of :data:`PROFILES`.

    Raises:
        SystemExit: naming the value and the profiles there are.
    """
    if profile not in PROFILES:
        raise SystemExit(f"PROFILE={profile!r} is not a profile: use one of {', '.join(PROFILES)}")
    return profile


@contextmanager
def run_lock(root: Path, profile: str) -> Iterator[None]:
    """One run of a profile at a time in a checkout (two would reset each other's stores and mix
    their data): an exclusive ``flock`` on :func:`lock_path`, released when the run ends (or its
    process dies). A ``devstack up`` of the stack file on the same data folder takes the same lock.

    Raises:
        SystemExit: another run of the profile holds the lock (its pid named).
    """
    held = ExitStack()
    try:
        held.enter_context(exclusive_lock(lock_path(root, profile)))
    except LockHeldError as exc:
        raise SystemExit(
            f"another `make demo` or `devstack up` of the {profile} profile is running in this "
            f"checkout (pid {exc.holder}): wait for it, or stop it first"
        ) from None
    with held:
        yield


def lock_path(root: Path, profile: str) -> Path:
    """The run's lock, ``.run/demo/<profile>.lock``: the stack file's ``lock``
    (``${data_dir}.lock``) for the demo's data folder, which ``devstack up`` takes too."""
    return profile_dir(root, profile).with_name(f"{profile}.lock")


@dataclass(frozen=True)
class RealStores:
    """The real profile's names on the shared servers, for one checkout."""

    mlflow_database: str
    drift_schema: str
    feature_project: str

    @staticmethod
    def previous(name: str) -> str:
        """The name a store gets when the next run starts (the previous run's state)."""
        return f"{name}{PREVIOUS}"


def real_stores(root: Path) -> RealStores:
    """The real profile's database, schema and Feast project of the checkout at ``root``."""
    suffix = checkout_id(root)
    stores = RealStores(f"mlflow_demo_{suffix}", f"drift_demo_{suffix}", f"credit_risk_demo_{suffix}")
    names = (RealStores.previous(stores.mlflow_database), RealStores.previous(stores.drift_schema))
    assert all(len(name) <= MAX_IDENTIFIER for name in (*names, f"feast_{stores.feature_project}"))
    return stores


def profile_dir(root: Path, profile: str) -> Path:
    """The folder of one profile's run (moved to ``<profile>.previous`` by the next run)."""
    return root / ".run" / "demo" / profile


def spans_file(root: Path, profile: str) -> Path:
    """The run's trace file (OTLP/JSON spans, one a line): in the profile's folder, so each profile
    keeps its own and the previous run's moves to ``<profile>.previous`` with the rest."""
    return profile_dir(root, profile) / "traces" / "spans.jsonl"


def shown(path: Path, cwd: Path | None = None) -> str:
    """``path`` as the user can type it: relative to the working directory when under it, else
    absolute (symbolic links kept: a virtual environment's ``bin/python`` stays itself)."""
    here, where = Path(os.path.abspath(cwd or Path.cwd())), Path(os.path.abspath(path))
    return str(where.relative_to(here)) if where.is_relative_to(here) else str(where)


def database_dsn(dsn: str, database: str) -> str:
    """The libpq URL ``dsn`` with another database (same server, user and options)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def reset_real(dsn: str, stores: RealStores) -> list[str]:
    """Start the real profile's run from nothing, keeping the previous run's state, as the folders:
    each of this checkout's MLflow database and drift schema that exists replaces its ``_previous``
    copy (renamed to it). Touches no other name (another checkout's stores stay as they are).

    Returns:
        What was done, in words.
    """
    import psycopg  # the real profile only

    done = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        database, kept = stores.mlflow_database, RealStores.previous(stores.mlflow_database)
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
            conn.execute(f'DROP DATABASE IF EXISTS "{kept}" WITH (FORCE)')
            for attempt in range(5):
                # a leftover connection (an MLflow UI still open on it) would block the rename
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (database,),
                )
                try:
                    conn.execute(f'ALTER DATABASE "{database}" RENAME TO "{kept}"')
                    break
                except psycopg.errors.ObjectInUse:  # it reconnected in between
                    if attempt == 4:
                        raise
                    time.sleep(0.5)
            done.append(f"database {database} -> {kept}")
        schema, kept = stores.drift_schema, RealStores.previous(stores.drift_schema)
        if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone():
            conn.execute(f'DROP SCHEMA IF EXISTS "{kept}" CASCADE')
            conn.execute(f'ALTER SCHEMA "{schema}" RENAME TO "{kept}"')
            done.append(f"schema {schema} -> {kept}")
    return done


def postgres_dsn() -> str:
    """The shared PostgreSQL server's DSN (``CREDITRISK_POSTGRES_DSN``, as for the tests)."""
    return os.environ.get("CREDITRISK_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
