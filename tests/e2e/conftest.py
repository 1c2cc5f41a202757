"""Fixtures of the end-to-end tests: the session's :class:`~e2e_stack.Stack` (see ``e2e_stack.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from creditrisk_devstack import Supervisor
from creditrisk_devstack.otlp import OtlpReceiver
from e2e_stack import Stack


@pytest.fixture(scope="session")
def otlp_receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OtlpReceiver]:
    """The session's OTLP/gRPC trace receiver: every service of the stack exports its spans here."""
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, otlp_receiver: OtlpReceiver) -> Iterator[Stack]:
    """The session's stack; services start when a test first asks for them, all stop at the end.
    Each service process gets the ``OTEL_*`` variables of :func:`otlp_receiver`."""
    workdir = tmp_path_factory.mktemp("e2e")
    with Supervisor(workdir / "logs") as supervisor:
        yield Stack(supervisor, workdir, extra_env=otlp_receiver.env())
