"""Calibration: conformal offsets per step and level, monotone, the median kept."""

from __future__ import annotations

import numpy as np
import pytest

from models.calibrate import calibrated, conformal_offsets, monotone
from models.evaluate import coverage

QUANTILES = (0.1, 0.5, 0.9)


def test_offsets_are_conformal_ranks_of_the_residuals() -> None:
    """n = 9 residuals 1..9 at one step: (n + 1) q = 1 and 9, so the 1st and 9th smallest."""
    actual = np.arange(1.0, 10.0)[:, None]  # [O = 9, H = 1]
    forecasts = np.zeros((9, 1, 3))
    offsets = conformal_offsets(forecasts, actual, QUANTILES)
    assert offsets.tolist() == [[1.0, 0.0, 9.0]]
    # With 19 residuals: ceil(20 * 0.9) = 18th smallest above, floor(20 * 0.1) = 2nd below.
    actual = np.arange(1.0, 20.0)[:, None]
    offsets = conformal_offsets(np.zeros((19, 1, 3)), actual, QUANTILES)
    assert offsets.tolist() == [[2.0, 0.0, 18.0]]


def test_calibration_reaches_nominal_coverage_on_errors_like_the_validation_ones() -> None:
    """Raw quantiles far too narrow, errors growing with the horizon step: after calibration
    on one sample, another sample of the same errors is covered at the nominal rate."""
    rng = np.random.default_rng(0)
    horizon = 6
    spread = np.linspace(1.0, 4.0, horizon)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        median = rng.normal(0, 5, (n, horizon))
        actual = median + spread * rng.standard_t(5, (n, horizon))
        raw = median[..., None] + np.array([-0.2, 0.0, 0.2])  # much too narrow
        return raw, actual

    raw_val, actual_val = sample(3000)
    offsets = conformal_offsets(raw_val, actual_val, QUANTILES)
    assert np.all(np.diff(offsets[:, 2]) > 0)  # wider at later steps
    raw_test, actual_test = sample(20_000)
    before = coverage(raw_test[..., 0], raw_test[..., 2], actual_test)
    fixed = calibrated(raw_test, offsets, median_index=1)
    after = coverage(fixed[..., 0], fixed[..., 2], actual_test)
    assert before < 0.2
    assert after == pytest.approx(0.8, abs=0.02)
    for step in range(horizon):
        share_below = np.mean(actual_test[:, step] <= fixed[:, step, 2])
        assert share_below == pytest.approx(0.9, abs=0.02)
    np.testing.assert_array_equal(fixed[..., 1], raw_test[..., 1])  # the median is kept


def test_monotone_keeps_the_median_and_uncrosses_outward() -> None:
    crossed = np.array([[5.0, 3.0, 4.0, 3.5, 6.0]])  # levels 0.05, 0.25, 0.5, 0.75, 0.95
    assert monotone(crossed, median_index=2).tolist() == [[3.0, 3.0, 4.0, 4.0, 6.0]]


def test_offsets_need_matching_shapes_and_two_origins() -> None:
    with pytest.raises(ValueError, match="do not match"):
        conformal_offsets(np.zeros((3, 2, 3)), np.zeros((3, 3)), QUANTILES)
    with pytest.raises(ValueError, match="two validation origins"):
        conformal_offsets(np.zeros((1, 2, 3)), np.zeros((1, 2)), QUANTILES)
