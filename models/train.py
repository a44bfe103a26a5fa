"""Training: the same loop, budget and split for every kind, deterministic given the seed.

Networks are trained on random chronological sub-sequences of the training split. Each starts
from the state a stream would have after the readings before it, except for the recurrent
h (and c), which start fresh as a stream's do and warm up during a burn-in: so the seasonal
reference carries the longest season (a week of half-hourly readings) into every
sub-sequence without the sub-sequence having to span it. The loss is the pinball loss on every
step after the burn-in. Validation and test run the network the way the service does: one
stream over the whole series from the fresh state, forecasting after every observation, given
the readings' timestamps.

After the best epoch is restored, the quantiles are calibrated on the validation split
(:mod:`models.calibrate`) inside the network, and the test split is scored next to every
baseline of :mod:`models.baselines`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from tqdm import tqdm

from models.baselines import Baseline, fit_baselines
from models.calibrate import conformal_offsets
from models.data import Series, Split, chronological_split
from models.evaluate import mae, origins, scores, seasonal_scale, targets
from models.networks import Forecaster, Kind, build, calendar_periods

Array = npt.NDArray[np.float64]


@dataclass
class TrainConfig:
    """Every choice that changes the trained network (recorded in the manifest)."""

    kind: Kind = "lstm"
    hidden: int = 32
    layers: int = 1
    window: int = 48
    differences: bool = True
    #: Seasonal reference in steps: None for the series' longest season (when at least H),
    #: 0 for none (forecast the change from the last observation).
    reference: int | None = None
    #: Read calendar features from the readings' timestamps (the periods the data can show).
    calendar: bool = True
    horizon: int = 24
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 32
    samples_per_epoch: int = 512
    seq_len: int = 192
    burn_in: int = 48
    patience: int = 6
    grad_clip: float = 1.0
    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15

    def hyper_parameters(self) -> dict[str, Any]:
        values = asdict(self)
        values["quantiles"] = list(self.quantiles)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in values.items() if k in known}
        if "quantiles" in kept:
            kept["quantiles"] = tuple(float(q) for q in kept["quantiles"])
        return cls(**kept)

    def split(self, n: int) -> Split:
        return chronological_split(n, val=self.val_fraction, test=self.test_fraction)


@dataclass
class TrainResult:
    """A trained network with its held-out evaluation."""

    model: Forecaster
    config: TrainConfig
    series: Series
    split: Split
    epochs_run: int
    best_epoch: int
    history: list[tuple[float, float]]  # (train loss, validation loss) per epoch
    #: Test metrics per method: "model" and every baseline (see models.baselines).
    accuracy: dict[str, dict[str, float]]
    #: Test-origin quantile forecasts [O, H, Q] per method ("model" and the baselines).
    forecasts: dict[str, Array] = field(repr=False)
    test_origins: npt.NDArray[np.int64] = field(repr=False)
    actual: Array = field(repr=False)

    @property
    def quantiles(self) -> tuple[float, ...]:
        return self.config.quantiles


def seed_everything(seed: int) -> None:
    """Same seed, same network: seeded torch, deterministic kernels where torch has them."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _pinball_loss(
    pred: torch.Tensor, actual: torch.Tensor, quantiles: torch.Tensor
) -> torch.Tensor:
    diff = actual.unsqueeze(-1) - pred
    return torch.maximum(quantiles * diff, (quantiles - 1.0) * diff).mean()


def stream_forecasts(model: Forecaster, values: Array, times: Array) -> Array:
    """Forecasts after every observation [N, H, Q], one stream from the fresh state."""
    model.eval()
    with torch.no_grad():
        x = torch.tensor(values, dtype=torch.float32).unsqueeze(0)
        time = torch.tensor(times, dtype=torch.float64).unsqueeze(0)
        state = model.initial_state().unsqueeze(0)
        out = model.forward_all(x, state, time)[0]
    return out.double().numpy()


