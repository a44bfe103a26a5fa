"""The JSON request bodies as pydantic models: what the OpenAPI document describes, and the
reference every body is judged by.

The hot bodies are decoded by ``service.api.bodies`` with msgspec; a body that decoder does
not take as it is comes here, so it is accepted or refused exactly as these models say (the
same problem+json, the same offending field). ``to_observations`` and ``to_series`` turn a
validated body into the core's checked ``Observations``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.core.observations import Observations
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


class SeriesColumns(BaseModel):
    """A whole series as columns: ``values`` (one row per reading) at ``timestamps``, or at
    ``start`` and every ``step`` seconds after it."""

    model_config = ConfigDict(extra="forbid")

    timestamps: list[Timestamp] | None = Field(
        default=None, description="One time per row of ``values``, strictly increasing."
    )
    start: Timestamp | None = Field(default=None, description="Time of the first row.")
    step: float | None = Field(
        default=None, gt=0, description="Seconds between rows (with ``start``)."
    )
    values: list[list[float]] | list[float] = Field(
        min_length=1,
        description="One row per reading, one value per model feature (a flat list for "
        "one-feature models).",
    )

    @model_validator(mode="after")
    def _one_clock(self) -> SeriesColumns:
        if (self.timestamps is None) == (self.start is None) or (self.start is None) != (
            self.step is None
        ):
            raise ValueError("give either 'timestamps' or 'start' and 'step'")
        if self.timestamps is not None and len(self.timestamps) != len(self.values):
            raise ValueError("'timestamps' and 'values' differ in length")
        return self

    def observations(self, field: str) -> Observations:
        rows = [v if isinstance(v, list) else [v] for v in self.values]
        if self.timestamps is not None:
            times = [epoch(t) for t in self.timestamps]
        else:
            assert self.start is not None
            assert self.step is not None
            first = epoch(self.start)
            times = [first + k * self.step for k in range(len(rows))]
        return Observations.build(times, rows, field=field, columns=True)


class SeriesIn(BaseModel):
    """One series: ``observations``, or the same readings as columns."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, description="Echoed back with this series' forecast.")
    observations: list[ObservationIn] | None = Field(default=None, min_length=1)
    timestamps: list[Timestamp] | None = Field(
        default=None, description="Columns: one time per row of ``values``."
    )
    start: Timestamp | None = Field(default=None, description="Columns: time of the first row.")
    step: float | None = Field(default=None, gt=0, description="Columns: seconds between rows.")
    values: list[list[float]] | list[float] | None = Field(
        default=None, min_length=1, description="Columns: one row per reading."
    )

    @model_validator(mode="after")
    def _one_form(self) -> SeriesIn:
        columns = (self.timestamps, self.start, self.step, self.values)
        if (self.observations is None) == all(c is None for c in columns):
            raise ValueError(
                "give 'observations', or 'values' with 'timestamps' or 'start' and 'step'"
            )
        if self.observations is None:
            SeriesColumns(
                timestamps=self.timestamps, start=self.start, step=self.step, values=self.values
            )
        return self

    def series(self, field: str) -> Observations:
        if self.observations is not None:
            return to_observations(self.observations, f"{field}.observations")
        assert self.values is not None
        columns = SeriesColumns.model_construct(
            timestamps=self.timestamps, start=self.start, step=self.step, values=self.values
        )
        return columns.observations(field)


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
    history: list[ObservationIn] | SeriesColumns | None = Field(
        default=None,
        description="Past readings applied before the stream is stored, as observations or "
        "as columns.",
    )

    def observations(self) -> Observations | None:
        if self.history is None:
            return None
        if isinstance(self.history, SeriesColumns):
            return self.history.observations("history")
        return to_observations(self.history, "history")


class ObserveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    observations: list[ObservationIn] = Field(
        min_length=1, description="New readings in increasing time order."
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
