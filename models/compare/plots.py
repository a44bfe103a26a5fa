"""The report's figures (matplotlib, written as PNGs; nothing is shown)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.compare.adding import ADDING_CONSTANT_MSE, ADDING_SOLVED_MSE, AddingOutcome
from models.compare.experiment import DatasetOutcome
from models.evaluate import mae, mae_by_step


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def best_baseline(outcome: DatasetOutcome) -> str:
    """The baseline with the lowest test MAE (the one the figures draw for comparison)."""
    run = outcome.any_run() if outcome.runs else next(iter(outcome.statistical.values()))
    median = list(run.quantiles).index(0.5)
    return min(outcome.baselines, key=lambda b: mae(run.forecasts[b][..., median], run.actual))


def fan_chart(outcome: DatasetOutcome, path: Path) -> str:
    """Each kind's quantile fan from one test origin (best seed), over the recent history."""
    plt = _pyplot()
    series = outcome.series
    panels: list[tuple[str, Any]] = [
        (f"{kind} (seed {outcome.best(kind).config.seed})", outcome.best(kind))
        for kind in outcome.runs
    ]
    panels += [
        (f"{kind} ({result.baseline})", result) for kind, result in outcome.statistical.items()
    ]
    reference = best_baseline(outcome)
    columns = 2
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(11, 3.2 * rows), squeeze=False)
    for ax, (title, result) in zip(axes.flat, panels, strict=False):
        quantiles = list(result.quantiles)
        h = result.actual.shape[1]
        pick = len(result.test_origins) // 3
        origin = int(result.test_origins[pick])
        fan = result.forecasts["model"][pick]  # [H, Q]
        start = max(0, origin - 4 * h)
        t_hist = np.arange(start, origin + 1)
        t_future = np.arange(origin + 1, origin + h + 1)
        ax.plot(t_hist, series.y[t_hist], color="black", lw=1, label="observed")
        ax.plot(t_future, series.y[t_future], color="black", lw=1, ls="--", label="actual")
        ax.fill_between(
            t_future,
            fan[:, 0],
            fan[:, -1],
            alpha=0.3,
            color="C0",
            label=f"{quantiles[0]:g}-{quantiles[-1]:g} quantiles",
        )
        ax.plot(t_future, fan[:, quantiles.index(0.5)], color="C0", lw=1.5, label="median")
        baseline = result.forecasts[reference][pick][:, quantiles.index(0.5)]
        ax.plot(t_future, baseline, color="C3", lw=1, ls=":", label=reference)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(series.target)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{series.name}: forecast fan from one test origin")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def error_by_step(outcome: DatasetOutcome, path: Path) -> str:
    """MAE at each horizon step: every network kind (mean over seeds) and every baseline."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    run = outcome.any_run()
    steps = np.arange(1, run.config.horizon + 1)
    median = run.config.quantiles.index(0.5)
    for kind, runs in outcome.runs.items():
        curves = np.stack([mae_by_step(r.forecasts["model"][..., median], r.actual) for r in runs])
        ax.plot(steps, curves.mean(axis=0), marker="o", ms=3, label=kind)
    styles = (":", "--", "-.", (0, (1, 3)), (0, (5, 1)), (0, (3, 1, 1, 1)))
    for index, name in enumerate(outcome.baselines):
        curve = mae_by_step(run.forecasts[name][..., median], run.actual)
        ax.plot(steps, curve, color="grey", ls=styles[index % len(styles)], label=name)
    ax.set_yscale("log")  # the naive baseline is an order of magnitude above the rest
    ax.set_xlabel("horizon step")
    ax.set_ylabel(f"MAE ({outcome.series.target}, log scale)")
    ax.set_title(f"{outcome.series.name}: test error by horizon step")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def adding_chart(adding: Sequence[AddingOutcome], path: Path) -> str:
    """Test MSE while training, per sequence length and kind."""
    plt = _pyplot()
    lengths = sorted({a.length for a in adding})
    fig, axes = plt.subplots(1, len(lengths), figsize=(4 * len(lengths), 3.4), squeeze=False)
    for ax, length in zip(axes.flat, lengths, strict=True):
        for index, kind in enumerate(dict.fromkeys(a.kind for a in adding)):
            runs = [a for a in adding if a.kind == kind and a.length == length]
            first = min(run.seed for run in runs)
            for run in runs:
                epochs = np.arange(1, len(run.curve) + 1)
                label = kind if run.seed == first else None
                ax.plot(epochs, run.curve, color=f"C{index}", lw=1, label=label)
        ax.axhline(ADDING_CONSTANT_MSE, color="grey", ls=":", label="constant 1.0")
        ax.axhline(ADDING_SOLVED_MSE, color="grey", ls="--", lw=0.8, label="solved")
        ax.set_yscale("log")
        ax.set_title(f"T = {length}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test MSE")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Adding problem: test MSE while training")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name
