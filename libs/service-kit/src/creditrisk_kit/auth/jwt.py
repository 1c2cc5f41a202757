"""JWT bearer tokens verified with PyJWT against a JWKS from a file (re-read when it changes) or
a URL (:class:`jwt.PyJWKClient`: the key set cached, fetched again when a token names an unknown
``kid``, i.e. after a rotation).

Checks: the signature with the key the token's ``kid`` names (a key set with one key serves a
token without ``kid``); the header's ``alg`` among the configured algorithms (``none`` and the
HMAC ``HS*`` family are refused by the settings, symmetric ``oct`` keys are dropped from a key
set, so a public key can never be used as an HMAC secret); ``exp`` (required), ``nbf`` and
``iat`` with a leeway; ``iss`` and ``aud`` when configured; ``sub`` required (the subject). Roles
come from a claim (default ``roles``; a dotted path such as ``realm_access.roles`` reaches into
an object), a list of names or one space-separated string; names that are not a :class:`Role`
are ignored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
from jwt import PyJWK, PyJWKClient

from ..errors import Unauthenticated, Unavailable
from .keys import _WatchedFile
from .principal import Principal, Role

_LOGGER = logging.getLogger(__name__)

DEFAULT_ALGORITHMS = ("RS256", "ES256", "EdDSA")
"""Asymmetric algorithms accepted by default (RFC 7518 RS256 / ES256, RFC 8037 EdDSA)."""

DEFAULT_LEEWAY_S = 30.0
"""Clock skew tolerated on ``exp`` / ``nbf`` / ``iat``, in seconds (our choice: well above NTP's
usual skew, far below any token lifetime)."""

_REFUSED = {
    jwt.ExpiredSignatureError: "bearer token expired",
    jwt.ImmatureSignatureError: "bearer token not yet valid",
    jwt.InvalidAudienceError: "bearer token has the wrong audience",
    jwt.InvalidIssuerError: "bearer token has the wrong issuer",
    jwt.InvalidSignatureError: "bearer token has a bad signature",
    jwt.InvalidAlgorithmError: "bearer token algorithm not allowed",
}


def parse_jwks(data: str | bytes, where: str = "JWKS") -> dict[str, PyJWK]:
    """``{kid: key}`` of a JWKS document (RFC 7517), symmetric keys dropped.

    Raises:
        ValueError: Not a JWKS, or no usable key.
    """
    try:
        document = json.loads(data)
        keys = [key for key in document["keys"] if isinstance(key, dict) and key.get("kty") != "oct"]
        parsed = {str(key.get("kid", "")): PyJWK(key) for key in keys}
    except (ValueError, KeyError, TypeError, jwt.PyJWKError, jwt.InvalidKeyError) as exc:
        raise ValueError(f"{where}: not a usable JWKS ({type(exc).__name__})") from None
    if not parsed:
        raise ValueError(f"{where}: no asymmetric key")
    return parsed


def roles_from_claims(claims: dict[str, Any], claim: str) -> frozenset[Role]:
    """The known roles in ``claims[claim]`` (dotted path; a list or a space-separated string)."""
    value: Any = claims
    for part in claim.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    names = value.split() if isinstance(value, str) else value if isinstance(value, list) else []
    known = {role.value for role in Role}
    return frozenset(Role(name) for name in names if isinstance(name, str) and name in known)


class JwtVerifier:
    """Verifies JWT bearer tokens (see the module docstring).

    Args:
        jwks_file: A JWKS file, re-read when it changes.
        jwks_url: A JWKS URL (used when no file is given); fetched lazily, cached 5 minutes.
        issuer / audience: Required ``iss`` / ``aud`` (None: not checked).
        algorithms: Accepted ``alg`` values.
        roles_claim: Claim holding the roles.
        leeway_s: Clock skew tolerated.

    Raises:
        OSError / ValueError: When the JWKS file cannot be read or parsed at construction.
    """

    def __init__(
        self,
        *,
        jwks_file: Path | None = None,
        jwks_url: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        roles_claim: str = "roles",
        leeway_s: float = DEFAULT_LEEWAY_S,
    ) -> None:
        if not jwks_file and not jwks_url:
            raise ValueError("a JWKS file or URL is needed")
        self._file = (
            _WatchedFile(jwks_file, lambda data: parse_jwks(data, str(jwks_file))) if jwks_file else None
        )
        if self._file is not None:
            self._file.load()
        self._client = (
            PyJWKClient(jwks_url, cache_jwk_set=True, lifespan=300, timeout=5)
            if jwks_url and not jwks_file
            else None
        )
        self.issuer = issuer
        self.audience = audience
        self.algorithms = list(algorithms)
        self.roles_claim = roles_claim
        self.leeway_s = leeway_s

    @property
    def fetches(self) -> bool:
        """True when verifying may fetch the JWKS over the network (run it off the event loop)."""
        return self._client is not None

    def _key(self, token: str, header: dict[str, Any]) -> Any:
        kid = header.get("kid")
        if self._client is not None:
            try:
                return self._client.get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientConnectionError:
                raise Unavailable("the JWKS to verify bearer tokens is unavailable") from None
            except jwt.PyJWKClientError:
                raise Unauthenticated("no signing key matches the bearer token's key id") from None
        assert self._file is not None
        keys: dict[str, PyJWK] = self._file.current()
        if kid is None and len(keys) == 1:
            return next(iter(keys.values())).key
        found = keys.get(str(kid)) if kid is not None else None
        if found is None:
            raise Unauthenticated("no signing key matches the bearer token's key id")
        return found.key

    def verify(self, token: str) -> Principal:
        """The principal of a valid token.

        Raises:
            Unauthenticated: malformed, unknown key, bad signature, expired, not yet valid, wrong
                issuer / audience, algorithm not allowed, no ``sub`` (the token is never echoed).
            Unavailable: The JWKS URL cannot be fetched.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise Unauthenticated("malformed bearer token") from None
        if header.get("alg") not in self.algorithms:
            raise Unauthenticated("bearer token algorithm not allowed")
        key = self._key(token, header)
        options: dict[str, Any] = {"require": ["exp", "sub"], "verify_aud": self.audience is not None}
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options=options,  # type: ignore[arg-type]
            )
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"bearer token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidTokenError as exc:
            for kind, message in _REFUSED.items():
                if isinstance(exc, kind):
                    raise Unauthenticated(message) from None
            raise Unauthenticated("malformed bearer token") from None
        except (jwt.InvalidKeyError, jwt.PyJWKError, ValueError, TypeError):
            raise Unauthenticated("bearer token does not fit the signing key") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated("bearer token lacks the 'sub' claim")
        return Principal(subject, roles_from_claims(claims, self.roles_claim), via="jwt")
