"""API keys (incoming) and the service's own credential (outgoing), each from a value or a file
re-read when it changes (rotation without a restart).

An API-key mapping is JSON ``{"<key>": {"subject": "...", "roles": ["predict", ...]}}``. Keys are
kept only as SHA-256 digests; a presented key is hashed and compared with every known digest by
``hmac.compare_digest`` (constant time, all digests compared, no early exit), so neither the
timing nor a log line reveals a key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .principal import Principal, Role

_LOGGER = logging.getLogger(__name__)


class ApiKeyEntry(BaseModel):
    """Who an API key is: ``{"subject": "feature-service", "roles": ["read_features"]}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: str = Field(min_length=1)
    roles: tuple[Role, ...] = Field(min_length=1)


def parse_api_keys(text: str | bytes, where: str) -> dict[str, ApiKeyEntry]:
    """Parse an API-key mapping.

    Args:
        text: JSON ``{"<key>": {"subject": ..., "roles": [...]}}``.
        where: Named in errors (a setting or a file name).

    Raises:
        ValueError: Not JSON, not an object, an empty key or an invalid entry; entries are named
            by position and subject, never by key.
    """
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: not JSON ({type(exc).__name__})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: must be a JSON object {{key: {{subject, roles}}}}")
    entries: dict[str, ApiKeyEntry] = {}
    for position, (key, value) in enumerate(raw.items(), start=1):
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f"{where}: entry #{position} has an empty key")
        try:
            entries[key.strip()] = ApiKeyEntry.model_validate(value)
        except ValidationError as exc:
            reasons = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'entry'}: {error['msg']}"
                for error in exc.errors(include_input=False, include_url=False)
            )
            raise ValueError(f"{where}: entry #{position} is invalid ({reasons})") from None
    return entries


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class _WatchedFile:
    """A file's text, re-read when its (mtime, size, inode) changes; the last good parse is kept
    if a new version cannot be read or parsed (logged, without content)."""

    def __init__(self, path: Path, parse: Any) -> None:
        self.path = path
        self._parse = parse
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self.value: Any = None

    def load(self) -> Any:
        """Read and parse now. Raises OSError / ValueError (the start fails)."""
        stat = os.stat(self.path)
        self.value = self._parse(self.path.read_bytes())
        self._stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        return self.value

    def current(self) -> Any:
        """The parsed value, re-read first when the file changed."""
        try:
            stat = os.stat(self.path)
        except OSError as exc:
            _LOGGER.warning("cannot stat %s (%s); keeping the last version", self.path, type(exc).__name__)
            return self.value
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp == self._stamp:
            return self.value
        with self._lock:
            if stamp != self._stamp:
                try:
                    self.value = self._parse(self.path.read_bytes())
                    _LOGGER.info("reloaded %s", self.path)
                except (OSError, ValueError) as exc:
                    _LOGGER.error("cannot reload %s: %s; keeping the last version", self.path, exc)
                self._stamp = stamp
        return self.value


def _principals(entries: Mapping[str, ApiKeyEntry]) -> list[tuple[bytes, Principal]]:
    return [
        (_digest(key), Principal(entry.subject, frozenset(entry.roles))) for key, entry in entries.items()
    ]


class ApiKeys:
    """Known API keys: a fixed mapping (an environment variable) and / or a watched file.

    Args:
        entries: A fixed mapping (e.g. ``<PREFIX>_AUTH_API_KEYS``).
        file: A JSON file of the same shape, re-read when it changes (rotation).

    Raises:
        OSError / ValueError: When the file cannot be read or parsed at construction.
    """

    def __init__(self, entries: Mapping[str, ApiKeyEntry] | None = None, file: Path | None = None) -> None:
        self._static = _principals(entries or {})
        self._file = (
            _WatchedFile(file, lambda data: _principals(parse_api_keys(data, str(file)))) if file else None
        )
        if self._file is not None:
            self._file.load()

    def __len__(self) -> int:
        return len(self._static) + (len(self._file.current()) if self._file else 0)

    def lookup(self, presented: str) -> Principal | None:
        """The principal of ``presented``, or None. Every known digest is compared (constant time)."""
        digest = _digest(presented)
        found: Principal | None = None
        known = self._static + (self._file.current() if self._file else [])
        for candidate, principal in known:
            if hmac.compare_digest(candidate, digest):
                found = principal
        return found


class CredentialSource:
    """The bearer credential a service presents on the calls it makes (its own identity).

    Args:
        value: A fixed credential (``<PREFIX>_CREDENTIAL``).
        file: A file holding it (``<PREFIX>_CREDENTIAL_FILE``, e.g. a mounted Secret), re-read
            when it changes; surrounding whitespace stripped. Wins over ``value``.

    Calling the source returns the current credential, "" when there is none.
    """

    def __init__(self, value: str = "", file: Path | None = None) -> None:
        self._value = value.strip()
        self._file = _WatchedFile(file, lambda data: data.decode().strip()) if file else None
        if self._file is not None:
            self._file.load()

    def __call__(self) -> str:
        if self._file is not None:
            return str(self._file.current() or "")
        return self._value

    def __repr__(self) -> str:  # never the credential
        return f"CredentialSource(file={self._file.path if self._file else None}, set={bool(self())})"
