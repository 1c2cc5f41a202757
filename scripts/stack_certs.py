"""The local stack's TLS certificates, per data folder: every server of a local stack speaks TLS.

The first ``make demo`` run in a data folder (``.run/demo/<profile>``) makes a certificate authority
of its own and one certificate per server of :data:`SERVERS`, written to ``<data folder>/tls/``
(folder 0700, private keys 0600, certificates 0644); later runs and ``devstack up`` on that folder
reuse them, and re-issue a certificate only when it is missing, does not verify against the
folder's CA, or expires within :data:`RENEW_BEFORE`. The end-to-end stack makes its own per session
(tests/e2e/e2e_stack.py). The stack file (deploy/stack/local.toml) gives each service its files
through the kit's settings (creditrisk_kit.tls: ``<PREFIX>_TLS_CERT_FILE``, ``_TLS_KEY_FILE``, and
``_TLS_CA_FILE`` for the calls it makes); MLflow's server gets ``--tls-cert``/``--tls-key`` and its
clients ``MLFLOW_TRACKING_SERVER_CERT_PATH``. A client outside the stack trusts ``tls/ca.pem``:

    curl --cacert .run/demo/embedded/tls/ca.pem https://127.0.0.1:<port>/readyz

* ``ca.pem`` / ``ca-key.pem``: the folder's CA (ECDSA P-256, valid :data:`CA_VALIDITY`; path length
  0: it signs only the leaf certificates below). Its key never leaves the folder.
* ``<server>.pem`` / ``<server>-key.pem``: a leaf certificate for ``localhost`` and ``127.0.0.1``
  (every local server binds loopback), valid :data:`LEAF_VALIDITY`, with the ``serverAuth`` and
  ``clientAuth`` extended key usages (a service presents the same one when it calls another, which
  is what mutual TLS needs when it is switched on, docs/security.md).

These are a local stack's certificates: on a cluster the certificates come from the cluster's
issuer (cert-manager or the platform's PKI) as mounted Secrets, which the services re-read when
they are renewed (creditrisk_kit.tls). Key sizes and lifetimes follow the CA/Browser Forum's
baseline requirements for leaf certificates (at most 398 days) and NIST SP 800-57's P-256 (128-bit
security). No heavy imports here (the demo's and the end-to-end tests' environments import it).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TLS = "tls"
#: Every server of the local stack with a certificate (``tls/<name>.pem``): the stack file's
#: processes (the model-server slots share one: they are the same program on other ports).
SERVERS = (
    "feature-service",
    "training-service",
    "registry-gateway",
    "drift-service",
    "model-server",
    "inference-gateway",
    "mlflow",
)
#: The names every leaf certificate is valid for (the local stack binds loopback only).
HOST_NAMES = ("localhost",)
HOST_ADDRESSES = ("127.0.0.1", "::1")
CA_VALIDITY = datetime.timedelta(days=3650)
LEAF_VALIDITY = datetime.timedelta(days=397)
#: A leaf certificate expiring sooner than this is re-issued by :func:`write_certificates`.
RENEW_BEFORE = datetime.timedelta(days=30)
_BACKDATE = datetime.timedelta(minutes=5)  # clocks of a laptop and a container drift


@dataclass(frozen=True)
class TlsPaths:
    """The files of one data folder's TLS (:func:`write_certificates` makes them)."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        """The CA certificate every client of the stack trusts."""
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        """The CA's private key (0600)."""
        return self.directory / "ca-key.pem"

    def cert(self, server: str) -> Path:
        """``server``'s certificate (PEM, leaf only: the CA is the only issuer)."""
        return self.directory / f"{server}.pem"

    def key(self, server: str) -> Path:
        """``server``'s private key (PEM, PKCS#8, unencrypted, 0600)."""
        return self.directory / f"{server}-key.pem"


def tls_paths(data_dir: Path) -> TlsPaths:
    """The TLS files of ``data_dir`` (``<data_dir>/tls``)."""
    return TlsPaths(data_dir / TLS)


def _write(path: Path, data: bytes, mode: int) -> None:
    """``data`` to ``path`` with ``mode``, by a rename: a service re-reading its certificate never
    sees half a file, nor a certificate without its key for longer than between two renames (the
    key is written first; the kit keeps the previous pair until a matching pair loads)."""
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(partial, path)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _load_ca(paths: TlsPaths) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The folder's CA when both files load, match and the CA is valid for another leaf lifetime."""
    try:
        cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return None
    if cert.not_valid_after_utc - _now() < LEAF_VALIDITY:
        return None
    return cert, key


#: What the CA's key may do: sign certificates (and revocation lists), nothing else (RFC 5280 4.2.1.3).
_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _new_ca(paths: TlsPaths, label: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"creditrisk local stack CA ({label})")
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(paths.ca_key, _key_pem(key), 0o600)
    _write(paths.ca_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, key


def _leaf_is_current(paths: TlsPaths, server: str, ca: x509.Certificate) -> bool:
    """``server``'s files exist, match each other, verify against ``ca`` and outlive RENEW_BEFORE."""
    try:
        cert = x509.load_pem_x509_certificate(paths.cert(server).read_bytes())
        key = serialization.load_pem_private_key(paths.key(server).read_bytes(), password=None)
        cert.verify_directly_issued_by(ca)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return False
    return cert.not_valid_after_utc - _now() > RENEW_BEFORE


def _issue(paths: TlsPaths, server: str, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in HOST_NAMES]
    names += [x509.IPAddress(ipaddress.ip_address(address)) for address in HOST_ADDRESSES]
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(server))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + LEAF_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(paths.key(server), _key_pem(key), 0o600)
    _write(paths.cert(server), cert.public_bytes(serialization.Encoding.PEM), 0o644)


def write_certificates(data_dir: Path, servers: tuple[str, ...] = SERVERS, *, label: str = "") -> TlsPaths:
    """Make or refresh ``data_dir``'s CA and the certificate of every server of ``servers``.

    Idempotent: files that are current are left as they are (same bytes, same stamp, so no
    service reloads them); a missing, mismatched, foreign or expiring certificate is re-issued;
    a missing or unusable CA is replaced, and then every leaf with it.

    Args:
        data_dir: The data folder (``<data_dir>/tls`` is made with mode 0700).
        servers: The certificates to have (file names without ``.pem``).
        label: Shown in the CA's common name (e.g. the data folder's profile), for a human
            telling two local CAs apart.

    Returns:
        The folder's :class:`TlsPaths`.

    Raises:
        OSError: When the folder or a file cannot be written.
    """
    paths = tls_paths(data_dir)
    paths.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(paths.directory, 0o700)
    loaded = _load_ca(paths)
    ca, ca_key = loaded if loaded is not None else _new_ca(paths, label or data_dir.name)
    for server in servers:
        if loaded is None or not _leaf_is_current(paths, server, ca):
            _issue(paths, server, ca, ca_key)
    return paths


if __name__ == "__main__":  # pragma: no cover - `python scripts/stack_certs.py <data folder>`
    import sys

    made = write_certificates(Path(sys.argv[1]))
    print(made.ca_cert)
