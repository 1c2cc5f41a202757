"""A failed start of the e2e stack leaves nothing behind, and the next test that needs the stack
starts it clean and passes (issue 16: one readiness timeout while the stack started made 17 later
tests fail with "feature-service: already started").

The real :class:`~e2e_stack.Stack` on a stack of this module's own (the session's stack may already
run these services), with the real drift-service (the quickest service to start) and two small
stand-ins of this module (``Stack.stand_ins``): ``recovery-web`` needs ``recovery-base`` and the
drift-service, so one start starts three processes in order. ``Stack.spec_hook`` makes one process
never ready, once the last of the three (the supervisor's readiness timeout) and once the
drift-service, with an error raised from outside while the supervisor waits (what pytest-timeout's
signal handler raises when a test's time is up there: how issue 16's cascade began). The tests run
in this order; each "next" test is one that issue 16 saw fail.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from creditrisk.drift.v1 import drift_service_pb2 as dpb
from creditrisk.drift.v1 import drift_service_pb2_grpc as dpb_grpc
from creditrisk_devstack import (
    HttpReadiness,
    ProcessSpec,
    ReadinessTimeoutError,
    Supervisor,
    TcpReadiness,
    free_port,
)
from creditrisk_devstack.procgroup import group_members
from e2e_stack import ServiceDef, Stack, authed_channel

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

GROUP = ("recovery-base", "drift-service", "recovery-web")  # the order Stack.start starts them in


def _http_server(name: str, extra_env: Callable[[Stack], dict[str, str]] = lambda _stack: {}) -> ServiceDef:
    def spec(stack: Stack, port: int) -> ProcessSpec:
        return ProcessSpec(
            name,
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
            cwd=stack.workdir,
            env=extra_env(stack),
            ready=HttpReadiness(f"http://127.0.0.1:{port}/"),
            timeout_s=30,
            grace_s=2,
        )

    return ServiceDef(name, spec)


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("recovery")
    base = _http_server("recovery-base")
    # a dependant reads its dependencies' addresses when it starts, as the real services do
    web = _http_server("recovery-web", lambda stack: {"DRIFT_TARGET": stack.targets["drift-service"]})
    stand_ins = {
        "recovery-base": base,
        "recovery-web": dataclasses.replace(web, needs=("recovery-base", "drift-service")),
    }
    with Supervisor(workdir / "logs") as supervisor:
        yield Stack(supervisor, workdir, stand_ins=stand_ins)


def _never_ready(target: str) -> Callable[[str, ProcessSpec], ProcessSpec]:
    """The real process of ``target``, waited for on a port nothing listens on, for 3 s."""

    def hook(name: str, spec: ProcessSpec) -> ProcessSpec:
        if name != target:
            return spec
        return dataclasses.replace(spec, ready=TcpReadiness(free_port()), timeout_s=3, grace_s=2)

    return hook


class _TestTimeoutProbe:
    """Not ready for a second, then raises what pytest-timeout raises when a test's time is up."""

    def __init__(self) -> None:
        self._until = time.monotonic() + 1.0

    def check(self, timeout: float) -> str | None:
        if time.monotonic() >= self._until:
            pytest.fail("Timeout >600.0s (simulated)", pytrace=False)
        return "not yet"

    def close(self) -> None:
        return None


@dataclasses.dataclass(frozen=True)
class _TestTimeoutReadiness:
    def open_probe(self) -> _TestTimeoutProbe:
        return _TestTimeoutProbe()

    def describe(self) -> str:
        return "a test timeout while waiting"

    def address(self) -> tuple[str, int] | None:
        return None


def _timed_out_while_waiting(target: str) -> Callable[[str, ProcessSpec], ProcessSpec]:
    def hook(name: str, spec: ProcessSpec) -> ProcessSpec:
        return dataclasses.replace(spec, ready=_TestTimeoutReadiness()) if name == target else spec

    return hook


def _gone(stack: Stack, name: str) -> bool:
    """Stopped by the supervisor and no process of its group left."""
    process = stack.supervisor[name]
    return process.stopped and group_members(process.pgid) == []


def _use(stack: Stack) -> None:
    """What a test of the stack does: call the services (starting them if necessary)."""
    with urllib.request.urlopen(f"http://{stack.target('recovery-web')}/", timeout=10) as response:
        assert response.status == 200
    with authed_channel(stack.target("drift-service")) as channel:
        listed = dpb_grpc.DriftServiceStub(channel).ListTriggerEvents(
            dpb.ListTriggerEventsRequest(model_name="credit-risk"), timeout=30
        )
    assert list(listed.trigger_events) == []


def test_a_readiness_timeout_stops_everything_that_start_had_started(own_stack: Stack) -> None:
    own_stack.spec_hook = _never_ready("recovery-web")
    try:
        with pytest.raises(ReadinessTimeoutError) as failed:
            own_stack.target("recovery-web")
    finally:
        own_stack.spec_hook = None
    message = str(failed.value)
    assert message.startswith("recovery-web: not ready after 3s"), message
    assert f"--- last lines of {own_stack.supervisor['recovery-web'].log_path} ---" in message
    # recovery-base and the drift-service were ready, started by the same start: stopped too
    assert [name for name in GROUP if not _gone(own_stack, name)] == []
    assert own_stack.targets == {}
    assert own_stack.ports == {}
    notes = "\n".join(getattr(failed.value, "__notes__", []))
    assert "stopped what this start had started (drift-service, recovery-base)" in notes


def test_the_next_test_starts_the_stack_clean(own_stack: Stack) -> None:
    failed = {name: own_stack.supervisor[name] for name in GROUP}
    _use(own_stack)
    for name in GROUP:
        assert own_stack.supervisor[name] is not failed[name], f"{name}: not started afresh"
        assert own_stack.supervisor[name].ready


def test_a_test_timeout_while_waiting_stops_what_that_start_started(own_stack: Stack) -> None:
    """How issue 16's cascade began: the test's timeout fired inside the supervisor's wait."""
    base = own_stack.supervisor["recovery-base"]
    own_stack.stop("recovery-web")
    own_stack.stop("drift-service")
    own_stack.spec_hook = _timed_out_while_waiting("drift-service")
    try:
        with pytest.raises(pytest.fail.Exception, match="Timeout"):
            own_stack.target("recovery-web")
    finally:
        own_stack.spec_hook = None
    assert _gone(own_stack, "drift-service")
    assert "drift-service" not in own_stack.targets
    assert _gone(own_stack, "recovery-web")  # stopped before, never started again
    # running before that start: left alone
    assert own_stack.supervisor["recovery-base"] is base
    assert base.alive
    assert "recovery-base" in own_stack.targets


def test_the_next_test_after_a_test_timeout_passes(own_stack: Stack) -> None:
    base = own_stack.supervisor["recovery-base"]
    _use(own_stack)  # before the fix: "drift-service: already started"
    assert own_stack.supervisor["recovery-base"] is base
