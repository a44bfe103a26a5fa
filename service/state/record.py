"""The binary record kept per stream and its one codec (its key is
``service.state.keys.stream_key``).

Layout (little-endian, packed)::

    offset  size  field
    0       2     magic b"FS"
    2       1     format version (2; 1 is still read, see below)
    3       1     flags (bit 0: a forecast follows the state row; bit 1: the score tail)
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
    ...     36    score tail (only with flag bit 1; format 2): the last reading's target
                  value (float32, NaN before any); the stream's last anomaly: its
                  timestamp (float64, -inf: none yet), value, quantile position, and the
                  outer interval it fell outside (low, high), float32 each; then which of
                  the last 64 rows fed were anomalies (uint64, bit i: the i-th newest)

Format 1 is format 2 without the score tail: such records still decode (the tail reads as
"no last value, no anomaly", or the last value from the kept history), and the engine
writes them back as format 2. The forecast the record keeps (bit 0) is the one the stream
issued at ``last_ts`` for the H steps after it; the tail holds what scoring the next readings
against it needs beyond that (``service.core.scoring``), so scoring reads nothing more.

There is one codec: each combination of the sizes (a ``Layout``) is a numpy structured dtype,
and a batch of records that share one is decoded with one ``np.frombuffer`` and encoded with
one ``tobytes``. A single record (``StreamRecord``) is a one-row block of that dtype.

The history lets a stream be rebuilt under new model weights (replayed from the initial
state) and gaps be filled with the last reading's values (gap policies forward and median).
The latest forecast is kept so ``GET`` answers without a model call, and so the forecast
issued for the next reading's time is at hand when that reading arrives.

Bytes 4..20 (incarnation + seq) are the compare-and-set *token*: a writer succeeds only if
the stored record still carries the token it read. The incarnation makes a stream that was
deleted and re-created with the same seq a different stream for that check. The whole
header (86 bytes) is the record's *stamp*: with the write nonce drawn for every record built
(bytes 74..82), it names exactly one record ever written. A writer that steps from a record
it cached expects the stamp, so even a store that lost writes and came back at the same seq
with other contents cannot pass.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

MAGIC = b"FS"
FORMAT_VERSION = 2
#: Formats this code decodes (1: before the score tail).
READ_FORMATS = (1, 2)
FLAG_FORECAST = 0x01
FLAG_SCORE = 0x02
#: Bytes of the score tail.
SCORE_SIZE = 36
TOKEN_SLICE = slice(4, 20)
TOKEN_SIZE = 16

FloatArray = npt.NDArray[np.float32]
TimeArray = npt.NDArray[np.float64]
Block = npt.NDArray[np.void]

#: The header as numpy fields (packed, little-endian), in the order of the table above.
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
HEADER = np.dtype(_HEADER_FIELDS)
HEADER_SIZE = HEADER.itemsize  # 86
#: A record's stamp is its whole header (see ``stamp_of``).
STAMP_SIZE = HEADER_SIZE
#: Fields whose values must fit their width, with that width in bits.
_BITS = {
    "incarnation": 64,
    "seq": 64,
    "version": 32,
    "name_len": 16,
    "horizon": 16,
    "quantiles": 16,
    "state_size": 32,
    "nonce": 64,
    "rows": 16,
    "width": 16,
}

NO_TIMESTAMP = -math.inf


class RecordError(ValueError):
    """Bytes that are not a stream record of a format this code reads."""


def new_incarnation() -> int:
    return secrets.randbits(64)


@dataclass(frozen=True, slots=True)
class Layout:
    """The sizes that fix a record's byte layout; records that share them share a dtype."""

    name_len: int
    state_size: int
    horizon: int  # 0 without a forecast
    quantiles: int
    rows: int
    width: int  # 0 without history
    #: Whether the score tail follows (format 2 with flag bit 1).
    scored: bool = True

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
            scored=record.scored,
        )

    @property
    def dtype(self) -> np.dtype[np.void]:
        return _layout_dtype(self)

    @property
    def size(self) -> int:
        return (
            HEADER_SIZE
            + self.name_len
            + 4 * self.state_size
            + 4 * self.horizon * self.quantiles
            + 8 * self.rows
            + 4 * self.rows * self.width
            + (SCORE_SIZE if self.scored else 0)
        )