def _sub_sequences(
    first: int, n_train: int, seq_len: int, horizon: int, samples: int, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Random start indices of an epoch's training sub-sequences (uniform, with replacement)."""
    last = n_train - seq_len - horizon
    return rng.integers(first, last + 1, size=samples, dtype=np.int64)


def resolve_reference(config: TrainConfig, series: Series) -> int:
    """The seasonal reference in steps the config asks for on this series (0 for none)."""
    if config.reference is not None:
        return config.reference
    longest = max(series.seasons, default=0)
    return longest if longest >= config.horizon else 0


def build_network(config: TrainConfig, series: Series, split: Split) -> Forecaster:
    """An untrained network for the series, normalised by its training split."""
    train_values = series.values[: split.train_end]
    mean = train_values.mean(axis=0)
    std = np.maximum(train_values.std(axis=0), 1e-6 * np.maximum(1.0, np.abs(mean)))
    diff_std = np.maximum(np.diff(train_values, axis=0).std(axis=0), 1e-6 * std)
    reference = resolve_reference(config, series)
    reference_std = None
    if reference:
        y = series.y[: split.train_end]
        if len(y) <= reference + config.horizon:
            raise ValueError(f"the training split is too short for a reference of {reference}")
        reference_std = max(float(np.std(y[reference:] - y[:-reference])), 1e-6 * float(std[0]))
    span = float(series.times[split.train_end - 1] - series.times[0])
    calendar = calendar_periods(series.frequency, span) if config.calendar else ()
    return build(
        config.kind,
        n_features=series.values.shape[1],
        target_index=series.target_index,
        horizon=config.horizon,
        quantiles=config.quantiles,
        hidden=config.hidden,
        layers=config.layers,
        window=max(config.window, reference) if config.kind == "mlp" else config.window,
        differences=config.differences,
        mean=mean.tolist(),
        std=std.tolist(),
        diff_std=diff_std.tolist(),
        reference=reference,
        reference_std=reference_std,
        calendar=calendar,
    )


def train(
    series: Series,
    config: TrainConfig,
    *,
    progress: bool = True,
    split: Split | None = None,
    baselines: dict[str, Baseline] | None = None,
) -> TrainResult:
    """Train one network on the series' training split, stop early on validation, calibrate
    on validation, evaluate on test next to the baselines.

    Args:
        series: The data.
        config: Network and training settings.
        progress: Show a progress bar (tqdm) over epochs.
        split: Chronological split (from the config's fractions when omitted).
        baselines: The baselines of this series, split, horizon and quantiles, when the caller
            has them already (fitted here otherwise).
    """
    seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    split = split or config.split(len(series))
    h = config.horizon
    model = build_network(config, series, split)
    context = model.context
    seq_len = min(config.seq_len, split.train_end - context - h - 1)
    burn_in = 0 if config.kind == "mlp" else min(config.burn_in, seq_len // 2)
    if seq_len - burn_in < 1:
        raise ValueError("training split is too short for this horizon and reference")

    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    quantiles = torch.tensor(config.quantiles, dtype=torch.float32)
    target_std = float(model.std[series.target_index])

    x_all = torch.tensor(series.values[: split.train_end], dtype=torch.float32)
    t_all = torch.tensor(series.times[: split.train_end], dtype=torch.float64)
    y_all = torch.tensor(series.y[: split.train_end], dtype=torch.float32)
    step_ahead = torch.arange(1, h + 1)
    positions = torch.arange(seq_len)
    before = torch.arange(-context, 0)

    val_at = origins(split.train_end, split.val_end, h)
    val_actual = targets(series.y, val_at, h)
    val_values = series.values[: split.val_end]
    val_times = series.times[: split.val_end]

    best_loss = math.inf
    best_state = copy.deepcopy(model.state_dict())
    best_epoch = 0
    history: list[tuple[float, float]] = []
    bar = tqdm(range(1, config.epochs + 1), disable=not progress, desc=f"{config.kind}", unit="ep")
    epochs_run = 0
    for epoch in bar:
        epochs_run = epoch
        model.train()
        starts = torch.as_tensor(
            _sub_sequences(context, split.train_end, seq_len, h, config.samples_per_epoch, rng)
        )
        losses: list[float] = []
        for first in range(0, len(starts), config.batch_size):
            batch = starts[first : first + config.batch_size]
            idx = batch[:, None] + positions[None, :]  # [B, L]
            if context:
                state = model.state_from_history(x_all[batch[:, None] + before[None, :]])
            else:
                state = model.initial_state().expand(len(batch), -1)
            y = y_all[idx[:, burn_in:, None] + step_ahead[None, None, :]]  # [B, L - burn, H]
            pred = model.forward_all(x_all[idx], state, t_all[idx])[:, burn_in:]
            loss = _pinball_loss(pred / target_std, y / target_std, quantiles)
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimiser.step()
            losses.append(float(loss.detach()))
        stream = stream_forecasts(model, val_values, val_times)[val_at]
        val_loss = _normalised_pinball(stream, val_actual, config.quantiles, target_std)
        train_loss = float(np.mean(losses))
        history.append((train_loss, val_loss))
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
        if val_loss < best_loss - 1e-6:
            best_loss, best_epoch = val_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= config.patience:
            break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()

    test_at = origins(split.val_end, split.n, h)
    actual = targets(series.y, test_at, h)
    raw = stream_forecasts(model, series.values, series.times)
    offsets = conformal_offsets(raw[val_at], val_actual, config.quantiles)
    model.calibration.copy_(torch.as_tensor(offsets, dtype=torch.float32))
    calibrated = stream_forecasts(model, series.values, series.times)[test_at]
    scale = seasonal_scale(series.y[: split.train_end], series.season)
    baselines = baselines or fit_baselines(series, split, h, config.quantiles)
    forecasts = {"model": calibrated} | {n: b.forecasts for n, b in baselines.items()}
    median = config.quantiles.index(0.5)
    accuracy = {
        "model": scores(
            calibrated,
            actual,
            config.quantiles,
            scale,
            uncalibrated=raw[test_at],
            validation_mae=mae(raw[val_at][..., median], val_actual),
        )
    }
    accuracy |= {
        n: scores(b.forecasts, actual, config.quantiles, scale, validation_mae=b.validation_mae)
        for n, b in baselines.items()
    }
    return TrainResult(
        model=model,
        config=config,
        series=series,
        split=split,
        epochs_run=epochs_run,
        best_epoch=best_epoch,
        history=history,
        accuracy=accuracy,
        forecasts=forecasts,
        test_origins=test_at,
        actual=actual,
    )


def _normalised_pinball(
    pred: Array, actual: Array, quantiles: Sequence[float], scale: float
) -> float:
    q = np.asarray(quantiles)
    diff = (actual[..., None] - pred) / scale
    return float(np.mean(np.maximum(q * diff, (q - 1.0) * diff)))


# --- checkpoints ---------------------------------------------------------------------------


def save_checkpoint(checkpoint: Checkpoint, path: Path) -> None:
    """Weights plus everything export needs, in a file ``torch.load(weights_only=True)`` reads."""
    torch.save(
        {
            "config": checkpoint.config.hyper_parameters(),
            "architecture": checkpoint.model.hyper_parameters(),
            "state_dict": checkpoint.model.state_dict(),
            "series": checkpoint.series,
            "split": [checkpoint.split.train_end, checkpoint.split.val_end, checkpoint.split.n],
            "epochs_run": checkpoint.epochs_run,
            "best_epoch": checkpoint.best_epoch,
            "accuracy": checkpoint.accuracy,
        },
        path,
    )


@dataclass
class Checkpoint:
    """A trained network loaded back from :func:`save_checkpoint`."""

    model: Forecaster
    config: TrainConfig
    series: dict[str, Any]
    split: Split
    epochs_run: int
    best_epoch: int
    accuracy: dict[str, dict[str, float]]


def load_checkpoint(path: Path) -> Checkpoint:
    raw = torch.load(path, weights_only=True)
    config = TrainConfig.from_dict(raw["config"])
    meta = raw["series"]
    features = list(meta["features"])
    architecture = dict(raw["architecture"])
    model = build(
        architecture.pop("kind"),
        n_features=len(features),
        target_index=features.index(meta["target"]),
        horizon=config.horizon,
        quantiles=config.quantiles,
        **architecture,
    )
    model.load_state_dict(raw["state_dict"])
    model.eval()
    train_end, val_end, n = raw["split"]
    return Checkpoint(
        model=model,
        config=config,
        series=dict(meta),
        split=Split(train_end=train_end, val_end=val_end, n=n),
        epochs_run=int(raw["epochs_run"]),
        best_epoch=int(raw["best_epoch"]),
        accuracy={k: dict(v) for k, v in raw["accuracy"].items()},
    )


def checkpoint_of(result: TrainResult) -> Checkpoint:
    """The exportable part of a training result (what a checkpoint file holds)."""
    return Checkpoint(
        model=result.model,
        config=result.config,
        series=result.series.describe(),
        split=result.split,
        epochs_run=result.epochs_run,
        best_epoch=result.best_epoch,
        accuracy=result.accuracy,
    )
