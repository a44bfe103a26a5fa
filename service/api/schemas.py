"""JSON answers of the REST API (msgspec), built from the core's types.

The request bodies are in ``requests`` (pydantic: documented and the reference) and
``bodies`` (their fast decoding).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Annotated, cast

import msgspec
import numpy as np

from service.core.live import quantile_label
from service.core.scoring import LastAnomaly, ReadingScore
from service.forecaster import Forecast, ObserveResult, StreamView


def from_epoch(value: float | None) -> datetime | None:
    return None if value is None else _utc(value)


@functools.lru_cache(maxsize=4096)
def _utc(value: float) -> datetime:
    """Many answers of one bulk request share a time: each is made once (they are immutable)."""
    return datetime.fromtimestamp(value, tz=UTC)


# Answers are msgspec Structs: they are built once per answer on the hot path from values the
# core has already checked, and msgspec builds and encodes them about 30x faster than pydantic
# (which stays the validator of everything that comes in). Litestar documents both alike.


class ModelRef(msgspec.Struct):
    name: str
    version: int


class StepOut(msgspec.Struct):
    step: Annotated[
        int, msgspec.Meta(description="1 for the first step after the last observation.")
    ]
    timestamp: Annotated[
        str | None,
        msgspec.Meta(
            description="UTC date-time of this step (ISO 8601).",
            extra_json_schema={"format": "date-time"},
        ),
    ]
    median: float
    quantiles: Annotated[
        dict[str, float], msgspec.Meta(description="Quantile level (as text) to value.")
    ]


class ForecastOut(msgspec.Struct):
    model: ModelRef
    target: str
    origin: Annotated[
        datetime | None, msgspec.Meta(description="Timestamp of the last observation used.")
    ]
    steps: list[StepOut]


class SeriesForecastOut(ForecastOut):
    id: str | None = None


class ForecastResponse(msgspec.Struct):
    forecasts: list[SeriesForecastOut]


class StreamOut(msgspec.Struct):
    stream_id: str
    model: ModelRef
    seq: Annotated[
        int, msgspec.Meta(description="Observations applied since the stream was created.")
    ]
    last_timestamp: datetime | None
    forecast: ForecastOut | None


class ScoreOut(msgspec.Struct):
    """How one applied reading compared with the forecast issued for its time."""

    timestamp: datetime
    scored: Annotated[
        bool,
        msgspec.Meta(
            description=(
                "False when no forecast was issued for this time (the stream's first "
                "reading, one after a gap longer than the horizon, the first after a replay)."
            )
        ),
    ]
    step: Annotated[
        int | None, msgspec.Meta(description="The forecast step it was scored against.")
    ] = None
    error: Annotated[
        float | None, msgspec.Meta(description="The reading's target minus the forecast median.")
    ] = None
    position: Annotated[
        float | None,
        msgspec.Meta(
            description=(
                "Its quantile level in the forecast distribution (interpolated between the "
                "quantiles; 0 below the lowest, 1 above the highest)."
            )
        ),
    ] = None
    anomaly: Annotated[
        bool,
        msgspec.Meta(
            description=(
                "Outside the outer interval by more than FORECAST_ANOMALY_MARGIN times its width."
            )
        ),
    ] = False
    inside: Annotated[
        bool,
        msgspec.Meta(description="Inside the outer interval (lowest to highest quantile)."),
    ] = False


class AnomalyOut(msgspec.Struct):
    """A stream's most recent anomalous reading."""

    timestamp: datetime
    value: float
    position: float
    low: Annotated[float, msgspec.Meta(description="The outer interval's lower end.")]
    high: Annotated[float, msgspec.Meta(description="The outer interval's upper end.")]


def anomaly_out(anomaly: LastAnomaly | None) -> AnomalyOut | None:
    if anomaly is None:
        return None
    return AnomalyOut(
        timestamp=_utc(anomaly.timestamp),
        value=anomaly.value,
        position=anomaly.position,
        low=anomaly.low,
        high=anomaly.high,
    )


