"""Every fresh reading scored against the forecast its stream issued for that time.

A stream's record keeps the forecast it last issued (at its last timestamp ``origin``, for
the H steps after it) and the target value of its last reading. A reading that arrives at
``origin + k * period`` (k rounded to the nearest whole step, 1 <= k <= H) is scored against
step k of that forecast, in the round that applies it, before the model call replaces the
forecast: nothing is read from the store for it. Per reading:

- ``error``: the reading's target minus the forecast median;
- ``pinball``: the pinball (quantile) loss of every quantile;
- ``inside``: whether it lies within the outer interval (lowest to highest quantile);
- ``position``: where it falls in the forecast distribution, the quantile levels
  interpolated linearly between the quantile values (0 below the lowest, 1 above the
  highest);
- ``naive``: the absolute error of the naive forecast issued at the same origin (the last
  reading's target value, for every step), for a scale-free skill;
- ``anomaly``: outside the outer interval by more than ``margin`` times its width.

A reading is not scored when no forecast was issued for it: the stream's first readings
(created without a history), a reading more than H periods after the last one, the first
readings after a replay under new weights (that forecast was never issued), or a record of
format 1 without the last value. Duplicates are never fresh, so never scored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.core.observations import FloatArray, IntArray, TimeArray, ranges
from service.core.streams import Streams
from service.state.record import StreamRecord

BoolArray = npt.NDArray[np.bool_]

#: Horizon steps grouped for the metrics' ``horizon`` label: (first step, label).
HORIZON_BUCKETS: tuple[tuple[int, str], ...] = ((1, "1"), (2, "2-6"), (7, "7-24"), (25, "25+"))
_FIRSTS = np.array([first for first, _ in HORIZON_BUCKETS[1:]], dtype=np.int64)


def horizon_bucket(steps: IntArray) -> IntArray:
    """The index in ``HORIZON_BUCKETS`` of each step (1-based)."""
    return np.searchsorted(_FIRSTS, steps, side="right").astype(np.int64)


@dataclass(frozen=True, slots=True)
class ReadingScore:
    """How one applied reading compared with the forecast issued for its time."""

    timestamp: float
    #: The forecast step it was scored against (None: no forecast was issued for it).
    step: int | None
    error: float | None
    position: float | None
    anomaly: bool
    #: Inside the outer interval (False when not scored).
    inside: bool = False


@dataclass(frozen=True, slots=True)
class LastAnomaly:
    """A stream's most recent anomalous reading, as its record keeps it."""

    timestamp: float
    value: float
    position: float
    low: float
    high: float


@dataclass(slots=True)
class Scores:
    """The scores of one round's fresh readings, as columns (one row per reading, in item
    order); item ``k``'s are rows ``bounds[k]:bounds[k + 1]``. Rows of readings that were not
    scored hold NaN (step 0); ``scored`` says which."""

    bounds: IntArray
    ts: TimeArray
    scored: BoolArray
    step: IntArray
    error: FloatArray
    position: FloatArray
    anomaly: BoolArray
    inside: BoolArray
    naive: FloatArray  # absolute error of the naive forecast
    pinball: FloatArray  # [m, Q]

    def of(self, row: int) -> tuple[ReadingScore, ...]:
        """Item ``row``'s readings' scores."""
        start, end = int(self.bounds[row]), int(self.bounds[row + 1])
        out = []
        for j in range(start, end):
            ok = bool(self.scored[j])
            out.append(
                ReadingScore(
                    float(self.ts[j]),
                    int(self.step[j]) if ok else None,
                    float(self.error[j]) if ok else None,
                    float(self.position[j]) if ok else None,
                    bool(self.anomaly[j]),
                    bool(self.inside[j]),
                )
            )
        return tuple(out)

    def rows(self, items: IntArray) -> IntArray:
        """The reading rows of ``items``."""
        return ranges(self.bounds[items], self.bounds[items + 1])


