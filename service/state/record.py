"""The binary record kept per stream (its key is ``service.state.keys.stream_key``).

Layout (little-endian)::

    offset  size  field
    0       2     magic b"FS"
    2       1     format version (1)
    3       1     flags (bit 0: a forecast follows the state row)
    4       8     incarnation: random id drawn when the stream is (re)created
    12      8     seq: observations applied since creation
    20      8     last timestamp, float64 epoch seconds (-inf before the first)
    28      32    model fingerprint, sha256 of the ONNX file
    60      4     model version
    64      2     model name length N
    66      2     horizon H of the stored forecast (0 without)
    68      2     quantile count Q of the stored forecast (0 without)
    70      4     state size S
    74      8     write nonce: random per record built, so two writers never produce
                  byte-identical records (see ``StateStore.compare_and_set``)
    82      2     history rows R (the stream's last raw observations, oldest first)
    84      2     history width F (features per row; 0 without history)
    86      N     model name, UTF-8
    86+N    4*S   state row, float32
    ...     4*H*Q latest forecast, float32 (only with flag bit 0)
    ...     8*R   history timestamps, float64
    ...     4*R*F history values, float32

The history lets a stream be rebuilt under new model weights (replayed from the initial
state) and gaps be filled with the last reading's values (gap policies forward and median).

Bytes 4..20 (incarnation + seq) are the compare-and-set token: a writer succeeds only if
the stored record still carries the token it read. The incarnation makes a stream that was
deleted and re-created with the same seq a different stream for that check.
"""

from __future__ import annotations

import functools
import math
import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

MAGIC = b"FS"
FORMAT_VERSION = 1
FLAG_FORECAST = 0x01
TOKEN_SLICE = slice(4, 20)
TOKEN_SIZE = 16

_HEADER = struct.Struct("<2sBBQQd32sIHHHIQHH")
HEADER_SIZE = _HEADER.size  # 86

FloatArray = npt.NDArray[np.float32]
TimeArray = npt.NDArray[np.float64]


class RecordError(ValueError):
    """Bytes that are not a stream record of a format this code reads."""


def new_incarnation() -> int:
    return secrets.randbits(64)


@dataclass(frozen=True, slots=True, eq=False)
class StreamRecord:
    """What the store keeps for one stream."""

    model: str
    version: int
    fingerprint: str
    incarnation: int
    seq: int
    last_ts: float
    state: FloatArray
    forecast: FloatArray | None = field(default=None)
    #: Drawn afresh for every record built (decoding keeps it), so the same update computed
    #: by two replicas is still two different writes.
    nonce: int = field(default_factory=lambda: secrets.randbits(64))
    #: The last raw observations, oldest first: timestamps [R] and values [R, F].
    history_ts: TimeArray | None = None
    history_values: FloatArray | None = None

    @property
    def token(self) -> bytes:
        """The compare-and-set token of this record (bytes 4..20 of its encoding)."""
        return struct.pack("<QQ", self.incarnation, self.seq)

    def encode(self) -> bytes:
        name = self.model.encode("utf-8")
        state = np.ascontiguousarray(self.state, dtype="<f4").reshape(-1)
        if self.forecast is not None:
            forecast = np.ascontiguousarray(self.forecast, dtype="<f4")
            if forecast.ndim != 2:
                raise RecordError("forecast must be [horizon, quantiles]")
            horizon, n_quantiles = forecast.shape
            flags, tail = FLAG_FORECAST, forecast.tobytes()
        else:
            horizon = n_quantiles = 0
            flags, tail = 0, b""
        if self.history_ts is not None and self.history_values is not None:
            hist_ts = np.ascontiguousarray(self.history_ts, dtype="<f8").reshape(-1)
            hist_values = np.ascontiguousarray(self.history_values, dtype="<f4")
            if hist_values.ndim != 2 or hist_values.shape[0] != hist_ts.size:
                raise RecordError("history values must be [rows, features], one row per time")
            rows, width = hist_values.shape
            tail += hist_ts.tobytes() + hist_values.tobytes()
        else:
            rows = width = 0
        try:
            fingerprint = bytes.fromhex(self.fingerprint)
        except ValueError as exc:
            raise RecordError(f"fingerprint {self.fingerprint!r} is not hex") from exc
        if len(fingerprint) != 32:
            # struct would pad or cut it silently, and the record would name another model.
            raise RecordError(f"fingerprint must be a sha256 (32 bytes), got {len(fingerprint)}")
        try:
            header = _HEADER.pack(
                MAGIC,
                FORMAT_VERSION,
                flags,
                self.incarnation,
                self.seq,
                self.last_ts,
                fingerprint,
                self.version,
                len(name),
                horizon,
                n_quantiles,
                state.size,
                self.nonce,
                rows,
                width,
            )
        except struct.error as exc:
            raise RecordError(f"record field out of range: {exc}") from exc
        return b"".join((header, name, state.tobytes(), tail))

    @classmethod
    def decode(cls, data: bytes) -> StreamRecord:
        if len(data) < HEADER_SIZE:
            raise RecordError(f"record of {len(data)} bytes is shorter than its header")
        (
            magic,
            fmt,
            flags,
            incarnation,
            seq,
            last_ts,
            fingerprint,
            version,
            name_len,
            horizon,
            n_quantiles,
            state_size,
            nonce,
            rows,
            width,
        ) = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise RecordError("not a stream record (bad magic)")
        if fmt != FORMAT_VERSION:
            raise RecordError(f"stream record format {fmt} is not supported")
        has_forecast = bool(flags & FLAG_FORECAST)
        n_forecast = horizon * n_quantiles if has_forecast else 0
        expected = (
            HEADER_SIZE + name_len + 4 * state_size + 4 * n_forecast + 8 * rows + 4 * rows * width
        )
        if len(data) != expected:
            raise RecordError(f"record is {len(data)} bytes, its header says {expected}")
        offset = HEADER_SIZE
        try:
            name = data[offset : offset + name_len].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordError("stream record model name is not UTF-8") from exc
        offset += name_len
        state = np.frombuffer(data, dtype="<f4", count=state_size, offset=offset).astype(np.float32)
        offset += 4 * state_size
        forecast = None
        if has_forecast:
            forecast = (
                np.frombuffer(data, dtype="<f4", count=n_forecast, offset=offset)
                .astype(np.float32)
                .reshape(horizon, n_quantiles)
            )
            offset += 4 * n_forecast
        history_ts = history_values = None
        if rows:
            history_ts = np.frombuffer(data, dtype="<f8", count=rows, offset=offset).astype(
                np.float64
            )
            offset += 8 * rows
            history_values = (
                np.frombuffer(data, dtype="<f4", count=rows * width, offset=offset)
                .astype(np.float32)
                .reshape(rows, width)
            )
        return cls(
            model=name,
            version=version,
            fingerprint=fingerprint.hex(),
            incarnation=incarnation,
            seq=seq,
            last_ts=last_ts,
            state=state,
            forecast=forecast,
            nonce=nonce,
            history_ts=history_ts,
            history_values=history_values,
        )


