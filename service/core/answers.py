"""What a client is told, built in one place: forecasts, stream views and observe results.

The engine answers a whole batch as columns (``AnswerChunk``: one row per request item, the
arrays shared); ``Answers`` is one request's items over those chunks, and builds the
per-item objects (``ObserveResult``) only for whoever asks for them: bulk and WebSocket
answers are written from the columns directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from service.errors import ForecastError
from service.runtime import ModelRuntime

if TYPE_CHECKING:
    from service.core.scoring import LastAnomaly, ReadingScore, Scores

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Forecast:
    """H future steps after ``origin`` (the last observation), one column per quantile."""

    model: str
    version: int
    target: str
    quantiles: tuple[float, ...]
    frequency: float
    origin: float | None
    values: FloatArray  # [H, Q]
    median_index: int


@dataclass(frozen=True, slots=True)
class Model:
    """The parts of a runtime's manifest every answer repeats, read once per batch."""

    name: str
    version: int
    target: str
    quantiles: tuple[float, ...]
    frequency: float
    median_index: int

    @classmethod
    def of(cls, runtime: ModelRuntime) -> Model:
        m = runtime.manifest
        return cls(m.name, m.version, m.target, tuple(m.quantiles), m.frequency, m.median_index)

    def forecast(self, origin: float | None, values: FloatArray) -> Forecast:
        return Forecast(
            self.name,
            self.version,
            self.target,
            self.quantiles,
            self.frequency,
            origin,
            values,
            self.median_index,
        )


@dataclass(frozen=True, slots=True)
class StreamView:
    """What a client sees of a stream."""

    stream_id: str
    model: str
    version: int
    seq: int
    last_timestamp: float | None
    forecast: Forecast | None
    #: The stream's most recent anomalous reading (shown by ``GET``; None: none yet).
    last_anomaly: LastAnomaly | None = None


@dataclass(frozen=True, slots=True)
class ObserveResult:
    stream: StreamView
    applied: int
    skipped: tuple[float, ...]
    created: bool = False
    #: Rows inserted for missing readings among this request's own (gap_policy forward or
    #: median); counted in the stream's ``seq``, not in ``applied``.
    filled: int = 0
    #: Readings missing (more than 1.5 model periods between two) before the ones applied,
    #: whatever the gap policy: filled under forward and median, fed as they are under accept.
    missing: int = 0
    #: One per applied reading, in order: how it compared with the forecast issued for its
    #: time (empty when scoring is off).
    scores: tuple[ReadingScore, ...] = ()


def origin_of(last_ts: float) -> float | None:
    return None if math.isinf(last_ts) else last_ts


def view_of(
    model: Model | None,
    stream_id: str,
    name: str,
    version: int,
    seq: int,
    last_ts: float,
    forecast: FloatArray | None,
    anomaly: LastAnomaly | None = None,
) -> StreamView:
    """A stream as a client sees it. Without ``model`` (its model is not served) it shows
    no forecast: one made by other weights is never shown as this model's."""
    origin = origin_of(last_ts)
    made = None if model is None or forecast is None else model.forecast(origin, forecast)
    return StreamView(stream_id, name, version, seq, origin, made, anomaly)


@dataclass(slots=True)
class AnswerChunk:
    """The answers of some items of one model, as columns (one row per item)."""

    model: Model
    stream_ids: list[str]
    seq: npt.NDArray[np.int64]
    last_ts: npt.NDArray[np.float64]
    forecast: FloatArray  # [n, H, Q]
    has_forecast: npt.NDArray[np.bool_]
    applied: npt.NDArray[np.int64]
    filled: npt.NDArray[np.int64]
    missing: npt.NDArray[np.int64]
    #: Skipped timestamps of the rows that skipped any (most skip none).
    skipped: dict[int, tuple[float, ...]]
    #: The applied readings' scores (None: scoring is off).
    scores: Scores | None = None

    def result(self, row: int, created: bool = False) -> ObserveResult:
        forecast = self.forecast[row] if self.has_forecast[row] else None
        m = self.model
        view = view_of(
            m, self.stream_ids[row], m.name, m.version, int(self.seq[row]),
            float(self.last_ts[row]), forecast,
        )  # fmt: skip
        return ObserveResult(
            view,
            int(self.applied[row]),
            self.skipped.get(row, ()),
            created,
            int(self.filled[row]),
            int(self.missing[row]),
            () if self.scores is None else self.scores.of(row),
        )


class Answers:
    """One request's answers: item ``i`` is a chunk's row or a ``ForecastError``."""

    __slots__ = ("_errors", "_rows", "left")

    def __init__(self, size: int) -> None:
        self._rows: list[tuple[AnswerChunk, int] | None] = [None] * size
        self._errors: dict[int, ForecastError] = {}
        #: Items not answered yet.
        self.left = size

    def __len__(self) -> int:
        return len(self._rows)

    def answer(self, item: int, chunk: AnswerChunk, row: int) -> None:
        self._rows[item] = (chunk, row)
        self.left -= 1

    def fail(self, item: int, error: ForecastError) -> None:
        self._errors[item] = error
        self.left -= 1

    def error(self, item: int) -> ForecastError | None:
        return self._errors.get(item)

    def located(self, item: int) -> tuple[AnswerChunk, int] | None:
        return self._rows[item]

    def result(self, item: int) -> ObserveResult | ForecastError:
        error = self._errors.get(item)
        if error is not None:
            return error
        where = self._rows[item]
        assert where is not None, "every item is answered before the answers are read"
        chunk, row = where
        return chunk.result(row)

    def results(self) -> list[ObserveResult | ForecastError]:
        return [self.result(i) for i in range(len(self._rows))]
