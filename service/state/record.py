"""The binary record kept per stream, and the stream key layout.

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

import math
import secrets
import struct
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


def token_of(data: bytes) -> bytes:
    """The compare-and-set token of an encoded record, without decoding the rest."""
    return data[TOKEN_SLICE]


NO_TIMESTAMP = -math.inf


def stream_key(prefix: str, tenant: str, stream_id: str) -> str:
    """One key per stream, namespaced by tenant.

    The tenant sits in a Redis Cluster hash tag so one tenant's keys can be grouped by slot
    in batched commands without forcing every stream onto one slot.
    """
    return f"{prefix}:s:{{{tenant}:{stream_id}}}"


def quota_key(prefix: str, tenant: str) -> str:
    """The set of a tenant's counted streams (see ``service.quota``).

    Its hash tag is the tenant alone, so on a Redis Cluster the set sits in its own slot,
    apart from the streams it counts, and every quota call on it is a single-key command.
    """
    return f"{prefix}:q:{{{tenant}}}"
