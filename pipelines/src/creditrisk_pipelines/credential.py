"""The pipeline's bearer credential, read from the component's environment when it runs.

It is never a pipeline parameter: kfp's executor logs its whole input (``Got executor_input``),
passes it on the command line (``--executor_input``) and, on a cluster, stores it in the run's spec
and shows it in the UI. As Kubeflow users do, the credential comes from the pod's environment:

* ``CREDITRISK_CREDENTIAL_FILE``: the path of a file holding it (on a cluster a mounted Kubernetes
  Secret, ``pipelines/README.md``; locally ``.run/demo/<profile>/secrets/pipeline.key``), re-read
  when the file changes (a rotated Secret needs no new run); wins when both are set;
* ``CREDITRISK_CREDENTIAL``: the credential itself (a Secret exposed as an environment variable).

``kfp.local``'s subprocess runner starts each component with the caller's environment, so setting
either variable for ``python -m creditrisk_pipelines.local`` reaches every component. The value is
the kit's :class:`creditrisk_kit.auth.CredentialSource` (the services' own outgoing credential), a
provider the clients call on every RPC; it is never printed (its ``repr`` names the file only).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from creditrisk_kit.auth import CredentialSource
from creditrisk_kit.tls import ClientTls

#: The file holding the pipeline's credential (a mounted Secret); wins over :data:`CREDENTIAL_ENV`.
CREDENTIAL_FILE_ENV = "CREDITRISK_CREDENTIAL_FILE"
#: The pipeline's credential itself.
CREDENTIAL_ENV = "CREDITRISK_CREDENTIAL"
#: The CA certificates (PEM) the services' certificates are checked against: set, every call a
#: component makes speaks TLS (a mounted Secret or ConfigMap on a cluster; locally the data folder's
#: ``tls/ca.pem``); unset, plaintext.
TLS_CA_FILE_ENV = "CREDITRISK_TLS_CA_FILE"
#: Former pipeline parameters that carried the credential (refused by the local runner, named).
REMOVED_PARAMETERS = ("registry_token", "token")


class CredentialError(ValueError):
    """The pipeline's credential is missing or unreadable; the message names the variables (never
    the credential)."""


def pipeline_credential(environ: Mapping[str, str] | None = None) -> CredentialSource:
    """The pipeline's credential from ``environ`` (default: this process's environment).

    Args:
        environ: the variables to read :data:`CREDENTIAL_FILE_ENV` and :data:`CREDENTIAL_ENV` from.

    Returns:
        A :class:`~creditrisk_kit.auth.CredentialSource`: calling it gives the current credential
        (the file's stripped content, re-read when the file changes), non-empty when returned.

    Raises:
        CredentialError: neither variable is set (both named), the file cannot be read (the
            variable, the path and the error's class named), or the file or value is empty.
    """
    env = os.environ if environ is None else environ
    path, value = env.get(CREDENTIAL_FILE_ENV, "").strip(), env.get(CREDENTIAL_ENV, "")
    if path:
        try:
            source = CredentialSource(file=Path(path))
        except OSError as exc:
            failure = type(exc).__name__
            raise CredentialError(f"{CREDENTIAL_FILE_ENV}={path}: cannot read ({failure})") from None
        if not source():
            raise CredentialError(f"{CREDENTIAL_FILE_ENV}={path}: the file is empty")
        return source
    if not value.strip():
        state = f"{CREDENTIAL_ENV} is empty" if CREDENTIAL_ENV in env else f"nor is {CREDENTIAL_ENV}"
        raise CredentialError(
            f"the pipeline's credential is missing: {CREDENTIAL_FILE_ENV} (a file holding it, e.g. a mounted "
            f"Kubernetes Secret) is not set, {state} (the credential itself)"
        )
    return CredentialSource(value)


def refuse_removed_parameters(arguments: Mapping[str, object]) -> None:
    """Fail on a former credential parameter among a run's ``arguments`` (never echoing its value).

    Raises:
        CredentialError: naming the parameter and the variables that replace it.
    """
    given = [name for name in REMOVED_PARAMETERS if name in arguments]
    if given:
        raise CredentialError(
            f"{given[0]} is no longer a pipeline parameter (kfp logs and stores parameters): give the "
            f"pipeline's credential in {CREDENTIAL_FILE_ENV} or {CREDENTIAL_ENV}"
        )


def pipeline_tls(environ: Mapping[str, str] | None = None) -> ClientTls | None:
    """The components' TLS from ``environ`` (default: this process's environment).

    Returns:
        A :class:`~creditrisk_kit.tls.ClientTls` trusting the file of :data:`TLS_CA_FILE_ENV`
        (the server's certificate must name the target's host), or None when it is unset
        (plaintext).

    Raises:
        CredentialError: the variable names a file that cannot be read (the variable, the path and
            the error's class named).
    """
    env = os.environ if environ is None else environ
    path = env.get(TLS_CA_FILE_ENV, "").strip()
    if not path:
        return None
    try:
        Path(path).read_bytes()
    except OSError as exc:
        raise CredentialError(f"{TLS_CA_FILE_ENV}={path}: cannot read ({type(exc).__name__})") from None
    return ClientTls(Path(path))
