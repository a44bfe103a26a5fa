"""JSON bodies of the REST API (pydantic), and their conversion to and from the core's types."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Annotated, Literal, cast

import msgspec
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.forecaster import Forecast, Observations, ObserveResult, StreamView
from service.ids import ID_RULE
from service.timerange import RANGE

Timestamp = Annotated[
    datetime,
    Field(
        description=(
            f"ISO 8601 date-time (UTC if no offset is given) or Unix epoch seconds, {RANGE}."
        ),
        examples=["2026-11-23T08:00:00Z"],
    ),
]


class ObservationIn(BaseModel):
    """One reading: a timestamp and either ``values`` (one per model feature) or ``value``."""

    model_config = ConfigDict(extra="forbid")

    timestamp: Timestamp
    values: list[float] | None = Field(
        default=None, description="One value per model feature, in the manifest's order."
    )
    value: float | None = Field(
        default=None, description="Shorthand for ``values`` when the model has one feature."
    )

    @model_validator(mode="after")
    def _one_of_value_or_values(self) -> ObservationIn:
        if (self.values is None) == (self.value is None):
            raise ValueError("give exactly one of 'value' and 'values'")
        return self

    def row(self) -> list[float]:
        return self.values if self.values is not None else [self.value]  # type: ignore[list-item]


def epoch(ts: datetime) -> float:
    """Epoch seconds; a naive date-time is taken as UTC, never as the server's local time."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.timestamp()


def to_observations(items: list[ObservationIn], field: str) -> Observations:
    return Observations.build(
        [epoch(o.timestamp) for o in items], [o.row() for o in items], field=field
    )


def from_epoch(value: float | None) -> datetime | None:
    return None if value is None else _utc(value)


@functools.lru_cache(maxsize=4096)
def _utc(value: float) -> datetime:
    """Many answers of one bulk request share a time: each is made once (they are immutable)."""
    return datetime.fromtimestamp(value, tz=UTC)


class SeriesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, description="Echoed back with this series' forecast.")
    observations: list[ObservationIn] = Field(min_length=1)


class ForecastRequest(BaseModel):
    """Stateless forecast of one or many whole series, each from the model's initial state."""

    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(default=None, ge=1, description="Model version; latest if absent.")
    series: list[SeriesIn] = Field(min_length=1)


class StreamCreate(BaseModel):
    """Bind a stream to a model (replacing any stream of that id), optionally warmed up."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Model name.")
    version: int | None = Field(default=None, ge=1, description="Model version; latest if absent.")
    history: list[ObservationIn] | None = Field(
        default=None, description="Past readings applied before the stream is stored."
    )


class ObserveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    observations: list[ObservationIn] = Field(
        min_length=1, description="New readings in increasing time order."
    )


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


def quantile_label(q: float) -> str:
    return format(q, "g")


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
    )


class StreamObservationsIn(BaseModel):
    """New readings of one stream, inside a bulk request or a WebSocket message."""

    model_config = ConfigDict(extra="forbid")

    id: str | int | None = Field(default=None, description="Echoed back with the answer.")
    stream_id: str = Field(description=f"The stream, unique within the tenant: {ID_RULE}.")
    observations: list[ObservationIn] = Field(min_length=1)


Detail = Literal["full", "summary"]


class BulkObserveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    streams: list[StreamObservationsIn] = Field(min_length=1)
    detail: Detail = Field(
        default="full",
        description=(
            "full: each stream's whole answer (every step and quantile, ~4 KB); summary: "
            "seq, applied, skipped and the median per step (~10x smaller, for high-rate ingest)."
        ),
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
    )


class BulkObserveResponse(msgspec.Struct):
    results: list[StreamAnswer]
