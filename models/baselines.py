"""The baselines every model is measured against, each one also a servable kind.

For a series with seasons ``(m1, m2)`` (a day and a week of half-hourly demand):

- ``naive``: the last value (a seasonal naive of period 1);
- ``seasonal_naive_<m>``: the value one season of each period earlier;
- ``ets_<m1>``: damped-trend Holt-Winters on the shortest season;
- ``ets_<m1>_<m2>``: the multi-seasonal model, Taylor's double-seasonal Holt-Winters.

Each is fitted on the training split only, filtered through the whole series with its
parameters fixed, and scored on the same origins as the networks. Their quantiles are their
own validation errors' conformal quantiles per horizon step (:mod:`models.calibrate`), the
networks' calibration applied to a point forecast. :class:`SeasonalNaive` and
:class:`~models.holtwinters.HoltWinters` are also what ``--kind snaive`` and ``--kind ets``
export (:mod:`models.graphs`), so a baseline and its served graph are one model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from models.calibrate import conformal_offsets, monotone
from models.data import Series, Split
from models.evaluate import mae, origins, targets
from models.holtwinters import Array, HoltWinters, grid_index, slot_of

StatisticalKind = Literal["snaive", "ets"]


@dataclass(frozen=True)
class SeasonalNaive:
    """The last value seen at each slot of a season: its state is one season of readings.

    Slots come from the timestamps (``round(time / frequency) mod period``), as in
    :class:`~models.holtwinters.HoltWinters`, so a reading after a gap lands in its own slot
    and a forecast reads the last value seen at the slot it is for.
    """

    period: int
    frequency: float
    initial: Array  # [period], by slot

    @property
    def periods(self) -> tuple[int, ...]:
        return (self.period,)

    @property
    def state_size(self) -> int:
        return self.period

    def parameters(self) -> dict[str, Any]:
        return {"periods": [self.period]}

    @classmethod
    def fit(cls, y: Array, times: Array, period: int, frequency: float) -> SeasonalNaive:
        """Start from the training mean (every slot), until a season has been seen."""
        if len(y) <= period:
            raise ValueError(f"seasonal naive needs more than {period} training observations")
        return cls(max(1, int(period)), float(frequency), np.full(max(1, period), np.mean(y)))

    def run(
        self,
        y: Array,
        times: Array,
        *,
        state: Array | None = None,
        at: npt.NDArray[np.int64] | None = None,
        horizon: int = 0,
    ) -> tuple[Array, Array]:
        """Filter from ``state``: the buffer after the last value and the forecasts at ``at``."""
        buffer = np.array(self.initial if state is None else state, dtype=np.float64)
        index = grid_index(times, self.frequency)
        slots = slot_of(index, self.period)
        wanted = {} if at is None else {int(t): i for i, t in enumerate(at)}
        out = np.empty((len(wanted), horizon))
        steps = np.arange(1, horizon + 1)
        for t, value in enumerate(np.asarray(y, dtype=np.float64)):
            buffer[slots[t]] = value
            if t in wanted:
                out[wanted[t]] = buffer[slot_of(index[t] + steps, self.period)]
        return buffer, out


StatisticalModel = SeasonalNaive | HoltWinters


def state_row(model: StatisticalModel, y: Array, times: Array) -> Array:
    """The model's state row after filtering ``y`` from its initial state."""
    final, _ = model.run(y, times)
    return final if isinstance(final, np.ndarray) else final.row()


def initial_row(model: StatisticalModel) -> Array:
    return model.initial if isinstance(model, SeasonalNaive) else model.initial.row()


@dataclass(frozen=True)
class Baseline:
    """One fitted baseline and its calibrated test forecasts."""

    name: str
    kind: StatisticalKind
    model: StatisticalModel
    #: Conformal offsets [H, Q] from the validation errors (the graph adds them).
    offsets: Array
    #: Calibrated quantile forecasts [O_test, H, Q] at the test origins.
    forecasts: Array
    #: Point forecasts [O_val, H] at the validation origins (to choose between baselines).
    validation_point: Array
    #: Their MAE on the validation origins.
    validation_mae: float


def baseline_models(series: Series, split: Split) -> dict[str, StatisticalModel]:
    """Every baseline the series supports, fitted on its training split, in report order."""
    y, times = series.y[: split.train_end], series.times[: split.train_end]
    f = series.frequency
    models: dict[str, StatisticalModel] = {"naive": SeasonalNaive.fit(y, times, 1, f)}
    usable = [m for m in series.seasons if m < len(y)]
    for m in usable:
        models[f"seasonal_naive_{m}"] = SeasonalNaive.fit(y, times, m, f)
    # Holt-Winters starts from two seasons of its longest period.
    startable = [m for m in series.seasons if 2 * m <= len(y)]
    if not startable:
        models["ets"] = HoltWinters.fit(y, times, (), f)
    else:
        models[f"ets_{startable[0]}"] = HoltWinters.fit(y, times, startable[:1], f)
        if len(startable) >= 2:
            pair = startable[-2:]
            models[f"ets_{pair[0]}_{pair[1]}"] = HoltWinters.fit(y, times, pair, f)
    return models


def fit_baselines(
    series: Series, split: Split, horizon: int, quantiles: Sequence[float]
) -> dict[str, Baseline]:
    """Every baseline with calibrated quantile forecasts [O_test, H, Q] on the test origins."""
    val_at = origins(split.train_end, split.val_end, horizon)
    test_at = origins(split.val_end, split.n, horizon)
    if len(val_at) < 2:
        raise ValueError("the validation split is shorter than the horizon")
    val_actual = targets(series.y, val_at, horizon)
    both = np.concatenate([val_at, test_at])
    out: dict[str, Baseline] = {}
    q = len(quantiles)
    for name, model in baseline_models(series, split).items():
        _, points = model.run(series.y, series.times, at=both, horizon=horizon)
        val_point, test_point = points[: len(val_at)], points[len(val_at) :]
        # The point stays the median, so an interval must contain it: a biased point (a
        # seasonal naive behind a trend) gets its lower or upper offsets clipped at zero.
        offsets = monotone(
            conformal_offsets(np.repeat(val_point[..., None], q, axis=-1), val_actual, quantiles),
            list(quantiles).index(0.5),
        )
        kind: StatisticalKind = "snaive" if isinstance(model, SeasonalNaive) else "ets"
        out[name] = Baseline(
            name=name,
            kind=kind,
            model=model,
            offsets=offsets,
            forecasts=test_point[..., None] + offsets[None],
            validation_point=val_point,
            validation_mae=mae(val_point, val_actual),
        )
    return out
