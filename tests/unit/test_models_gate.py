"""The quality gate: who beats the model, by how much, and what to train instead."""

from __future__ import annotations

import pytest

from models.gate import judge, servable_as


def table(**mase: float) -> dict[str, dict[str, float]]:
    return {name: {"mase": value, "mae": 10 * value} for name, value in mase.items()}


def test_a_model_that_beats_every_baseline_passes() -> None:
    verdict = judge(table(model=0.2, naive=2.8, seasonal_naive_336=0.238))
    assert verdict.passed
    assert (verdict.best, verdict.best_mase) == ("seasonal_naive_336", 0.238)
    assert verdict.record(allow_worse=False) == {
        "passed": True,
        "model_mase": 0.2,
        "best_baseline": "seasonal_naive_336",
        "best_baseline_mase": 0.238,
    }
    assert "passes" in verdict.message("m")


def test_a_model_that_loses_names_every_baseline_that_beats_it() -> None:
    verdict = judge(table(model=0.5, naive=2.8, seasonal_naive_336=0.25, ets_48_336=0.125))
    assert not verdict.passed
    assert verdict.beaten_by == {"ets_48_336": 0.125, "seasonal_naive_336": 0.25}
    message = verdict.message("taylor-lstm")
    assert "taylor-lstm is not shipped" in message
    assert "ets_48_336 0.125 (lower by 0.375, the model's error is 300% higher)" in message
    assert "seasonal_naive_336 0.25 (lower by 0.25" in message
    assert "naive 2.8" not in message
    assert "`--kind ets --season 48,336`" in message
    assert "--allow-worse" in message
    assert verdict.record(allow_worse=True)["allow_worse"] is True


def test_a_tie_is_not_a_loss() -> None:
    """A statistical kind is one of the baselines: equal numbers must not refuse it."""
    assert judge(table(model=0.13, ets_48_336=0.13, naive=2.8)).passed


def test_a_table_needs_a_model_and_a_baseline() -> None:
    with pytest.raises(ValueError, match="'model' entry"):
        judge(table(naive=1.0))
    with pytest.raises(ValueError, match="at least one baseline"):
        judge(table(model=1.0))


@pytest.mark.parametrize(
    ("baseline", "options"),
    [
        ("naive", "--kind snaive --season 1"),
        ("seasonal_naive_336", "--kind snaive --season 336"),
        ("ets_48", "--kind ets --season 48"),
        ("ets_48_336", "--kind ets --season 48,336"),
        ("ets", "--kind ets --season 1"),
    ],
)
def test_every_baseline_is_servable_as_a_kind(baseline: str, options: str) -> None:
    assert servable_as(baseline) == options
