"""Live accuracy: the scores of answered readings, summed into the Prometheus counters and
into a rolling window per model version that ``GET /v1/models/{name}`` shows.

The window is this process's own (each replica shows what it scored): the last hour in
one-minute slots, so a figure is the last 59-60 minutes. Prometheus, which sums every
replica, is the fleet-wide view.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from service.core.answers import AnswerChunk
from service.core.observations import IntArray
from service.core.scoring import HORIZON_BUCKETS, horizon_bucket
from service.metrics import Metrics

WINDOW_SECONDS = 3600.0
SLOT_SECONDS = 60.0
_SLOTS = int(WINDOW_SECONDS // SLOT_SECONDS)
#: The window's columns per slot.
_FIELDS = ("scored", "unscored", "abs_error", "naive_error", "inside", "pinball", "anomalies")


class _Window:
    """Sums per one-minute slot over the last hour."""

    __slots__ = ("minutes", "sums")

    def __init__(self) -> None:
        self.sums = np.zeros((_SLOTS, len(_FIELDS)))
        self.minutes = np.full(_SLOTS, -1, dtype=np.int64)

    def add(self, now: float, values: list[float]) -> None:
        minute = int(now // SLOT_SECONDS)
        slot = minute % _SLOTS
        if self.minutes[slot] != minute:
            self.minutes[slot] = minute
            self.sums[slot] = 0.0
        self.sums[slot] += values

    def total(self, now: float) -> dict[str, float]:
        minute = int(now // SLOT_SECONDS)
        current = self.minutes > minute - _SLOTS
        return dict(zip(_FIELDS, self.sums[current].sum(axis=0).tolist(), strict=True))


class LiveAccuracy:
    """Counts every answered reading's score once (a retried or failed one is not answered)."""

    def __init__(self, metrics: Metrics, clock: Callable[[], float] = time.time) -> None:
        self.metrics = metrics
        self._clock = clock
        self._windows: dict[tuple[str, int], _Window] = {}

    def add(self, chunk: AnswerChunk, items: IntArray) -> None:
        """The scores of ``items`` (answered rows of ``chunk``)."""
        scores = chunk.scores
        if scores is None or not len(items):
            return
        rows = scores.rows(items)
        if not len(rows):
            return
        model = chunk.model
        name, version = model.name, str(model.version)
        ok = rows[scores.scored[rows]]
        m = self.metrics
        unscored = len(rows) - len(ok)
        if unscored:
            m.unscored.labels(name, version).inc(unscored)
        anomalies = int(scores.anomaly[ok].sum())
        if anomalies:
            m.anomalies.labels(name, version).inc(anomalies)
        error = scores.error[ok].astype(np.float64)
        naive = scores.naive[ok].astype(np.float64)
        inside = scores.inside[ok]
        pinball = scores.pinball[ok].astype(np.float64)
        buckets = horizon_bucket(scores.step[ok])
        labels = [quantile_label(q) for q in model.quantiles]
        for b in np.unique(buckets).tolist():
            mine = buckets == b
            key = (name, version, HORIZON_BUCKETS[b][1])
            m.scored.labels(*key).inc(int(mine.sum()))
            m.abs_error.labels(*key).inc(float(np.abs(error[mine]).sum()))
            m.squared_error.labels(*key).inc(float(np.square(error[mine]).sum()))
            m.naive_error.labels(*key).inc(float(naive[mine].sum()))
            m.inside.labels(*key).inc(int(inside[mine].sum()))
            for label, loss in zip(labels, pinball[mine].sum(axis=0).tolist(), strict=True):
                m.pinball.labels(*key, label).inc(loss)
        window = self._windows.setdefault((name, model.version), _Window())
        window.add(
            self._clock(),
            [
                float(len(ok)),
                float(unscored),
                float(np.abs(error).sum()),
                float(naive.sum()),
                float(inside.sum()),
                float(pinball.sum()),
                float(anomalies),
            ],
        )

    def figures(self, name: str, version: int, quantiles: int) -> dict[str, Any]:
        """The last hour's figures of one model version, as this replica scored them."""
        window = self._windows.get((name, version))
        sums = window.total(self._clock()) if window is not None else dict.fromkeys(_FIELDS, 0.0)
        scored = sums["scored"]

        def ratio(a: float, b: float) -> float | None:
            return a / b if b > 0 else None

        return {
            "window_seconds": WINDOW_SECONDS,
            "replica": "this process only (Prometheus sums every replica)",
            "scored": int(scored),
            "unscored": int(sums["unscored"]),
            "mae": ratio(sums["abs_error"], scored),
            "naive_mae": ratio(sums["naive_error"], scored),
            "relative_mae": ratio(sums["abs_error"], sums["naive_error"]),
            "coverage": ratio(sums["inside"], scored),
            "mean_pinball": ratio(sums["pinball"], scored * quantiles),
            "anomalies": int(sums["anomalies"]),
        }


def headline(accuracy: dict[str, dict[str, float]] | None, live: dict[str, Any]) -> str:
    """One line a person reads: the held-out figure beside the last hour's."""
    trained = (accuracy or {}).get("model", {}).get("mase")
    first = "trained: no held-out MASE" if trained is None else f"trained: MASE {trained:.2f}"
    skill, coverage = live["relative_mae"], live["coverage"]
    if skill is None or coverage is None:
        return f"{first}, live last hour: nothing scored"
    return (
        f"{first}, live last hour: MAE / naive MAE {skill:.2f}, "
        f"interval coverage {coverage:.0%} over {live['scored']} readings"
    )


def quantile_label(q: float) -> str:
    """A quantile as its label in metrics and answers: 0.1 -> "0.1", 0.5 -> "0.5"."""
    return format(q, "g")
