"""The model pipeline's command line: train, export, validate, compare.

Examples::

    python -m models train taylor --kind gru --repository models/repository
    python -m models train plant.csv --target load --season 96 --checkpoint plant.pt
    python -m models export plant.pt --repository /srv/models --name plant-lstm
    python -m models validate /srv/models
    python -m models compare --jobs 3 --demo-repository models/repository
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def _quantiles(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"quantiles must be numbers, got {text!r}") from exc
    if 0.5 not in values or sorted(set(values)) != list(values):
        raise argparse.ArgumentTypeError("quantiles must be increasing and include 0.5")
    return values


#: Kinds of network (``models.networks.KINDS``; repeated so ``validate`` needs no torch).
KINDS = ("lstm", "gru", "rnn", "mlp")

#: Training options that map one-to-one onto ``TrainConfig`` fields (None: its default).
_CONFIG_OPTIONS: dict[str, tuple[type, str]] = {
    "hidden": (int, "hidden units per layer (default 32)"),
    "layers": (int, "layers (default 1)"),
    "window": (int, "mlp window W in steps (default 48)"),
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
    p = commands.add_parser("train", help="train one network, evaluate it, export it")
    p.add_argument("data", help="bundled data set (taylor, co2, sunspots) or a .csv/.parquet")
    p.add_argument("--timestamp", default="timestamp", help="timestamp column of a file")
    p.add_argument("--target", help="feature to forecast (a file's first feature by default)")
    p.add_argument("--features", help="comma-separated feature columns of a file")
    p.add_argument("--season", type=int, default=1, help="seasonal period of a file, in steps")
    p.add_argument("--kind", choices=KINDS, default="lstm")
    for option, (kind, text) in _CONFIG_OPTIONS.items():
        p.add_argument(f"--{option.replace('_', '-')}", type=kind, help=text)
    p.add_argument("--quantiles", type=_quantiles, help="comma-separated (default 0.1,0.5,0.9)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: reproducible)")
    p.add_argument("--checkpoint", type=Path, help="also save the trained network here (.pt)")
    p.add_argument("--repository", type=Path, help="export into this model repository")
    p.add_argument("--name", help="model name in the repository (default <data>-<kind>)")
    p.add_argument("--version", type=int, help="model version (default: next free)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _train(args: argparse.Namespace) -> int:
    import torch

    from models.data import load
    from models.export import export_checkpoint
    from models.train import TrainConfig, checkpoint_of, save_checkpoint, train

    torch.set_num_threads(args.threads)
    series = load(
        args.data,
        timestamp=args.timestamp,
        target=args.target,
        features=args.features.split(",") if args.features else None,
        season=args.season,
    )
    chosen = {k: getattr(args, k) for k in _CONFIG_OPTIONS if getattr(args, k) is not None}
    if args.quantiles is not None:
        chosen["quantiles"] = args.quantiles
    config = TrainConfig.from_dict({"kind": args.kind, **chosen})
    result = train(series, config, progress=not args.quiet)
    checkpoint = checkpoint_of(result)
    print(json.dumps({"epochs": result.epochs_run, "best_epoch": result.best_epoch}))
    for method, metrics in result.accuracy.items():
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        print(f"{method:>15}: {shown}")
    if args.checkpoint:
        save_checkpoint(checkpoint, args.checkpoint)
        print(f"checkpoint: {args.checkpoint}")
    if args.repository:
        name = args.name or f"{series.name}-{config.kind}"
        directory, manifest = export_checkpoint(
            checkpoint, args.repository, name=name, version=args.version
        )
        print(f"exported: {directory} (sha256 {manifest.sha256[:12]})")
    return 0


def _export(args: argparse.Namespace) -> int:
    import torch

    from models.export import export_checkpoint
    from models.train import load_checkpoint

    torch.set_num_threads(1)
    checkpoint = load_checkpoint(args.checkpoint)
    name = args.name or f"{checkpoint.series['name']}-{checkpoint.config.kind}"
    directory, manifest = export_checkpoint(
        checkpoint, args.repository, name=name, version=args.version
    )
    print(f"exported: {directory} (sha256 {manifest.sha256[:12]})")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from models.validate import validate_path

    verdicts = validate_path(args.path)
    for verdict in verdicts:
        print(f"{'ok  ' if verdict.ok else 'FAIL'} {verdict.directory}: {verdict.detail}")
    return 0 if all(v.ok for v in verdicts) else 1


def _compare(args: argparse.Namespace) -> int:
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
    )
    run_comparison(
        config,
        report=args.report,
        images=args.images,
        demo_repository=args.demo_repository,
        progress=not args.quiet,
    )
    print(f"report: {args.report}")
    return 0


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

    p = commands.add_parser("validate", help="check model directories against the contract")
    p.add_argument("path", type=Path, help="a version directory, a model, or a repository")

    p = commands.add_parser("compare", help="train every kind on every data set; write a report")
    p.add_argument("--datasets", nargs="+", default=["taylor", "co2"])
    p.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1")
    p.add_argument("--epochs", type=int, default=30, help="maximum epochs per run")
    p.add_argument("--adding-lengths", type=int, nargs="*", default=[25, 50, 100])
    p.add_argument("--adding-epochs", type=int, default=40, help="of 50 steps each")
    p.add_argument("--adding-seeds", type=int, default=1, help="seeds 0 .. N-1")
    p.add_argument("--jobs", type=int, default=1, help="worker processes")
    p.add_argument("--report", type=Path, default=Path("docs/model-comparison.md"))
    p.add_argument("--images", type=Path, default=Path("docs/img"))
    p.add_argument("--demo-repository", type=Path, help="export the demo models here")
    p.add_argument("--quick", action="store_true", help="tiny budgets: a smoke run")
    p.add_argument("--quiet", action="store_true")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handlers = {"train": _train, "export": _export, "validate": _validate, "compare": _compare}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
