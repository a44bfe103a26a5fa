"""The comparison report: every network kind and every statistical kind, same splits.

Two parts. On real data sets, every network kind is trained with the same configuration and
budget over several seeds, and the statistical kinds are fitted, all scored on the same test
origins as every baseline (:mod:`models.baselines`). On the adding problem the recurrent
cores are trained to add two marked numbers seen T steps apart (:mod:`.adding`). The demo
models of the service's repository are exported from this very run through the quality gate
(:mod:`.demos`), so their manifests carry the numbers the report shows.

The parts: :mod:`.experiment` (what runs), :mod:`.jobs` (running it), :mod:`.demos`,
:mod:`.plots` and :mod:`.markdown` (the report).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from models.baselines import fit_baselines
from models.compare.adding import ADDING_CONSTANT_MSE, adding_batch, train_adding
from models.compare.demos import export_demos
from models.compare.experiment import CompareConfig, DatasetOutcome, DemoExport, DemoModel
from models.compare.jobs import AddingJob, DataJob, run_jobs, series_of
from models.compare.markdown import report as markdown_report
from models.compare.plots import adding_chart, error_by_step, fan_chart
from models.statistical import fit_statistical

__all__ = [
    "ADDING_CONSTANT_MSE",
    "CompareConfig",
    "DatasetOutcome",
    "DemoModel",
    "adding_batch",
    "run_comparison",
    "train_adding",
]


def run_comparison(
    config: CompareConfig,
    *,
    report: Path,
    images: Path,
    demo_repository: Path | None = None,
    progress: bool = True,
    command: str = "python -m models compare",
) -> list[str]:
    """Train and fit everything, write the report and its PNGs, export the demo models.

    ``command`` is how the run was started, for the report's first line. Returns the quality
    gate's refusals of demo models (empty when every demo shipped).
    """
    torch.set_num_threads(1)
    started = time.perf_counter()
    outcomes: dict[str, DatasetOutcome] = {}
    for dataset in config.datasets:
        series = series_of(dataset)
        train_config = config.training(dataset, config.kinds[0] if config.kinds else "lstm", 0)
        split = train_config.split(len(series))
        horizon = config.horizon(dataset)
        baselines = fit_baselines(series, split, horizon, train_config.quantiles)
        outcome = DatasetOutcome(series=series, split=split, baselines=baselines)
        for kind in config.statistical:
            outcome.statistical[kind] = fit_statistical(
                series,
                kind,
                horizon=horizon,
                quantiles=train_config.quantiles,
                split=split,
                baselines=baselines,
            )
        outcomes[dataset] = outcome
    data_jobs: list[DataJob] = [
        (d, k, s) for d in config.datasets for k in config.kinds for s in config.seeds
    ]
    adding_jobs: list[AddingJob] = [
        (k, n, s) for n in config.adding_lengths for k in config.kinds for s in config.adding_seeds
    ]
    data_results, adding_results = run_jobs(
        config,
        data_jobs,
        adding_jobs,
        {name: outcome.baselines for name, outcome in outcomes.items()},
        progress=progress,
    )
    for job in data_jobs:
        result, seconds = data_results[job]
        outcome = outcomes[job[0]]
        outcome.runs.setdefault(job[1], []).append(result)
        outcome.seconds.setdefault(job[1], []).append(seconds)
    adding = [adding_results[job] for job in adding_jobs]

    demos: list[DemoExport] = []
    refused: list[str] = []
    if demo_repository is not None:
        demos, refused = export_demos(config, outcomes, demo_repository)

    images.mkdir(parents=True, exist_ok=True)
    report.parent.mkdir(parents=True, exist_ok=True)
    figures: dict[str, list[str]] = {}
    for dataset, outcome in outcomes.items():
        figures[dataset] = [fan_chart(outcome, images / f"fan-{dataset}.png")]
        if outcome.runs:
            figures[dataset].append(error_by_step(outcome, images / f"error-by-step-{dataset}.png"))
    adding_figure = adding_chart(adding, images / "adding-problem.png") if adding else None
    text = markdown_report(
        config,
        outcomes,
        adding,
        demos,
        refused,
        figures,
        adding_figure,
        report_path=report,
        images=images,
        command=command,
        minutes=(time.perf_counter() - started) / 60,
    )
    report.write_text(text, encoding="utf-8")
    return refused
