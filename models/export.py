"""Export a trained network to the service's ONNX contract, and refuse to ship a bad graph.

Why the TorchScript exporter (``dynamo=False``): in torch 2.13 the dynamo exporter can fix the
time axis to the example's length and unrolls ``nn.RNN``; the TorchScript one, with
``dynamic_axes`` on every input and output, emits native ONNX ``LSTM`` / ``GRU`` / ``RNN`` nodes
with dynamic batch and time (see DESIGN.md, field notes). Whatever the exporter does, the
graph is checked here with batches and lengths different from the export example:

1. onnxruntime matches torch within :data:`ORT_TOLERANCE` on random batches;
2. one-step-at-a-time inference with carried state equals the whole-sequence call within the
   contract's tolerance, for B > 1 (the service's own ``step_parity_error``);
3. the written directory loads with the service's own loader (``load_runtime``).

A network that reads calendar features gets the contract's optional ``time`` input (float64
epoch seconds [B, T], dynamic on both axes like ``x``), and every check feeds it real times.
Any failure removes what was written and raises :class:`ExportRefused`.
"""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from models.networks import Forecaster, RecurrentForecaster
from models.ship import (
    CALIBRATION,
    ExportRefused,
    check_step_parity,
    contract_session,
    next_version,
    provenance,
    write_version,
)
from models.train import Checkpoint
from service.contract import relative_error
from service.manifest import (
    INPUT_STATE,
    INPUT_TIME,
    INPUT_X,
    ONNX_FILE,
    OUTPUT_FORECAST,
    OUTPUT_STATE,
    Manifest,
    Training,
)

__all__ = ["ExportRefused", "export_checkpoint", "export_model", "next_version", "onnx_bytes"]

#: Largest relative difference (``service.contract.relative_error``) allowed between
#: onnxruntime and torch on the same inputs.
ORT_TOLERANCE = 1e-5
#: Opset of the exported graphs (native LSTM/GRU/RNN nodes exist since opset 7).
OPSET = 17
#: (batch, time) of the export example; the checks use other shapes on purpose.
EXAMPLE_SHAPE = (2, 5)
#: (batch, time) pairs the torch-vs-onnxruntime check runs, none equal to the example.
CHECK_SHAPES = ((3, 7), (1, 1), (5, 2))
#: (batch, time) of the step-parity check.
PARITY_SHAPE = (3, 9)

FloatArray = npt.NDArray[np.float32]
TimeArray = npt.NDArray[np.float64]
#: A time in 2026, where the checks' random series start (plus up to ten years).
_CHECK_EPOCH = 1.77e9


def onnx_bytes(model: Forecaster, *, opset: int = OPSET) -> bytes:
    """The network as an ONNX graph with the contract's names and dynamic B and T."""
    model.eval()
    batch, steps = EXAMPLE_SHAPE
    x = torch.zeros(batch, steps, model.n_features)
    state = model.initial_state().unsqueeze(0).repeat(batch, 1)
    args: tuple[torch.Tensor, ...] = (x, state)
    names = [INPUT_X, INPUT_STATE]
    dynamic: dict[str, dict[int, str]] = {
        INPUT_X: {0: "batch", 1: "time"},
        INPUT_STATE: {0: "batch"},
        OUTPUT_FORECAST: {0: "batch"},
        OUTPUT_STATE: {0: "batch"},
    }
    if model.takes_time:
        args += (_CHECK_EPOCH + 60.0 * torch.arange(steps, dtype=torch.float64).repeat(batch, 1),)
        names.append(INPUT_TIME)
        dynamic[INPUT_TIME] = {0: "batch", 1: "time"}
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        # The TorchScript exporter is deprecated but is the one that emits native RNN nodes.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            args,
            str(Path(scratch) / ONNX_FILE),
            dynamo=False,
            opset_version=opset,
            input_names=names,
            output_names=[OUTPUT_FORECAST, OUTPUT_STATE],
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )
        return (Path(scratch) / ONNX_FILE).read_bytes()


def random_inputs(
    model: Forecaster, batch: int, steps: int, rng: np.random.Generator, frequency: float
) -> tuple[FloatArray, FloatArray, TimeArray]:
    """Plausible random inputs: observations around the training distribution, any state,
    and the observations' times (``frequency`` apart from a random start).

    Observations are drawn in normalised units and mapped back to raw units, so a check on a
    network whose data lie near 30 000 does not feed it values near 0. The state is what a
    stream would hold after a random history of such observations (its reference, its last
    observation, the mlp's window), with the recurrent part drawn in (-1, 1), h's range.
    """
    mean = model.mean.detach().numpy().astype(np.float64)
    std = model.std.detach().numpy().astype(np.float64)
    x = mean + std * rng.standard_normal((batch, steps, model.n_features))
    history = mean + std * rng.standard_normal((batch, max(model.context, 1), model.n_features))
    state = model.state_from_history(torch.from_numpy(history).float()).numpy().copy()
    if isinstance(model, RecurrentForecaster):
        width = model.layers * model.hidden * (2 if model.kind == "lstm" else 1)
        state[:, :width] = rng.uniform(-0.9, 0.9, (batch, width))
    start = _CHECK_EPOCH + rng.uniform(0, 3.2e8, size=(batch, 1))
    times = start + frequency * np.arange(steps)
    return x.astype(np.float32), state.astype(np.float32), times


