"""Opaque page tokens and page sizes of the List RPCs (Google AIP-158, "Pagination").

A token carries the position a list resumes from: an offset (``int``, the SQL stores), the sequence
number of the last item returned (``int``, keyset paging) or the last name returned (``str``). It is
the unpadded URL-safe base64 of the compact JSON ``{"p": position}``, at most
:data:`MAX_TOKEN_CHARS` characters. Tokens are opaque, not secret and not signed: a client that
edits one into another valid position only lists from there, which it may do anyway.

Every token this module did not make (not base64, not that JSON, another spelling of it, a
position of the wrong type, a negative number or one over :data:`MAX_POSITION`, an empty
name, a name with no UTF-8 spelling, too long) raises
:class:`~creditrisk_kit.errors.InvalidArgument` on ``page_token`` (INVALID_ARGUMENT), naming the
token (shortened to :data:`SHOWN_CHARS` characters).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import overload

from .errors import InvalidArgument

MAX_TOKEN_CHARS = 1024
"""The longest token accepted (its position a name of up to ~750 UTF-8 bytes)."""
SHOWN_CHARS = 40
"""How much of a refused token the error message shows."""
MAX_POSITION = 2**63 - 1
"""The largest offset or sequence number: a signed 64-bit integer, what SQLite's and PostgreSQL's
``OFFSET`` and ``BIGINT`` take (a larger one would fail in the database driver, not as a client error)."""

_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+$")


def encode_page_token(position: int | str) -> str:
    """The opaque token of ``position``.

    Args:
        position: an offset or sequence number (``>= 0``) or a non-empty name.

    Raises:
        ValueError: a negative number, an empty name, a ``bool``, or a token over
            :data:`MAX_TOKEN_CHARS` (a programming error of the service, not of the client).
    """
    if isinstance(position, bool) or not isinstance(position, int | str):
        raise ValueError(f"a page position is an int or a str, got {type(position).__name__}")
    if isinstance(position, int) and not 0 <= position <= MAX_POSITION:
        raise ValueError(f"a page position must be >= 0 and <= {MAX_POSITION}, got {position}")
    if isinstance(position, str) and not position:
        raise ValueError("a page position name must not be empty")
    raw = json.dumps({"p": position}, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    token = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
    if len(token) > MAX_TOKEN_CHARS:
        raise ValueError(f"a page token would be {len(token)} characters, over {MAX_TOKEN_CHARS}")
    return token


@overload
def decode_page_token(token: str, kind: type[int], *, field: str = "page_token") -> int | None: ...
@overload
def decode_page_token(token: str, kind: type[str], *, field: str = "page_token") -> str | None: ...
def decode_page_token(
    token: str, kind: type[int] | type[str], *, field: str = "page_token"
) -> int | str | None:
    """The position of a token made by :func:`encode_page_token`; ``None`` for ``""`` (first page).

    Args:
        token: the request's page token.
        kind: ``int`` (offset / sequence number) or ``str`` (name).
        field: the request field named in the error.

    Raises:
        InvalidArgument: a token this service did not make (see the module docstring).
    """
    if not token:
        return None
    if len(token) > MAX_TOKEN_CHARS or not _BASE64URL.match(token):
        raise _bad(token, field)
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _bad(token, field) from None
    if not isinstance(payload, dict) or payload.keys() != {"p"}:
        raise _bad(token, field)
    position = payload["p"]
    if kind is int:
        if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position <= MAX_POSITION:
            raise _bad(token, field)
    elif not isinstance(position, str) or not position:
        raise _bad(token, field)
    try:
        canonical = encode_page_token(position)
    except ValueError:  # a name with a lone surrogate (\ud800) has no UTF-8 spelling
        raise _bad(token, field) from None
    if canonical != token:  # only the one spelling this module makes
        raise _bad(token, field)
    return position  # type: ignore[no-any-return]


def page_limit(size: int, *, default: int, maximum: int, field: str = "page_size") -> int:
    """The page size of a request: ``default`` for 0, at most ``maximum``.

    Raises:
        InvalidArgument: a negative ``size``.
    """
    if size < 0:
        raise InvalidArgument(field, f"must not be negative, got {size}")
    return min(size or default, maximum)


def offset_page(page_size: int, page_token: str, *, default: int, maximum: int) -> tuple[int, int]:
    """``(offset, limit)`` of an offset-paged list request.

    Raises:
        InvalidArgument: a negative page size or a foreign page token.
    """
    limit = page_limit(page_size, default=default, maximum=maximum)
    return decode_page_token(page_token, int) or 0, limit


def next_offset_token(offset: int, limit: int, more: bool) -> str:
    """The token of the page after the one at ``offset`` of ``limit`` items; ``""`` when none follows."""
    return encode_page_token(offset + limit) if more else ""


def _bad(token: str, field: str) -> InvalidArgument:
    shown = token if len(token) <= SHOWN_CHARS else f"{token[:SHOWN_CHARS]}... ({len(token)} characters)"
    return InvalidArgument(field, f"{shown!r} is not a page token of this service")
