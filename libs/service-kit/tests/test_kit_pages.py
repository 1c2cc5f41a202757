"""Opaque page tokens: round trips, and every foreign token an INVALID_ARGUMENT naming it."""

from __future__ import annotations

import base64
import json

import grpc
import pytest
from creditrisk_kit import InvalidArgument
from creditrisk_kit.pages import (
    MAX_TOKEN_CHARS,
    decode_page_token,
    encode_page_token,
    next_offset_token,
    offset_page,
    page_limit,
)


def _raw(payload: object) -> str:
    """A token of any JSON payload, made the way the kit makes its own."""
    raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("position", [0, 1, 49, 2**53, 2**63 - 1])
def test_an_offset_round_trips(position: int) -> None:
    token = encode_page_token(position)
    assert decode_page_token(token, int) == position
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize("position", ["applicant_features", "a", "zürich/été:v2", "x" * 300, "名前"])
def test_a_name_round_trips(position: str) -> None:
    assert decode_page_token(encode_page_token(position), str) == position


def test_an_empty_token_is_the_first_page() -> None:
    assert decode_page_token("", int) is None
    assert decode_page_token("", str) is None
    assert offset_page(0, "", default=50, maximum=1000) == (0, 50)


def _refused(token: str, kind: type[int] | type[str] = int) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        decode_page_token(token, kind)
    error = caught.value
    assert error.grpc_status_code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.field == "page_token"
    assert "is not a page token of this service" in error.reason
    return error


@pytest.mark.parametrize(
    "token",
    [
        "garbage!",  # not the base64url alphabet
        "%%%",
        "abc=",  # padding is never part of a token
        "a",  # one character cannot be base64
        "Zm9v",  # base64 of "foo": not JSON
        base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),  # not UTF-8
        _raw([1]),  # JSON, not an object
        _raw({"o": 3}),  # another key (the stores' old format)
        _raw({"p": 3, "x": 1}),  # an extra key
        _raw({"p": -1}),  # a negative offset
        _raw({"p": 2**63}),  # over int64: SQLite's driver overflows, PostgreSQL's OFFSET is bigint
        _raw({"p": 10**20}),
        _raw({"p": True}),  # a bool is not an offset
        _raw({"p": 1.5}),
        _raw({"p": "3"}),  # a name where an offset is expected
        _raw({"p": None}),
        base64.urlsafe_b64encode(b'{"p": 3}').decode(),  # another spelling of a valid position
        _raw({"p": 3}) + "==",  # padded
        base64.urlsafe_b64encode(b"v1:7").decode(),  # the training-service's old format
    ],
)
def test_a_foreign_or_tampered_token_is_a_client_error_naming_it(token: str) -> None:
    error = _refused(token)
    assert repr(token) in str(error)


def test_every_single_character_edit_is_refused_or_another_valid_offset() -> None:
    # Tokens are not signed (module docstring): an edit either breaks the token (a client error,
    # never an unexpected exception) or names another offset >= 0, which the caller may list anyway.
    token = encode_page_token(50)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_!=. "
    outcomes = {"refused": 0, "other offset": 0}
    fields: set[str] = set()
    for i in range(len(token)):
        for replacement in alphabet.replace(token[i], ""):
            edited = token[:i] + replacement + token[i + 1 :]
            try:
                position = decode_page_token(edited, int)
            except InvalidArgument as exc:
                fields.add(exc.field)
                outcomes["refused"] += 1
            else:
                assert isinstance(position, int)
                assert position >= 0
                assert position != 50
                outcomes["other offset"] += 1
    assert fields == {"page_token"}
    assert outcomes["refused"] > 10 * outcomes["other offset"] > 0
    _refused(token[:-2])  # cut short: the JSON no longer closes
    _refused(token + "AAAA")  # appended bytes: not JSON any more


def test_a_name_token_wants_a_non_empty_name() -> None:
    _refused(_raw({"p": ""}), str)
    _refused(_raw({"p": 7}), str)
    assert decode_page_token(_raw({"p": "x"}), str) == "x"


def test_a_name_with_a_lone_surrogate_is_refused_not_an_unexpected_error() -> None:
    # JSON may escape a lone surrogate; the name has no UTF-8 spelling (was a UnicodeEncodeError).
    token = base64.urlsafe_b64encode(b'{"p":"\\ud800"}').decode().rstrip("=")
    _refused(token, str)


def test_an_oversized_token_is_refused_and_shown_shortened() -> None:
    token = encode_page_token("n" * 700)
    assert len(token) <= MAX_TOKEN_CHARS
    huge = _raw({"p": "n" * 5000})
    error = _refused(huge, str)
    assert f"({len(huge)} characters)" in error.reason
    assert huge not in str(error)  # the message stays short
    assert len(str(error)) < 200


def test_the_service_cannot_make_a_token_it_would_refuse() -> None:
    for bad in (-1, 2**63, "", True, 1.5):
        with pytest.raises(ValueError, match="page position"):
            encode_page_token(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="over 1024"):
        encode_page_token("n" * 1000)


def test_page_limits_and_offset_paging() -> None:
    assert page_limit(0, default=50, maximum=1000) == 50
    assert page_limit(7, default=50, maximum=1000) == 7
    assert page_limit(5000, default=50, maximum=1000) == 1000
    with pytest.raises(InvalidArgument, match="'page_size': must not be negative, got -1"):
        page_limit(-1, default=50, maximum=1000)
    offset, limit = offset_page(20, "", default=50, maximum=100)
    token = next_offset_token(offset, limit, more=True)
    assert offset_page(20, token, default=50, maximum=100) == (20, 20)
    assert next_offset_token(20, 20, more=False) == ""
    with pytest.raises(InvalidArgument, match="'page_token'"):
        offset_page(20, "garbage!", default=50, maximum=100)