def _torch_run(
    model: Forecaster, x: FloatArray, state: FloatArray, time: TimeArray
) -> tuple[FloatArray, FloatArray]:
    with torch.no_grad():
        forecast, state_out = model(
            torch.from_numpy(x), torch.from_numpy(state), torch.from_numpy(time)
        )
    return forecast.numpy(), state_out.numpy()


def check_graph(model: Forecaster, graph: bytes, manifest: Manifest, *, seed: int = 0) -> None:
    """Refuse a graph that breaks the signature, differs from torch or breaks step parity.

    Raises:
        ExportRefused: saying which check failed and by how much.
    """
    run = contract_session(graph, manifest)

    rng = np.random.default_rng(seed)
    frequency = manifest.frequency
    for batch, steps in CHECK_SHAPES:
        x, state, time = random_inputs(model, batch, steps, rng, frequency)
        want_forecast, want_state = _torch_run(model, x, state, time)
        got_forecast, got_state = run(x, state, time)
        if got_forecast.shape != want_forecast.shape or got_state.shape != want_state.shape:
            raise ExportRefused(
                f"onnxruntime returns forecast {list(got_forecast.shape)} / state_out "
                f"{list(got_state.shape)} for B={batch}, T={steps}; torch returns "
                f"{list(want_forecast.shape)} / {list(want_state.shape)}"
            )
        error = max(
            relative_error(got_forecast, want_forecast), relative_error(got_state, want_state)
        )
        if not error <= ORT_TOLERANCE:
            raise ExportRefused(
                f"onnxruntime differs from torch by {error:.3g} (relative) at B={batch}, "
                f"T={steps}; allowed {ORT_TOLERANCE:g}"
            )
    batch, steps = PARITY_SHAPE
    check_step_parity(run, *random_inputs(model, batch, steps, rng, frequency))


def export_model(
    model: Forecaster,
    directory: Path,
    *,
    name: str,
    version: int,
    features: Sequence[str],
    target: str,
    frequency: float,
    training: Training | None = None,
    accuracy: dict[str, dict[str, float]] | None = None,
    description: str = "",
    opset: int = OPSET,
    extra: dict[str, Any] | None = None,
) -> Manifest:
    """Write ``model.onnx`` and ``model.json`` into ``directory`` after every check passes.

    Raises:
        ExportRefused: a check failed; ``directory`` holds neither file afterwards.
    """
    if list(features)[model.target_index] != target or len(features) != model.n_features:
        raise ValueError("features and target do not match the network's inputs")
    graph = onnx_bytes(model, opset=opset)
    initial = model.initial_state()
    initial_state = (
        None if not bool(torch.any(initial != 0)) else [float(v) for v in initial.tolist()]
    )
    manifest = Manifest(
        name=name,
        version=version,
        kind=model.kind,
        features=list(features),
        target=target,
        frequency=frequency,
        horizon=model.horizon,
        quantiles=model.quantiles,
        state_size=model.state_size,
        initial_state=initial_state,
        time_input=model.takes_time,
        sha256=hashlib.sha256(graph).hexdigest(),
        opset=opset,
        description=description,
        training=training,
        accuracy=accuracy,
        **(extra or {}),
    )
    check_graph(model, graph, manifest)
    write_version(directory, graph, manifest)
    return manifest


def export_checkpoint(
    checkpoint: Checkpoint,
    repository: Path,
    *,
    name: str,
    version: int | None = None,
    description: str = "",
    quality_gate: dict[str, Any] | None = None,
) -> tuple[Path, Manifest]:
    """Export a trained network as ``<repository>/<name>/<version>`` with full provenance.

    ``quality_gate`` is the gate's record (:meth:`models.gate.Verdict.record`), kept in the
    manifest's training record.
    """
    version = version or next_version(repository / name)
    meta = checkpoint.series
    config = checkpoint.config
    training = Training(
        dataset=f"{meta['name']}: {meta['source']}",
        split=checkpoint.split.as_dict(),
        epochs=checkpoint.epochs_run,
        seed=config.seed,
        best_epoch=checkpoint.best_epoch,
        **provenance(meta, quality_gate),
        hyper_parameters=config.hyper_parameters(),
        architecture=checkpoint.model.hyper_parameters(),
        calibration=CALIBRATION,
    )
    directory = repository / name / str(version)
    manifest = export_model(
        checkpoint.model,
        directory,
        name=name,
        version=version,
        features=list(meta["features"]),
        target=str(meta["target"]),
        frequency=float(meta["frequency"]),
        training=training,
        accuracy=checkpoint.accuracy,
        description=description,
    )
    return directory, manifest
