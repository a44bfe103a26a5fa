"""Checked readings: one series (``Observations``) or many streams at once as columns
(``Readings``), which is what every interface hands the engine.

Every check raises ``InvalidInput`` naming the offending field, before any state is touched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NoReturn

import numpy as np
import numpy.typing as npt

from service.errors import InvalidInput
from service.timerange import in_range, out_of_range, outside

FloatArray = npt.NDArray[np.float32]
TimeArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Inputs up to this many values are checked in plain Python (cheaper than numpy's calls).
_SMALL = 64
_F32_MAX = float(np.finfo(np.float32).max)


def _bad_value(value: float, field: str) -> NoReturn:
    if math.isfinite(value):
        raise InvalidInput(f"value {value:g} overflows float32", field=field)
    raise InvalidInput(f"value {value} is not a finite number", field=field)


def _value_field(field: str, row: int, col: int, columns: bool) -> str:
    return f"{field}.values[{row}][{col}]" if columns else f"{field}[{row}].values[{col}]"


def _time_field(field: str, row: int, columns: bool) -> str:
    return f"{field}.timestamps[{row}]" if columns else f"{field}[{row}].timestamp"


def _bad_timestamp(field: str) -> NoReturn:
    raise InvalidInput("timestamp is not finite", field=field)


def _unordered(field: str) -> NoReturn:
    raise InvalidInput("timestamps must be strictly increasing within a request", field=field)


def _check_small(
    timestamps: Sequence[float], values: Sequence[Sequence[float]], field: str, columns: bool
) -> None:
    previous = -math.inf
    for row, (ts, vals) in enumerate(zip(timestamps, values, strict=True)):
        for col, value in enumerate(vals):
            if not (math.isfinite(value) and abs(value) <= _F32_MAX):
                _bad_value(value, _value_field(field, row, col, columns))
        if not math.isfinite(ts):
            _bad_timestamp(_time_field(field, row, columns))
        if not in_range(ts):
            raise out_of_range(ts, _time_field(field, row, columns))
        if ts <= previous:
            _unordered(_time_field(field, row, columns))
        previous = ts


@dataclass(frozen=True, slots=True)
class Observations:
    """T observations of one series: strictly increasing epoch-second timestamps, F values each.

    ``timed=False`` (``untimed``) marks readings that came without times (a v2 sequence step
    from a Triton client): the engine stamps them after the stream's last timestamp, under
    the same compare-and-set as their state, so a step that lost a race is re-stamped.
    """

    timestamps: TimeArray  # float64 [T]
    values: FloatArray  # float32 [T, F]
    timed: bool = True

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])

    @classmethod
    def build(
        cls,
        timestamps: Sequence[float],
        values: Sequence[Sequence[float]],
        *,
        field: str = "observations",
        columns: bool = False,
    ) -> Observations:
        """Build and check finiteness, shape and order; raises InvalidInput naming the field.

        ``columns``: the readings came as columns (``timestamps`` and ``values`` arrays), so
        a bad one is named ``{field}.values[row][col]`` or ``{field}.timestamps[row]``.
        """
        if len(timestamps) != len(values):
            raise InvalidInput("timestamps and values differ in length", field=field)
        if len(timestamps) == 0:
            raise InvalidInput("at least one observation is required", field=field)
        width = len(values[0])
        if any(len(row) != width for row in values):
            raise InvalidInput("every observation must have the same number of values", field=field)
        if len(timestamps) * width <= _SMALL:
            _check_small(timestamps, values, field, columns)
            return cls(
                timestamps=np.array(timestamps, dtype=np.float64),
                values=np.array(values, dtype=np.float32).reshape(len(values), width),
            )
        ts = np.asarray(timestamps, dtype=np.float64)
        vals = np.asarray(values, dtype=np.float64)
        bad = ~np.isfinite(vals) | (np.abs(vals) > _F32_MAX)
        if bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            _bad_value(float(vals[row, col]), _value_field(field, row, col, columns))
        bad_ts = ~np.isfinite(ts)
        if bad_ts.any():
            _bad_timestamp(_time_field(field, int(np.argmax(bad_ts)), columns))
        far = outside(ts)
        if far.any():
            row = int(np.argmax(far))
            raise out_of_range(float(ts[row]), _time_field(field, row, columns))
        steps = np.diff(ts)
        if (steps <= 0).any():
            _unordered(_time_field(field, int(np.argmax(steps <= 0)) + 1, columns))
        return cls(timestamps=ts, values=vals.astype(np.float32))

    @classmethod
    def untimed(cls, values: npt.ArrayLike, *, field: str = "observations") -> Observations:
        """Readings without times, checked like ``build``'s values; the engine stamps them."""
        vals = np.asarray(values, dtype=np.float64)
        if vals.ndim != 2 or not vals.shape[0]:
            raise InvalidInput("at least one observation is required", field=field)
        bad = ~np.isfinite(vals) | (np.abs(vals) > _F32_MAX)
        if bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            _bad_value(float(vals[row, col]), f"{field}[{row}].values[{col}]")
        ts = np.full(vals.shape[0], np.nan)
        return cls(timestamps=ts, values=vals.astype(np.float32), timed=False)

    def check_features(self, n_features: int, *, field: str = "observations") -> None:
        width = int(self.values.shape[1])
        if width != n_features:
            raise InvalidInput(
                f"the model takes {n_features} value(s) per observation, got {width}",
                field=f"{field}[0].values",
            )


