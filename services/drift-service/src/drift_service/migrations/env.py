"""Alembic environment of the drift-service store: the kit's (run through ``Store.migrate``)."""

from creditrisk_kit.sqlstore import run_migrations

run_migrations()