#: The score tail's fields (see the table above).
_SCORE_FIELDS: list[tuple[str, str]] = [
    ("last_target", "<f4"),
    ("anomaly_ts", "<f8"),
    ("anomaly_value", "<f4"),
    ("anomaly_position", "<f4"),
    ("anomaly_low", "<f4"),
    ("anomaly_high", "<f4"),
    ("anomaly_bits", "<u8"),
]


@functools.lru_cache(maxsize=256)
def _layout_dtype(layout: Layout) -> np.dtype[np.void]:
    fields: list[tuple[str, str] | tuple[str, str, tuple[int, ...]]] = [*_HEADER_FIELDS]
    fields.append(("name", f"V{layout.name_len}"))
    fields.append(("state", "<f4", (layout.state_size,)))
    if layout.horizon:
        fields.append(("forecast", "<f4", (layout.horizon, layout.quantiles)))
    if layout.rows:
        fields.append(("history_ts", "<f8", (layout.rows,)))
        fields.append(("history_values", "<f4", (layout.rows, layout.width)))
    if layout.scored:
        fields += _SCORE_FIELDS
    dtype = np.dtype(fields)
    assert dtype.itemsize == layout.size
    return dtype


@dataclass(frozen=True, slots=True)
class Kind:
    """What every record of one block shares besides its sizes: the model that built it."""

    model: str
    version: int
    fingerprint: str
    layout: Layout


def read_header(data: bytes) -> Kind:
    """Check ``data`` is a whole record of a format this code reads; what it holds.

    Raises ``RecordError`` naming the first problem: too short, foreign bytes, another
    format, a length its header does not account for, a model name that is not UTF-8.
    """
    if len(data) < HEADER_SIZE:
        raise RecordError(f"record of {len(data)} bytes is shorter than its header")
    head = np.frombuffer(data, dtype=HEADER, count=1)[0]
    if bytes(head["magic"]) != MAGIC:
        raise RecordError("not a stream record (bad magic)")
    version = int(head["format"])
    if version not in READ_FORMATS:
        raise RecordError(f"stream record format {version} is not supported")
    flags = int(head["flags"])
    has_forecast = bool(flags & FLAG_FORECAST)
    rows = int(head["rows"])
    layout = Layout(
        name_len=int(head["name_len"]),
        state_size=int(head["state_size"]),
        horizon=int(head["horizon"]) if has_forecast else 0,
        quantiles=int(head["quantiles"]) if has_forecast else 0,
        rows=rows,
        width=int(head["width"]) if rows else 0,
        scored=version >= 2 and bool(flags & FLAG_SCORE),
    )
    if len(data) != layout.size:
        raise RecordError(f"record is {len(data)} bytes, its header says {layout.size}")
    try:
        name = data[HEADER_SIZE : HEADER_SIZE + layout.name_len].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError("stream record model name is not UTF-8") from exc
    fingerprint = head["fingerprint"].tobytes().hex()
    return Kind(name, int(head["version"]), fingerprint, layout)


