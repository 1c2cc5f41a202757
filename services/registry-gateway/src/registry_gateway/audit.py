"""The audit store: an append-only trail of every registration, promotion, refusal, rollback and
alias change, and the registry-wide write lock.

SQLAlchemy 2 Core over SQLite (embedded profile) or PostgreSQL (real profile), one code path, on
the service kit's SQL store base (:mod:`creditrisk_kit.sqlstore`: engine, SQLite pragmas, the
PostgreSQL schema, alembic, readiness); the schema is managed by alembic migrations
(``registry_gateway/migrations``), applied by :meth:`AuditStore.migrate` at start.

* **Write lock** (:meth:`AuditStore.locked`): every registry write (MLflow version creation, alias
  moves) runs inside it, so version numbers and alias moves are serialized across threads *and*
  gateway processes: a process-wide ``threading.Lock`` plus a database lock held for the whole
  transaction: ``pg_advisory_xact_lock`` on PostgreSQL, ``BEGIN IMMEDIATE`` (the database's
  single writer lock) on SQLite. The audit record of the write is inserted in the same transaction.
* **Sequences**: ``seq`` orders every record (newest first in listings); ``alias_seq`` numbers the
  alias changes registry-wide (strictly increasing, never reused): WatchAliases streams them.
* **Durability**: SQLite in WAL mode with ``synchronous=FULL``; PostgreSQL with its defaults (see
  :mod:`creditrisk_kit.sqlstore`); a busy SQLite writer is waited for up to 60 s.
* **AuditTrail**: what the registry's jobs use: records stamped with the caller and the current
  trace id, appended in a write's transaction or on their own, and ListAuditRecords.
* **PostgreSQL schema**: every table (and alembic's version table) lives in ``schema`` via the
  connection's ``search_path``, so parallel test sessions each get their own schema.

Times are stored as naive UTC and returned aware (UTC).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from creditrisk_kit.auth import Role
from creditrisk_kit.sqlstore import SqlStore, naive_utc, next_in_sequence
from creditrisk_telemetry import current_trace_id
from sqlalchemy.engine import Connection

from registry_gateway.auth import Caller, audit_role

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
ADVISORY_LOCK_KEY = 0x7265_6769_7374_7279  # "registry"
"""Key of the PostgreSQL advisory lock every gateway process takes for a registry write."""

# Actions, numbered as creditrisk.registry.v1.AuditAction.
REGISTER, PROMOTE, REFUSE, FORCE_PROMOTE, ROLLBACK, SET_ALIAS, DELETE_ALIAS, REVOKE = range(1, 9)
ALIAS_ACTIONS = frozenset({PROMOTE, FORCE_PROMOTE, ROLLBACK, SET_ALIAS, DELETE_ALIAS})

metadata = sa.MetaData()
"""The tables as the migrations build them (tests compare the two: ``AuditStore.schema_differences``)."""
audit_records = sa.Table(
    "audit_records",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column("time", sa.DateTime, nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("role", sa.Integer, nullable=False),
    sa.Column("action", sa.Integer, nullable=False),
    sa.Column("model_name", sa.String(256), nullable=False),
    sa.Column("alias", sa.String(256), nullable=False),
    sa.Column("from_version", sa.BigInteger),
    sa.Column("to_version", sa.BigInteger),
    sa.Column("figures", sa.JSON, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("trace_id", sa.String(32), nullable=False),
    sa.Column("alias_seq", sa.BigInteger, unique=True),
    sa.Index("ix_audit_model_seq", "model_name", "seq"),
    sa.Index("ix_audit_time", "time"),
)


#: The artifact digests of each version the gateway registered (``{path: sha256}``), written with
#: its REGISTER record: what an alias move signs (migration 0002); and the sha256 (hex) of its run's
#: training rows file at registration, null without one (migration 0003).
registered_digests = sa.Table(
    "registered_digests",
    metadata,
    sa.Column("model_name", sa.String(256), primary_key=True),
    sa.Column("version", sa.BigInteger, primary_key=True),
    sa.Column("digests", sa.JSON, nullable=False),
    sa.Column("register_seq", sa.BigInteger, nullable=False),
    sa.Column("training_rows_sha256", sa.String(64), nullable=True),
)


@dataclass(frozen=True)
class AuditRecord:
    """One audit record (``creditrisk.registry.v1.AuditRecord``)."""

    seq: int
    id: str
    time: datetime
    actor: str
    role: int
    action: int
    model_name: str
    alias: str
    from_version: int | None
    to_version: int | None
    figures: dict[str, float]
    reason: str
    trace_id: str
    alias_seq: int | None


@dataclass(frozen=True)
class NewRecord:
    """What to append (the store assigns id, time and sequences)."""

    actor: str
    role: int
    action: int
    model_name: str
    alias: str = ""
    from_version: int | None = None
    to_version: int | None = None
    figures: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    trace_id: str = ""


@dataclass(frozen=True)
class AuditFilter:
    """Filters of :meth:`AuditStore.list` (combined with AND; empty = any)."""

    model_name: str = ""
    actions: Sequence[int] = ()
    actor: str = ""
    alias: str = ""
    start: datetime | None = None
    end: datetime | None = None


def _record(row: Any) -> AuditRecord:
    m = row._mapping
    return AuditRecord(
        seq=int(m["seq"]),
        id=m["id"],
        time=m["time"].replace(tzinfo=UTC),
        actor=m["actor"],
        role=int(m["role"]),
        action=int(m["action"]),
        model_name=m["model_name"],
        alias=m["alias"],
        from_version=None if m["from_version"] is None else int(m["from_version"]),
        to_version=None if m["to_version"] is None else int(m["to_version"]),
        figures={k: float(v) for k, v in (m["figures"] or {}).items()},
        reason=m["reason"],
        trace_id=m["trace_id"],
        alias_seq=None if m["alias_seq"] is None else int(m["alias_seq"]),
    )


class AuditStore(SqlStore):
    """The audit trail over one SQLAlchemy engine (engine, :meth:`migrate`, :meth:`ping`,
    :meth:`drop_schema` and :meth:`close` from :class:`creditrisk_kit.sqlstore.SqlStore`).

    Args:
        url: ``sqlite:///path/audit.db`` or ``postgresql+psycopg://...``.
        schema: PostgreSQL schema of the tables (created when missing); ignored for SQLite.

    Raises:
        ValueError: another database than SQLite or PostgreSQL, or a bad schema name.
    """

    def __init__(self, url: str, schema: str | None = None) -> None:
        super().__init__(url, schema, migrations=MIGRATIONS_DIR, busy_timeout_s=60.0)
        self._lock = threading.Lock()

    # --- the write lock -----------------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[Connection]:
        """The registry-wide write lock: a transaction holding the process lock and the database
        lock (see the module docstring). Commits on exit, rolls back on an exception."""
        with self._lock:
            if self.dialect == "sqlite":
                with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                    try:
                        yield conn
                    except BaseException:
                        conn.exec_driver_sql("ROLLBACK")
                        raise
                    conn.exec_driver_sql("COMMIT")
            else:
                with self.engine.begin() as conn:
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(ADVISORY_LOCK_KEY)))
                    yield conn

    def append(self, conn: Connection, record: NewRecord) -> AuditRecord:
        """Append a record inside :meth:`locked` (``conn`` is its connection)."""
        seq = next_in_sequence(conn, audit_records.c.seq)
        alias_seq = (
            next_in_sequence(conn, audit_records.c.alias_seq) if record.action in ALIAS_ACTIONS else None
        )
        row = {
            "seq": seq,
            "id": uuid.uuid4().hex,
            "time": datetime.now(UTC).replace(tzinfo=None),
            "actor": record.actor,
            "role": record.role,
            "action": record.action,
            "model_name": record.model_name,
            "alias": record.alias,
            "from_version": record.from_version,
            "to_version": record.to_version,
            "figures": {k: float(v) for k, v in record.figures.items()},
            "reason": record.reason,
            "trace_id": record.trace_id,
            "alias_seq": alias_seq,
        }
        conn.execute(audit_records.insert().values(**row))
        return _record(_Row(row))

    def append_now(self, record: NewRecord) -> AuditRecord:
        """Append a record under the write lock (actions that change nothing else, e.g. REFUSE)."""
        with self.locked() as conn:
            return self.append(conn, record)

    # --- reads --------------------------------------------------------------------------------

    def list(self, flt: AuditFilter, before: int | None, limit: int) -> tuple[list[AuditRecord], int | None]:
        """Records newest first matching ``flt``, of a sequence below ``before`` (None: from the
        newest); returns ``(page, the last one's sequence when more follow, else None)``: keyset
        paging, so records appended between two page calls never repeat an item."""
        t = audit_records.c
        query = sa.select(audit_records)
        if flt.model_name:
            query = query.where(t.model_name == flt.model_name)
        if flt.actions:
            query = query.where(t.action.in_(list(flt.actions)))
        if flt.actor:
            query = query.where(t.actor == flt.actor)
        if flt.alias:
            query = query.where(t.alias == flt.alias)
        if flt.start is not None:
            query = query.where(t.time >= naive_utc(flt.start))
        if flt.end is not None:
            query = query.where(t.time < naive_utc(flt.end))
        if before is not None:
            query = query.where(t.seq < before)
        query = query.order_by(t.seq.desc()).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = [_record(r) for r in conn.execute(query)]
        page = rows[:limit]
        return page, (page[-1].seq if len(rows) > limit and page else None)

    def alias_changes_after(self, alias_seq: int, limit: int = 500) -> list[AuditRecord]:
        """Alias changes with a sequence above ``alias_seq``, in sequence order."""
        t = audit_records.c
        query = (
            sa.select(audit_records)
            .where(t.alias_seq.is_not(None), t.alias_seq > alias_seq)
            .order_by(t.alias_seq)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(query)]

    def last_alias_seq(self) -> int:
        """The sequence of the latest alias change (0 when none)."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.coalesce(sa.func.max(audit_records.c.alias_seq), 0))
                ).scalar_one()
            )

    def keep_digests(
        self,
        conn: Connection,
        model_name: str,
        version: int,
        digests: dict[str, str],
        register_seq: int,
        training_rows_sha256: str | None = None,
    ) -> None:
        """Record a registered version's artifact digests and its training rows' sha256 (64 hex
        digits; None when the run logged no training rows), inside :meth:`locked`, with its
        REGISTER record's ``register_seq``."""
        conn.execute(
            registered_digests.insert().values(
                model_name=model_name,
                version=version,
                digests=dict(digests),
                register_seq=register_seq,
                training_rows_sha256=training_rows_sha256,
            )
        )

    def training_rows_sha256(self, model_name: str, version: int) -> str | None:
        """The sha256 (64 hex digits) of ``model_name``/``version``'s training rows as the gateway
        computed it at registration; None for a version it did not register, registered before
        migration 0003, or whose run logged no training rows."""
        t = registered_digests.c
        with self.engine.connect() as conn:
            kept = conn.execute(
                sa.select(t.training_rows_sha256).where(t.model_name == model_name, t.version == version)
            ).scalar()
        return None if kept is None else str(kept)

    def registered(
        self, conn: Connection, model_name: str, version: int
    ) -> tuple[bool, dict[str, str] | None]:
        """Whether the gateway registered ``model_name``/``version`` (a REGISTER record), and the
        digests it kept then (None for a version registered before migration 0002)."""
        kept = conn.execute(
            sa.select(registered_digests.c.digests).where(
                registered_digests.c.model_name == model_name, registered_digests.c.version == version
            )
        ).scalar()
        if kept is not None:
            return True, {str(k): str(v) for k, v in kept.items()}
        t = audit_records.c
        record = conn.execute(
            sa.select(t.seq).where(t.model_name == model_name, t.action == REGISTER, t.to_version == version)
        ).first()
        return record is not None, None

    def revoked_versions(self, model_name: str, conn: Connection | None = None) -> set[int]:
        """The versions of ``model_name`` with a REVOKE record (inside :meth:`locked` with ``conn``)."""
        t = audit_records.c
        query = sa.select(t.to_version).where(
            t.model_name == model_name, t.action == REVOKE, t.to_version.is_not(None)
        )
        if conn is not None:
            return {int(v) for v in conn.execute(query).scalars()}
        with self.engine.connect() as c:
            return {int(v) for v in c.execute(query).scalars()}

    def alias_history(self, model_name: str, alias: str) -> list[AuditRecord]:
        """Every change of one alias of one model, oldest first."""
        t = audit_records.c
        query = (
            sa.select(audit_records)
            .where(t.model_name == model_name, t.alias == alias, t.alias_seq.is_not(None))
            .order_by(t.alias_seq)
        )
        with self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(query)]


