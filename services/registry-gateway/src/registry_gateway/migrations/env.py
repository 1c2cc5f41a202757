"""Alembic environment of the registry-gateway's audit store: the kit's (run through
``AuditStore.migrate``)."""

from creditrisk_kit.sqlstore import run_migrations

run_migrations()
