"""Fixtures of the end-to-end tests: the session's :class:`~e2e_stack.Stack` (see ``e2e_stack.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from creditrisk_devstack import Supervisor
from creditrisk_devstack.otlp import OtlpReceiver
from e2e_stack import Stack


def _grpc_client_instrumented() -> bool:
    """True when this process's gRPC channels are wrapped by OpenTelemetry's client interceptors."""
    try:
        from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, GrpcInstrumentorClient
    except ImportError:
        return False
    return any(
        instrumentor.is_instrumented_by_opentelemetry
        for instrumentor in (GrpcInstrumentorClient(), GrpcAioInstrumentorClient())  # type: ignore[no-untyped-call]
    )


@pytest.fixture(scope="session")
def otlp_receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OtlpReceiver]:
    """The session's OTLP/gRPC trace receiver: every service of the stack exports its spans here.

    The tests are the callers: their gRPC metadata must carry exactly the ``traceparent`` they
    set. In a process where another suite instrumented gRPC (the service kit's tests call
    ``instrument_grpc()``), each call would instead start a client span of a new trace and send
    that: so this fails at once there (``make test`` runs ``tests/`` in its own pytest process).
    """
    if _grpc_client_instrumented():
        pytest.fail(
            "gRPC clients of this test process are instrumented by OpenTelemetry (another suite "
            "ran instrument_grpc()): run tests/ in a pytest process of its own, apart from libs/",
            pytrace=False,
        )
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