class _Row:
    """A mapping-backed row for :func:`_record` (the values just inserted)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._mapping = values


class AuditTrail:
    """The audit trail as the registry's jobs use it: records stamped with the caller (actor, role)
    and the current trace id, appended inside a write's lock or on their own, and listed.

    Args:
        store: the audit store (migrated).
    """

    def __init__(self, store: AuditStore) -> None:
        self.store = store

    def append(self, conn: Connection, caller: Caller, action: int, name: str, **kwargs: Any) -> AuditRecord:
        """Append a record in the transaction of ``conn`` (inside :meth:`AuditStore.locked`)."""
        return self.store.append(conn, self.new_record(caller, action, name, **kwargs))

    def append_now(self, caller: Caller, action: int, name: str, **kwargs: Any) -> AuditRecord:
        """Append a record under the write lock (actions that change nothing else, e.g. REFUSE)."""
        return self.store.append_now(self.new_record(caller, action, name, **kwargs))

    @staticmethod
    def new_record(caller: Caller, action: int, name: str, **kwargs: Any) -> NewRecord:
        """A record of ``caller`` doing ``action`` on model ``name`` in the current trace."""
        return NewRecord(
            actor=caller.subject,
            role=audit_role(caller),
            action=action,
            model_name=name,
            trace_id=current_trace_id(),
            **kwargs,
        )

    async def records(
        self, caller: Caller, flt: AuditFilter, before: int | None, limit: int
    ) -> tuple[list[AuditRecord], int | None]:
        """ListAuditRecords: newest first, below sequence ``before`` (``AuditStore.list``)."""
        caller.require(Role.READ_REGISTRY, "ListAuditRecords")
        return await asyncio.to_thread(self.store.list, flt, before, limit)

    async def healthy(self) -> bool:
        """Readiness: the audit database answers."""
        return await asyncio.to_thread(self.store.ping)