def scores_out(scores: tuple[ReadingScore, ...]) -> list[ScoreOut]:
    return [
        ScoreOut(
            timestamp=_utc(s.timestamp),
            scored=s.step is not None,
            step=s.step,
            error=s.error,
            position=s.position,
            anomaly=s.anomaly,
            inside=s.inside,
        )
        for s in scores
    ]


class ObserveOut(StreamOut):
    applied: Annotated[
        int, msgspec.Meta(description="Observations of this request applied to the state.")
    ]
    skipped: Annotated[
        list[datetime],
        msgspec.Meta(
            description="Timestamps skipped as duplicates (at or before the stream's last one)."
        ),
    ]
    filled: Annotated[
        int,
        msgspec.Meta(
            description=(
                "Missing readings filled in among these (gap_policy forward or median); "
                "counted in seq, not in applied."
            )
        ),
    ] = 0
    missing: Annotated[
        int,
        msgspec.Meta(
            description=(
                "Readings missing before these (a step of more than 1.5 model periods), "
                "whatever the gap policy: filled under forward and median, fed as they came "
                "under accept."
            )
        ),
    ] = 0
    scores: Annotated[
        list[ScoreOut],
        msgspec.Meta(
            description=(
                "One per applied reading: how it compared with the forecast issued for its "
                "time (empty with FORECAST_SCORING=off)."
            )
        ),
    ] = []
    anomalies: Annotated[
        int, msgspec.Meta(description="Applied readings flagged as anomalies.")
    ] = 0


def step_times(forecast: Forecast) -> list[str] | list[None]:
    """ISO 8601 UTC times of every step, in one numpy call (24 datetimes cost more)."""
    horizon = int(forecast.values.shape[0])
    if forecast.origin is None:
        return [None] * horizon
    return list(_times(forecast.origin, forecast.frequency, horizon))


@functools.lru_cache(maxsize=1024)
def _times(origin: float, frequency: float, horizon: int) -> tuple[str, ...]:
    """Step times after ``origin``; the streams of one bulk request share them, so cached."""
    seconds = origin + frequency * np.arange(1, horizon + 1)
    micros = np.rint(seconds * 1e6).astype("datetime64[us]")
    whole = bool((micros.astype(np.int64) % 1_000_000 == 0).all())
    text = np.datetime_as_string(micros, unit="s" if whole else "us")
    return tuple(f"{t}Z" for t in text.tolist())


@functools.lru_cache(maxsize=64)
def _steps_template(labels: tuple[str, ...], median: int, horizon: int) -> tuple[bytes, list[int]]:
    """The JSON of all steps with a ``%s`` per time and number, and which token fills each.

    Tokens are the step times first (``horizon`` of them), then the values row by row.
    """
    n = len(labels)
    keys = [msgspec.json.encode(label) for label in labels]
    quantiles = b",".join(key + b":%s" for key in keys)
    one = b'"timestamp":%s,"median":%s,"quantiles":{' + quantiles + b"}}"
    text = b",".join(b'{"step":%d,' % k + one for k in range(1, horizon + 1))
    order: list[int] = []
    for k in range(horizon):
        row = horizon + k * n
        order += [k, row + median, *range(row, row + n)]
    return b"[" + text + b"]", order


_NULL_TIMES: dict[int, list[bytes]] = {}


def _steps(forecast: Forecast) -> list[StepOut]:
    """The steps of an answer, written straight to JSON (``msgspec.Raw``).

    Building 24 ``StepOut`` objects with a dict each cost more than everything else in a
    full-detail answer. Here msgspec writes all numbers in one call, and one template
    places them: the bytes are those the objects would give (``_step_structs``, tested).
    """
    values = forecast.values
    horizon = int(values.shape[0])
    if forecast.origin is None:
        times = _NULL_TIMES.setdefault(horizon, [b"null"] * horizon)
    else:
        times = _quoted_times(forecast.origin, forecast.frequency, horizon)
    template, order = _steps_template(
        tuple(quantile_label(q) for q in forecast.quantiles), forecast.median_index, horizon
    )
    numbers = msgspec.json.encode(values.ravel().tolist())[1:-1].split(b",")
    tokens = times + numbers
    text = template % tuple(map(tokens.__getitem__, order))
    # The answer's type says what the text holds; msgspec writes Raw as it is.
    return cast(list[StepOut], msgspec.Raw(text))


