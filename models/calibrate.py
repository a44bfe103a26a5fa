"""Calibrated quantiles: split-conformal offsets per horizon step and quantile level.

Pinball training alone leaves a network's outer quantiles too narrow or too wide (the report
measured 32-79% for a nominal 80%), and a baseline's point forecast has no spread at all. So
after fitting, every model's quantiles are corrected on the validation split, which neither
the fit nor (for the networks) the gradient steps saw:

- for each horizon step h and each level q other than the median, the offset ``a[h, q]`` is
  the conformal quantile of the validation residuals ``y - forecast_q`` at that step: the
  ``ceil((n + 1) q)``-th smallest of the n residuals above the median, the
  ``floor((n + 1) q)``-th below it. Added to the forecast, it makes the share of values
  below each quantile q on the validation origins, with split-conformal's finite-sample
  correction (conformalised quantile regression, Romano, Patterson & Candes 2019, applied
  one level at a time);
- the median is left as the model made it: it is the point forecast that MASE and the
  quality gate judge, and shifting it by a validation bias would change what they judge;
- the offsets are one constant [H, Q] added inside the exported graph (a network's buffer,
  a statistical graph's initializer), so a stream's state is unchanged, and the result is
  made monotone across levels again (an offset may push a quantile past its neighbour).

Why this and not something else: it needs no distributional assumption, it is per step
(errors grow with the horizon) and per level (they are skewed: demand overshoots differently
from how it undershoots), and it costs nothing at serving time. Its guarantee assumes the
validation errors are exchangeable with future ones, which a time series only approximates;
the report therefore measures coverage on the test split, after calibration and before it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


def conformal_offsets(forecasts: Array, actual: Array, quantiles: Sequence[float]) -> Array:
    """Offsets [H, Q] that calibrate ``forecasts`` [O, H, Q] against ``actual`` [O, H].

    The median's column is zero. A point forecast repeated Q times gets, as its quantiles, the
    conformal quantiles of its own errors.
    """
    if forecasts.ndim != 3 or forecasts.shape[:2] != actual.shape:
        raise ValueError(f"forecasts {forecasts.shape} and actual {actual.shape} do not match")
    n = forecasts.shape[0]
    if n < 2:
        raise ValueError("calibration needs at least two validation origins")
    residual = np.sort(actual[..., None] - forecasts, axis=0)  # [O, H, Q], per column sorted
    offsets = np.zeros(forecasts.shape[1:])
    for j, q in enumerate(quantiles):
        if q == 0.5:
            continue
        rank = math.ceil((n + 1) * q) if q > 0.5 else math.floor((n + 1) * q)
        offsets[:, j] = residual[min(max(rank, 1), n) - 1, :, j]
    return offsets


def monotone(forecasts: Array, median_index: int) -> Array:
    """Quantiles [..., Q] made non-decreasing outward from the median (which is kept)."""
    out = np.array(forecasts, dtype=np.float64, copy=True)
    for j in range(median_index + 1, out.shape[-1]):
        out[..., j] = np.maximum(out[..., j], out[..., j - 1])
    for j in range(median_index - 1, -1, -1):
        out[..., j] = np.minimum(out[..., j], out[..., j + 1])
    return out


def calibrated(forecasts: Array, offsets: Array, median_index: int) -> Array:
    """``forecasts`` [..., H, Q] plus the offsets, made monotone: what the graph returns."""
    return monotone(forecasts + offsets, median_index)
