"""What a comparison runs (data sets, kinds, seeds, budgets, demo models) and what it yields.

Every network kind is trained with the same configuration and budget over several seeds;
the statistical kinds are fitted once (they are deterministic); all are scored on the same
test origins as every baseline of :mod:`models.baselines`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from models.baselines import Baseline, StatisticalKind
from models.data import Series, Split
from models.networks import KINDS, Kind
from models.statistical import StatisticalResult
from models.train import TrainConfig, TrainResult

#: Per data set: the horizon and training windows that suit its frequency and seasons.
DATASET_CONFIGS: dict[str, TrainConfig] = {
    # Half-hourly demand: forecast the next 12 hours from sub-sequences of 4 days (1 day of
    # burn-in). The reference is the day before; the week reaches the recurrent kinds through
    # the calendar features, the mlp through its window of a week. (Tried while tuning: a
    # reference of a week let early stopping fire within a few epochs, MASE ~0.19-0.20.)
    "taylor": TrainConfig(
        horizon=24,
        seq_len=192,
        burn_in=48,
        window=336,
        reference=48,
        hidden=64,
        epochs=80,
        patience=10,
    ),
    # Weekly CO2: forecast the next quarter (13 weeks); windows of 3 years, 1 year burn-in;
    # no reference (the change from the last reading), the time of year from the calendar.
    "co2": TrainConfig(horizon=13, seq_len=156, burn_in=52, window=52, reference=0),
    # Yearly sunspots: forecast 5 years; the cycle is ~11 years.
    "sunspots": TrainConfig(horizon=5, seq_len=66, burn_in=22, window=22, batch_size=16),
}


@dataclass(frozen=True)
class DemoModel:
    """One model of the service's demo repository, exported from the comparison run.

    ``allow_worse`` ships it even when a baseline beats it (the quality gate would refuse
    it otherwise), for the reason given, which its manifest records.
    """

    dataset: str
    kind: Kind | StatisticalKind
    name: str
    allow_worse: bool = False
    reason: str = ""


#: The demo repository: what wins on taylor, and the recurrent kinds the service is built
#: around (its tests, its benchmark and the README use them by name).
DEMO_MODELS: tuple[DemoModel, ...] = (
    DemoModel("taylor", "ets", "taylor-ets"),
    DemoModel(
        "taylor",
        "lstm",
        "taylor-lstm",
        allow_worse=True,
        reason="the service's recurrent demo model, shipped although taylor-ets forecasts "
        "taylor better (docs/model-comparison.md)",
    ),
    DemoModel(
        "taylor",
        "gru",
        "taylor-gru",
        allow_worse=True,
        reason="the service's recurrent demo model, shipped although taylor-ets forecasts "
        "taylor better (docs/model-comparison.md)",
    ),
)

#: The mlp's two hidden layers (its input is a whole window, so it is wider than the cores).
MLP_HIDDEN = 64

#: Statistical kinds compared as kinds (each is one of the baselines, served as a graph).
STATISTICAL_KINDS: tuple[StatisticalKind, ...] = ("snaive", "ets")


@dataclass(frozen=True)
class CompareConfig:
    """The budget of a comparison run (the same for every kind)."""

    datasets: tuple[str, ...] = ("taylor", "co2")
    seeds: tuple[int, ...] = (0, 1, 2)
    kinds: tuple[Kind, ...] = KINDS
    statistical: tuple[StatisticalKind, ...] = STATISTICAL_KINDS
    #: None: each data set's own (DATASET_CONFIGS).
    epochs: int | None = None
    hidden: int | None = None
    patience: int | None = None
    adding_lengths: tuple[int, ...] = (25, 50, 100)
    adding_epochs: int = 40
    adding_seeds: tuple[int, ...] = (0,)
    adding_hidden: int = 32
    quick: bool = False
    #: Worker processes (each with one torch thread); results do not depend on it.
    jobs: int = 1
    #: Ship every demo model even when it loses to a baseline.
    allow_worse: bool = False
    #: The demo models exported from the run.
    demos: tuple[DemoModel, ...] = DEMO_MODELS

    def training(self, dataset: str, kind: Kind, seed: int) -> TrainConfig:
        """One network's configuration: the data set's, with this run's budget."""
        base = DATASET_CONFIGS.get(dataset, TrainConfig())
        config = replace(
            base,
            kind=kind,
            seed=seed,
            epochs=self.epochs or base.epochs,
            hidden=(self.hidden or base.hidden) if kind != "mlp" else MLP_HIDDEN,
            layers=1 if kind != "mlp" else 2,
            patience=self.patience or base.patience,
        )
        if self.quick:
            config = replace(config, samples_per_epoch=32, batch_size=16, hidden=8)
        return config

    def horizon(self, dataset: str) -> int:
        return DATASET_CONFIGS.get(dataset, TrainConfig()).horizon


@dataclass
class DatasetOutcome:
    """Every run on one data set."""

    series: Series
    split: Split
    baselines: dict[str, Baseline]
    runs: dict[Kind, list[TrainResult]] = field(default_factory=dict)
    seconds: dict[Kind, list[float]] = field(default_factory=dict)
    statistical: dict[StatisticalKind, StatisticalResult] = field(default_factory=dict)

    def any_run(self) -> TrainResult:
        """Any network run: the baselines' numbers do not depend on the kind or the seed."""
        return next(iter(self.runs.values()))[0]

    def best(self, kind: Kind) -> TrainResult:
        """The seed with the lowest validation loss (chosen without looking at the test)."""
        return min(self.runs[kind], key=lambda r: min(v for _, v in r.history))


@dataclass(frozen=True)
class DemoExport:
    """A demo model written into the repository."""

    demo: DemoModel
    directory: Path
    accuracy: dict[str, dict[str, float]]
    state_size: int
    passed: bool
    seed: int | None
