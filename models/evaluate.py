"""Held-out accuracy: forecast origins, their targets, and every metric the manifest keeps.

A forecast origin t means "after observing y[t], forecast y[t+1 .. t+H]". The test origins are
every t whose H targets all lie in the test split; every method (a network, and every
baseline of :mod:`models.baselines`) is scored on exactly those origins.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


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
    quantile_forecasts: Array,
    actual: Array,
    quantiles: Sequence[float],
    scale: float,
    *,
    uncalibrated: Array | None = None,
    validation_mae: float | None = None,
) -> dict[str, float]:
    """Every metric the manifest stores, for forecasts [O, H, Q] against actual [O, H].

    ``uncalibrated`` (the same forecasts before :mod:`models.calibrate`) adds the coverage
    they had, ``coverage_uncalibrated``, so the report can show before and after;
    ``validation_mae`` (the median's MAE on the validation origins, which calibration saw) is
    kept as ``mae_validation``, to tell when validation errors did not look like test errors.
    """
    median = quantile_forecasts[..., list(quantiles).index(0.5)]
    out = {
        "mae": mae(median, actual),
        "rmse": rmse(median, actual),
        "mase": mase(median, actual, scale),
        "pinball": pinball(quantile_forecasts, actual, quantiles),
        "coverage": coverage(quantile_forecasts[..., 0], quantile_forecasts[..., -1], actual),
        "coverage_nominal": float(quantiles[-1] - quantiles[0]),
    }
    if uncalibrated is not None:
        out["coverage_uncalibrated"] = coverage(uncalibrated[..., 0], uncalibrated[..., -1], actual)
    if validation_mae is not None:
        out["mae_validation"] = validation_mae
    return out


def mae_by_step(point: Array, actual: Array) -> Array:
    """MAE at each horizon step [H], for the error-by-step plot."""
    return np.asarray(np.mean(np.abs(point - actual), axis=0), dtype=np.float64)
