"""Held-out accuracy of a forecaster next to baselines computed on the same origins.

A forecast origin t means "after observing y[t], forecast y[t+1 .. t+H]". The test origins are
every t whose H targets all lie in the test split; every method (the network, naive, seasonal
naive, Holt-Winters exponential smoothing) is scored on exactly those origins.

The baselines get quantiles the simplest honest way: the point forecast plus the empirical
quantiles of that method's own errors at each horizon step on the validation origins.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.data import Split

Array = npt.NDArray[np.float64]

#: Baselines, in the order the report shows them.
BASELINES = ("naive", "seasonal_naive", "ets")


def origins(start: int, end: int, horizon: int) -> npt.NDArray[np.int64]:
    """Origins whose targets y[t+1 .. t+H] all lie in ``[start, end)``."""
    return np.arange(start - 1, end - horizon, dtype=np.int64)


def targets(y: Array, at: npt.NDArray[np.int64], horizon: int) -> Array:
    """The actual values [O, H] after each origin."""
    return np.asarray(y[at[:, None] + np.arange(1, horizon + 1)[None, :]], dtype=np.float64)


# --- metrics -------------------------------------------------------------------------------


def mae(point: Array, actual: Array) -> float:
    return float(np.mean(np.abs(point - actual)))


def rmse(point: Array, actual: Array) -> float:
    return float(np.sqrt(np.mean((point - actual) ** 2)))


def seasonal_scale(y_train: Array, season: int) -> float:
    """MASE's denominator: in-sample MAE of the one-step seasonal naive on the training split."""
    m = max(1, season)
    if len(y_train) <= m:
        raise ValueError(f"training split ({len(y_train)}) is not longer than the season ({m})")
    scale = float(np.mean(np.abs(y_train[m:] - y_train[:-m])))
    if scale == 0.0:
        raise ValueError("training split is constant at the seasonal lag: MASE is undefined")
    return scale


def mase(point: Array, actual: Array, scale: float) -> float:
    return mae(point, actual) / scale


def pinball(quantile_forecasts: Array, actual: Array, quantiles: Sequence[float]) -> float:
    """Mean pinball (quantile) loss over origins, steps and quantile levels, in target units.

    ``quantile_forecasts`` is [..., Q] and ``actual`` is the matching [...].
    """
    q = np.asarray(quantiles, dtype=np.float64)
    diff = actual[..., None] - quantile_forecasts
    return float(np.mean(np.maximum(q * diff, (q - 1.0) * diff)))


def coverage(lower: Array, upper: Array, actual: Array) -> float:
    """Fraction of actual values inside [lower, upper]."""
    return float(np.mean((actual >= lower) & (actual <= upper)))


def scores(
    quantile_forecasts: Array, actual: Array, quantiles: Sequence[float], scale: float
) -> dict[str, float]:
    """Every metric the manifest stores, for forecasts [O, H, Q] against actual [O, H]."""
    median = quantile_forecasts[..., list(quantiles).index(0.5)]
    return {
        "mae": mae(median, actual),
        "rmse": rmse(median, actual),
        "mase": mase(median, actual, scale),
        "pinball": pinball(quantile_forecasts, actual, quantiles),
        "coverage": coverage(quantile_forecasts[..., 0], quantile_forecasts[..., -1], actual),
        "coverage_nominal": float(quantiles[-1] - quantiles[0]),
    }


def mae_by_step(point: Array, actual: Array) -> Array:
    """MAE at each horizon step [H], for the error-by-step plot."""
    return np.asarray(np.mean(np.abs(point - actual), axis=0), dtype=np.float64)


# --- baselines -----------------------------------------------------------------------------


def naive(y: Array, at: npt.NDArray[np.int64], horizon: int) -> Array:
    """The last observation, repeated."""
    return np.repeat(y[at][:, None], horizon, axis=1)


def seasonal_naive(y: Array, at: npt.NDArray[np.int64], horizon: int, season: int) -> Array:
    """The observation one season before each target (the last season repeated)."""
    m = max(1, season)
    h = np.arange(1, horizon + 1)
    lag = m * np.ceil(h / m).astype(np.int64)
    index = at[:, None] + h[None, :] - lag[None, :]
    if index.min() < 0:
        raise ValueError("an origin is less than one season into the series")
    return np.asarray(y[index], dtype=np.float64)


