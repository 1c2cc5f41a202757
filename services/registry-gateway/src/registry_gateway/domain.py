"""The domain types the registry-gateway's core takes and returns (no protobuf here).

:mod:`registry_gateway.convert` turns requests into these and these into messages; the servicer
calls the core in between. An alias change is its audit record (:class:`~registry_gateway.audit.
AuditRecord`: model, alias, from, to, actor, time, sequence), so there is no separate type for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from registry_gateway import gate as gt


@dataclass(frozen=True)
class RegisterRequest:
    """What RegisterModelVersion asks (unchecked: the core checks it)."""

    run_id: str
    artifact_path: str
    registered_model_name: str
    feature_service_name: str
    feature_service_version: str
    tags: dict[str, str] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class VersionSelector:
    """A model version by number or by alias (``which``: "version", "alias" or None when unset)."""

    name: str
    which: str | None
    version: int = 0
    alias: str = ""


@dataclass(frozen=True)
class SignatureInput:
    """One input column of a version's signature (MLflow type name: double, long, string...)."""

    name: str
    type: str
    required: bool


@dataclass(frozen=True)
class Lineage:
    """Where a version comes from (its ``registry.*`` tags; the dataset digest from the gateway's
    store when it kept one)."""

    run_id: str
    experiment_id: str
    dataset_source: str
    #: ``sha256:<64 hex>`` of the training rows file kept at registration, else MLflow's digest.
    dataset_digest: str
    feature_service_name: str
    feature_service_version: str
    code_version: str


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered model version (``status``: MLflow's status name, e.g. READY)."""

    name: str
    version: int
    aliases: list[str]
    run_id: str
    source: str
    status: str
    create_time: datetime | None
    update_time: datetime | None
    description: str
    tags: dict[str, str]
    artifact_digests: dict[str, str]
    registered_by: str
    metrics: dict[str, float]
    lineage: Lineage
    signature: list[SignatureInput]
    decision_threshold: float | None


@dataclass(frozen=True)
class RegisteredModelInfo:
    """One registered model with its aliases and latest version number (0 when none)."""

    name: str
    description: str
    tags: dict[str, str]
    aliases: dict[str, int]
    latest_version: int
    create_time: datetime | None
    update_time: datetime | None


@dataclass(frozen=True)
class AliasBinding:
    """An alias and the version it points to."""

    model_name: str
    alias: str
    version: int


@dataclass(frozen=True)
class AliasSnapshot:
    """The aliases at one point of the alias change sequence (the first item of a watch)."""

    bindings: list[AliasBinding]
    sequence: int


@dataclass(frozen=True)
class GateDecision:
    """The gate's outcome on one window, with the rule's settings it ran under."""

    model_name: str
    alias: str
    outcome: gt.Outcome
    config: gt.GateConfig
    window_start: datetime
    window_end: datetime
    evaluate_time: datetime
