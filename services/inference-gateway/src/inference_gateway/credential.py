"""The gateway's own credential refused by a dependency: one error, one message, one record.

Every outgoing call the gateway makes carries its own credential (``INFERENCE_GATEWAY_CREDENTIAL``
or ``INFERENCE_GATEWAY_CREDENTIAL_FILE``; for the registry-gateway the deprecated
``INFERENCE_GATEWAY_REGISTRY_TOKEN`` when set). A dependency that refuses it (gRPC
UNAUTHENTICATED / PERMISSION_DENIED, HTTP 401 / 403: a key rotated on one side only, a role
missing) is the gateway's configuration, not the caller's request, and not a failure of the
dependency: :class:`CredentialRefused`, an ``Unavailable`` (REST 503, gRPC UNAVAILABLE) whose
message names the dependency, the code, the gateway's setting that was sent, where the dependency
reads the keys it accepts and the role it needs. Never the credential itself.

* gRPC dependencies: :func:`refusal_handlers` are ``DownstreamErrors`` handlers (the
  feature-service's :data:`~inference_gateway.features.FEATURE_ERRORS`, the registry-gateway's
  version reads, the drift-service's ``LogPredictions``).
* the model-server slots (REST): :func:`http_refusal` for a 401 / 403 answer.
* background calls (the prediction log's delivery, the alias stream) report through
  :class:`RefusalRecord`: one log line and one count of
  ``inference_gateway_credential_refusals{dependency, code}`` per change of state (refused with
  another code, or refused after being accepted), never one per event or retry; the gauge
  ``inference_gateway_credential_refused{dependency}`` is 1 while the last call was refused.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import grpc
from creditrisk_clients.errors import Handler
from creditrisk_kit import Unavailable

from inference_gateway import metrics

_LOGGER = logging.getLogger(__name__)

#: The gateway's own credential settings (the file wins over the value).
OWN_SETTING = "INFERENCE_GATEWAY_CREDENTIAL_FILE / INFERENCE_GATEWAY_CREDENTIAL"
#: The deprecated registry-only credential (sent instead of the own one when set).
REGISTRY_TOKEN_SETTING = "INFERENCE_GATEWAY_REGISTRY_TOKEN"  # noqa: S105 - a setting's name
#: The codes that mean "your credential is not accepted here".
REFUSAL_CODES = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
#: HTTP refusals as their gRPC codes (the kit's ``http_refusal``: 401 unknown, 403 role missing).
HTTP_REFUSALS = {401: grpc.StatusCode.UNAUTHENTICATED, 403: grpc.StatusCode.PERMISSION_DENIED}


class CredentialRefused(Unavailable):
    """A dependency refused the gateway's own credential: UNAVAILABLE / HTTP 503.

    Args:
        dependency: who refused (``feature-service``, ``registry-gateway``, ``drift-service``,
            ``model server <url>``).
        code: the refusal (UNAUTHENTICATED or PERMISSION_DENIED).
        accepts: where that dependency reads the keys it accepts (its setting or key file).
        role: the role the call needs there.
        setting: the gateway's setting whose value was sent (default :data:`OWN_SETTING`).
    """

    def __init__(
        self,
        dependency: str,
        code: grpc.StatusCode,
        *,
        accepts: str,
        role: str,
        setting: str = OWN_SETTING,
    ) -> None:
        self.dependency = dependency
        self.code = code
        self.setting = setting
        self._arguments = {"accepts": accepts, "role": role, "setting": setting}
        super().__init__(
            f"{dependency} refused the gateway's own credential ({code.name}): check {setting} "
            f"and {accepts} (role {role})"
        )

    def again(self) -> CredentialRefused:
        """A new error with the same message (a remembered refusal raised again, for another call)."""
        return CredentialRefused(self.dependency, self.code, **self._arguments)


def refusal_handlers(
    dependency: str, *, accepts: str, role: str, setting: str = OWN_SETTING
) -> Mapping[grpc.StatusCode, Handler]:
    """``DownstreamErrors`` handlers mapping UNAUTHENTICATED and PERMISSION_DENIED of
    ``dependency`` to :class:`CredentialRefused` (arguments as its own)."""

    def handler(code: grpc.StatusCode) -> Handler:
        def handle(exc: grpc.RpcError) -> Exception:
            return CredentialRefused(dependency, code, accepts=accepts, role=role, setting=setting)

        return handle

    return {code: handler(code) for code in REFUSAL_CODES}


def http_refusal(
    status: int, dependency: str, *, accepts: str, role: str, setting: str = OWN_SETTING
) -> CredentialRefused | None:
    """:class:`CredentialRefused` for an HTTP 401 / 403 answer of ``dependency``; None for any
    other status."""
    code = HTTP_REFUSALS.get(status)
    if code is None:
        return None
    return CredentialRefused(dependency, code, accepts=accepts, role=role, setting=setting)


class RefusalRecord:
    """Logs and counts one dependency's refusals of the gateway's credential once per change of
    state (see the module docstring).

    Args:
        dependency: the dependency's name in the metric's label.
    """

    def __init__(self, dependency: str) -> None:
        self.dependency = dependency
        self.error: CredentialRefused | None = None  # the current refusal, None: accepted
        metrics.CREDENTIAL_REFUSED.labels(dependency).set(0)

    @property
    def code(self) -> grpc.StatusCode | None:
        """The current refusal's code (None: the last call was not refused)."""
        return self.error.code if self.error is not None else None

    def refusal(self, error: CredentialRefused) -> None:
        """A call was refused: logged (ERROR, naming the settings) and counted when the state
        changed, else nothing."""
        changed = error.code != self.code
        self.error = error
        if not changed:
            return
        metrics.CREDENTIAL_REFUSALS.labels(self.dependency, error.code.name).inc()
        metrics.CREDENTIAL_REFUSED.labels(self.dependency).set(1)
        _LOGGER.error("%s", error, extra={"dependency": self.dependency, "code": error.code.name})

    def accepted(self) -> None:
        """A call went through: logged (INFO) when it was refused before."""
        if self.error is None:
            return
        self.error = None
        metrics.CREDENTIAL_REFUSED.labels(self.dependency).set(0)
        _LOGGER.info("%s accepts the gateway's own credential again", self.dependency)
