"""The gateway's own error types: NOT_FOUND with a machine-readable reason, and the gate's refusal
(FAILED_PRECONDITION carrying the GateResult in the status details)."""

from __future__ import annotations

from creditrisk_kit import FailedPrecondition, NotFound, PreconditionViolation
from google.protobuf.message import Message
from google.rpc import error_details_pb2  # type: ignore[import-untyped]

from registry_gateway.convert import gate_result
from registry_gateway.domain import GateDecision

DOMAIN = "registry-gateway.creditrisk"


class RegistryNotFound(NotFound):
    """NOT_FOUND with ``ErrorInfo.reason`` MODEL_NOT_FOUND / VERSION_NOT_FOUND / ALIAS_NOT_FOUND /
    RUN_NOT_FOUND / ARTIFACT_NOT_FOUND, besides the kit's ResourceInfo."""

    def __init__(self, kind: str, name: str, reason: str, **metadata: str) -> None:
        super().__init__(kind, name)
        self.reason = reason
        self.metadata = metadata

    def details(self) -> list[Message]:
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=self.metadata)
        return [*super().details(), info]


def model_not_found(name: str) -> RegistryNotFound:
    """The registered model ``name`` does not exist."""
    return RegistryNotFound("registered model", name, "MODEL_NOT_FOUND", model=name)


def version_not_found(name: str, version: int) -> RegistryNotFound:
    """Version ``version`` of ``name`` does not exist."""
    return RegistryNotFound(
        "model version", f"{name}/{version}", "VERSION_NOT_FOUND", model=name, version=str(version)
    )


def alias_not_found(name: str, alias: str) -> RegistryNotFound:
    """The model exists but ``alias`` is not set."""
    return RegistryNotFound("alias", f"{name}@{alias}", "ALIAS_NOT_FOUND", model=name, alias=alias)


class GateRefused(FailedPrecondition):
    """The promotion gate refused: the figures in the message, the GateResult in the details."""

    def __init__(self, decision: GateDecision) -> None:
        outcome = decision.outcome
        super().__init__(
            f"promotion gate refused {decision.model_name}/{outcome.challenger.version} for "
            f"{decision.alias!r}: " + "; ".join(outcome.reasons),
            [
                PreconditionViolation(
                    "PROMOTION_GATE", f"{decision.model_name}/{outcome.challenger.version}", outcome.rule
                )
            ],
        )
        self.decision = decision

    def details(self) -> list[Message]:
        return [*super().details(), gate_result(self.decision)]
