"""Baselines: seasonal naive by slot, Holt-Winters with one or two seasons, their graphs."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from models.baselines import SeasonalNaive, baseline_models, fit_baselines, initial_row
from models.data import Series, Split
from models.evaluate import mae, origins, targets
from models.graphs import statistical_graph
from models.holtwinters import HoltWinters, grid_index, slot_of
from service.contract import check_signature, relative_error, step_parity_error
from service.manifest import Manifest

HOUR = 3600.0
#: Monday 2 March 2026, 00:00 UTC.
MONDAY = 1_772_409_600.0


def two_seasons(weeks: int = 6, noise: float = 0.3, seed: int = 0) -> Series:
    """Hourly load with a daily shape and a quieter weekend: a day and a week of seasons."""
    rng = np.random.default_rng(seed)
    n = weeks * 168
    t = np.arange(n)
    day = np.sin(2 * np.pi * t / 24)
    weekend = np.where((t // 24) % 7 >= 5, -4.0, 0.0)
    y = 50 + 5 * day + weekend + rng.normal(0, noise, n)
    return Series("load", y[:, None], ["load"], "load", HOUR, (24, 168), "test", MONDAY + HOUR * t)


def split_of(series: Series) -> Split:
    n = len(series)
    return Split(train_end=int(n * 0.7), val_end=int(n * 0.85), n=n)


def test_slots_come_from_the_timestamps() -> None:
    times = MONDAY + HOUR * np.array([0.0, 1.0, 23.0, 24.0, 25.0])
    assert slot_of(grid_index(times, HOUR), 24).tolist() == [0, 1, 23, 0, 1]
    # Readings a few seconds off the grid land in the nearest slot.
    jitter = times + np.array([3.0, -5.0, 10.0, -1.0, 0.0])
    assert slot_of(grid_index(jitter, HOUR), 24).tolist() == [0, 1, 23, 0, 1]


def test_seasonal_naive_reads_the_last_value_of_each_slot() -> None:
    y = np.arange(20, dtype=np.float64) * 10
    times = MONDAY + HOUR * np.arange(20)
    model = SeasonalNaive.fit(y[:10], times[:10], 4, HOUR)
    # Origin 9: targets 10..13 take the value 4 steps earlier (60..90); target 14 would take
    # 100, after the origin, so it reads its slot's last value again, 60.
    _, out = model.run(y, times, at=np.array([9]), horizon=5)
    assert out.tolist() == [[60, 70, 80, 90, 60]]
    # A reading after a gap is written to its own slot; the skipped slot keeps its old value.
    gappy = np.delete(np.arange(12.0), 9)
    gappy_times = np.delete(times[:12], 9)
    buffer, _ = model.run(gappy, gappy_times)
    assert buffer.tolist() == [8.0, 5.0, 10.0, 11.0]  # slot 1 last saw step 5, not step 9


def test_baselines_of_a_series_with_two_seasons() -> None:
    series = two_seasons()
    models = baseline_models(series, split_of(series))
    assert list(models) == [
        "naive",
        "seasonal_naive_24",
        "seasonal_naive_168",
        "ets_24",
        "ets_24_168",
    ]
    assert models["ets_24_168"].periods == (24, 168)
    assert models["ets_24_168"].state_size == 3 + 24 + 168


def test_the_second_season_is_what_the_weekend_needs() -> None:
    series = two_seasons()
    split = split_of(series)
    out = fit_baselines(series, split, 12, (0.1, 0.5, 0.9))
    actual = targets(series.y, origins(split.val_end, split.n, 12), 12)
    error = {name: mae(b.forecasts[..., 1], actual) for name, b in out.items()}
    assert error["ets_24_168"] < 0.7 * error["ets_24"]
    assert error["ets_24_168"] < error["seasonal_naive_168"] < error["seasonal_naive_24"]
    for baseline in out.values():
        assert baseline.forecasts.shape == (len(actual), 12, 3)
        assert np.all(np.diff(baseline.forecasts, axis=-1) >= 0)
        assert np.all(baseline.offsets[:, 1] == 0)  # the point forecast stays the median


def test_a_biased_point_forecast_keeps_the_median_inside_its_interval() -> None:
    """Behind a trend, a seasonal naive's errors are all positive: its lower quantile is
    clipped at the point forecast, never above it (the graph serves the same offsets)."""
    t = np.arange(600)
    y = 0.05 * t + np.sin(2 * np.pi * t / 12)
    series = Series("trend", y[:, None], ["y"], "y", HOUR, (12,), "test", MONDAY + HOUR * t)
    baseline = fit_baselines(series, Split(400, 500, 600), 4, (0.1, 0.5, 0.9))
    snaive = baseline["seasonal_naive_12"]
    assert np.all(snaive.offsets[:, 0] == 0.0)
    assert np.all(snaive.offsets[:, 2] > 0.5)
    assert np.all(np.diff(snaive.forecasts, axis=-1) >= 0)


def test_holt_winters_tracks_a_clean_seasonal_series_closely() -> None:
    series = two_seasons(noise=0.0)
    n = 5 * 168
    model = HoltWinters.fit(series.y[:n], series.times[:n], (24, 168), HOUR)
    _, forecast = model.run(series.y, series.times, at=np.array([n + 5]), horizon=24)
    actual = series.y[n + 6 : n + 30]
    assert np.max(np.abs(forecast[0] - actual)) < 0.05


def test_a_fresh_stream_reads_the_season_of_its_own_time() -> None:
    """Seasonal terms are kept by slot: started mid-week from the fitted state, the model
    forecasts the weekday shape of that time, whatever the stream saw before."""
    series = two_seasons(noise=0.0)
    n = 5 * 168
    model = HoltWinters.fit(series.y[:n], series.times[:n], (24, 168), HOUR)
    state, _ = model.run(series.y[:n], series.times[:n])
    saturday = n + 5 * 24 + 7  # Saturday 07:00 of the sixth week
    one = np.array([series.y[saturday]])
    _, ahead = model.run(one, series.times[saturday : saturday + 1], state=state, at=np.array([0]),
                         horizon=24)  # fmt: skip
    np.testing.assert_allclose(ahead[0], series.y[saturday + 1 : saturday + 25], atol=0.3)


def _session(model: object, offsets: np.ndarray, features: int = 1) -> ort.InferenceSession:
    graph = statistical_graph(
        model,  # type: ignore[arg-type]
        n_features=features,
        target_index=features - 1,
        horizon=offsets.shape[0],
        offsets=offsets,
        name="test",
    )
    return ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", ["naive", "seasonal_naive_24", "ets_24", "ets_24_168"])
def test_graphs_forecast_what_the_models_forecast(name: str) -> None:
    series = two_seasons()
    split = split_of(series)
    baseline = fit_baselines(series, split, 6, (0.1, 0.5, 0.9))[name]
    model = baseline.model
    # Two features: the graph reads only the target (the second column here).
    x_all = np.stack([np.zeros(len(series)), series.y], axis=1).astype(np.float32)
    session = _session(model, baseline.offsets, features=2)
    manifest = Manifest(
        name="test",
        version=1,
        kind=baseline.kind,
        features=["other", "load"],
        target="load",
        frequency=HOUR,
        horizon=6,
        quantiles=[0.1, 0.5, 0.9],
        state_size=model.state_size,
        time_input=True,
        sha256="0" * 64,
        opset=17,
    )
    check_signature(session.get_inputs(), session.get_outputs(), manifest)

    def run(x: np.ndarray, state: np.ndarray, time: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        forecast, state_out = session.run(None, {"x": x, "state": state, "time": time})
        return forecast, state_out

    start = initial_row(model).astype(np.float32)
    ends = [split.train_end, split.val_end + 7, len(series) - 1]
    _, points = model.run(series.y, series.times, at=np.array(ends), horizon=6)
    # B = 3 streams, each the series up to its own end (padded rows are other streams).
    for end, point in zip(ends, points, strict=True):
        forecast, _ = run(
            x_all[None, : end + 1].repeat(3, axis=0),
            start[None].repeat(3, axis=0),
            series.times[None, : end + 1].repeat(3, axis=0),
        )
        assert forecast.shape == (3, 6, 3)
        assert relative_error(forecast[1], point[:, None] + baseline.offsets) < 1e-5
    rng = np.random.default_rng(0)
    x = (50 + 5 * rng.standard_normal((4, 13, 2))).astype(np.float32)
    times = MONDAY + rng.integers(0, 1000, (4, 1)) * HOUR + HOUR * np.arange(13)
    assert step_parity_error(run, x, start[None].repeat(4, axis=0), times) == 0.0


def test_a_graph_reads_the_time_it_is_given() -> None:
    series = two_seasons()
    baseline = fit_baselines(series, split_of(series), 6, (0.1, 0.5, 0.9))["ets_24_168"]
    session = _session(baseline.model, baseline.offsets)
    state, _ = baseline.model.run(series.y, series.times)
    row = state.row().astype(np.float32)[None]
    nine = 50 + 5 * np.sin(2 * np.pi * 9 / 24)  # the series' value at 09:00 on a weekday

    def forecast(reading: float, at: float) -> np.ndarray:
        x = np.array([[[reading]]], dtype=np.float32)
        out, _ = session.run(None, {"x": x, "state": row, "time": np.array([[at]])})
        return np.asarray(out[0, :, 1])

    monday = forecast(nine, MONDAY + 9 * HOUR)
    saturday = forecast(nine - 4, MONDAY + (5 * 24 + 9) * HOUR)
    # The weekend is 4 lower: the slot of each reading's time decides which day is forecast
    # (the fitted level also moves, which takes some of the step away).
    assert np.all(monday - saturday > 2.5)
    assert np.all(monday - saturday < 4.5)
