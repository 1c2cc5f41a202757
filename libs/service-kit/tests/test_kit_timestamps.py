"""Client timestamps: each value read on its own, naive ones UTC or refused, errors naming the row."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
import pytest
from creditrisk_kit import InvalidArgument, from_proto_timestamp, parse_timestamp, parse_timestamps
from creditrisk_kit.arrow import decode_chunk, encode_chunks, utc_timestamps
from creditrisk_kit.settings import ServiceSettings
from creditrisk_kit.timestamps import MAX_TIME, MIN_TIME
from google.protobuf.timestamp_pb2 import Timestamp

ISSUE_16 = ["2024-03-01T09:30:00-03:00", "2024-03-01 11:00:00"]
EXPECTED_16 = [datetime(2024, 3, 1, 12, 30, tzinfo=UTC), datetime(2024, 3, 1, 11, 0, tzinfo=UTC)]


def test_a_naive_value_after_one_with_an_offset_keeps_no_offset() -> None:
    # pandas.to_datetime(..., utc=True, format="ISO8601") reads the second as 14:00Z.
    assert parse_timestamps(ISSUE_16, field="t") == EXPECTED_16
    assert utc_timestamps(pa.array(ISSUE_16), field="t").to_pylist() == EXPECTED_16
    assert (
        utc_timestamps(pa.chunked_array([ISSUE_16[:1], ISSUE_16[1:]]), field="t").to_pylist() == EXPECTED_16
    )
    assert utc_timestamps(pa.array(ISSUE_16, pa.large_string()), field="t").to_pylist() == EXPECTED_16


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01T12:00:00Z", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("2024-03-01T12:00:00z", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("2024-03-01t12:00:00Z", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("2024-03-01T12:00:00+00:00", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("2024-03-01T14:00:00+0200", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("2024-03-01T00:30:00+05:30", datetime(2024, 2, 29, 19, tzinfo=UTC)),
        ("2024-03-01 12:00:00.123456789", datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2024-03-01", datetime(2024, 3, 1, tzinfo=UTC)),
        ("  2024-03-01T12:00:00Z ", datetime(2024, 3, 1, 12, tzinfo=UTC)),
    ],
)
def test_iso_8601_forms(text: str, expected: datetime) -> None:
    assert parse_timestamp(text, field="t") == expected
    assert utc_timestamps(pa.array([text]), field="t").to_pylist() == [expected]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("yesterday", "not an ISO 8601"),
        ("", "empty"),
        ("2024-02-30T00:00:00Z", "not a valid date"),
        ("2024-03-01T12:00:00+25:00", "not an ISO 8601"),
        ("0001-01-01T00:00:00+01:00", "outside the accepted range"),
        ("0000-01-01T00:00:00Z", "not a valid date"),
        ("1699-12-31T23:59:59Z", "outside the accepted range"),
        ("2262-01-01T00:00:00Z", "outside the accepted range"),
        # fromisoformat alone takes any separator: midnight at +14:00 would become 14:00 naive
        ("2024-03-01+14:00", "not an ISO 8601"),
        ("2024-03-01x09:30:00Z", "not an ISO 8601"),
        ("2024-03-01T09:30:00+05:99", "not an ISO 8601"),
        ("2024-03-01T09:30:00+24:00", "not an ISO 8601"),
        ("2024-03-01T09:30:00+05:30:00", "not an ISO 8601"),
        ("2024-03-01T12:30:00Z\x00+05:00", "not an ISO 8601"),
        ("2024-W09-5", "not an ISO 8601"),
        ("\u0662\u0660\u0662\u0664-03-01", "not an ISO 8601"),
        ("2024-03-01T23:59:60Z", "not a valid date or time"),
        ("2023-02-29", "not a valid date or time"),
        (1709294400, "expected an ISO 8601 date-time string"),
        (None, "expected an ISO 8601 date-time string"),
    ],
)
def test_invalid_values_name_the_field(value: object, reason: str) -> None:
    with pytest.raises(InvalidArgument, match=reason) as info:
        parse_timestamp(value, field="entity.event_timestamp")
    assert info.value.field == "entity.event_timestamp"
    assert str(value) not in info.value.reason or value in ("", None)  # no value echoed


def test_refuse_names_every_naive_row_and_utc_reads_them_as_utc() -> None:
    values = ["2024-03-01T09:30:00-03:00", "2024-03-01 11:00:00", "2024-03-01T11:00:00Z", "2024-03-02"]
    with pytest.raises(InvalidArgument, match="no UTC offset") as info:
        parse_timestamps(values, field="rows.t", naive="refuse")
    assert info.value.fields() == ("rows.t[1]", "rows.t[3]")
    with pytest.raises(InvalidArgument) as info:
        utc_timestamps(pa.array(values), field="rows.t", naive="refuse")
    assert info.value.fields() == ("rows.t[1]", "rows.t[3]")
    assert parse_timestamps(values, field="rows.t")[1] == datetime(2024, 3, 1, 11, tzinfo=UTC)
    with pytest.raises(ValueError, match="naive must be one of"):
        parse_timestamps(values, field="rows.t", naive="local")  # type: ignore[arg-type]


def test_bad_rows_are_named_up_to_the_cap_and_counted() -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_timestamps(["x"] * 120, field="t")
    assert info.value.fields() == tuple(f"t[{i}]" for i in range(50))
    assert "(120 invalid rows in all, the first 50 named)" in info.value.reason
    with pytest.raises(InvalidArgument) as info:
        utc_timestamps(pa.array(["2024-03-01T12:00:00Z"] * 10 + ["x"] * 3), field="t")
    assert info.value.fields() == ("t[10]", "t[11]", "t[12]")
    assert "in all" not in info.value.reason


def test_out_of_range_instants_are_refused_on_every_path() -> None:
    # Arrow's cast alone takes year 0 and instants pushed out of years 1-9999 by their offset;
    # Feast then failed on them (INTERNAL).
    for bad in ["0000-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]:
        with pytest.raises(InvalidArgument) as info:
            utc_timestamps(pa.array(["2024-03-01T12:00:00Z", bad]), field="t")
        assert info.value.field == "t[1]"
    for column in (
        pa.array([0, 2**62], pa.timestamp("s")),
        pa.array([0, -(2**62)], pa.timestamp("ms", tz="UTC")),
        pa.array([0, 10**18], pa.timestamp("us", tz="+01:00")),
    ):
        with pytest.raises(InvalidArgument, match="outside the accepted range") as info:
            utc_timestamps(column, field="t")
        assert info.value.field == "t[1]"


def test_other_string_encodings_are_read_alike() -> None:
    array = pa.array(ISSUE_16)
    assert utc_timestamps(array.dictionary_encode(), field="t").to_pylist() == EXPECTED_16
    assert utc_timestamps(array.cast(pa.string_view()), field="t").to_pylist() == EXPECTED_16
    with pytest.raises(ValueError, match="naive must be one of"):
        utc_timestamps(array, field="t", naive="bogus")  # type: ignore[arg-type]


def test_timestamp_columns_convert_to_utc_and_naive_ones_follow_the_policy() -> None:
    plus2 = timezone(timedelta(hours=2))
    aware = pa.array([datetime(2024, 3, 1, 14, tzinfo=plus2)], pa.timestamp("ns", tz="+02:00"))
    out = utc_timestamps(aware, field="t")
    assert out.type == pa.timestamp("ns", tz="UTC")
    assert out.to_pylist()[0] == datetime(2024, 3, 1, 12, tzinfo=UTC)
    naive = pa.array([datetime(2024, 3, 1, 12)], pa.timestamp("us"))
    assert utc_timestamps(naive, field="t").to_pylist() == [datetime(2024, 3, 1, 12, tzinfo=UTC)]
    with pytest.raises(InvalidArgument, match="without a time zone"):
        utc_timestamps(naive, field="t", naive="refuse")
    with pytest.raises(InvalidArgument, match=r"expected timestamps or ISO 8601 strings, got int64"):
        utc_timestamps(pa.array([1]), field="t")
    with pytest.raises(InvalidArgument, match="null timestamp") as info:
        utc_timestamps(pa.array(["2024-03-01T12:00:00Z", None]), field="t")
    assert info.value.field == "t[1]"


def _random_form(rng: random.Random) -> tuple[str, datetime]:
    """A random ISO 8601 string and the UTC instant it names (naive = UTC)."""
    base = datetime(1971, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(0, 2_000_000_000))
    micros = rng.choice([0, rng.randrange(1_000_000)])
    instant = base.replace(microsecond=micros)
    sep = rng.choice(["T", " "])
    fraction = "" if micros == 0 and rng.random() < 0.5 else f".{micros:06d}"
    kind = rng.choice(["naive", "Z", "offset", "offset-compact"])
    if kind == "naive":
        return instant.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + fraction, instant
    if kind == "Z":
        return instant.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + fraction + "Z", instant
    minutes = rng.choice([-600, -210, -180, 0, 60, 120, 330, 345, 840])
    local = instant.astimezone(timezone(timedelta(minutes=minutes)))
    sign = "-" if minutes < 0 else "+"
    hh, mm = divmod(abs(minutes), 60)
    offset = f"{sign}{hh:02d}:{mm:02d}" if kind == "offset" else f"{sign}{hh:02d}{mm:02d}"
    return local.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + fraction + offset, instant


@pytest.mark.parametrize("seed", range(5))
def test_arrow_path_and_per_value_path_agree_with_the_truth(seed: int) -> None:
    rng = random.Random(seed)
    pairs = [_random_form(rng) for _ in range(400)]
    texts, truth = [t for t, _ in pairs], [i for _, i in pairs]
    assert parse_timestamps(texts, field="t") == truth
    assert utc_timestamps(pa.array(texts), field="t").to_pylist() == truth
    # every value with an offset: Arrow's cast alone; every naive value: the naive cast
    aware = [(t, i) for t, i in pairs if not t[-1].isdigit() or t[-5] in "+-" or t[-6] in "+-"]
    assert utc_timestamps(pa.array([t for t, _ in aware]), field="t").to_pylist() == [i for _, i in aware]


def test_the_policy_is_a_setting_of_every_service(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServiceSettings().naive_timestamps == "utc"
    monkeypatch.setenv("SERVICE_NAIVE_TIMESTAMPS", "refuse")
    assert ServiceSettings().naive_timestamps == "refuse"
    monkeypatch.setenv("SERVICE_NAIVE_TIMESTAMPS", "local")
    with pytest.raises(ValueError, match="naive_timestamps"):
        ServiceSettings()


def _raw_strings(*values: bytes) -> pa.Array:
    """A string array holding exactly these bytes (Arrow checks no UTF-8 when built from buffers)."""
    offsets, at = [0], 0
    for value in values:
        at += len(value)
        offsets.append(at)
    buffers = [None, pa.py_buffer(pa.array(offsets, pa.int32()).buffers()[1]), pa.py_buffer(b"".join(values))]
    return pa.Array.from_buffers(pa.string(), len(values), buffers)


def test_invalid_utf8_is_a_client_error() -> None:
    # An IPC stream from a client is not checked for UTF-8: the per-value path's to_pylist() raised
    # UnicodeDecodeError (INTERNAL).
    array = _raw_strings(b"2024-03-01T00:00:00Z", b"2024-03-01T00:00:00\xffZ")
    with pytest.raises(InvalidArgument, match="not valid UTF-8") as info:
        utc_timestamps(array, field="t")
    assert info.value.field == "t"
    payload = next(encode_chunks(pa.table({"t": array})))
    with pytest.raises(InvalidArgument, match="not an Arrow IPC stream"):
        decode_chunk(payload.payload)


@pytest.mark.parametrize(
    ("seconds", "nanos", "field"),
    [
        (0, -1, "event_time.nanos"),
        (0, 1_000_000_000, "event_time.nanos"),
        (-62_135_596_801, 0, "event_time"),  # before 0001-01-01, ToDatetime raises
        (253_402_300_800, 0, "event_time"),  # after 9999-12-31
        (-9_223_372_036, 0, "event_time"),  # a valid Timestamp, outside pandas' datetime64[ns] range
        (int(MAX_TIME.timestamp()), 0, "event_time"),  # the first refused instant
    ],
)
def test_proto_timestamp_out_of_range_names_the_field(seconds: int, nanos: int, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        from_proto_timestamp(Timestamp(seconds=seconds, nanos=nanos), field="event_time")
    assert caught.value.field == field


def test_proto_timestamp_in_range_is_aware_utc() -> None:
    value = from_proto_timestamp(Timestamp(seconds=1_709_285_400, nanos=500_000_000), field="t")
    assert value == datetime(2024, 3, 1, 9, 30, 0, 500_000, tzinfo=UTC)
    assert from_proto_timestamp(Timestamp(seconds=int(MIN_TIME.timestamp())), field="t") == MIN_TIME
