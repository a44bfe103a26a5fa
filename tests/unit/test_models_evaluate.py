"""Metrics on hand-computed examples, and baselines that use only what they may see."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from models.data import Split
from models.evaluate import (
    HoltWinters,
    baseline_forecasts,
    coverage,
    mae,
    mae_by_step,
    mase,
    naive,
    origins,
    pinball,
    rmse,
    scores,
    seasonal_naive,
    seasonal_scale,
    targets,
)


def test_point_metrics_by_hand() -> None:
    point = np.array([[1.0, 2.0], [3.0, 4.0]])
    actual = np.array([[2.0, 2.0], [1.0, 4.0]])
    # errors 1, 0, 2, 0
    assert mae(point, actual) == pytest.approx(0.75)
    assert rmse(point, actual) == pytest.approx(np.sqrt(5 / 4))
    assert mase(point, actual, scale=0.5) == pytest.approx(1.5)
    assert mae_by_step(point, actual).tolist() == [1.5, 0.0]


def test_pinball_by_hand() -> None:
    actual = np.array([10.0])
    forecasts = np.array([[8.0, 10.0, 13.0]])  # q = 0.1, 0.5, 0.9
    # 0.1 * (10 - 8) = 0.2; 0; (0.9 - 1) * (10 - 13) = 0.3; mean = 0.5 / 3
    assert pinball(forecasts, actual, (0.1, 0.5, 0.9)) == pytest.approx(0.5 / 3)


def test_coverage_by_hand() -> None:
    lower = np.array([0.0, 0.0, 0.0, 0.0])
    upper = np.array([1.0, 1.0, 1.0, 1.0])
    actual = np.array([0.5, 1.0, 1.5, -0.1])
    assert coverage(lower, upper, actual) == pytest.approx(0.5)


def test_seasonal_scale_by_hand() -> None:
    y = np.array([1.0, 2.0, 4.0, 3.0, 2.0])
    # season 2: |4-1|, |3-2|, |2-4| -> mean 2
    assert seasonal_scale(y, 2) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="constant"):
        seasonal_scale(np.array([1.0, 2.0, 1.0, 2.0]), 2)


def test_scores_names_every_metric() -> None:
    forecasts = np.array([[[0.0, 1.0, 2.0]]])
    actual = np.array([[1.5]])
    got = scores(forecasts, actual, (0.1, 0.5, 0.9), scale=2.0)
    assert got["mae"] == pytest.approx(0.5)
    assert got["mase"] == pytest.approx(0.25)
    assert got["coverage"] == 1.0
    assert got["coverage_nominal"] == pytest.approx(0.8)


def test_origins_keep_targets_inside_the_block() -> None:
    at = origins(10, 20, 3)
    assert at[0] == 9
    assert at[-1] == 16
    y = np.arange(30, dtype=np.float64)
    t = targets(y, at, 3)
    assert t[0].tolist() == [10, 11, 12]
    assert t[-1].tolist() == [17, 18, 19]


def test_naive_and_seasonal_naive_by_hand() -> None:
    y = np.arange(20, dtype=np.float64) * 10
    at = np.array([9])
    assert naive(y, at, 3).tolist() == [[90, 90, 90]]
    # Season 4, origin 9: targets 10..13 take the value 4 steps earlier (6..9); target 14
    # would take 10, after the origin, so it goes back two seasons to 6.
    assert seasonal_naive(y, at, 5, 4).tolist() == [[60, 70, 80, 90, 60]]


@pytest.mark.slow  # the first statsmodels import takes seconds on a busy machine
def test_holt_winters_filter_matches_statsmodels() -> None:
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    rng = np.random.default_rng(0)
    t = np.arange(120)
    y = 50 + 0.3 * t + 5 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.5, len(t))
    hw = HoltWinters.fit(y[:100], 12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = ExponentialSmoothing(
            y[:100],
            trend="add",
            damped_trend=True,
            seasonal="add",
            seasonal_periods=12,
            initialization_method="estimated",
        ).fit()
    np.testing.assert_allclose(hw.forecast(y, np.array([99]), 6)[0], reference.forecast(6))
    at = np.arange(12, 98)
    np.testing.assert_allclose(hw.forecast(y, at, 1)[:, 0], reference.fittedvalues[at + 1])


def test_baselines_quantiles_surround_their_point() -> None:
    rng = np.random.default_rng(1)
    t = np.arange(200)
    y = 10 + np.sin(2 * np.pi * t / 10) + rng.normal(0, 0.2, len(t))
    split = Split(train_end=140, val_end=170, n=200)
    out = baseline_forecasts(y, split, 4, 10, (0.1, 0.5, 0.9))
    assert set(out) == {"naive", "seasonal_naive", "ets"}
    at = origins(170, 200, 4)
    for forecasts in out.values():
        assert forecasts.shape == (len(at), 4, 3)
        assert np.all(np.diff(forecasts, axis=-1) >= 0)
    np.testing.assert_allclose(out["naive"][..., 1], naive(y, at, 4))
    # Seasonal naive on a clean seasonal series beats naive.
    actual = targets(y, at, 4)
    assert mae(out["seasonal_naive"][..., 1], actual) < mae(out["naive"][..., 1], actual)
