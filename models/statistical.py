"""The statistical kinds as servable models: ``--kind snaive`` and ``--kind ets``.

Fitting one is choosing one of the series' baselines (:mod:`models.baselines`), so a served
statistical model and the baseline the report shows are the same model with the same
numbers:

- ``ets``: Holt-Winters on the series' seasons (the two longest it can start from: for
  half-hourly demand, Taylor's double-seasonal model of a day and a week);
- ``snaive``: the seasonal naive of the season with the lowest validation MAE (period 1, the
  last value, included), chosen without looking at the test split.

Export writes the graph of :mod:`models.graphs` after checking it: onnxruntime must forecast
what the numpy model forecasts on the series itself (within the contract's tolerance),
step parity must hold at shapes other than any example's, and the service must load it
(:func:`models.ship.write_version`). A fresh stream starts from the model's state after the
whole series: the latest level, trend and seasonal profile, aligned by slot to the calendar.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.baselines import (
    Baseline,
    StatisticalKind,
    StatisticalModel,
    fit_baselines,
    initial_row,
    state_row,
)
from models.data import Series, Split
from models.evaluate import Array, mae, origins, scores, seasonal_scale, targets
from models.graphs import OPSET, statistical_graph
from models.ship import (
    CALIBRATION,
    ExportRefused,
    check_step_parity,
    contract_session,
    next_version,
    provenance,
    write_version,
)
from service.contract import PARITY_TOLERANCE, relative_error
from service.manifest import (
    Manifest,
    Training,
)

#: Origins of the series at which onnxruntime's forecast is compared with numpy's.
CHECKED_ORIGINS = 6
#: (batch, time) of the step-parity check.
PARITY_SHAPE = (3, 11)

FloatArray = npt.NDArray[np.float32]


@dataclass
class StatisticalResult:
    """A statistical kind fitted on a series, with the same evaluation as a network's."""

    kind: StatisticalKind
    #: The baseline this model is (``ets_48_336``, ``seasonal_naive_336``, ...).
    baseline: str
    model: StatisticalModel
    offsets: Array
    series: Series
    split: Split
    horizon: int
    quantiles: tuple[float, ...]
    accuracy: dict[str, dict[str, float]]
    forecasts: dict[str, Array] = field(repr=False)
    test_origins: npt.NDArray[np.int64] = field(repr=False)
    actual: Array = field(repr=False)


def choose(
    kind: StatisticalKind, baselines: dict[str, Baseline], series: Series, split: Split
) -> str:
    """Which baseline ``kind`` serves (see the module docstring)."""
    mine = [name for name, b in baselines.items() if b.kind == kind]
    if not mine:
        raise ValueError(f"the series supports no {kind} model")
    if kind == "ets":
        return max(mine, key=lambda name: len(baselines[name].model.periods))
    horizon = baselines[mine[0]].offsets.shape[0]
    actual = targets(series.y, origins(split.train_end, split.val_end, horizon), horizon)
    return min(mine, key=lambda name: mae(baselines[name].validation_point, actual))


def fit_statistical(
    series: Series,
    kind: StatisticalKind,
    *,
    horizon: int,
    quantiles: Sequence[float],
    split: Split,
    baselines: dict[str, Baseline] | None = None,
) -> StatisticalResult:
    """Fit ``kind`` on the training split and evaluate it on the test split."""
    baselines = baselines or fit_baselines(series, split, horizon, quantiles)
    chosen = choose(kind, baselines, series, split)
    test_at = origins(split.val_end, split.n, horizon)
    actual = targets(series.y, test_at, horizon)
    scale = seasonal_scale(series.y[: split.train_end], series.season)
    forecasts = {"model": baselines[chosen].forecasts} | {
        n: b.forecasts for n, b in baselines.items()
    }
    accuracy = {
        n: scores(b.forecasts, actual, quantiles, scale, validation_mae=b.validation_mae)
        for n, b in ({"model": baselines[chosen]} | baselines).items()
    }
    return StatisticalResult(
        kind=kind,
        baseline=chosen,
        model=baselines[chosen].model,
        offsets=baselines[chosen].offsets,
        series=series,
        split=split,
        horizon=horizon,
        quantiles=tuple(quantiles),
        accuracy=accuracy,
        forecasts=forecasts,
        test_origins=test_at,
        actual=actual,
    )


