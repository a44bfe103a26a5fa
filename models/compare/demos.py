"""The service's demo models, exported from the comparison run through the quality gate.

A network demo is the seed with the best validation loss; a statistical demo is the fitted
kind. Each goes through the same gate as ``train``: one that loses to a baseline is refused
(its message is returned, and ``compare`` exits non-zero) unless the demo, or the whole run,
allows it, in which case its manifest records that and why.
"""

from __future__ import annotations

from pathlib import Path

from models.compare.experiment import CompareConfig, DatasetOutcome, DemoExport, DemoModel
from models.export import export_checkpoint
from models.gate import judge
from models.statistical import export_statistical
from models.train import TrainResult, checkpoint_of


def export_demos(
    config: CompareConfig, outcomes: dict[str, DatasetOutcome], repository: Path
) -> tuple[list[DemoExport], list[str]]:
    """Write every demo the run produced; returns what was written and the gate's refusals."""
    written: list[DemoExport] = []
    refused: list[str] = []
    for demo in config.demos:
        outcome = outcomes.get(demo.dataset)
        if outcome is None:
            continue
        fitted = outcome.statistical.get(demo.kind) if demo.kind in ("snaive", "ets") else None
        best = outcome.best(demo.kind) if demo.kind in outcome.runs else None
        source = fitted or best
        if source is None:
            continue
        verdict = judge(source.accuracy)
        allowed = demo.allow_worse or config.allow_worse
        if not verdict.passed and not allowed:
            refused.append(verdict.message(demo.name))
            continue
        record = verdict.record(allow_worse=allowed)
        if not verdict.passed and demo.reason:
            record["reason"] = demo.reason
        if fitted is not None:
            directory, manifest = export_statistical(
                fitted, repository, name=demo.name, version=1, quality_gate=record
            )
        else:
            assert best is not None
            directory, manifest = export_checkpoint(
                checkpoint_of(best),
                repository,
                name=demo.name,
                version=1,
                description=_description(best, demo),
                quality_gate=record,
            )
        seed = best.config.seed if best is not None else None
        written.append(
            DemoExport(demo, directory, source.accuracy, manifest.state_size, verdict.passed, seed)
        )
    return written, refused


def _description(result: TrainResult, demo: DemoModel) -> str:
    series = result.series
    c = result.config
    hours = c.horizon * series.frequency / 3600
    reference = result.model.reference
    return (
        f"{c.kind.upper()} ({c.layers}x{c.hidden}) forecasting {series.target} of the "
        f"'{series.name}' data set {c.horizon} steps ({hours:g} h) ahead with quantiles "
        f"{list(c.quantiles)}"
        + (f", as a correction to the value {reference} steps earlier" if reference else "")
        + (", reading calendar features from time" if result.model.takes_time else "")
        + f"; trained by `python -m models compare` (seed {c.seed}, chosen by validation loss)"
        + (f". {demo.reason}" if demo.allow_worse and demo.reason else "")
        + "."
    )
