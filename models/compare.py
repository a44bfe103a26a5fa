"""The comparison report: LSTM vs GRU vs RNN vs window MLP, same budget, same splits.

Two parts. On real data sets, every kind is trained with the same configuration and budget
over several seeds and scored on the same test origins as the baselines. On the adding
problem (Hochreiter & Schmidhuber 1997) the recurrent cores are trained to add two marked
numbers seen T steps apart, which a plain tanh RNN is known to fail at for long T: the gates'
advantage is measured rather than asserted. The demo models of the service's repository are
exported from this very run, so their manifests carry the numbers the report shows.
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from tqdm import tqdm

from models.data import Series, load
from models.evaluate import BASELINES, mae_by_step
from models.export import export_checkpoint
from models.networks import KINDS, Kind
from models.train import TrainConfig, TrainResult, checkpoint_of, train

Array = npt.NDArray[np.float64]

#: Per data set: the horizon and training windows that suit its frequency and season.
DATASET_CONFIGS: dict[str, TrainConfig] = {
    # Half-hourly demand: forecast the next 12 hours; windows of 4 days, 1 day burn-in.
    "taylor": TrainConfig(horizon=24, seq_len=192, burn_in=48, window=48),
    # Weekly CO2: forecast the next quarter (13 weeks); windows of 3 years, 1 year burn-in.
    "co2": TrainConfig(horizon=13, seq_len=156, burn_in=52, window=52),
    # Yearly sunspots: forecast 5 years; the cycle is ~11 years.
    "sunspots": TrainConfig(horizon=5, seq_len=66, burn_in=22, window=22, batch_size=16),
}

#: Which (data set, kind) pairs become the service's demo models, and their names.
DEMO_MODELS: tuple[tuple[str, Kind, str], ...] = (
    ("taylor", "lstm", "taylor-lstm"),
    ("taylor", "gru", "taylor-gru"),
)

METRICS = ("mase", "mae", "rmse", "pinball", "coverage")


@dataclass(frozen=True)
class CompareConfig:
    """The budget of a comparison run (the same for every kind)."""

    datasets: tuple[str, ...] = ("taylor", "co2")
    seeds: tuple[int, ...] = (0, 1, 2)
    kinds: tuple[Kind, ...] = KINDS
    epochs: int = 30
    hidden: int = 32
    patience: int = 6
    adding_lengths: tuple[int, ...] = (25, 50, 100)
    adding_epochs: int = 40
    adding_seeds: tuple[int, ...] = (0,)
    adding_hidden: int = 32
    quick: bool = False
    #: Worker processes (each with one torch thread); results do not depend on it.
    jobs: int = 1
    #: (data set, kind, model name) of the demo models exported from the run.
    demos: tuple[tuple[str, Kind, str], ...] = DEMO_MODELS

    def training(self, dataset: str, kind: Kind, seed: int) -> TrainConfig:
        base = DATASET_CONFIGS.get(dataset, TrainConfig())
        config = replace(
            base,
            kind=kind,
            seed=seed,
            epochs=self.epochs,
            hidden=self.hidden if kind != "mlp" else 2 * self.hidden,
            layers=1 if kind != "mlp" else 2,
            patience=self.patience,
        )
        if self.quick:
            config = replace(config, samples_per_epoch=32, batch_size=16, hidden=8)
        return config


@dataclass
class DatasetOutcome:
    """Every run on one data set."""

    series: Series
    runs: dict[Kind, list[TrainResult]] = field(default_factory=dict)
    seconds: dict[Kind, list[float]] = field(default_factory=dict)

    def baselines(self) -> TrainResult:
        """Any run: baselines do not depend on the kind or the seed."""
        return next(iter(self.runs.values()))[0]

    def best(self, kind: Kind) -> TrainResult:
        """The seed with the lowest validation loss (chosen without looking at the test)."""
        return min(self.runs[kind], key=lambda r: min(v for _, v in r.history))


# --- adding problem ------------------------------------------------------------------------


def adding_batch(
    batch: int, length: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs [B, T, 2] (value, marker) and targets [B]: the sum of the two marked values.

    One marker falls in the first tenth of the sequence, the other in its second half, so
    the network must carry the first value across at least ``0.4 T`` steps.
    """
    values = torch.rand(batch, length, generator=generator)
    first = torch.randint(0, max(1, length // 10), (batch,), generator=generator)
    second = torch.randint(length // 2, length, (batch,), generator=generator)
    markers = torch.zeros(batch, length)
    rows = torch.arange(batch)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    target = values[rows, first] + values[rows, second]
    return torch.stack([values, markers], dim=-1), target


class AddingNet(nn.Module):
    """A recurrent core (the same torch modules the forecasters use) and a linear read-out."""

    def __init__(self, kind: Kind, hidden: int, length: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "mlp":
            # The window MLP sees the whole sequence at once: no memory needed (W = T).
            self.core: nn.Module = nn.Sequential(
                nn.Flatten(), nn.Linear(2 * length, 4 * hidden), nn.ReLU()
            )
            self.out = nn.Linear(4 * hidden, 1)
        else:
            cell: type[nn.Module] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind]
            self.core = cell(2, hidden, batch_first=True)
            self.out = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.core(x) if self.kind == "mlp" else self.core(x)[0][:, -1]
        result: torch.Tensor = self.out(hidden).squeeze(-1)
        return result


@dataclass(frozen=True)
class AddingOutcome:
    kind: Kind
    length: int
    seed: int
    mse: float
    seconds: float
    curve: tuple[float, ...]  # test MSE after each epoch


#: Test MSE of always answering 1.0 (the mean of the sum): 2 * Var(U(0, 1)) = 1/6.
ADDING_CONSTANT_MSE = 1.0 / 6.0
#: A run "solves" the problem below this test MSE (about 6% of the constant guess's).
ADDING_SOLVED_MSE = 0.01
#: Training stops early below this test MSE, to spend the budget on the runs still learning.
ADDING_STOP_MSE = 0.002


def train_adding(
    kind: Kind,
    length: int,
    seed: int,
    *,
    hidden: int,
    epochs: int,
    steps_per_epoch: int = 50,
    batch: int = 64,
    lr: float = 3e-3,
) -> AddingOutcome:
    """Train one network on the adding problem; test MSE on 1 000 fresh sequences."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(10_000 + seed)
    test_x, test_y = adding_batch(1000, length, torch.Generator().manual_seed(99))
    net = AddingNet(kind, hidden, length)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    started = time.perf_counter()
    curve: list[float] = []
    for _ in range(epochs):
        net.train()
        for _ in range(steps_per_epoch):
            x, y = adding_batch(batch, length, generator)
            loss = nn.functional.mse_loss(net(x), y)
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimiser.step()
        net.eval()
        with torch.no_grad():
            curve.append(float(nn.functional.mse_loss(net(test_x), test_y)))
        if curve[-1] < ADDING_STOP_MSE:
            break  # solved with margin: the rest of the budget would show nothing new
    return AddingOutcome(
        kind=kind,
        length=length,
        seed=seed,
        mse=curve[-1],
        seconds=time.perf_counter() - started,
        curve=tuple(curve),
    )


# --- the run -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _series(name: str) -> Series:
    return load(name)


def _worker_init() -> None:
    torch.set_num_threads(1)


def _data_job(
    config: CompareConfig, dataset: str, kind: Kind, seed: int
) -> tuple[TrainResult, float]:
    started = time.perf_counter()
    result = train(_series(dataset), config.training(dataset, kind, seed), progress=False)
    return result, time.perf_counter() - started


def _adding_job(config: CompareConfig, kind: Kind, length: int, seed: int) -> AddingOutcome:
    return train_adding(
        kind,
        length,
        seed,
        hidden=config.adding_hidden,
        epochs=config.adding_epochs,
        steps_per_epoch=5 if config.quick else 50,
    )


def run_comparison(
    config: CompareConfig,
    *,
    report: Path,
    images: Path,
    demo_repository: Path | None = None,
    progress: bool = True,
) -> None:
    """Train everything, write the Markdown report and its PNGs, export the demo models."""
    torch.set_num_threads(1)
    started = time.perf_counter()
    data_jobs = [(d, k, s) for d in config.datasets for k in config.kinds for s in config.seeds]
    adding_jobs = [
        (k, n, s) for n in config.adding_lengths for k in config.kinds for s in config.adding_seeds
    ]
    data_results: dict[tuple[str, Kind, int], tuple[TrainResult, float]] = {}
    adding_results: dict[tuple[Kind, int, int], AddingOutcome] = {}
    total = len(data_jobs) + len(adding_jobs)
    with tqdm(total=total, disable=not progress, desc="compare", unit="run") as bar:
        if config.jobs <= 1:
            for job in data_jobs:
                data_results[job] = _data_job(config, *job)
                bar.update()
            for job_a in adding_jobs:
                adding_results[job_a] = _adding_job(config, *job_a)
                bar.update()
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(config.jobs, context, initializer=_worker_init) as pool:
                # The longest runs (long adding sequences) first, so no worker idles at the end.
                futures: dict[Future[Any], tuple[Any, ...]] = {}
                for job_a in sorted(adding_jobs, key=lambda j: -j[1]):
                    futures[pool.submit(_adding_job, config, *job_a)] = ("adding", *job_a)
                for job in data_jobs:
                    futures[pool.submit(_data_job, config, *job)] = ("data", *job)
                for future in as_completed(futures):
                    part, *key = futures[future]
                    if part == "adding":
                        adding_results[tuple(key)] = future.result()
                    else:
                        data_results[tuple(key)] = future.result()
                    bar.update()

    outcomes: dict[str, DatasetOutcome] = {}
    for dataset, kind, seed in data_jobs:
        result, seconds = data_results[(dataset, kind, seed)]
        outcome = outcomes.setdefault(dataset, DatasetOutcome(series=result.series))
        outcome.runs.setdefault(kind, []).append(result)
        outcome.seconds.setdefault(kind, []).append(seconds)
    adding = [adding_results[job_a] for job_a in adding_jobs]

    demos: list[tuple[str, Path, TrainResult]] = []
    if demo_repository is not None:
        for dataset, kind, name in config.demos:
            if dataset not in outcomes or kind not in outcomes[dataset].runs:
                continue
            best = outcomes[dataset].best(kind)
            directory, _ = export_checkpoint(
                checkpoint_of(best),
                demo_repository,
                name=name,
                version=1,
                description=_demo_description(best),
            )
            demos.append((name, directory, best))

    images.mkdir(parents=True, exist_ok=True)
    report.parent.mkdir(parents=True, exist_ok=True)
    figures: dict[str, list[str]] = {}
    for dataset, outcome in outcomes.items():
        figures[dataset] = [
            _fan_chart(outcome, images / f"fan-{dataset}.png"),
            _error_by_step(outcome, images / f"error-by-step-{dataset}.png"),
        ]
    adding_figure = _adding_chart(adding, images / "adding-problem.png") if adding else None
    text = _report(
        config,
        outcomes,
        adding,
        demos,
        figures,
        adding_figure,
        report=report,
        images=images,
        minutes=(time.perf_counter() - started) / 60,
    )
    report.write_text(text, encoding="utf-8")


def _demo_description(result: TrainResult) -> str:
    series = result.series
    c = result.config
    hours = c.horizon * series.frequency / 3600
    return (
        f"{c.kind.upper()} ({c.layers}x{c.hidden}) forecasting {series.target} of the "
        f"'{series.name}' data set {c.horizon} steps ({hours:g} h) ahead with quantiles "
        f"{list(c.quantiles)}; trained by `python -m models compare` (seed {c.seed}, chosen "
        "by validation loss)."
    )


# --- plots ---------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fan_chart(outcome: DatasetOutcome, path: Path) -> str:
    """Each kind's quantile fan from one test origin (best seed), over the recent history."""
    plt = _pyplot()
    series = outcome.series
    kinds = list(outcome.runs)
    columns = 2
    rows = math.ceil(len(kinds) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(11, 3.2 * rows), squeeze=False)
    for ax, kind in zip(axes.flat, kinds, strict=False):
        result = outcome.best(kind)
        h = result.config.horizon
        pick = len(result.test_origins) // 3
        origin = int(result.test_origins[pick])
        fan = result.forecasts["model"][pick]  # [H, Q]
        start = max(0, origin - 4 * h)
        t_hist = np.arange(start, origin + 1)
        t_future = np.arange(origin + 1, origin + h + 1)
        ax.plot(t_hist, series.y[t_hist], color="black", lw=1, label="observed")
        ax.plot(t_future, series.y[t_future], color="black", lw=1, ls="--", label="actual")
        q = result.config.quantiles
        ax.fill_between(
            t_future,
            fan[:, 0],
            fan[:, -1],
            alpha=0.3,
            color="C0",
            label=f"{q[0]:g}-{q[-1]:g} quantiles",
        )
        ax.plot(t_future, fan[:, q.index(0.5)], color="C0", lw=1.5, label="median")
        seasonal = result.forecasts["seasonal_naive"][pick][:, q.index(0.5)]
        ax.plot(t_future, seasonal, color="C3", lw=1, ls=":", label="seasonal naive")
        ax.set_title(f"{kind} (seed {result.config.seed})")
        ax.set_xlabel("step")
        ax.set_ylabel(series.target)
    for ax in list(axes.flat)[len(kinds) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{series.name}: forecast fan from one test origin")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def _error_by_step(outcome: DatasetOutcome, path: Path) -> str:
    """MAE at each horizon step: every kind (mean over seeds) and every baseline."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    any_run = outcome.baselines()
    steps = np.arange(1, any_run.config.horizon + 1)
    median = any_run.config.quantiles.index(0.5)
    for kind, runs in outcome.runs.items():
        curves = np.stack([mae_by_step(r.forecasts["model"][..., median], r.actual) for r in runs])
        ax.plot(steps, curves.mean(axis=0), marker="o", ms=3, label=kind)
    for name, style in zip(BASELINES, (":", "--", "-."), strict=True):
        curve = mae_by_step(any_run.forecasts[name][..., median], any_run.actual)
        ax.plot(steps, curve, color="grey", ls=style, label=name)
    ax.set_xlabel("horizon step")
    ax.set_ylabel(f"MAE ({outcome.series.target})")
    ax.set_title(f"{outcome.series.name}: test error by horizon step")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def _adding_chart(adding: Sequence[AddingOutcome], path: Path) -> str:
    plt = _pyplot()
    lengths = sorted({a.length for a in adding})
    fig, axes = plt.subplots(1, len(lengths), figsize=(4 * len(lengths), 3.4), squeeze=False)
    for ax, length in zip(axes.flat, lengths, strict=True):
        for index, kind in enumerate(dict.fromkeys(a.kind for a in adding)):
            for run in (a for a in adding if a.kind == kind and a.length == length):
                label = (
                    kind
                    if run.seed
                    == min(b.seed for b in adding if b.kind == kind and b.length == length)
                    else None
                )
                epochs = np.arange(1, len(run.curve) + 1)
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


# --- the Markdown --------------------------------------------------------------------------


def _mean_std(values: Sequence[float]) -> str:
    arr = np.asarray(values, dtype=np.float64)
    if len(arr) == 1:
        return _fmt(float(arr[0]))
    return f"{_fmt(float(arr.mean()))} ± {_fmt(float(arr.std(ddof=1)))}"


def _mean_std_int(values: Sequence[float]) -> str:
    arr = np.asarray(values, dtype=np.float64)
    if len(arr) == 1:
        return f"{arr[0]:.0f}"
    return f"{arr.mean():.0f} ± {arr.std(ddof=1):.0f}"


def _fmt(value: float) -> str:
    if value == 0 or 0.01 <= abs(value) < 10_000:
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return f"{value:.3g}"


def _findings(outcomes: dict[str, DatasetOutcome], adding: Sequence[AddingOutcome]) -> list[str]:
    """One bullet per data set and one for the adding problem, computed from the numbers."""
    lines: list[str] = []
    for name, outcome in outcomes.items():
        means = {
            kind: float(np.mean([r.accuracy["model"]["mase"] for r in runs]))
            for kind, runs in outcome.runs.items()
        }
        ranking = sorted(means, key=means.__getitem__)
        acc = outcome.baselines().accuracy
        best_baseline = min(BASELINES, key=lambda b: acc[b]["mase"])
        beaten = [k for k in ranking if means[k] < acc[best_baseline]["mase"]]
        order = " < ".join(f"{k} {means[k]:.3f}" for k in ranking)
        verdict = (
            f"{', '.join(beaten)} beat{'s' if len(beaten) == 1 else ''} the best baseline"
            if beaten
            else "no network beats the best baseline"
        )
        lines.append(
            f"- **{name}**: mean test MASE {order}; best baseline {best_baseline} "
            f"{acc[best_baseline]['mase']:.3f}: {verdict}."
        )
    if adding:
        parts = []
        for kind in dict.fromkeys(a.kind for a in adding):
            solved = [
                str(n)
                for n in sorted({a.length for a in adding})
                if all(
                    a.mse < ADDING_SOLVED_MSE for a in adding if a.kind == kind and a.length == n
                )
            ]
            parts.append(f"{kind} solves T = {', '.join(solved) if solved else 'none'}")
        lines.append(f"- **Adding problem**: {'; '.join(parts)}.")
    return lines


def _caveats(
    config: CompareConfig,
    outcomes: dict[str, DatasetOutcome],
    adding: Sequence[AddingOutcome],
) -> list[str]:
    """What the numbers do not say: budget, calibration, what each kind can see."""
    lines = [
        f"- The budgets are small and untuned (at most {config.epochs} epochs, one hidden size, "
        "one learning rate for every kind), so that the whole report runs in minutes on one "
        "core per process. Where the ± columns overlap, the ranking is within seed noise and "
        "may change with tuning.",
    ]
    coverages = [
        r.accuracy["model"]["coverage"]
        for outcome in outcomes.values()
        for runs in outcome.runs.values()
        for r in runs
    ]
    if coverages:
        nominal = next(iter(outcomes.values())).baselines().accuracy["model"]["coverage_nominal"]
        lines.append(
            f"- Calibration: the networks' outer quantiles cover {min(coverages):.0%} to "
            f"{max(coverages):.0%} of the test values against a nominal {nominal:.0%}. Pinball "
            "training alone calibrates them only roughly; widening them by their validation "
            "errors, as the baselines' are, is the obvious next step."
        )
    lines += [
        "- The window mlp sees exactly one season of past observations, which is the "
        "information that matters most for these strongly seasonal series; the recurrent "
        "kinds must learn to keep it in their state. By construction the mlp sees nothing "
        "older than W steps, which is where memory starts to matter (the adding problem).",
        "- The recurrent kinds read each observation and its change from the previous one. "
        "With the level alone, their saturating gates met co2's test-period levels (above "
        "anything in the training split) and forecast no better than naive (MASE about 1.36 "
        "in an earlier run of this report).",
    ]
    if adding:
        steps = config.adding_epochs * (5 if config.quick else 50)
        lines.append(
            f"- Adding problem: at most {steps} Adam steps per run, stopped early once solved. "
            "Gated networks learn it suddenly after a plateau (see the curves), so an unsolved "
            "gated run can be a budget effect; the plain RNN's test error stays at the "
            "constant guess's level for long sequences."
        )
    return lines


def _dataset_section(name: str, outcome: DatasetOutcome, figures: Sequence[str], rel: str) -> str:
    series = outcome.series
    any_run = outcome.baselines()
    c = any_run.config
    split = any_run.split.as_dict()
    lines = [
        f"### {name}",
        "",
        f"{series.source}. {len(series)} observations every {series.frequency / 3600:g} h; "
        f"season {series.season} steps; split train/validation/test = "
        f"{split['train']}/{split['validation']}/{split['test']}. Horizon H = {c.horizon} "
        f"steps, quantiles {list(c.quantiles)}, {len(any_run.test_origins)} test origins.",
        "",
        "| method | MASE | MAE | RMSE | pinball | coverage (nominal "
        f"{c.quantiles[-1] - c.quantiles[0]:.0%}) | best epoch | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, runs in outcome.runs.items():
        cells = [_mean_std([r.accuracy["model"][m] for r in runs]) for m in METRICS]
        epochs = _mean_std_int([float(r.best_epoch) for r in runs])
        seconds = _mean_std_int(outcome.seconds[kind])
        lines.append(f"| **{kind}** | " + " | ".join([*cells, epochs, seconds]) + " |")
    for baseline in BASELINES:
        cells = [_fmt(any_run.accuracy[baseline][m]) for m in METRICS]
        lines.append(f"| {baseline} | " + " | ".join([*cells, "", ""]) + " |")
    lines += [
        "",
        f"Networks: mean ± standard deviation over {len(next(iter(outcome.runs.values())))} "
        "seeds. Baselines are deterministic.",
        "",
    ]
    lines += [f"![{name} {figure}]({rel}/{figure})" for figure in figures]
    lines.append("")
    return "\n".join(lines)


def _adding_section(adding: Sequence[AddingOutcome], figure: str | None, rel: str) -> str:
    lengths = sorted({a.length for a in adding})
    kinds = list(dict.fromkeys(a.kind for a in adding))
    lines = [
        "## The adding problem",
        "",
        "Each input step is (value ~ U(0, 1), marker); exactly two markers are set, one in "
        "the first tenth of the sequence and one in its second half, and the network must "
        "output the sum of the two marked values after the last step (Hochreiter & "
        "Schmidhuber 1997). Always answering 1.0 scores MSE "
        f"{ADDING_CONSTANT_MSE:.3f}; a run counts as solved below {ADDING_SOLVED_MSE}. The "
        "recurrent kinds read the sequence step by step and must carry the first value "
        "across at least 0.4 T steps; the mlp sees the whole sequence at once (W = T), so it "
        "needs no memory and is shown as a reference, not a competitor.",
        "",
        "| kind | " + " | ".join(f"T = {n}: test MSE" for n in lengths) + " |",
        "| --- | " + " | ".join("---" for _ in lengths) + " |",
    ]
    for kind in kinds:
        cells = []
        for length in lengths:
            runs = [a for a in adding if a.kind == kind and a.length == length]
            solved = sum(a.mse < ADDING_SOLVED_MSE for a in runs)
            cells.append(f"{_mean_std([a.mse for a in runs])} ({solved}/{len(runs)} solved)")
        lines.append(f"| **{kind}** | " + " | ".join(cells) + " |")
    lines.append("")
    if figure:
        lines += [f"![adding problem]({rel}/{figure})", ""]
    return "\n".join(lines)


def _report(
    config: CompareConfig,
    outcomes: dict[str, DatasetOutcome],
    adding: Sequence[AddingOutcome],
    demos: Sequence[tuple[str, Path, TrainResult]],
    figures: dict[str, list[str]],
    adding_figure: str | None,
    *,
    report: Path,
    images: Path,
    minutes: float,
) -> str:
    rel = Path(os.path.relpath(images, report.parent)).as_posix()
    example = next(iter(outcomes.values())).baselines().config if outcomes else TrainConfig()
    lines = [
        "# Model comparison: LSTM vs GRU vs RNN vs window MLP",
        "",
        "Generated by `python -m models compare"
        + (" --quick" if config.quick else "")
        + "` (do not edit by hand; rerun it). "
        f"Seeds {list(config.seeds)}, at most {config.epochs} epochs of "
        f"{example.samples_per_epoch} training sub-sequences, early stopping after "
        f"{config.patience} epochs without validation improvement, one torch thread; the run "
        f"took {minutes:.1f} minutes.",
        "",
        "## How it is measured",
        "",
        "- Every kind is trained the same way: Adam, pinball loss on the quantiles, random "
        "chronological sub-sequences of the training split, each started from a fresh "
        "stream's state, loss after a burn-in; the network with the best validation loss is "
        "kept.",
        f"- Recurrent kinds: 1 layer of {example.hidden if config.quick else config.hidden} "
        "units, reading each observation (normalised by the training split's mean and std) "
        "and its change from the previous one"
        + ("" if example.differences else " (off in this run)")
        + f"; mlp: 2 layers of {2 * config.hidden} units over a window of one season. All "
        "forecast the change from the last observation, so levels never seen in training "
        "(co2's trend) stay within reach.",
        "- The test split is forecast the way the service runs: one stream from a fresh state "
        "over the whole series, a forecast after every observation; every origin whose H "
        "targets lie in the test split is scored, for networks and baselines alike.",
        "- MASE divides the MAE by the in-sample MAE of the one-step seasonal naive on the "
        "training split, so seasonal naive scores about 1 and lower is better. Pinball is the "
        "mean quantile loss in the target's units; coverage is the share of actual values "
        "inside the outer quantiles.",
        "- Baselines: naive (last value), seasonal naive (value one season earlier), and ets "
        "(additive damped-trend Holt-Winters from statsmodels, fitted on the training split "
        "and filtered through the series). Their quantiles are the point forecast plus their "
        "own validation errors' quantiles at each horizon step.",
        "",
        "## Findings",
        "",
        *_findings(outcomes, adding),
        "",
        "## Caveats",
        "",
        *_caveats(config, outcomes, adding),
        "",
        "## Real data",
        "",
    ]
    for name, outcome in outcomes.items():
        lines.append(_dataset_section(name, outcome, figures[name], rel))
    if adding:
        lines.append(_adding_section(adding, adding_figure, rel))
    if demos:
        lines += [
            "## Demo models in the service's repository",
            "",
            "Exported from this run (the seed with the best validation loss); the numbers are "
            "those in each `model.json` `accuracy`.",
            "",
            "| model | data | seed | MASE | seasonal naive MASE | ets MASE | pinball | coverage |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, directory, result in demos:
            acc = result.accuracy
            lines.append(
                f"| `{name}` ({directory.as_posix()}) | {result.series.name} | "
                f"{result.config.seed} | {_fmt(acc['model']['mase'])} | "
                f"{_fmt(acc['seasonal_naive']['mase'])} | {_fmt(acc['ets']['mase'])} | "
                f"{_fmt(acc['model']['pinball'])} | {_fmt(acc['model']['coverage'])} |"
            )
        lines.append("")
    return "\n".join(lines)
