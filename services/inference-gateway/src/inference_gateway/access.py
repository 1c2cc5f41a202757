"""Who may call the gateway, how often, what they see, and the record of it (issue 18).

* **Policies** (default deny, :mod:`creditrisk_kit.auth`): :data:`GRPC_POLICY` for every method of
  ``InferenceService`` and :data:`HTTP_POLICY` for every REST route; the kit's runner and
  :func:`creditrisk_kit.auth.http.check_routes` refuse to start when a method or route has no
  entry. Probes (``/livez``, ``/readyz``, gRPC health) are public.
* **Rate limits** per principal subject (:class:`RateLimiter`, the ``limits`` library's moving
  window in memory): over the limit a call is refused with :class:`RateLimited`
  (RESOURCE_EXHAUSTED with a ``google.rpc.RetryInfo`` / HTTP 429 with ``Retry-After``).
* **Echo**: the ``features`` of a prediction answer only for principals holding one of the
  configured roles (:meth:`Access.echo`).
* **Access log**: one line per prediction or batch on the ``inference_gateway.access`` logger
  naming the subject, the applicant id(s), the method and the outcome; never feature values nor
  credentials (:meth:`Access.record`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from creditrisk_kit import ResourceExhausted
from creditrisk_kit.access_log import ANONYMOUS_SUBJECT, record_access
from creditrisk_kit.auth import PUBLIC, MethodPolicy, Principal, Requirement, Role, current_principal
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

if TYPE_CHECKING:
    from inference_gateway.core import ItemError, PredictInput, Prediction

SERVICE_NAME = "creditrisk.inference.v1.InferenceService"
ACCESS_LOGGER = logging.getLogger("inference_gateway.access")

GRPC_POLICY = MethodPolicy.for_service(
    SERVICE_NAME,
    {
        "Predict": Role.PREDICT,
        "PredictBatch": Role.PREDICT,
        # Which model versions serve, their state: the registry's knowledge.
        "ListServingModels": Role.READ_REGISTRY,
    },
)
"""The role of every ``InferenceService`` method."""

HTTP_POLICY: dict[str, Requirement] = {
    "POST /v1/predict": Role.PREDICT,
    "POST /v1/predict:batch": Role.PREDICT,
    "GET /v1/models": Role.READ_REGISTRY,
    "GET /metrics": Role.READ_MONITORING,
    "GET /livez": PUBLIC,
    "GET /readyz": PUBLIC,
}
"""The role of every REST route (the OpenAPI document and its viewers are public: the kit's
``DEFAULT_PUBLIC_PATHS``)."""


class RateLimited(ResourceExhausted):
    """Over the caller's rate limit: RESOURCE_EXHAUSTED with ``RetryInfo`` / HTTP 429 with
    ``Retry-After`` (whole seconds, rounded up)."""

    http_status = 429


@dataclass(frozen=True)
class Rate:
    """A rate limit: ``per_s`` requests per second sustained, bursts of up to ``burst``
    (0 = the default burst, twice ``per_s``); ``per_s`` 0 = unlimited."""

    per_s: int
    burst: int = 0

    def item(self) -> RateLimitItem | None:
        """The ``limits`` item: a moving window of ``burst`` requests per ``ceil(burst / per_s)``
        seconds, so bursts reach ``burst`` and the average stays at most ``per_s``; None when
        unlimited."""
        if self.per_s <= 0:
            return None
        burst = max(self.burst or 2 * self.per_s, self.per_s)
        return RateLimitItemPerSecond(burst, math.ceil(burst / self.per_s))


class RateLimiter:
    """Per-subject rate limits in process memory (``limits``' ``MovingWindowRateLimiter``; one
    gateway replica counts its own calls).

    Args:
        default: The rate of every subject without an override.
        overrides: Per-subject rates (``{"bench": Rate(0)}`` exempts ``bench``).
    """

    def __init__(self, default: Rate, overrides: Mapping[str, Rate] | None = None) -> None:
        self._default = default.item()
        self._overrides = {subject: rate.item() for subject, rate in (overrides or {}).items()}
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self.enabled = self._default is not None or any(i is not None for i in self._overrides.values())

    def admit(self, subject: str, cost: int = 1) -> None:
        """Count ``cost`` requests of ``subject`` (a cost above the burst counts as the burst).

        Raises:
            RateLimited: over the limit; ``retry_after_s`` is when the window frees a slot.
        """
        item = self._overrides.get(subject, self._default)
        if item is None:
            return
        cost = min(max(cost, 1), item.amount)
        if self._limiter.hit(item, subject, cost=cost):
            return
        reset = self._limiter.get_window_stats(item, subject).reset_time
        retry_after_s = max(reset - time.time(), 0.001)
        raise RateLimited(
            f"rate limit of {subject!r} exceeded ({item.amount} requests per {item.get_expiry()} s)",
            retry_after_s=retry_after_s,
        )


class Access:
    """The gateway's per-call access decisions (see the module docstring).

    Args:
        limiter: The per-subject rate limits.
        echo_roles: Roles that see the feature values in a prediction answer.
    """

    def __init__(self, limiter: RateLimiter, echo_roles: Iterable[Role]) -> None:
        self.limiter = limiter
        self.echo_roles = frozenset(echo_roles)

    def admit(self, cost: int = 1) -> Principal | None:
        """The current principal (None: authentication disabled or not wired), after its rate
        limit counted ``cost`` requests.

        Raises:
            RateLimited: over the limit.
        """
        principal = current_principal()
        if self.limiter.enabled:
            self.limiter.admit(principal.subject if principal else ANONYMOUS_SUBJECT, cost)
        return principal

    def echo(self, principal: Principal | None) -> bool:
        """Whether ``principal`` sees the feature values: it holds an echo role (admin holds every
        role; None, authentication not wired, sees them as before)."""
        if principal is None:
            return True
        return any(principal.has(role) for role in self.echo_roles)


def batch_outcome(results: Sequence[Prediction | ItemError]) -> str:
    """``OK=3,NOT_FOUND=1``: the count of each item outcome of a batch (the access log's)."""
    counts: dict[str, int] = {}
    for result in results:
        error = getattr(result, "error", None)  # an ItemError
        name = error.grpc_status_code().name if error is not None else "OK"
        counts[name] = counts.get(name, 0) + 1
    return ",".join(f"{name}={count}" for name, count in sorted(counts.items()))


def record(
    method: str,
    principal: Principal | None,
    applicant_ids: Sequence[int | None],
    outcome: str,
    inputs: Sequence[PredictInput] = (),
) -> None:
    """One access-log line (the kit's :func:`~creditrisk_kit.access_log.record_access`): who
    (subject), which applicants (``applicant_ids``, the first 100, and ``applicant_ids_count``),
    which method, the outcome (``OK``, a status name, or ``OK=n,INVALID_ARGUMENT=m`` for a batch),
    and what of ``inputs`` the caller set that monitoring takes as given (:func:`caller_set`).
    ``principal`` None: the call's authenticated principal (a call refused before its rate limit
    returned one). Never values nor credentials."""
    principal = principal or current_principal()
    record_access(
        ACCESS_LOGGER,
        method,
        principal,
        applicant_ids,
        outcome,
        ids_field="applicant_ids",
        **caller_set(inputs),
    )


#: At most this many request-value names in one access record, each at most MAX_NAME_CHARS long.
MAX_LOGGED_NAMES = 32
MAX_NAME_CHARS = 64


def caller_set(inputs: Sequence[PredictInput]) -> dict[str, object]:
    """The access record's fields of what a caller set in its requests and the prediction log keeps
    as given (a ``predict`` key can back-date an application or override a stored feature, which
    then reaches drift monitoring: docs/security.md, "What is not protected"):

    * ``caller_event_times``: how many items carried their own ``event_time``, and
      ``earliest_event_time`` (ISO 8601) the earliest of them;
    * ``request_value_names``: the sorted names of the request-time values given (names only;
      caller text, logged before they are validated: the first :data:`MAX_LOGGED_NAMES`, each cut
      to :data:`MAX_NAME_CHARS` characters, so one request cannot flood the log).

    Empty when the caller set neither."""
    times = [p.event_time for p in inputs if p.event_time is not None]
    given = sorted({name for p in inputs for name in p.request_values})
    names = [name[:MAX_NAME_CHARS] for name in given[:MAX_LOGGED_NAMES]]
    fields: dict[str, object] = {}
    if times:
        fields.update(caller_event_times=len(times), earliest_event_time=min(times).isoformat())
    if names:
        fields["request_value_names"] = names
    return fields