@dataclass(frozen=True, slots=True, eq=False)
class StreamRecord:
    """What the store keeps for one stream: a one-row view of the block codec."""

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
    #: The last reading's target value (NaN: none known), for the naive forecast.
    last_target: float = math.nan
    #: The stream's last anomaly: time (-inf: none), value, position, outer interval.
    anomaly_ts: float = NO_TIMESTAMP
    anomaly_value: float = math.nan
    anomaly_position: float = math.nan
    anomaly_low: float = math.nan
    anomaly_high: float = math.nan
    #: Bit i set: the i-th newest row fed (the history's last rows) was an anomaly.
    anomaly_bits: int = 0

    @property
    def scored(self) -> bool:
        """Whether the record carries a score tail (anything scoring needs is known)."""
        return not math.isnan(self.last_target) or self.anomaly_ts != NO_TIMESTAMP

    @property
    def token(self) -> bytes:
        """The compare-and-set token of this record (bytes 4..20 of its encoding)."""
        return np.array([self.incarnation, self.seq], dtype="<u8").tobytes()

    def encode(self) -> bytes:
        if self.forecast is not None and np.ndim(self.forecast) != 2:
            raise RecordError("forecast must be [horizon, quantiles]")
        if self.history_ts is not None and self.history_values is not None:
            if np.ndim(self.history_values) != 2 or np.shape(self.history_values)[0] != np.size(
                self.history_ts
            ):
                raise RecordError("history values must be [rows, features], one row per time")
            record = self
        else:
            # A half-given history is no history.
            record = dataclasses.replace(self, history_ts=None, history_values=None)
        layout = Layout.of(record)
        try:
            fingerprint = bytes.fromhex(record.fingerprint)
        except ValueError as exc:
            raise RecordError(f"fingerprint {record.fingerprint!r} is not hex") from exc
        if len(fingerprint) != 32:
            # The record would name another model than the one that made its state.
            raise RecordError(f"fingerprint must be a sha256 (32 bytes), got {len(fingerprint)}")
        header = {
            "incarnation": record.incarnation,
            "seq": record.seq,
            "version": record.version,
            "name_len": layout.name_len,
            "horizon": layout.horizon,
            "quantiles": layout.quantiles,
            "state_size": layout.state_size,
            "nonce": record.nonce,
            "rows": layout.rows,
            "width": layout.width,
        }
        for name, value in header.items():
            if not 0 <= value < 1 << _BITS[name]:
                raise RecordError(f"record field out of range: {name}={value}")
        block = np.zeros(1, dtype=layout.dtype)
        row = block[0]
        for name, value in header.items():
            row[name] = value
        row["magic"] = MAGIC
        row["format"] = FORMAT_VERSION
        row["flags"] = (FLAG_FORECAST if layout.horizon else 0) | (
            FLAG_SCORE if layout.scored else 0
        )
        row["last_ts"] = record.last_ts
        row["fingerprint"] = np.void(fingerprint)
        row["name"] = np.void(record.model.encode("utf-8"))
        row["state"] = np.asarray(record.state, dtype=np.float32).reshape(-1)
        if record.forecast is not None and layout.horizon:
            row["forecast"] = record.forecast
        if layout.rows:
            row["history_ts"] = record.history_ts
            row["history_values"] = record.history_values
        if layout.scored:
            for name, _ in _SCORE_FIELDS:
                row[name] = getattr(record, name)
        return block.tobytes()

    @classmethod
    def decode(cls, data: bytes) -> StreamRecord:
        kind = read_header(data)
        row = np.frombuffer(data, dtype=kind.layout.dtype, count=1)[0]
        layout = kind.layout
        tail: dict[str, Any] = {}
        if layout.scored:
            tail = {name: float(row[name]) for name, _ in _SCORE_FIELDS[:-1]}
            tail["anomaly_bits"] = int(row["anomaly_bits"])
        return cls(
            model=kind.model,
            version=kind.version,
            fingerprint=kind.fingerprint,
            incarnation=int(row["incarnation"]),
            seq=int(row["seq"]),
            last_ts=float(row["last_ts"]),
            state=row["state"].astype(np.float32),
            forecast=row["forecast"].astype(np.float32) if layout.horizon else None,
            nonce=int(row["nonce"]),
            history_ts=row["history_ts"].astype(np.float64) if layout.rows else None,
            history_values=row["history_values"].astype(np.float32) if layout.rows else None,
            **tail,
        )


def layout_key(data: bytes) -> tuple[int, bytes]:
    """What records must share to be read as one block: every byte that is not per stream.

    Length, magic, format, flags, fingerprint, version, the sizes and the model name; not the
    incarnation, seq, last timestamp, nonce or the arrays.
    """
    name_len = data[64] | data[65] << 8 if len(data) >= HEADER_SIZE else 0
    return len(data), data[:4] + data[28:74] + data[82 : HEADER_SIZE + name_len]


def decode_block(records: Sequence[bytes]) -> tuple[Kind, Block]:
    """Many records of one ``layout_key`` as one structured array (one row per record).

    The first is checked (``RecordError`` if it is not a valid record); the others share
    every byte that check looked at, except the per-stream ones.
    """
    kind = read_header(records[0])
    data = records[0] if len(records) == 1 else b"".join(records)
    return kind, np.frombuffer(data, dtype=kind.layout.dtype)


def encode_block(block: Block) -> list[bytes]:
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


def stamp_of(data: bytes) -> bytes:
    """The record's stamp (its header: token, time, model, sizes, write nonce)."""
    return data[:HEADER_SIZE]
