"""Throw-away certificate authorities and certificates for TLS and mutual TLS tests.

Made with ``cryptography`` (extra ``creditrisk-testing[tls]``), in memory, in a few milliseconds
(ECDSA P-256 keys)::

    ca = CertificateAuthority.create("test CA")
    files = write_tls_files(tmp_path, ca)        # ca.pem, server.pem/-key.pem, client.pem/-key.pem
    settings = MySettings(tls_cert_file=files.server_cert, tls_key_file=files.server_key, ...)

Every certificate issued is valid from one hour ago for one day, for ``localhost`` and
``127.0.0.1`` by default, and carries both the ``serverAuth`` and ``clientAuth`` extended key usages
(a service uses one certificate as a server and as a client). For tests only: no revocation, no
key protection.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALID_BEFORE = datetime.timedelta(hours=1)
_VALIDITY = datetime.timedelta(days=1)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate and its private key, both PEM.

    Attributes:
        cert_pem: The leaf certificate (PEM).
        key_pem: Its unencrypted PKCS#8 private key (PEM).
        serial_number: The certificate's serial number (tells two certificates apart in tests).
    """

    cert_pem: bytes
    key_pem: bytes
    serial_number: int


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA that issues leaf certificates."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def create(cls, common_name: str = "creditrisk test CA") -> CertificateAuthority:
        """A new CA with a fresh P-256 key."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _VALID_BEFORE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate (PEM): what a peer trusts."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        common_name: str = "localhost",
        *,
        dns_names: Sequence[str] = ("localhost",),
        ip_addresses: Sequence[str] = ("127.0.0.1",),
    ) -> IssuedCertificate:
        """A leaf certificate signed by this CA, for ``dns_names`` and ``ip_addresses``.

        Returns:
            The certificate and its new key (usable for server and client authentication).
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(address)) for address in ip_addresses]
        serial = x509.random_serial_number()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - _VALID_BEFORE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return IssuedCertificate(certificate.public_bytes(serialization.Encoding.PEM), _key_pem(key), serial)


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (a reader never sees half).

    The new file has a new inode, so a reloader that compares ``(mtime, size, inode)`` notices it
    even within one tick of the file system's clock.
    """
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


@dataclass(frozen=True)
class TlsFiles:
    """The PEM files of one test set-up (paths; see :func:`write_tls_files`)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def replace_server(self, issued: IssuedCertificate) -> None:
        """Rotate the server certificate: write the key, then the certificate, each atomically."""
        write_atomically(self.server_key, issued.key_pem)
        write_atomically(self.server_cert, issued.cert_pem)


def write_tls_files(directory: Path, ca: CertificateAuthority | None = None) -> TlsFiles:
    """Write a CA, a server and a client certificate (with keys) into ``directory``.

    Args:
        directory: An existing directory (e.g. pytest's ``tmp_path``).
        ca: The issuing CA; a new one when None.

    Returns:
        The paths: ``ca.pem``, ``server.pem``, ``server-key.pem``, ``client.pem``, ``client-key.pem``.
    """
    ca = ca or CertificateAuthority.create()
    server, client = ca.issue("localhost"), ca.issue("test client", dns_names=("test-client",))
    files = TlsFiles(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
    )
    write_atomically(files.ca, ca.cert_pem)
    files.replace_server(server)
    write_atomically(files.client_key, client.key_pem)
    write_atomically(files.client_cert, client.cert_pem)
    return files
