"""What goes in (readings) and what comes back (streams, forecasts, answers), typed.

Answers are frozen dataclasses parsed from the service's JSON; each keeps the JSON it came
from in ``raw``, so a field a newer service adds is readable before this client knows it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from forecast_client.errors import ApiError, problem_error
from forecast_client.scores import Anomaly, LiveAccuracy, ReadingScore, scores_of

#: An aware datetime, a naive one (taken as UTC), epoch seconds, or ISO 8601 text.
Timestamp = datetime | float | int | str


@dataclass(frozen=True, slots=True)
class Reading:
    """One reading: a time (an aware datetime, a naive one taken as UTC, epoch seconds or
    ISO 8601 text) and either one value per model feature or a single value for one-feature
    models."""

    timestamp: Timestamp
    values: Sequence[float] | float

    def to_json(self) -> dict[str, Any]:
        stamp = self.timestamp
        when: str | float
        if isinstance(stamp, datetime):
            when = (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).isoformat()
        elif isinstance(stamp, str):
            when = stamp
        else:
            when = float(stamp)
        if isinstance(self.values, int | float):
            return {"timestamp": when, "value": float(self.values)}
        return {"timestamp": when, "values": [float(v) for v in self.values]}


#: A reading as a :class:`Reading` or a ``(timestamp, value or values)`` pair.
ReadingLike = Reading | tuple[Timestamp, Sequence[float] | float]


def reading_json(reading: ReadingLike) -> dict[str, Any]:
    item = reading if isinstance(reading, Reading) else Reading(*reading)
    return item.to_json()


def readings_json(readings: Sequence[ReadingLike]) -> list[dict[str, Any]]:
    """The ``observations`` list of a request."""
    return [reading_json(r) for r in readings]


def parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


@dataclass(frozen=True, slots=True)
class ModelRef:
    name: str
    version: int

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> ModelRef:
        return cls(name=str(data["name"]), version=int(data["version"]))


@dataclass(frozen=True, slots=True)
class Step:
    """One forecast step: its time, the median and every quantile (level -> value)."""

    step: int
    timestamp: datetime | None
    median: float
    quantiles: Mapping[float, float]

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Step:
        return cls(
            step=int(data["step"]),
            timestamp=parse_time(data.get("timestamp")),
            median=float(data["median"]),
            quantiles={float(q): float(v) for q, v in data.get("quantiles", {}).items()},
        )


@dataclass(frozen=True, slots=True)
class Forecast:
    """The forecast after ``origin`` (the last reading used), ``len(steps)`` steps ahead."""

    model: ModelRef
    target: str
    origin: datetime | None
    steps: tuple[Step, ...]
    id: str | None = None

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Forecast:
        return cls(
            model=ModelRef.of(data["model"]),
            target=str(data["target"]),
            origin=parse_time(data.get("origin")),
            steps=tuple(Step.of(s) for s in data.get("steps", [])),
            id=data.get("id"),
        )

    @property
    def median(self) -> list[float]:
        return [s.median for s in self.steps]

    def quantile(self, level: float) -> list[float]:
        """The values of one quantile level at every step (KeyError if the model has none)."""
        return [_level(s.quantiles, level) for s in self.steps]


def _level(quantiles: Mapping[float, float], level: float) -> float:
    for q, value in quantiles.items():
        if math.isclose(q, level, rel_tol=1e-9):
            return value
    raise KeyError(f"no quantile {level:g}; the model has {sorted(quantiles)}")


@dataclass(frozen=True, slots=True)
class StoredReading:
    """A reading as the stream's record keeps it (``get_stream(..., readings=N)``)."""

    timestamp: datetime
    values: tuple[float, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: Flagged as an anomaly when it arrived.
    anomaly: bool = False


@dataclass(frozen=True, slots=True)
class Stream:
    """A stream's position (``seq`` readings applied, the last at ``last_timestamp``) and its
    latest forecast; with ``readings`` when asked for."""

    stream_id: str
    model: ModelRef
    seq: int
    last_timestamp: datetime | None
    forecast: Forecast | None
    readings: tuple[StoredReading, ...] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: The stream's most recent anomalous reading (None: none yet).
    last_anomaly: Anomaly | None = None

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Stream:
        return cls(**_stream_fields(data), last_anomaly=Anomaly.of(data.get("last_anomaly")))


@dataclass(frozen=True, slots=True)
class StreamSummary:
    """One stream of a listing (``GET /v1/streams``): its model and position."""

    stream_id: str
    model: ModelRef
    seq: int
    last_timestamp: datetime | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> StreamSummary:
        return cls(
            stream_id=str(data["stream_id"]),
            model=ModelRef.of(data["model"]),
            seq=int(data["seq"]),
            last_timestamp=parse_time(data.get("last_timestamp")),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class StreamPage:
    """One page of a listing, and the cursor of the next (None: this is the last)."""

    streams: tuple[StreamSummary, ...]
    next_cursor: str | None

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> StreamPage:
        following = data.get("next_cursor")
        return cls(
            streams=tuple(StreamSummary.of(s) for s in data["streams"]),
            next_cursor=None if following is None else str(following),
        )


def _stream_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    readings = data.get("readings")
    return {
        "stream_id": str(data["stream_id"]),
        "model": ModelRef.of(data["model"]),
        "seq": int(data["seq"]),
        "last_timestamp": parse_time(data.get("last_timestamp")),
        "forecast": None if data.get("forecast") is None else Forecast.of(data["forecast"]),
        "readings": None
        if readings is None
        else tuple(
            StoredReading(
                timestamp=parse_time(r["timestamp"]) or datetime.fromtimestamp(0, tz=UTC),
                values=tuple(float(v) for v in r["values"]),
                raw=r,
                anomaly=bool(r.get("anomaly", False)),
            )
            for r in readings
        ),
        "raw": data,
    }


@dataclass(frozen=True, slots=True)
class ObserveResult:
    """The answer to readings (or to creating a stream): the stream after them, how many
    were ``applied``, which were ``skipped`` as duplicates (at or before the stream's last
    timestamp: a retry's readings that had landed already) and how many were ``filled``."""

    stream_id: str
    model: ModelRef
    seq: int
    last_timestamp: datetime | None
    forecast: Forecast | None
    applied: int
    skipped: tuple[datetime, ...]
    filled: int = 0
    readings: tuple[StoredReading, ...] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: One per applied reading: how it compared with the forecast issued for its time.
    scores: tuple[ReadingScore, ...] = ()

    @property
    def anomalies(self) -> tuple[ReadingScore, ...]:
        """The applied readings flagged as anomalies."""
        return tuple(s for s in self.scores if s.anomaly)

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> ObserveResult:
        return cls(
            **_stream_fields(data),
            applied=int(data.get("applied", 0)),
            skipped=tuple(t for t in map(parse_time, data.get("skipped", [])) if t is not None),
            filled=int(data.get("filled", 0)),
            scores=scores_of(data),
        )


@dataclass(frozen=True, slots=True)
class Summary:
    """The compact answer of a bulk request with ``detail="summary"``."""

    seq: int
    applied: int
    skipped: int
    last_timestamp: datetime | None
    median: tuple[float, ...] | None
    #: Per applied reading: its quantile position (None: not scored), and its anomaly flag.
    positions: tuple[float | None, ...] = ()
    anomaly: tuple[bool, ...] = ()

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Summary:
        median = data.get("median")
        return cls(
            seq=int(data["seq"]),
            applied=int(data["applied"]),
            skipped=int(data["skipped"]),
            last_timestamp=parse_time(data.get("last_timestamp")),
            median=None if median is None else tuple(float(v) for v in median),
            positions=tuple(None if p is None else float(p) for p in data.get("positions", ())),
            anomaly=tuple(bool(a) for a in data.get("anomaly", ())),
        )


@dataclass(frozen=True, slots=True)
class StreamAnswer:
    """One stream's outcome in a bulk or WebSocket answer: ``result`` (or ``summary``) when
    ``status`` is 200, else ``error`` (an :class:`ApiError`, not raised)."""

    stream_id: str
    status: int
    id: str | int | None = None
    result: ObserveResult | None = None
    summary: Summary | None = None
    error: ApiError | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def retry_after(self) -> float | None:
        return None if self.error is None else self.error.retry_after

    def unwrap(self) -> ObserveResult:
        """The full result, or the error raised."""
        if self.error is not None:
            raise self.error
        if self.result is None:
            raise ValueError("this answer is a summary (detail='summary'); read .summary")
        return self.result

    @classmethod
    def of(cls, data: Mapping[str, Any], request_id: str | None = None) -> StreamAnswer:
        status = int(data.get("status", 0))
        error = data.get("error")
        return cls(
            stream_id=str(data.get("stream_id", "")),
            status=status,
            id=data.get("id"),
            result=None if data.get("result") is None else ObserveResult.of(data["result"]),
            summary=None if data.get("summary") is None else Summary.of(data["summary"]),
            error=None
            if error is None
            else problem_error(int(error.get("status", status)), error, request_id=request_id),
        )


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One served model version, as ``GET /v1/models/{name}`` describes it."""

    name: str
    version: int
    kind: str
    features: tuple[str, ...]
    target: str
    frequency: float
    horizon: int
    quantiles: tuple[float, ...]
    state_size: int
    fingerprint: str
    providers: tuple[str, ...]
    description: str
    accuracy: Mapping[str, Mapping[str, float]] | None
    training: Mapping[str, Any] | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: The last hour's live figures on the replica that answered (beside ``accuracy``).
    live: LiveAccuracy | None = None

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> ModelVersion:
        return cls(
            name=str(data["name"]),
            version=int(data["version"]),
            kind=str(data["kind"]),
            features=tuple(data["features"]),
            target=str(data["target"]),
            frequency=float(data["frequency"]),
            horizon=int(data["horizon"]),
            quantiles=tuple(float(q) for q in data["quantiles"]),
            state_size=int(data["state_size"]),
            fingerprint=str(data["fingerprint"]),
            providers=tuple(data.get("providers", ())),
            description=str(data.get("description", "")),
            accuracy=data.get("accuracy"),
            training=data.get("training"),
            raw=data,
            live=LiveAccuracy.of(data.get("live")),
        )


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One server-sent event of a subscription: the ``snapshot`` of the stream when the
    subscription (re)starts, then a ``forecast`` per update (``result`` set)."""

    kind: Literal["snapshot", "forecast"]
    stream: Stream
    result: ObserveResult | None = None


__all__ = [
    "Forecast",
    "ModelRef",
    "ModelVersion",
    "ObserveResult",
    "Reading",
    "ReadingLike",
    "Step",
    "StoredReading",
    "Stream",
    "StreamAnswer",
    "StreamEvent",
    "Summary",
    "Timestamp",
    "reading_json",
    "readings_json",
]
