"""Alembic environment of the registry-gateway's audit store: always online, on the connection the
store passes in ``config.attributes["connection"]`` (see ``AuditStore.migrate``)."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the migrations through registry_gateway.audit.AuditStore.migrate()")
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
