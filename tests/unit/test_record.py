"""The per-stream record codec and its compare-and-set token."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.state.record import (
    HEADER_SIZE,
    NO_TIMESTAMP,
    TOKEN_SIZE,
    TOKEN_SLICE,
    RecordError,
    StreamRecord,
    new_incarnation,
    token_of,
)

FINGERPRINT = bytes(range(32)).hex()


def make(**changes: object) -> StreamRecord:
    fields: dict[str, object] = {
        "model": "demo-lstm",
        "version": 2,
        "fingerprint": FINGERPRINT,
        "incarnation": 0x0102030405060708,
        "seq": 41,
        "last_ts": 1_700_000_123.5,
        "state": np.arange(6, dtype=np.float32) - 2.5,
        "forecast": None,
    }
    fields.update(changes)
    return StreamRecord(**fields)  # type: ignore[arg-type]


def assert_same(a: StreamRecord, b: StreamRecord) -> None:
    assert (a.model, a.version, a.fingerprint) == (b.model, b.version, b.fingerprint)
    assert (a.incarnation, a.seq) == (b.incarnation, b.seq)
    assert a.last_ts == b.last_ts
    assert a.state.dtype == b.state.dtype == np.float32
    np.testing.assert_array_equal(a.state, b.state)
    if a.forecast is None:
        assert b.forecast is None
    else:
        assert b.forecast is not None
        assert b.forecast.dtype == np.float32
        np.testing.assert_array_equal(a.forecast, b.forecast)


# --- Round trip -------------------------------------------------------------------------------


def test_round_trip_without_forecast() -> None:
    original = make()
    data = original.encode()
    assert len(data) == HEADER_SIZE + len("demo-lstm") + 4 * 6
    assert_same(original, StreamRecord.decode(data))


def test_round_trip_with_forecast() -> None:
    forecast = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    original = make(forecast=forecast)
    back = StreamRecord.decode(original.encode())
    assert_same(original, back)
    assert back.forecast is not None
    assert back.forecast.shape == (4, 3)


def test_a_new_stream_has_no_timestamp_and_survives_the_codec() -> None:
    back = StreamRecord.decode(make(seq=0, last_ts=NO_TIMESTAMP).encode())
    assert back.last_ts == NO_TIMESTAMP
    assert back.seq == 0


def test_decoded_arrays_do_not_alias_the_bytes() -> None:
    """A decoded state row is writable and independent of the buffer it came from."""
    data = bytearray(make().encode())
    back = StreamRecord.decode(bytes(data))
    back.state[0] = 99.0
    assert StreamRecord.decode(bytes(data)).state[0] == -2.5


@given(
    model=st.text(min_size=0, max_size=40),
    version=st.integers(0, 2**32 - 1),
    incarnation=st.integers(0, 2**64 - 1),
    seq=st.integers(0, 2**64 - 1),
    last_ts=st.floats(allow_nan=False),
    state=st.lists(st.floats(width=32), max_size=64),
    forecast_shape=st.none() | st.tuples(st.integers(1, 6), st.integers(1, 4)),
)
def test_round_trip_is_byte_exact_for_any_record(
    model: str,
    version: int,
    incarnation: int,
    seq: int,
    last_ts: float,
    state: list[float],
    forecast_shape: tuple[int, int] | None,
) -> None:
    forecast = (
        None
        if forecast_shape is None
        else np.arange(np.prod(forecast_shape), dtype=np.float32).reshape(forecast_shape)
    )
    original = make(
        model=model,
        version=version,
        incarnation=incarnation,
        seq=seq,
        last_ts=last_ts,
        state=np.asarray(state, dtype=np.float32),
        forecast=forecast,
    )
    data = original.encode()
    back = StreamRecord.decode(data)
    assert back.encode() == data
    assert back.model == model
    assert (back.incarnation, back.seq) == (incarnation, seq)
    np.testing.assert_array_equal(back.state, original.state)  # NaN equals NaN here


# --- Token ------------------------------------------------------------------------------------


def test_token_is_bytes_4_to_20_of_the_encoding() -> None:
    record = make()
    data = record.encode()
    assert (TOKEN_SLICE.start, TOKEN_SLICE.stop) == (4, 20)
    assert len(record.token) == TOKEN_SIZE == 16
    assert record.token == data[4:20] == token_of(data)
    assert record.token == struct.pack("<QQ", record.incarnation, record.seq)


def test_token_ignores_the_payload_but_not_seq_or_incarnation() -> None:
    base = make()
    assert make(state=np.zeros(6, np.float32), last_ts=5.0, model="x").token == base.token
    assert make(seq=base.seq + 1).token != base.token
    assert make(incarnation=base.incarnation + 1).token != base.token


def test_incarnations_are_random_64_bit_ids() -> None:
    drawn = {new_incarnation() for _ in range(64)}
    assert len(drawn) == 64
    assert all(0 <= value < 2**64 for value in drawn)


# --- Bad bytes --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 4, 20, HEADER_SIZE - 1])
def test_bytes_shorter_than_a_header_are_refused(size: int) -> None:
    with pytest.raises(RecordError, match="shorter than its header"):
        StreamRecord.decode(make().encode()[:size])


@pytest.mark.parametrize(
    "foreign",
    [
        b'{"model": "demo-lstm", "seq": 41, "state": [0.0, 1.0, 2.0]}' + b" " * 40,
        b"\x80\x04\x95" + bytes(100),  # a pickle
        bytes(200),
    ],
    ids=["json", "pickle", "zeros"],
)
def test_foreign_bytes_are_refused(foreign: bytes) -> None:
    with pytest.raises(RecordError, match="magic"):
        StreamRecord.decode(foreign)


def test_another_format_version_is_refused() -> None:
    data = bytearray(make().encode())
    data[2] = 3  # 2 is the current format, 1 the one before it (both read)
    with pytest.raises(RecordError, match="format 3"):
        StreamRecord.decode(bytes(data))


@pytest.mark.parametrize("cut", [1, 4, 9])
def test_truncated_records_are_refused(cut: int) -> None:
    data = make(forecast=np.ones((2, 3), np.float32)).encode()
    with pytest.raises(RecordError, match="header says"):
        StreamRecord.decode(data[:-cut])


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(RecordError, match="header says"):
        StreamRecord.decode(make().encode() + b"\x00")


def test_a_forecast_flag_without_a_forecast_is_refused() -> None:
    data = bytearray(make().encode())
    data[3] |= 0x01
    struct.pack_into("<HH", data, 66, 2, 3)
    with pytest.raises(RecordError, match="header says"):
        StreamRecord.decode(bytes(data))


def test_a_corrupt_model_name_is_refused() -> None:
    data = bytearray(make().encode())
    data[HEADER_SIZE] = 0xFF  # not valid UTF-8
    with pytest.raises(RecordError, match="UTF-8"):
        StreamRecord.decode(bytes(data))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"forecast": np.ones(5, np.float32)}, "forecast"),
        ({"fingerprint": "ab" * 16}, "sha256"),
        ({"fingerprint": "not hex"}, "hex"),
        ({"seq": -1}, "out of range"),
        ({"model": "m" * 70_000}, "out of range"),
    ],
    ids=["1d-forecast", "short-fingerprint", "bad-fingerprint", "negative-seq", "long-name"],
)
def test_records_that_cannot_be_encoded_faithfully_are_refused(
    changes: dict[str, object], match: str
) -> None:
    with pytest.raises(RecordError, match=match):
        make(**changes).encode()


def test_history_round_trips_after_the_forecast() -> None:
    record = StreamRecord(
        model="m",
        version=2,
        fingerprint="ab" * 32,
        incarnation=1,
        seq=3,
        last_ts=30.0,
        state=np.arange(4, dtype=np.float32),
        forecast=np.ones((2, 3), dtype=np.float32),
        history_ts=np.array([10.0, 20.0, 30.0]),
        history_values=np.arange(6, dtype=np.float32).reshape(3, 2),
    )
    data = record.encode()
    back = StreamRecord.decode(data)
    assert back.history_ts is not None
    assert back.history_values is not None
    np.testing.assert_array_equal(back.history_ts, record.history_ts)
    np.testing.assert_array_equal(back.history_values, record.history_values)
    np.testing.assert_array_equal(back.forecast, record.forecast)
    assert back.encode() == data
    with pytest.raises(RecordError):
        StreamRecord.decode(data[:-1])