@functools.lru_cache(maxsize=1024)
def _quoted_times(origin: float, frequency: float, horizon: int) -> list[bytes]:
    return [msgspec.json.encode(t) for t in _times(origin, frequency, horizon)]


def _step_structs(forecast: Forecast) -> list[StepOut]:
    labels = [quantile_label(q) for q in forecast.quantiles]
    median = forecast.median_index
    return [
        StepOut(
            step=k + 1,
            timestamp=ts,
            median=row[median],
            quantiles=dict(zip(labels, row, strict=True)),
        )
        for k, (ts, row) in enumerate(
            zip(step_times(forecast), forecast.values.tolist(), strict=True)
        )
    ]


def forecast_out(forecast: Forecast) -> ForecastOut:
    return ForecastOut(
        model=ModelRef(name=forecast.model, version=forecast.version),
        target=forecast.target,
        origin=from_epoch(forecast.origin),
        steps=_steps(forecast),
    )


def series_forecast_out(forecast: Forecast, series_id: str | None) -> SeriesForecastOut:
    return SeriesForecastOut(
        model=ModelRef(name=forecast.model, version=forecast.version),
        target=forecast.target,
        origin=from_epoch(forecast.origin),
        steps=_steps(forecast),
        id=series_id,
    )


def stream_out(view: StreamView) -> StreamOut:
    return StreamOut(
        stream_id=view.stream_id,
        model=ModelRef(name=view.model, version=view.version),
        seq=view.seq,
        last_timestamp=from_epoch(view.last_timestamp),
        forecast=None if view.forecast is None else forecast_out(view.forecast),
    )


def observe_out(result: ObserveResult) -> ObserveOut:
    view = result.stream
    return ObserveOut(
        stream_id=view.stream_id,
        model=ModelRef(name=view.model, version=view.version),
        seq=view.seq,
        last_timestamp=from_epoch(view.last_timestamp),
        forecast=None if view.forecast is None else forecast_out(view.forecast),
        applied=result.applied,
        skipped=[datetime.fromtimestamp(t, tz=UTC) for t in result.skipped],
        filled=result.filled,
        missing=result.missing,
        scores=scores_out(result.scores),
        anomalies=sum(s.anomaly for s in result.scores),
    )


class ProblemOut(msgspec.Struct):
    type: str
    title: str
    status: int
    detail: str
    code: str
    field: str | None = None


class SummaryOut(msgspec.Struct):
    """The compact answer of ``detail: summary``."""

    seq: int
    applied: int
    skipped: int
    last_timestamp: datetime | None
    median: Annotated[
        list[float] | None,
        msgspec.Meta(description="Median forecast per step after the last observation."),
    ]
    missing: Annotated[
        int, msgspec.Meta(description="Readings missing before these (see ObserveOut).")
    ] = 0
    positions: Annotated[
        list[float | None],
        msgspec.Meta(
            description=(
                "Per applied reading: its quantile position in the forecast issued for it "
                "(null: not scored; see ObserveOut.scores)."
            )
        ),
    ] = []
    anomaly: Annotated[
        list[bool], msgspec.Meta(description="Per applied reading: flagged as an anomaly.")
    ] = []


class StreamAnswer(msgspec.Struct):
    """One stream's outcome: ``result`` (or ``summary``) when ``status`` is 200, else ``error``."""

    stream_id: str
    status: int
    id: str | int | None = None
    result: ObserveOut | None = None
    summary: SummaryOut | None = None
    error: ProblemOut | None = None


def summary_out(result: ObserveResult) -> SummaryOut:
    view = result.stream
    forecast = view.forecast
    return SummaryOut(
        seq=view.seq,
        applied=result.applied,
        skipped=len(result.skipped),
        last_timestamp=from_epoch(view.last_timestamp),
        median=None if forecast is None else forecast.values[:, forecast.median_index].tolist(),
        missing=result.missing,
        positions=[s.position for s in result.scores],
        anomaly=[s.anomaly for s in result.scores],
    )


class BulkObserveResponse(msgspec.Struct):
    results: list[StreamAnswer]
