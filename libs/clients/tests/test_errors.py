"""DownstreamErrors: a dependency's status -> the caller's ServiceError, one mapping for every caller."""

from __future__ import annotations

import grpc
import pytest
from creditrisk_clients import (
    BACKEND_FAILURES,
    DownstreamErrors,
    dependency_status,
    invalid_argument,
    not_found,
)
from creditrisk_clients.errors import unavailable
from creditrisk_kit import DeadlineExceeded, InvalidArgument, NotFound, ServiceError, Unavailable


class _Error(grpc.RpcError):
    """A dependency's error as grpc raises it: ``code()`` and ``details()``."""

    def __init__(self, code: grpc.StatusCode, details: str = "downstream text") -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_unavailable_and_deadline_by_default() -> None:
    errors = DownstreamErrors("the feature-service")
    down = errors.map(_Error(grpc.StatusCode.UNAVAILABLE))
    assert isinstance(down, Unavailable)
    assert down.grpc_code is grpc.StatusCode.UNAVAILABLE
    assert "the feature-service" in str(down)
    late = errors.map(_Error(grpc.StatusCode.DEADLINE_EXCEEDED))
    assert isinstance(late, DeadlineExceeded)
    assert late.grpc_code is grpc.StatusCode.DEADLINE_EXCEEDED


def test_downstream_text_is_not_echoed_by_default() -> None:
    mapped = DownstreamErrors("x").map(_Error(grpc.StatusCode.UNAVAILABLE, "secret host 10.1.2.3"))
    assert "secret" not in str(mapped)


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.PERMISSION_DENIED,
    ],
)
def test_codes_without_a_rule_stay_the_original_error(code: grpc.StatusCode) -> None:
    exc = _Error(code)
    assert DownstreamErrors("x").map(exc) is exc


def test_deadline_as_unavailable_and_failures_as_unavailable() -> None:
    errors = DownstreamErrors(
        "feature-service",
        deadline_as_unavailable=True,
        failures_as_unavailable=True,
        unavailable_message="down",
    )
    late = errors.map(_Error(grpc.StatusCode.DEADLINE_EXCEEDED))
    assert isinstance(late, Unavailable)
    assert late.message == "down"
    for code in BACKEND_FAILURES:
        failed = errors.map(_Error(code))
        assert isinstance(failed, Unavailable)
        assert code.name in failed.message
    # A caller's own mistake is never turned into "unavailable".
    bad = _Error(grpc.StatusCode.INVALID_ARGUMENT)
    assert errors.map(bad) is bad


def test_handlers_win_and_name_the_callers_terms() -> None:
    errors = DownstreamErrors("the feature-service").with_handlers(
        {
            grpc.StatusCode.NOT_FOUND: not_found("feature service", "credit_risk_v9"),
            grpc.StatusCode.INVALID_ARGUMENT: invalid_argument("spec.range", prefix="rejected"),
            grpc.StatusCode.UNAVAILABLE: unavailable("try the other region"),
        }
    )
    missing = errors.map(_Error(grpc.StatusCode.NOT_FOUND, "no such service"))
    assert isinstance(missing, NotFound)
    assert (missing.kind, missing.name, missing.description) == (
        "feature service",
        "credit_risk_v9",
        "no such service",
    )
    invalid = errors.map(_Error(grpc.StatusCode.INVALID_ARGUMENT, "end before start"))
    assert isinstance(invalid, InvalidArgument)
    assert invalid.violations[0].field == "spec.range"
    assert invalid.violations[0].reason == "rejected: end before start"
    down = errors.map(_Error(grpc.StatusCode.UNAVAILABLE))
    assert isinstance(down, Unavailable)
    assert down.message == "try the other region"


def test_raise_for_chains_the_dependency_error_and_dependency_status_reads_it() -> None:
    errors = DownstreamErrors("x")
    original = _Error(grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(ServiceError) as raised:
        errors.raise_for(original)
    assert raised.value.__cause__ is original
    assert dependency_status(raised.value) is grpc.StatusCode.UNAVAILABLE
    unmapped = _Error(grpc.StatusCode.INTERNAL)
    with pytest.raises(grpc.RpcError) as again:
        errors.raise_for(unmapped)
    assert again.value is unmapped
    assert dependency_status(again.value) is grpc.StatusCode.INTERNAL
    assert dependency_status(ValueError("not grpc")) is None


def test_default_handler_takes_every_code_without_a_rule() -> None:
    errors = DownstreamErrors("registry-gateway", default=lambda exc: Unavailable(f"down: {exc.code().name}"))
    for code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INTERNAL, grpc.StatusCode.PERMISSION_DENIED):
        mapped = errors.map(_Error(code))
        assert isinstance(mapped, Unavailable)
        assert mapped.message == f"down: {code.name}"
    # The rules still come first.
    assert isinstance(errors.map(_Error(grpc.StatusCode.DEADLINE_EXCEEDED)), DeadlineExceeded)