def score_round(
    streams: Streams,
    slots: IntArray,
    ts: TimeArray,
    values: FloatArray,
    fresh: BoolArray,
    entry_of: IntArray,
    failed: list[int],
    margin: float,
) -> Scores:
    """Score the fresh rows (``ts``/``values``, item ``entry_of``) of items on ``slots``
    against ``streams``' forecasts as they stand before this round's calls; record each
    item's last anomaly on its stream. Items in ``failed`` apply nothing: not scored."""
    m = streams.runtime.manifest
    period, horizon = m.frequency, m.horizon
    rows = np.flatnonzero(fresh)
    owner = entry_of[rows]
    slot = slots[owner]
    bounds = np.zeros(len(slots) + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner, minlength=len(slots)), out=bounds[1:])
    origin = streams.last_ts[slot]
    known = np.isfinite(origin)
    step = np.where(known, np.rint((ts[rows] - np.where(known, origin, 0.0)) / period), 0)
    step = step.astype(np.int64)
    y = values[rows, streams.target].astype(np.float32)
    naive_at = streams.last_target[slot]
    ok = streams.issued[slot] & known & (step >= 1) & (step <= horizon) & np.isfinite(naive_at)
    if failed:
        ok &= ~np.isin(owner, failed)
    count, width = len(rows), len(m.quantiles)
    scores = Scores(
        bounds=bounds,
        ts=ts[rows],
        scored=ok,
        step=np.where(ok, step, 0),
        error=np.full(count, np.nan, dtype=np.float32),
        position=np.full(count, np.nan, dtype=np.float32),
        anomaly=np.zeros(count, dtype=bool),
        inside=np.zeros(count, dtype=bool),
        naive=np.full(count, np.nan, dtype=np.float32),
        pinball=np.full((count, width), np.nan, dtype=np.float32),
    )
    chosen = np.flatnonzero(ok)
    if not len(chosen):
        return scores
    q = streams.forecast[slot[chosen], step[chosen] - 1]  # [c, Q]
    actual = y[chosen]
    taus = np.asarray(m.quantiles, dtype=np.float32)
    scores.error[chosen] = actual - q[:, m.median_index]
    diff = actual[:, None] - q
    scores.pinball[chosen] = np.maximum(taus * diff, (taus - 1.0) * diff)
    low, high = q[:, 0], q[:, -1]
    scores.inside[chosen] = (actual >= low) & (actual <= high)
    scores.position[chosen] = positions(q, taus, actual)
    spread = margin * (high - low)
    anomalous = (actual < low - spread) | (actual > high + spread)
    scores.anomaly[chosen] = anomalous
    scores.naive[chosen] = np.abs(actual - naive_at[chosen])
    if anomalous.any():
        where = chosen[anomalous]  # in order: a stream's later anomaly overwrites its earlier
        at = slot[where]
        streams.anomaly[at, 0] = scores.ts[where]
        streams.anomaly[at, 1] = actual[anomalous]
        streams.anomaly[at, 2] = scores.position[where]
        streams.anomaly[at, 3] = low[anomalous]
        streams.anomaly[at, 4] = high[anomalous]
        for one, when in zip(at.tolist(), scores.ts[where].tolist(), strict=True):
            streams.flagged.setdefault(one, []).append(when)
    return scores


def positions(q: FloatArray, taus: FloatArray, actual: FloatArray) -> FloatArray:
    """Each value's quantile level, interpolated between its forecast's quantile values."""
    if q.shape[1] < 2:
        return (actual >= q[:, 0]).astype(np.float32)
    index = np.clip((q <= actual[:, None]).sum(axis=1) - 1, 0, q.shape[1] - 2)
    at = np.arange(len(actual))
    lo, hi = q[at, index], q[at, index + 1]
    span = hi - lo
    frac = np.where(span > 0, (actual - lo) / np.where(span > 0, span, 1.0), 0.5)
    level = taus[index] + np.clip(frac, 0.0, 1.0) * (taus[index + 1] - taus[index])
    level = np.where(actual < q[:, 0], 0.0, np.where(actual > q[:, -1], 1.0, level))
    return level.astype(np.float32)


def last_anomaly(record: StreamRecord) -> LastAnomaly | None:
    """A record's last anomaly (None: none yet)."""
    if not np.isfinite(record.anomaly_ts):
        return None
    return LastAnomaly(
        record.anomaly_ts,
        record.anomaly_value,
        record.anomaly_position,
        record.anomaly_low,
        record.anomaly_high,
    )
