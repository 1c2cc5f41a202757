"""Alembic environment of the drift-service store: always online, on the connection the store
passes in ``config.attributes["connection"]`` (see ``Store.migrate``)."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the migrations through drift_service.store.Store.migrate()")
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
