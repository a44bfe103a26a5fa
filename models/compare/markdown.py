"""The comparison report's Markdown: every number in it is computed from the run."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models.compare.adding import ADDING_CONSTANT_MSE, ADDING_SOLVED_MSE, AddingOutcome
from models.compare.experiment import CompareConfig, DatasetOutcome, DemoExport
from models.gate import judge, servable_as

METRICS = ("mase", "mae", "rmse", "pinball")
#: How far calibrated outer-interval coverage may stray from nominal (the issue's target).
COVERAGE_TOLERANCE = 0.05


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


def kind_scores(outcome: DatasetOutcome) -> dict[str, list[dict[str, float]]]:
    """Test accuracy of every kind (one entry per seed for the networks), in report order."""
    out: dict[str, list[dict[str, float]]] = {
        kind: [r.accuracy["model"] for r in runs] for kind, runs in outcome.runs.items()
    }
    for kind, result in outcome.statistical.items():
        out[kind] = [result.accuracy["model"]]
    return out


def baseline_scores(outcome: DatasetOutcome) -> dict[str, dict[str, float]]:
    run = outcome.any_run() if outcome.runs else next(iter(outcome.statistical.values()))
    return {name: run.accuracy[name] for name in outcome.baselines}


def _coverage_cell(scores: Sequence[dict[str, float]]) -> str:
    after = _mean_std([s["coverage"] for s in scores])
    if "coverage_uncalibrated" not in scores[0]:
        return f"point → {after}"
    return f"{_mean_std([s['coverage_uncalibrated'] for s in scores])} → {after}"


def _findings(outcomes: dict[str, DatasetOutcome], adding: Sequence[AddingOutcome]) -> list[str]:
    """One bullet per data set, one for calibration, one for the adding problem."""
    lines: list[str] = []
    for name, outcome in outcomes.items():
        kinds = kind_scores(outcome)
        means = {k: float(np.mean([s["mase"] for s in v])) for k, v in kinds.items()}
        ranking = sorted(means, key=means.__getitem__)
        baselines = baseline_scores(outcome)
        best = min(baselines, key=lambda b: baselines[b]["mase"])
        best_mase = baselines[best]["mase"]
        networks = [k for k in ranking if k in outcome.runs]
        beating = [k for k in networks if means[k] < best_mase]
        order = " < ".join(f"{k} {means[k]:.3f}" for k in ranking)
        if beating:
            verdict = f"{', '.join(beating)} beat{'s' if len(beating) == 1 else ''} it"
        else:
            closest = networks[0] if networks else None
            verdict = "no network beats it" + (
                f"; the closest, {closest}, is {100 * (means[closest] / best_mase - 1):.0f}% worse"
                if closest
                else ""
            )
        lines.append(
            f"- **{name}**: mean test MASE {order}. The best baseline is {best} "
            f"({best_mase:.3f}, servable as `{servable_as(best)}`): {verdict}."
        )
    covered = [
        (name, kind, float(np.mean([s["coverage"] for s in scores])), scores)
        for name, outcome in outcomes.items()
        for kind, scores in kind_scores(outcome).items()
    ]
    if covered:
        nominal = covered[0][3][0]["coverage_nominal"]
        outside = [
            f"{kind} on {name} ({value:.3f}; test MAE ÷ validation MAE = "
            f"{np.mean([s['mae'] / s['mae_validation'] for s in scores]):.2f})"
            for name, kind, value, scores in covered
            if abs(value - nominal) > COVERAGE_TOLERANCE
        ]
        raw = [
            s["coverage_uncalibrated"]
            for outcome in outcomes.values()
            for runs in outcome.runs.values()
            for r in runs
            for s in [r.accuracy["model"]]
        ]
        lines.append(
            f"- **Calibration**: the outer {nominal:.0%} interval covers "
            f"{min(v for *_, v, _ in covered):.3f}-{max(v for *_, v, _ in covered):.3f} of the "
            f"test values across kinds after calibration"
            + (f" (the networks' raw quantiles: {min(raw):.3f}-{max(raw):.3f})" if raw else "")
            + ". "
            + (
                f"Outside nominal ± {COVERAGE_TOLERANCE}: {', '.join(outside)}. A ratio far "
                "from 1 says the test errors did not look like the validation errors the "
                "offsets came from."
                if outside
                else f"Every kind is within nominal ± {COVERAGE_TOLERANCE}."
            )
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


def _caveats(config: CompareConfig, outcomes: dict[str, DatasetOutcome]) -> list[str]:
    """What the numbers do not say."""
    lines = [
        "- The network budgets are small and lightly tuned (a few settings per data set, the "
        "same for every kind), so that the whole report runs on one core per process. Where "
        "the ± columns overlap, the ranking is within seed noise and may change with tuning.",
        "- The statistical models are fitted once on the training split and filtered through "
        "validation and test with their parameters fixed, as they are served; refitting them "
        "as data arrives would help them further.",
        "- Calibration is split-conformal on the validation split: its guarantee assumes the "
        "validation errors look like the test errors. Where the validation period holds an "
        "unusual week and the test period does not (or the reverse), the test coverage misses "
        "nominal although the validation coverage meets it by construction. An adaptive scheme "
        "(tracking each step's realised misses in the state row) would follow such a shift; "
        "the exported graphs do not do that.",
        "- The window mlp sees exactly its window of past observations; the recurrent kinds "
        "must keep what matters in their state. By construction the mlp sees nothing older "
        "than W steps, which is where memory starts to matter (the adding problem).",
    ]
    if any(o.runs for o in outcomes.values()) and config.adding_lengths:
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
    split = outcome.split.as_dict()
    kinds = kind_scores(outcome)
    first = next(iter(kinds.values()))[0]
    run = outcome.any_run() if outcome.runs else next(iter(outcome.statistical.values()))
    horizon = run.actual.shape[1]
    lines = [
        f"### {name}",
        "",
        f"{series.source}. {len(series)} observations every {series.frequency / 3600:g} h; "
        f"seasons {list(series.seasons)} steps; split train/validation/test = "
        f"{split['train']}/{split['validation']}/{split['test']}. Horizon H = {horizon} steps, "
        f"quantiles {list(run.quantiles)}, {len(run.test_origins)} test origins.",
        "",
        "**Kinds** (networks: mean ± standard deviation over "
        f"{len(next(iter(outcome.runs.values()))) if outcome.runs else 0} seeds; statistical "
        "kinds are deterministic and equal the baseline they serve):",
        "",
        "| kind | MASE | MAE | RMSE | pinball | coverage before → after calibration (nominal "
        f"{first['coverage_nominal']:.0%}) | state size S | best epoch | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, scores in kinds.items():
        cells = [_mean_std([s[m] for s in scores]) for m in METRICS]
        if kind in outcome.runs:
            runs = outcome.runs[kind]
            size = str(runs[0].model.state_size)
            epochs = _mean_std_int([float(r.best_epoch) for r in runs])
            seconds = _mean_std_int(outcome.seconds[kind])
            label = f"**{kind}**"
        else:
            fitted = outcome.statistical[kind]  # type: ignore[index]
            size, epochs, seconds = str(fitted.model.state_size), "", ""
            label = f"**{kind}** (= {fitted.baseline})"
        lines.append(
            f"| {label} | "
            + " | ".join([*cells, _coverage_cell(scores), size, epochs, seconds])
            + " |"
        )
    lines += [
        "",
        "**Baselines** (fitted on the training split; each is servable as the kind shown):",
        "",
        "| baseline | MASE | MAE | RMSE | pinball | coverage (calibrated) | served as |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for baseline, score in baseline_scores(outcome).items():
        cells = [_fmt(score[m]) for m in METRICS] + [_fmt(score["coverage"])]
        lines.append(f"| {baseline} | " + " | ".join(cells) + f" | `{servable_as(baseline)}` |")
    lines.append("")
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


def _demo_section(demos: Sequence[DemoExport], refused: Sequence[str]) -> list[str]:
    lines = [
        "## Demo models in the service's repository",
        "",
        "Exported from this run through the quality gate (networks: the seed with the best "
        "validation loss); the numbers are those in each `model.json` `accuracy`. The state "
        "row is what the store keeps per stream for the model (4 bytes a value), beside the "
        "record's header, latest forecast and raw history.",
        "",
        "| model | kind | data | test MASE | best baseline (MASE) | gate | coverage | S | "
        "state bytes per stream |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for demo in demos:
        verdict = judge(demo.accuracy)
        gate = "passes" if demo.passed else "loses: shipped with allow-worse"
        lines.append(
            f"| `{demo.demo.name}` ({demo.directory.as_posix()}) | {demo.demo.kind} | "
            f"{demo.demo.dataset} | {_fmt(verdict.model_mase)} | {verdict.best} "
            f"({_fmt(verdict.best_mase)}) | {gate} | {_fmt(demo.accuracy['model']['coverage'])} "
            f"| {demo.state_size} | {4 * demo.state_size} |"
        )
    lines.append("")
    if any(not d.passed for d in demos):
        lines += [
            "Shipped although they lose: "
            + "; ".join(f"`{d.demo.name}`: {d.demo.reason}" for d in demos if not d.passed)
            + ". `python -m models validate` warns about them.",
            "",
        ]
    if refused:
        lines += ["Refused by the quality gate:", "", *[f"- {m}" for m in refused], ""]
    return lines


def report(
    config: CompareConfig,
    outcomes: dict[str, DatasetOutcome],
    adding: Sequence[AddingOutcome],
    demos: Sequence[DemoExport],
    refused: Sequence[str],
    figures: dict[str, list[str]],
    adding_figure: str | None,
    *,
    report_path: Path,
    images: Path,
    minutes: float,
    command: str,
) -> str:
    """The whole report."""
    rel = Path(os.path.relpath(images, report_path.parent)).as_posix()
    budgets = [
        f"{name}: at most {c.epochs} epochs of {c.samples_per_epoch} sub-sequences, early "
        f"stopping after {c.patience} epochs without validation improvement, recurrent cores "
        f"of {c.hidden} units"
        for name, o in outcomes.items()
        if o.runs
        for c in [o.any_run().config]
    ]
    budget = "; ".join(budgets) or "no networks"
    lines = [
        "# Model comparison: LSTM, GRU, RNN, window MLP and the statistical models",
        "",
        f"Generated by `{command}` (do not edit by hand; rerun it). "
        f"Seeds {list(config.seeds)}; {budget}; one torch thread per process. The run took "
        f"{minutes:.1f} minutes.",
        "",
        "## How it is measured",
        "",
        "- Every network kind is trained the same way: Adam, pinball loss on the quantiles, "
        "random chronological sub-sequences of the training split, loss after a burn-in; the "
        "network with the best validation loss is kept. Each sub-sequence starts from the "
        "state a stream would have after the readings before it (reference, last reading, "
        "the mlp's window), only the recurrent h and c start at zero.",
        "- Networks forecast a correction to a *reference*: the value one reference period "
        "before each target (the seasonal naive of that period, read from the last readings "
        "kept in the state row), or the last reading when there is no reference. They read "
        "each reading, its change from the previous one, its difference from one reference "
        "period earlier, and the sine and cosine of its time of day, week or year, computed "
        "in the graph from the contract's `time` input (the periods the data can show).",
        "- The statistical kinds are baselines served under the same contract: `snaive` (the "
        "seasonal naive of the period with the lowest validation error) and `ets` "
        "(damped-trend additive Holt-Winters on the series' seasons, with Taylor's AR(1) "
        "correction of the one-step error; with a day and a week it is his double-seasonal "
        "model). Their ONNX graphs run the same recursion as the numpy model the tables score, "
        "checked at export.",
        "- The test split is forecast the way the service runs: one stream from a fresh state "
        "over the whole series, a forecast after every observation; every origin whose H "
        "targets lie in the test split is scored, for every kind and baseline alike.",
        "- MASE divides the MAE by the in-sample MAE of the one-step seasonal naive of the "
        "shortest season on the training split (the daily one for half-hourly demand). Pinball "
        "is the mean quantile loss in the target's units; coverage is the share of actual "
        "values inside the outer quantiles.",
        "- Calibration: every kind's quantiles get split-conformal offsets per horizon step and "
        "level from the validation split (models/calibrate.py), added inside the exported "
        "graph; the median is left as the model made it. *Before* is the networks' raw "
        "quantiles; a statistical model's quantiles come from calibration alone.",
        "- The quality gate: a model whose test MASE is worse than any baseline's is not "
        "written into a repository unless `--allow-worse` is given, which the manifest records.",
        "",
        "## Findings",
        "",
        *_findings(outcomes, adding),
        "",
        "## Caveats",
        "",
        *_caveats(config, outcomes),
        "",
        "## Real data",
        "",
    ]
    for name, outcome in outcomes.items():
        lines.append(_dataset_section(name, outcome, figures[name], rel))
    if adding:
        lines.append(_adding_section(adding, adding_figure, rel))
    if demos or refused:
        lines += _demo_section(demos, refused)
    return "\n".join(lines)