@dataclass(frozen=True)
class HoltWinters:
    """Additive (damped-trend) Holt-Winters parameters, fitted on the training split only."""

    alpha: float
    beta: float
    gamma: float
    phi: float
    level: float
    trend: float
    seasons: Array  # the m initial seasonal terms
    season: int

    @classmethod
    def fit(cls, y_train: Array, season: int) -> HoltWinters:
        """Fit by statsmodels' maximum likelihood (additive trend, damped; additive season)."""
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        seasonal = "add" if season > 1 else None
        with warnings.catch_warnings():
            # Convergence chatter from the optimiser is not actionable here.
            warnings.simplefilter("ignore")
            model = ExponentialSmoothing(
                y_train,
                trend="add",
                damped_trend=True,
                seasonal=seasonal,
                seasonal_periods=season if season > 1 else None,
                initialization_method="estimated",
            )
            p = model.fit().params
        gamma = float(p["smoothing_seasonal"]) if season > 1 else 0.0
        initial = np.asarray(p["initial_seasons"], dtype=np.float64) if season > 1 else None
        return cls(
            alpha=float(p["smoothing_level"]),
            beta=float(p["smoothing_trend"]),
            gamma=0.0 if np.isnan(gamma) else gamma,
            phi=float(p["damping_trend"]),
            level=float(p["initial_level"]),
            trend=float(p["initial_trend"]),
            seasons=initial if initial is not None else np.zeros(1),
            season=max(1, season),
        )

    def forecast(self, y: Array, at: npt.NDArray[np.int64], horizon: int) -> Array:
        """Filter the whole series with the fitted parameters; forecast H steps at each origin.

        Refitting per origin would cost minutes; the parameters stay those of the training
        split, while level, trend and seasons keep updating with every observation.
        """
        m = self.season
        level, trend = self.level, self.trend
        seasons = list(self.seasons) if m > 1 else [0.0]
        damp = np.cumsum(self.phi ** np.arange(1, horizon + 1))
        wanted = {int(t): i for i, t in enumerate(at)}
        out = np.empty((len(at), horizon))
        for t, value in enumerate(y):
            s_prev = seasons[t] if m > 1 else 0.0
            previous = level + self.phi * trend
            level = self.alpha * (value - s_prev) + (1 - self.alpha) * previous
            trend = (
                self.beta * (level - (previous - self.phi * trend))
                + (1 - self.beta) * self.phi * trend
            )
            if m > 1:
                seasons.append(self.gamma * (value - previous) + (1 - self.gamma) * s_prev)
            if t in wanted:
                h = np.arange(1, horizon + 1)
                future = np.asarray([seasons[t + 1 + (k - 1) % m] for k in h]) if m > 1 else 0.0
                out[wanted[t]] = level + damp * trend + future
        return out


def _with_quantiles(
    point: Array, val_point: Array, val_actual: Array, quantiles: Sequence[float]
) -> Array:
    """Point forecasts [O, H] widened to [O, H, Q] by validation error quantiles per step."""
    errors = val_actual - val_point  # [O_val, H]
    offsets = np.quantile(errors, np.asarray(quantiles), axis=0)  # [Q, H]
    offsets = offsets - offsets[list(quantiles).index(0.5)]  # keep the point as the median
    return np.asarray(point[..., None] + offsets.T[None, :, :], dtype=np.float64)


def baseline_forecasts(
    y: Array, split: Split, horizon: int, season: int, quantiles: Sequence[float]
) -> dict[str, Array]:
    """Quantile forecasts [O_test, H, Q] of every baseline on the test origins."""
    val_at = origins(split.train_end, split.val_end, horizon)
    test_at = origins(split.val_end, split.n, horizon)
    val_actual = targets(y, val_at, horizon)
    if len(val_at) < 2:
        raise ValueError("the validation split is shorter than the horizon")
    hw = HoltWinters.fit(y[: split.train_end], season)
    both = np.concatenate([val_at, test_at])
    hw_all = hw.forecast(y, both, horizon)
    points = {
        "naive": (naive(y, val_at, horizon), naive(y, test_at, horizon)),
        "seasonal_naive": (
            seasonal_naive(y, val_at, horizon, season),
            seasonal_naive(y, test_at, horizon, season),
        ),
        "ets": (hw_all[: len(val_at)], hw_all[len(val_at) :]),
    }
    return {
        name: _with_quantiles(test, val, val_actual, quantiles)
        for name, (val, test) in points.items()
    }