def synthetic_times(last: float | None, steps: int, period: float) -> TimeArray:
    """Times for ``steps`` readings that arrived without any, after ``last``.

    The last one is exactly ``last + period`` whatever ``steps`` is (``period`` for a fresh
    stream), the earlier ones evenly in between: every untimed step moves the stream's clock
    by one period.
    """
    base = 0.0 if last is None or not math.isfinite(last) else last
    fractions = np.arange(1, steps + 1, dtype=np.float64) / steps
    return base + period * fractions


@dataclass(slots=True)
class Readings:
    """New readings for many streams of one tenant, as columns: the engine's one input.

    Item ``i`` is stream ``stream_ids[i]`` with rows ``bounds[i]:bounds[i + 1]`` of
    ``timestamps`` and ``values`` (every item has the same width). Each item's rows are
    checked (``Observations.build``'s rules); which model they suit is the engine's to check.
    """

    stream_ids: list[str]
    bounds: IntArray  # [n + 1]
    timestamps: TimeArray  # [R]
    values: FloatArray  # [R, F]
    timed: bool = True
    #: The model (name, version or None) each stream must be running (v2 sequence steps).
    require: tuple[str, int | None] | None = None
    keys: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.stream_ids)

    @property
    def width(self) -> int:
        return int(self.values.shape[1])

    @classmethod
    def of(
        cls,
        items: Sequence[tuple[str, Observations]],
        *,
        require: tuple[str, int | None] | None = None,
    ) -> Readings:
        """Items of equal width and timedness (the caller groups them) as one columnar batch."""
        counts = np.fromiter((len(obs) for _, obs in items), dtype=np.int64, count=len(items))
        bounds = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum(counts, out=bounds[1:])
        if len(items) == 1:
            timestamps, values = items[0][1].timestamps, items[0][1].values
        else:
            timestamps = np.concatenate([obs.timestamps for _, obs in items])
            values = np.concatenate([obs.values for _, obs in items])
        return cls(
            stream_ids=[stream_id for stream_id, _ in items],
            bounds=bounds,
            timestamps=timestamps,
            values=values,
            timed=items[0][1].timed,
            require=require,
        )

    @classmethod
    def single_rows(
        cls, stream_ids: list[str], timestamps: TimeArray, values: FloatArray
    ) -> Readings:
        """One reading per stream, already checked (the common ingest message)."""
        return cls(
            stream_ids=stream_ids,
            bounds=np.arange(len(stream_ids) + 1, dtype=np.int64),
            timestamps=timestamps,
            values=values,
        )

    def select(self, items: Sequence[int]) -> Readings:
        """The given items only, in that order (a retry of the streams that lost a race)."""
        index = np.asarray(items, dtype=np.int64)
        starts, ends = self.bounds[index], self.bounds[index + 1]
        rows = ranges(starts, ends)
        bounds = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(ends - starts, out=bounds[1:])
        return Readings(
            stream_ids=[self.stream_ids[i] for i in items],
            bounds=bounds,
            timestamps=self.timestamps[rows],
            values=self.values[rows],
            timed=self.timed,
            require=self.require,
            keys=[self.keys[i] for i in items] if self.keys else [],
        )


def ranges(starts: IntArray, ends: IntArray) -> IntArray:
    """The indices ``starts[0]:ends[0]``, then ``starts[1]:ends[1]``, ... as one array."""
    counts = ends - starts
    total = int(counts.sum())
    if total == len(starts):  # one row each: the common case
        return starts.copy()
    offsets = np.repeat(starts - np.cumsum(counts) + counts, counts)
    return offsets + np.arange(total, dtype=np.int64)


def single_readings(
    timestamps: Sequence[float], rows: Sequence[Sequence[float]], width: int
) -> tuple[TimeArray, FloatArray, npt.NDArray[np.bool_]]:
    """Many one-reading items of one width at once: times, values and which are valid.

    An invalid one (a value not finite or over float32, a timestamp not finite or out of the
    time range) is marked so the caller can have ``Observations.build`` word its exact error.
    """
    ts = np.array(timestamps, dtype=np.float64)
    wide = np.array(rows, dtype=np.float64).reshape(len(rows), width)
    with np.errstate(invalid="ignore", over="ignore"):
        good = ~outside(ts) & (np.isfinite(wide) & (np.abs(wide) <= _F32_MAX)).all(axis=1)
        values = wide.astype(np.float32)
    return ts, values, good