def export_statistical(
    result: StatisticalResult,
    repository: Path,
    *,
    name: str,
    version: int | None = None,
    description: str = "",
    quality_gate: dict[str, Any] | None = None,
) -> tuple[Path, Manifest]:
    """Write ``<repository>/<name>/<version>`` after every check passes.

    Raises:
        ExportRefused: a check failed; nothing is left in the version directory.
    """
    series = result.series
    version = version or next_version(repository / name)
    graph = statistical_graph(
        result.model,
        n_features=len(series.features),
        target_index=series.target_index,
        horizon=result.horizon,
        offsets=result.offsets,
        name=name,
    ).SerializeToString()
    training = Training(
        dataset=f"{series.name}: {series.source}",
        split=result.split.as_dict(),
        **provenance(series.describe(), quality_gate),
        baseline=result.baseline,
        fitted=result.model.parameters(),
        initial_state="the model's state after the whole series (train, validation, test)",
        calibration=CALIBRATION,
    )
    manifest = Manifest(
        name=name,
        version=version,
        kind=result.kind,
        features=list(series.features),
        target=series.target,
        frequency=series.frequency,
        horizon=result.horizon,
        quantiles=list(result.quantiles),
        state_size=result.model.state_size,
        initial_state=[float(v) for v in state_row(result.model, series.y, series.times)],
        time_input=True,
        sha256=hashlib.sha256(graph).hexdigest(),
        opset=OPSET,
        description=description or _description(result),
        training=training,
        accuracy=result.accuracy,
    )
    check_statistical_graph(result, graph, manifest)
    directory = repository / name / str(version)
    write_version(directory, graph, manifest)
    return directory, manifest


def _description(result: StatisticalResult) -> str:
    periods = ", ".join(str(m) for m in result.model.periods) or "none"
    what = {
        "ets": "damped-trend additive Holt-Winters with an AR(1) error correction",
        "snaive": "seasonal naive",
    }[result.kind]
    return (
        f"{what} (seasonal periods: {periods} steps) forecasting {result.series.target} of "
        f"'{result.series.name}' {result.horizon} steps ahead; quantiles from its validation "
        "errors"
    )


def check_statistical_graph(result: StatisticalResult, graph: bytes, manifest: Manifest) -> None:
    """Refuse a graph that breaks the signature, forecasts other than numpy on the series
    itself, or breaks step parity.

    Raises:
        ExportRefused: saying which check failed and by how much.
    """
    run = contract_session(graph, manifest)
    series, model = result.series, result.model
    start = initial_row(model).astype(np.float32)[None]
    chosen = np.linspace(result.split.train_end, len(series) - 1, CHECKED_ORIGINS).astype(np.int64)
    _, points = model.run(series.y, series.times, at=chosen, horizon=result.horizon)
    worst = 0.0
    for origin, point in zip(chosen, points, strict=True):
        x = series.values[None, : origin + 1].astype(np.float32)
        forecast, _ = run(x, start, series.times[None, : origin + 1])
        worst = max(worst, relative_error(forecast[0], point[:, None] + result.offsets))
    if not worst <= PARITY_TOLERANCE:
        raise ExportRefused(
            f"onnxruntime's forecasts on the series differ from the fitted model's by {worst:.3g} "
            f"(relative); allowed {PARITY_TOLERANCE:g}"
        )
    batch, steps = PARITY_SHAPE
    rng = np.random.default_rng(0)
    rows = rng.integers(0, len(series) - steps, size=batch)
    x = np.stack([series.values[r : r + steps] for r in rows]).astype(np.float32)
    times = np.stack([series.times[r : r + steps] for r in rows])
    states = np.repeat(np.asarray(manifest.initial_state, dtype=np.float32)[None], batch, axis=0)
    check_step_parity(run, x, states, times)
