"""The model pipeline's command line: train, export, validate, compare.

Examples::

    python -m models train taylor --kind gru --repository models/repository
    python -m models train taylor --kind ets --repository models/repository
    python -m models train plant.csv --target load --season 96,672 --checkpoint plant.pt
    python -m models train meter.csv --timestamp-format '%d/%m/%Y %H:%M' --gaps fill
    python -m models export plant.pt --repository /srv/models --name plant-lstm
    python -m models validate /srv/models
    python -m models compare --demo-repository models/repository

A model whose test MASE is worse than a baseline's is not written into a repository (exit
status 3, naming the baselines that beat it and by how much) unless ``--allow-worse`` is
given, which the manifest then records.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.gate import EXIT_REFUSED

if TYPE_CHECKING:
    from service.manifest import Manifest


def _quantiles(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"quantiles must be numbers, got {text!r}") from exc
    if 0.5 not in values or sorted(set(values)) != list(values):
        raise argparse.ArgumentTypeError("quantiles must be increasing and include 0.5")
    return values


def _seasons(text: str) -> tuple[int, ...]:
    from models.data import parse_seasons

    try:
        return parse_seasons(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


#: Kinds of network (``models.networks.KINDS``; repeated so ``validate`` needs no torch).
NETWORKS = ("lstm", "gru", "rnn", "mlp")
#: Statistical kinds, fitted rather than trained (``models.statistical``).
STATISTICAL = ("snaive", "ets")

#: Training options that map one-to-one onto ``TrainConfig`` fields (None: its default).
_CONFIG_OPTIONS: dict[str, tuple[type, str]] = {
    "hidden": (int, "hidden units per layer (default 32)"),
    "layers": (int, "layers (default 1)"),
    "window": (int, "mlp window W in steps (default 48, at least the reference)"),
    "reference": (int, "seasonal reference in steps (default: the longest season; 0: none)"),
    "horizon": (int, "forecast steps H (default 24)"),
    "epochs": (int, "maximum epochs (default 30)"),
    "lr": (float, "Adam learning rate (default 3e-3)"),
    "batch_size": (int, "sub-sequences per batch (default 32)"),
    "samples_per_epoch": (int, "sub-sequences per epoch (default 512)"),
    "seq_len": (int, "training sub-sequence length (default 192)"),
    "burn_in": (int, "steps of each sub-sequence without loss (default 48)"),
    "patience": (int, "epochs without validation improvement before stopping (default 6)"),
    "seed": (int, "random seed (default 0)"),
    "val_fraction": (float, "validation share of the series (default 0.15)"),
    "test_fraction": (float, "test share of the series (default 0.15)"),
}


def _add_train(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("train", help="train or fit one model, evaluate it, export it")
    p.add_argument("data", help="bundled data set (taylor, co2, sunspots) or a .csv/.parquet")
    p.add_argument("--timestamp", default="timestamp", help="timestamp column of a file")
    p.add_argument(
        "--timestamp-format",
        help="strftime format of a file's timestamps when they are not ISO 8601, "
        "e.g. '%%d/%%m/%%Y %%H:%%M'",
    )
    p.add_argument("--frequency", type=float, help="seconds between a file's readings")
    p.add_argument(
        "--gaps",
        choices=("refuse", "fill"),
        default="refuse",
        help="a file's missing rows and values: refuse them (default) or fill them by linear "
        "interpolation (recorded in the manifest)",
    )
    p.add_argument("--target", help="feature to forecast (a file's first feature by default)")
    p.add_argument("--features", help="comma-separated feature columns of a file")
    p.add_argument(
        "--season",
        type=_seasons,
        help="seasonal periods in steps, e.g. 48,336 (a bundled set declares its own)",
    )
    p.add_argument("--kind", choices=NETWORKS + STATISTICAL, default="lstm")
    for option, (kind, text) in _CONFIG_OPTIONS.items():
        p.add_argument(f"--{option.replace('_', '-')}", type=kind, help=text)
    p.add_argument(
        "--no-calendar", action="store_true", help="networks: no calendar features from time"
    )
    p.add_argument("--quantiles", type=_quantiles, help="comma-separated (default 0.1,0.5,0.9)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: reproducible)")
    p.add_argument("--checkpoint", type=Path, help="also save the trained network here (.pt)")
    p.add_argument("--repository", type=Path, help="export into this model repository")
    p.add_argument("--name", help="model name in the repository (default <data>-<kind>)")
    p.add_argument("--version", type=int, help="model version (default: next free)")
    _add_allow_worse(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_allow_worse(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-worse",
        action="store_true",
        help="ship a model that loses to a baseline (the manifest records it)",
    )


def _print_accuracy(accuracy: dict[str, dict[str, float]]) -> None:
    for method, metrics in accuracy.items():
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        print(f"{method:>20}: {shown}")


def _gated_export(
    accuracy: dict[str, dict[str, float]],
    name: str,
    args: argparse.Namespace,
    export: Callable[[dict[str, Any]], tuple[Path, Manifest]],
) -> int:
    """Export through the quality gate: ``export(record)`` runs only when the model passes
    or ``--allow-worse`` was given; the gate's record goes into the manifest."""
    from models.gate import judge

    verdict = judge(accuracy)
    message = verdict.message(name, allowed=args.allow_worse)
    print(message, file=sys.stdout if verdict.passed else sys.stderr)
    if not verdict.passed and not args.allow_worse:
        return EXIT_REFUSED
    directory, manifest = export(verdict.record(allow_worse=args.allow_worse))
    print(f"exported: {directory} (sha256 {manifest.sha256[:12]})")
    return 0


