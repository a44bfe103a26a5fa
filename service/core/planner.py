"""One round of a batch for one group of streams and one request, planned as columns.

Each item of the round is one stream's readings. The plan finds, for all items at once,
which readings are duplicates (at or before the stream's last timestamp: skipped), stamps
untimed ones after the stream's last time, counts the readings missing before each fresh
one, and applies the gap policy; then it hands out the model calls of each phase (``calls``):
most items need one call (phase 0), an item whose gaps are filled from the model's median
needs one more per gap. After the calls, ``answer`` reads every item's answer off the
streams as columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from service.batching import fresh_start
from service.core.answers import AnswerChunk
from service.core.gaps import Feed, fill_forward, median_feeds, missing_before, refusal
from service.core.observations import FloatArray, IntArray, Readings, TimeArray, ranges
from service.core.observations import synthetic_times as stamp
from service.core.scoring import Scores, score_round
from service.core.streams import Streams
from service.errors import ForecastError

if TYPE_CHECKING:
    from service.core.engine import Policies


@dataclass(frozen=True, slots=True)
class Call:
    """Rows for some streams of one group: ``x`` [k, T, F] at ``times`` [k, T]."""

    slots: IntArray
    x: FloatArray
    times: TimeArray

    @property
    def steps(self) -> int:
        return int(self.x.shape[1])


class RoundPlan:
    """What one round does to ``slots`` of ``streams`` with ``items`` of ``readings``."""

    def __init__(
        self,
        streams: Streams,
        slots: IntArray,
        readings: Readings,
        items: IntArray,
        policies: Policies,
    ) -> None:
        self.slots = slots
        self.readings = readings
        self.items = items
        self.errors: dict[int, ForecastError] = {}
        self.skipped: dict[int, tuple[float, ...]] = {}
        runtime = streams.runtime
        manifest = runtime.manifest
        self._target = manifest.features.index(manifest.target)
        self._median = manifest.median_index
        period = manifest.frequency
        n = len(slots)
        starts, ends = readings.bounds[items], readings.bounds[items + 1]
        counts = ends - starts
        rows = ranges(starts, ends)
        first = np.zeros(n, dtype=np.int64)
        np.cumsum(counts[:-1], out=first[1:])
        last = streams.last_ts[slots]
        entry_of = np.repeat(np.arange(n), counts)
        if readings.timed:
            ts = readings.timestamps[rows]
        else:
            ts = np.concatenate([stamp(float(last[k]), int(counts[k]), period) for k in range(n)])
        values = readings.values[rows]
        fresh = ts > last[entry_of]
        n_fresh = np.add.reduceat(fresh.astype(np.int64), first)
        previous = np.empty_like(ts)
        previous[1:] = ts[:-1]
        previous[first] = -np.inf
        previous = np.maximum(previous, last[entry_of])
        gap_rows = np.where(fresh, missing_before(ts, previous, period), 0)
        self.missing = np.add.reduceat(gap_rows, first)
        self.fresh = n_fresh
        self.fed = n_fresh.copy()
        #: Items that are not one call of their fresh rows: gaps filled, forward or median.
        self._feeds: dict[int, list[Feed]] = {}
        for k in np.flatnonzero(n_fresh < counts).tolist():
            begin = int(first[k])
            cut = fresh_start(ts[begin : begin + int(counts[k])], float(last[k]))
            self.skipped[k] = tuple(ts[begin : begin + cut].tolist())
        policy = policies.gap_policy
        if policy != "accept":
            for k in np.flatnonzero(self.missing).tolist():
                begin, count = int(first[k]), int(counts[k])
                offset = count - int(n_fresh[k])
                chosen = slice(begin + offset, begin + count)
                try:
                    self._gap(streams, k, policy, policies.max_gap_steps, offset,
                              ts[chosen], values[chosen], gap_rows[chosen])  # fmt: skip
                except ForecastError as exc:
                    self.errors[k] = exc
        #: The fresh readings' scores (None: scoring is off).
        self.scores: Scores | None = None
        if policies.scoring:
            self.scores = score_round(
                streams, slots, ts, values, fresh, entry_of, list(self.errors),
                policies.anomaly_margin,
            )  # fmt: skip
        self._ts, self._values = ts, values
        self._first, self._counts = first, counts

    def _gap(
        self,
        streams: Streams,
        k: int,
        policy: str,
        max_gap: int,
        offset: int,
        ts: TimeArray,
        values: FloatArray,
        missing: IntArray,
    ) -> None:
        manifest = streams.runtime.manifest
        period = manifest.frequency
        refused = refusal(policy, missing, period, max_gap, offset)  # type: ignore[arg-type]
        if refused is not None:
            raise refused
        slot = int(self.slots[k])
        last_ts = float(streams.last_ts[slot])
        if policy == "forward":
            filled_ts, filled = fill_forward(
                ts, values, missing, last_ts, streams.last_row(slot), period, offset
            )
            feeds = [Feed(np.empty(0), None, filled_ts, filled)]
        else:
            feeds = median_feeds(
                ts,
                values,
                missing,
                last_ts=last_ts,
                last_values=streams.last_row(slot),
                has_forecast=bool(streams.has_forecast[slot]),
                horizon=manifest.horizon,
                period=period,
                offset=offset,
            )
        self._feeds[k] = feeds
        self.fed[k] = sum(len(feed.times) for feed in feeds)

    def calls(self, streams: Streams, phase: int) -> list[Call]:
        """The model calls of ``phase``, one per T (rows per stream)."""
        out: list[Call] = []
        if phase == 0:
            plain = np.ones(len(self.slots), dtype=bool)
            plain[list(self._feeds)] = False
            plain[list(self.errors)] = False
            plain &= self.fresh > 0
            for steps in np.unique(self.fresh[plain]).tolist():
                chosen = np.flatnonzero(plain & (self.fresh == steps))
                start = self._first[chosen] + self._counts[chosen] - steps
                index = start[:, None] + np.arange(steps)[None, :]
                out.append(Call(self.slots[chosen], self._values[index], self._ts[index]))
        by_steps: dict[int, list[tuple[int, FloatArray, TimeArray]]] = {}
        for k, feeds in self._feeds.items():
            if k in self.errors or phase >= len(feeds):
                continue
            feed, slot = feeds[phase], int(self.slots[k])
            forecast = streams.forecast[slot] if streams.has_forecast[slot] else None
            rows = feed.rows(forecast, self._target, self._median)
            by_steps.setdefault(len(rows), []).append((slot, rows, feed.times))
        for group in by_steps.values():
            out.append(
                Call(
                    np.array([slot for slot, _, _ in group], dtype=np.int64),
                    np.stack([rows for _, rows, _ in group]),
                    np.stack([times for _, _, times in group]),
                )
            )
        return out

    def answer(self, streams: Streams) -> AnswerChunk:
        """Every item's answer, read off the streams after this round's calls."""
        slots = self.slots
        applied = self.fresh.copy()
        filled = self.fed - self.fresh
        if self.errors:
            failed = list(self.errors)
            applied[failed] = 0
            filled[failed] = 0
        return AnswerChunk(
            model=streams.model,
            stream_ids=[self.readings.stream_ids[i] for i in self.items.tolist()],
            seq=streams.seq[slots],
            last_ts=streams.last_ts[slots],
            forecast=streams.forecast[slots],
            has_forecast=streams.has_forecast[slots],
            applied=applied,
            filled=filled,
            missing=self.missing,
            skipped=self.skipped,
            scores=self.scores,
        )


def plan_unit(
    streams: Streams, slots: IntArray, readings: Readings, items: IntArray, policies: Policies
) -> RoundPlan:
    return RoundPlan(streams, slots, readings, items, policies)
