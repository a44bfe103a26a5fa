"""What the service says about each reading against the forecast issued for it, and the
live accuracy of a model (the service's ``scores``, ``last_anomaly`` and ``live`` fields)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def _time(value: Any) -> datetime:
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return datetime.fromtimestamp(float(value), tz=UTC)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True, slots=True)
class ReadingScore:
    """One applied reading against the forecast issued for its time: not ``scored`` when
    none was (the stream's first reading, after a gap longer than the horizon, after a
    replay); else the ``step`` it was forecast at, its ``error`` (reading - median), its
    quantile ``position`` (0 below the lowest quantile, 1 above the highest) and whether it
    is an ``anomaly`` (outside the outer interval by more than the service's margin)."""

    timestamp: datetime
    scored: bool
    step: int | None = None
    error: float | None = None
    position: float | None = None
    anomaly: bool = False
    #: Inside the forecast's outer interval.
    inside: bool = False

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> ReadingScore:
        step = data.get("step")
        return cls(
            timestamp=_time(data["timestamp"]),
            scored=bool(data.get("scored", False)),
            step=None if step is None else int(step),
            error=_number(data.get("error")),
            position=_number(data.get("position")),
            anomaly=bool(data.get("anomaly", False)),
            inside=bool(data.get("inside", False)),
        )


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A stream's most recent anomalous reading: its value, quantile position and the outer
    interval (``low`` to ``high``) it fell outside."""

    timestamp: datetime
    value: float
    position: float
    low: float
    high: float

    @classmethod
    def of(cls, data: Mapping[str, Any] | None) -> Anomaly | None:
        if data is None:
            return None
        return cls(
            timestamp=_time(data["timestamp"]),
            value=float(data["value"]),
            position=float(data["position"]),
            low=float(data["low"]),
            high=float(data["high"]),
        )


@dataclass(frozen=True, slots=True)
class LiveAccuracy:
    """A model version's last hour as one replica scored it (``GET /v1/models/{name}``):
    mean absolute error, the naive forecast's, their ratio, interval coverage, mean pinball
    loss; None where nothing was scored."""

    window_seconds: float
    scored: int
    unscored: int
    anomalies: int
    mae: float | None
    naive_mae: float | None
    relative_mae: float | None
    coverage: float | None
    mean_pinball: float | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, data: Mapping[str, Any] | None) -> LiveAccuracy | None:
        if data is None:
            return None
        return cls(
            window_seconds=float(data["window_seconds"]),
            scored=int(data["scored"]),
            unscored=int(data["unscored"]),
            anomalies=int(data["anomalies"]),
            mae=_number(data.get("mae")),
            naive_mae=_number(data.get("naive_mae")),
            relative_mae=_number(data.get("relative_mae")),
            coverage=_number(data.get("coverage")),
            mean_pinball=_number(data.get("mean_pinball")),
            raw=data,
        )


def scores_of(data: Mapping[str, Any]) -> tuple[ReadingScore, ...]:
    return tuple(ReadingScore.of(s) for s in data.get("scores", ()))


__all__ = ["Anomaly", "LiveAccuracy", "ReadingScore", "scores_of"]