#: The header as numpy fields, in ``_HEADER``'s order (packed, little-endian).
_HEADER_FIELDS: list[tuple[str, str]] = [
    ("magic", "S2"),
    ("format", "u1"),
    ("flags", "u1"),
    ("incarnation", "<u8"),
    ("seq", "<u8"),
    ("last_ts", "<f8"),
    ("fingerprint", "V32"),
    ("version", "<u4"),
    ("name_len", "<u2"),
    ("horizon", "<u2"),
    ("quantiles", "<u2"),
    ("state_size", "<u4"),
    ("nonce", "<u8"),
    ("rows", "<u2"),
    ("width", "<u2"),
]


@dataclass(frozen=True, slots=True)
class Layout:
    """The sizes that fix a record's byte layout; records that share them share a dtype."""

    name_len: int
    state_size: int
    horizon: int  # 0 without a forecast
    quantiles: int
    rows: int
    width: int

    @classmethod
    def of(cls, record: StreamRecord) -> Layout:
        forecast = record.forecast
        history = record.history_values
        return cls(
            name_len=len(record.model.encode("utf-8")),
            state_size=int(np.asarray(record.state).size),
            horizon=0 if forecast is None else int(forecast.shape[0]),
            quantiles=0 if forecast is None else int(forecast.shape[1]),
            rows=0 if history is None else int(history.shape[0]),
            width=0 if history is None else int(history.shape[1]),
        )

    @property
    def dtype(self) -> np.dtype[np.void]:
        return _layout_dtype(self)


@functools.lru_cache(maxsize=64)
def _layout_dtype(layout: Layout) -> np.dtype[np.void]:
    fields: list[tuple[str, str] | tuple[str, str, tuple[int, ...]]] = [*_HEADER_FIELDS]
    fields.append(("name", f"V{layout.name_len}"))
    fields.append(("state", "<f4", (layout.state_size,)))
    if layout.horizon:
        fields.append(("forecast", "<f4", (layout.horizon, layout.quantiles)))
    if layout.rows:
        fields.append(("history_ts", "<f8", (layout.rows,)))
        fields.append(("history_values", "<f4", (layout.rows, layout.width)))
    dtype = np.dtype(fields)
    assert dtype.itemsize == (
        HEADER_SIZE
        + layout.name_len
        + 4 * layout.state_size
        + 4 * layout.horizon * layout.quantiles
        + 8 * layout.rows
        + 4 * layout.rows * layout.width
    )
    return dtype


def layout_key(data: bytes) -> tuple[int, bytes]:
    """What records must share to be read as one block: every byte that is not per stream.

    Length, magic, format, flags, fingerprint, version, the sizes and the model name; not the
    incarnation, seq, last timestamp, nonce or the arrays.
    """
    name_len = data[64] | data[65] << 8 if len(data) >= HEADER_SIZE else 0
    return len(data), data[:4] + data[28:74] + data[82 : HEADER_SIZE + name_len]


def decode_block(records: Sequence[bytes]) -> tuple[StreamRecord, npt.NDArray[np.void]]:
    """Many records of one ``layout_key`` as one structured array (one row per record).

    The first is decoded and checked field by field (``RecordError`` if it is not a valid
    record); the others share every byte that check looked at, except the per-stream ones.
    """
    first = StreamRecord.decode(records[0])
    block = np.frombuffer(b"".join(records), dtype=Layout.of(first).dtype)
    return first, block


def encode_block(block: npt.NDArray[np.void]) -> list[bytes]:
    """The records of a structured array of one layout, each as its own bytes."""
    data = block.tobytes()
    size = block.dtype.itemsize
    return [data[i : i + size] for i in range(0, len(data), size)]


def new_nonces(count: int) -> npt.NDArray[np.uint64]:
    """``count`` random write nonces from one read of the system's random source."""
    return np.frombuffer(secrets.token_bytes(8 * count), dtype="<u8").copy()


def token_of(data: bytes) -> bytes:
    """The compare-and-set token of an encoded record, without decoding the rest."""
    return data[TOKEN_SLICE]


NO_TIMESTAMP = -math.inf
