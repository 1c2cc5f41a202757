"""Fixtures of the end-to-end tests: the session's :class:`~e2e_stack.Stack` (see ``e2e_stack.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from creditrisk_devstack import Supervisor
from e2e_stack import Stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The session's stack; services start when a test first asks for them, all stop at the end."""
    workdir = tmp_path_factory.mktemp("e2e")
    with Supervisor(workdir / "logs") as supervisor:
        yield Stack(supervisor, workdir)
