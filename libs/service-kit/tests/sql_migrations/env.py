"""Alembic environment of the test store (tests/test_kit_sqlstore.py): the kit's."""

from creditrisk_kit.sqlstore import run_migrations

run_migrations()
