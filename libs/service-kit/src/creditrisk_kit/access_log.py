"""Access logs of applicant data (issue 18): who read which applicant's data, never the data.

One record per read call on a service's access logger (``inference_gateway.access``,
``feature_service.access``), a JSON log line through the telemetry library's formatter, whose
fields are the record's ``extra``:

* ``subject`` and ``via``: the principal (``anonymous`` / ``none`` when authentication is not
  wired);
* ``method``: the RPC or route, e.g. ``GetOnlineFeatures``;
* the ids read, under a field the service names (``applicant_ids``, ``entity_keys``): the first
  :data:`MAX_LOGGED_IDS`, with ``<field>_count`` the total (so a batch of 10,000 keys is one
  bounded line that still says how many);
* ``outcome``: ``OK``, a gRPC status name, or per-item counts of a batch (``OK=3,NOT_FOUND=1``);
* the service's own details (``feature_service``, ``feature_refs``, ``row_count``, ...).

Never feature values, predictions or credentials: callers pass identifiers only. A call refused by
the kit's authentication never reaches the servicer; its record is the kit's refusal log
(``creditrisk_kit.auth.refusals``, :mod:`creditrisk_kit.auth.authenticator`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from .auth.principal import Principal

#: At most this many ids in one record; ``<field>_count`` gives the total.
MAX_LOGGED_IDS = 100
#: The subject of a call without a principal (authentication not wired).
ANONYMOUS_SUBJECT = "anonymous"


def record_access(
    logger: logging.Logger,
    method: str,
    principal: Principal | None,
    ids: Sequence[Any],
    outcome: str,
    *,
    ids_field: str = "entity_keys",
    **details: Any,
) -> None:
    """Write one access record (INFO on ``logger``).

    Args:
        logger: The service's access logger.
        method: The RPC or route called.
        principal: The caller (None: authentication not wired).
        ids: The identifiers read (applicant ids, entity keys), never values; the first
            :data:`MAX_LOGGED_IDS` are logged, their total as ``<ids_field>_count``.
        outcome: ``OK``, a gRPC status name, or a batch's per-item counts.
        ids_field: The field name of the ids (``applicant_ids``, ``entity_keys``).
        **details: Further fields (identifiers and counts only).
    """
    subject = principal.subject if principal else ANONYMOUS_SUBJECT
    logger.info(
        "%s by %s: %s (%d %s)",
        method,
        subject,
        outcome,
        len(ids),
        ids_field,
        extra={
            "subject": subject,
            "via": principal.via if principal else "none",
            "method": method,
            ids_field: list(ids[:MAX_LOGGED_IDS]),
            f"{ids_field}_count": len(ids),
            "outcome": outcome,
            **details,
        },
    )


def outcome_of(error: BaseException | None) -> str:
    """The ``outcome`` of a call that ended with ``error``: ``OK`` (None), the status name of a
    kit error or a ``grpc.RpcError``, ``CANCELLED`` for a cancellation, else ``INTERNAL``."""
    if error is None:
        return "OK"
    status = getattr(error, "grpc_status_code", None)
    if callable(status):
        return str(status().name)
    code = getattr(error, "code", None)
    if callable(code):
        try:
            return str(code().name)
        except Exception:  # not a grpc.RpcError after all
            return "INTERNAL"
    if type(error).__name__ == "CancelledError":
        return "CANCELLED"
    return "INTERNAL"