def _train(args: argparse.Namespace) -> int:
    from models.data import load

    if args.kind in STATISTICAL and args.checkpoint:
        print(
            "error: --checkpoint is for networks; a statistical kind is refitted", file=sys.stderr
        )
        return 2
    try:
        series = load(
            args.data,
            timestamp=args.timestamp,
            target=args.target,
            features=args.features.split(",") if args.features else None,
            seasons=args.season,
            timestamp_format=args.timestamp_format,
            frequency=args.frequency,
            gaps=args.gaps,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if series.gaps is not None:
        print(f"filled: {json.dumps(series.gaps.as_dict())}")
    if args.kind in STATISTICAL:
        return _fit_statistical(args, series)
    return _train_network(args, series)


def _fit_statistical(args: argparse.Namespace, series: Any) -> int:
    from models.data import chronological_split
    from models.statistical import export_statistical, fit_statistical

    split = chronological_split(
        len(series),
        val=args.val_fraction if args.val_fraction is not None else 0.15,
        test=args.test_fraction if args.test_fraction is not None else 0.15,
    )
    result = fit_statistical(
        series,
        args.kind,
        horizon=args.horizon or 24,
        quantiles=args.quantiles or (0.1, 0.5, 0.9),
        split=split,
    )
    print(f"{args.kind}: {result.baseline} {json.dumps(result.model.parameters())}")
    _print_accuracy(result.accuracy)
    if not args.repository:
        return 0
    name = args.name or f"{series.name}-{args.kind}"
    return _gated_export(
        result.accuracy,
        name,
        args,
        lambda record: export_statistical(
            result, args.repository, name=name, version=args.version, quality_gate=record
        ),
    )


def _train_network(args: argparse.Namespace, series: Any) -> int:
    import torch

    from models.export import export_checkpoint
    from models.train import TrainConfig, checkpoint_of, save_checkpoint, train

    torch.set_num_threads(args.threads)
    chosen = {k: getattr(args, k) for k in _CONFIG_OPTIONS if getattr(args, k) is not None}
    if args.quantiles is not None:
        chosen["quantiles"] = args.quantiles
    if args.no_calendar:
        chosen["calendar"] = False
    config = TrainConfig.from_dict({"kind": args.kind, **chosen})
    result = train(series, config, progress=not args.quiet)
    checkpoint = checkpoint_of(result)
    print(json.dumps({"epochs": result.epochs_run, "best_epoch": result.best_epoch}))
    _print_accuracy(result.accuracy)
    if args.checkpoint:
        save_checkpoint(checkpoint, args.checkpoint)
        print(f"checkpoint: {args.checkpoint}")
    if not args.repository:
        return 0
    name = args.name or f"{series.name}-{config.kind}"
    return _gated_export(
        result.accuracy,
        name,
        args,
        lambda record: export_checkpoint(
            checkpoint, args.repository, name=name, version=args.version, quality_gate=record
        ),
    )


def _export(args: argparse.Namespace) -> int:
    import torch

    from models.export import export_checkpoint
    from models.train import load_checkpoint

    torch.set_num_threads(1)
    checkpoint = load_checkpoint(args.checkpoint)
    name = args.name or f"{checkpoint.series['name']}-{checkpoint.config.kind}"
    return _gated_export(
        checkpoint.accuracy,
        name,
        args,
        lambda record: export_checkpoint(
            checkpoint, args.repository, name=name, version=args.version, quality_gate=record
        ),
    )


def _validate(args: argparse.Namespace) -> int:
    from models.validate import validate_path

    verdicts = validate_path(args.path)
    for verdict in verdicts:
        print(f"{'ok  ' if verdict.ok else 'FAIL'} {verdict.directory}: {verdict.detail}")
        if verdict.warning:
            print(f"WARN {verdict.directory}: {verdict.warning}")
    return 0 if all(v.ok for v in verdicts) else 1


def _compare(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from models.compare import CompareConfig, run_comparison

    config = CompareConfig(
        datasets=tuple(args.datasets),
        seeds=tuple(range(args.seeds)),
        epochs=args.epochs,
        adding_lengths=tuple(args.adding_lengths),
        adding_epochs=args.adding_epochs,
        adding_seeds=tuple(range(args.adding_seeds)),
        quick=args.quick,
        jobs=args.jobs,
        allow_worse=args.allow_worse,
    )
    refused = run_comparison(
        config,
        report=args.report,
        images=args.images,
        demo_repository=args.demo_repository,
        progress=not args.quiet,
        command=" ".join(["python -m models", *map(shlex.quote, argv)]),
    )
    print(f"report: {args.report}")
    for message in refused:
        print(message, file=sys.stderr)
    return EXIT_REFUSED if refused else 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m models",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = top.add_subparsers(dest="command", required=True)
    _add_train(commands)

    p = commands.add_parser("export", help="export a saved checkpoint into a repository")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--repository", type=Path, required=True)
    p.add_argument("--name")
    p.add_argument("--version", type=int)
    _add_allow_worse(p)

    p = commands.add_parser("validate", help="check model directories against the contract")
    p.add_argument("path", type=Path, help="a version directory, a model, or a repository")

    p = commands.add_parser("compare", help="every kind on every data set; write a report")
    p.add_argument("--datasets", nargs="+", default=["taylor", "co2"])
    p.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1")
    p.add_argument("--epochs", type=int, help="maximum epochs per run (default: per data set)")
    p.add_argument("--adding-lengths", type=int, nargs="*", default=[25, 50, 100])
    p.add_argument("--adding-epochs", type=int, default=40, help="of 50 steps each")
    p.add_argument("--adding-seeds", type=int, default=1, help="seeds 0 .. N-1")
    p.add_argument("--jobs", type=int, default=1, help="worker processes")
    p.add_argument("--report", type=Path, default=Path("docs/model-comparison.md"))
    p.add_argument("--images", type=Path, default=Path("docs/img"))
    p.add_argument("--demo-repository", type=Path, help="export the demo models here")
    _add_allow_worse(p)
    p.add_argument("--quick", action="store_true", help="tiny budgets: a smoke run")
    p.add_argument("--quiet", action="store_true")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(given)
    if args.command == "compare":
        return _compare(args, given)
    handlers = {"train": _train, "export": _export, "validate": _validate}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
