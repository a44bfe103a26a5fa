"""Untrained LSTM/GRU graphs that obey the model contract, built with ``onnx.helper`` alone.

Why this exists: the service and its tests need real recurrent ONNX models (native ``LSTM`` /
``GRU`` nodes, dynamic batch and time, state in and out) without torch or a training run. The
weights are random, so the forecasts mean nothing, but every part of the contract is genuine:
normalisation inside the graph, state sliced from ``state`` and returned in ``state_out``,
a linear head denormalised to the target's units, and monotone quantiles.

Run ``python -m models.onnx_builder <repository>`` to write the stand-in demo models.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from service.manifest import (
    INPUT_STATE,
    INPUT_X,
    ONNX_FILE,
    OUTPUT_FORECAST,
    OUTPUT_STATE,
    Manifest,
    Training,
    file_sha256,
)

RecurrentKind = Literal["lstm", "gru"]

#: Lowest opset the graph is valid for (``Unsqueeze``/``Squeeze``/``Slice`` take tensor inputs).
MIN_OPSET = 13
#: Gates per cell: ONNX LSTM stacks i, o, f, c; GRU stacks z, r, h.
_GATES = {"lstm": 4, "gru": 3}


def build_recurrent_model(
    directory: Path,
    *,
    kind: RecurrentKind,
    name: str,
    version: int = 1,
    features: Sequence[str],
    target: str,
    frequency: float,
    hidden: int = 8,
    horizon: int = 4,
    quantiles: Sequence[float] = (0.1, 0.5, 0.9),
    seed: int = 0,
    opset: int = 17,
    mean: npt.ArrayLike | None = None,
    scale: npt.ArrayLike | None = None,
) -> Manifest:
    """Write ``model.onnx`` and ``model.json`` for an untrained recurrent forecaster.

    Args:
        directory: Version directory to write into (created if missing).
        kind: ``"lstm"`` (state row is ``h`` then ``c``, S = 2 * hidden) or ``"gru"``
            (state row is ``h``, S = hidden).
        name: Model name recorded in the manifest.
        version: Model version recorded in the manifest.
        features: Names of the F input features, in column order.
        target: The feature that is forecast; must be one of ``features``.
        frequency: Seconds between consecutive observations.
        hidden: Hidden units of the single recurrent layer.
        horizon: H, forecast steps after the last observation.
        quantiles: Q strictly increasing quantile levels, including 0.5.
        seed: Seed of the random weights; the same arguments give the same bytes.
        opset: ONNX opset of the graph (at least 13).
        mean: Per-feature mean subtracted inside the graph (zeros when omitted).
        scale: Per-feature scale divided inside the graph (ones when omitted).

    Returns:
        The manifest written beside the graph, with the ONNX file's sha256.
    """
    if kind not in _GATES:
        raise ValueError(f"kind must be 'lstm' or 'gru', not {kind!r}")
    if hidden < 1 or horizon < 1:
        raise ValueError("hidden and horizon must be at least 1")
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(
            f"opset must lie in [{MIN_OPSET}, {onnx.defs.onnx_opset_version()}], not {opset}"
        )
    feature_list = list(features)
    quantile_list = [float(q) for q in quantiles]
    n_features = len(feature_list)
    mean_arr = _per_feature(mean, n_features, 0.0, "mean")
    scale_arr = _per_feature(scale, n_features, 1.0, "scale")
    if np.any(scale_arr <= 0):
        raise ValueError("scale must be positive")
    state_size = 2 * hidden if kind == "lstm" else hidden

    # Validate everything the manifest checks before spending time on the graph; the sha256
    # placeholder is replaced once the file exists.
    training = Training(
        dataset="untrained",
        epochs=0,
        seed=seed,
        normalisation={"mean": mean_arr.tolist(), "scale": scale_arr.tolist()},
        hidden=hidden,
    )
    draft = Manifest(
        name=name,
        version=version,
        kind=kind,
        features=feature_list,
        target=target,
        frequency=frequency,
        horizon=horizon,
        quantiles=quantile_list,
        state_size=state_size,
        sha256="0" * 64,
        opset=opset,
        description=(
            f"Untrained {kind.upper()} with random weights (seed {seed}): a stand-in that obeys "
            "the model contract; its forecasts mean nothing."
        ),
        training=training,
    )

    model = _graph(
        kind=kind,
        n_features=n_features,
        target_index=feature_list.index(target),
        hidden=hidden,
        horizon=horizon,
        median_index=draft.median_index,
        n_quantiles=len(quantile_list),
        mean=mean_arr,
        scale=scale_arr,
        seed=seed,
        opset=opset,
        name=name,
    )
    onnx.checker.check_model(model, full_check=True)

    directory.mkdir(parents=True, exist_ok=True)
    onnx_path = directory / ONNX_FILE
    onnx.save_model(model, onnx_path)
    manifest = draft.model_copy(update={"sha256": file_sha256(onnx_path)})
    manifest.write(directory)
    return manifest


def _per_feature(
    values: npt.ArrayLike | None, n_features: int, default: float, what: str
) -> npt.NDArray[np.float32]:
    if values is None:
        return np.full(n_features, default, dtype=np.float32)
    array = np.asarray(values, dtype=np.float32)
    if array.shape != (n_features,):
        raise ValueError(f"{what} needs {n_features} values, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} must be finite")
    return array


def _graph(
    *,
    kind: RecurrentKind,
    n_features: int,
    target_index: int,
    hidden: int,
    horizon: int,
    median_index: int,
    n_quantiles: int,
    mean: npt.NDArray[np.float32],
    scale: npt.NDArray[np.float32],
    seed: int,
    opset: int,
    name: str,
) -> onnx.ModelProto:
    """The graph: normalise, recur from ``state``, head on the last ``h``, monotone quantiles."""
    rng = np.random.default_rng(seed)
    gates = _GATES[kind]
    bound = 1.0 / math.sqrt(hidden)  # torch's recurrent init: outputs stay well inside tanh

    def uniform(*shape: int, limit: float = bound) -> npt.NDArray[np.float32]:
        return rng.uniform(-limit, limit, size=shape).astype(np.float32)

    initializers = _Initializers()
    const = initializers.add

    const("mean", mean)
    const("scale", scale)
    const("axis0", [0], np.int64)
    const("W", uniform(1, gates * hidden, n_features))
    const("R", uniform(1, gates * hidden, hidden))
    const("B", uniform(1, 2 * gates * hidden))
    # Head: h -> H * Q raw values, small so the normalised forecast stays within a few units.
    const("head_W", uniform(hidden, horizon * n_quantiles, limit=0.5 * bound))
    const("head_b", uniform(horizon * n_quantiles, limit=0.1))
    const("head_shape", [0, horizon, n_quantiles], np.int64)
    const("target_mean", mean[target_index])
    const("target_scale", scale[target_index])

    nodes: list[onnx.NodeProto] = [
        # Scaling lives in the graph: the service sends raw observations.
        helper.make_node("Sub", [INPUT_X, "mean"], ["x_centred"]),
        helper.make_node("Div", ["x_centred", "scale"], ["x_norm"]),
        # ONNX recurrent nodes take [T, B, F] (layout 0; onnxruntime does not run layout 1).
        helper.make_node("Transpose", ["x_norm"], ["x_tbf"], perm=[1, 0, 2]),
    ]

    if kind == "lstm":
        const("h_start", [0], np.int64)
        const("h_end", [hidden], np.int64)
        const("c_end", [2 * hidden], np.int64)
        const("axis1", [1], np.int64)
        nodes += [
            helper.make_node("Slice", [INPUT_STATE, "h_start", "h_end", "axis1"], ["h0_2d"]),
            helper.make_node("Slice", [INPUT_STATE, "h_end", "c_end", "axis1"], ["c0_2d"]),
            helper.make_node("Unsqueeze", ["h0_2d", "axis0"], ["h0"]),
            helper.make_node("Unsqueeze", ["c0_2d", "axis0"], ["c0"]),
            helper.make_node(
                "LSTM",
                ["x_tbf", "W", "R", "B", "", "h0", "c0"],
                ["", "Y_h", "Y_c"],
                hidden_size=hidden,
            ),
            helper.make_node("Squeeze", ["Y_h", "axis0"], ["h_last"]),
            helper.make_node("Squeeze", ["Y_c", "axis0"], ["c_last"]),
            helper.make_node("Concat", ["h_last", "c_last"], [OUTPUT_STATE], axis=1),
        ]
    else:
        nodes += [
            helper.make_node("Unsqueeze", [INPUT_STATE, "axis0"], ["h0"]),
            # linear_before_reset=1 is torch's GRU, so trained exports and this agree.
            helper.make_node(
                "GRU",
                ["x_tbf", "W", "R", "B", "", "h0"],
                ["", "Y_h"],
                hidden_size=hidden,
                linear_before_reset=1,
            ),
            helper.make_node("Squeeze", ["Y_h", "axis0"], ["h_last"]),
            helper.make_node("Identity", ["h_last"], [OUTPUT_STATE]),
        ]

    nodes += [
        helper.make_node("Gemm", ["h_last", "head_W", "head_b"], ["head_flat"]),
        helper.make_node("Reshape", ["head_flat", "head_shape"], ["head"]),
    ]
    nodes += _monotone_quantiles(const, median_index, n_quantiles)
    nodes += [
        helper.make_node("Mul", ["quantiles_norm", "target_scale"], ["forecast_scaled"]),
        helper.make_node("Add", ["forecast_scaled", "target_mean"], [OUTPUT_FORECAST]),
    ]

    state_size = 2 * hidden if kind == "lstm" else hidden
    graph = helper.make_graph(
        nodes,
        f"{name}-{kind}",
        inputs=[
            helper.make_tensor_value_info(
                INPUT_X, TensorProto.FLOAT, ["batch", "time", n_features]
            ),
            helper.make_tensor_value_info(INPUT_STATE, TensorProto.FLOAT, ["batch", state_size]),
        ],
        outputs=[
            helper.make_tensor_value_info(
                OUTPUT_FORECAST, TensorProto.FLOAT, ["batch", horizon, n_quantiles]
            ),
            helper.make_tensor_value_info(OUTPUT_STATE, TensorProto.FLOAT, ["batch", state_size]),
        ],
        initializer=initializers.tensors,
    )
    return finish_model(graph, opset, "stateful-forecast.onnx_builder")


def finish_model(graph: onnx.GraphProto, opset: int, producer: str) -> onnx.ModelProto:
    """A model of ``graph`` at ``opset``, with the lowest IR version that opset allows
    (onnx's default can be newer than onnxruntime reads)."""
    opsets = [helper.make_opsetid("", opset)]
    return helper.make_model(
        graph,
        opset_imports=opsets,
        ir_version=helper.find_min_ir_version_for(opsets),
        producer_name=producer,
    )


class _Initializers:
    """The graph's constant tensors, collected as the nodes that use them are written."""

    def __init__(self) -> None:
        self.tensors: list[onnx.TensorProto] = []

    def add(self, name: str, value: npt.ArrayLike, dtype: type[np.generic] = np.float32) -> str:
        """Add a constant once; adding the same name again only returns the name."""
        if all(tensor.name != name for tensor in self.tensors):
            self.tensors.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name


def _monotone_quantiles(
    const: Callable[..., str], median_index: int, n_quantiles: int
) -> list[onnx.NodeProto]:
    """Nodes from ``head`` [B, H, Q] to ``quantiles_norm`` [B, H, Q], increasing along Q.

    The median column is used as is; the columns above it become the median plus a cumulative
    sum of softplus offsets, and those below the median minus a reverse cumulative sum, so the
    quantiles can never cross whatever the weights.
    """
    const("q_axis", [2], np.int64)
    const("median_start", [median_index], np.int64)
    const("median_end", [median_index + 1], np.int64)
    nodes = [helper.make_node("Slice", ["head", "median_start", "median_end", "q_axis"], ["med"])]
    parts: list[str] = []
    if median_index > 0:
        const("zero", [0], np.int64)
        const("q_axis_scalar", np.int64(2), np.int64)  # CumSum wants a 0-d axis
        nodes += [
            helper.make_node("Slice", ["head", "zero", "median_start", "q_axis"], ["down_raw"]),
            helper.make_node("Softplus", ["down_raw"], ["down_gap"]),
            # reverse=1: the lowest quantile sums every gap, the one below the median only one.
            helper.make_node("CumSum", ["down_gap", "q_axis_scalar"], ["down_off"], reverse=1),
            helper.make_node("Sub", ["med", "down_off"], ["lower"]),
        ]
        parts.append("lower")
    parts.append("med")
    if median_index < n_quantiles - 1:
        const("q_end", [n_quantiles], np.int64)
        const("q_axis_scalar", np.int64(2), np.int64)
        nodes += [
            helper.make_node("Slice", ["head", "median_end", "q_end", "q_axis"], ["up_raw"]),
            helper.make_node("Softplus", ["up_raw"], ["up_gap"]),
            helper.make_node("CumSum", ["up_gap", "q_axis_scalar"], ["up_off"]),
            helper.make_node("Add", ["med", "up_off"], ["upper"]),
        ]
        parts.append("upper")
    if len(parts) == 1:
        nodes.append(helper.make_node("Identity", ["med"], ["quantiles_norm"]))
    else:
        nodes.append(helper.make_node("Concat", parts, ["quantiles_norm"], axis=2))
    return nodes


def write_demo_repository(repository: Path) -> list[Manifest]:
    """Write the stand-in demo models ``demo-lstm/1`` and ``demo-gru/1`` (one feature)."""
    kinds: list[tuple[RecurrentKind, int]] = [("lstm", 1), ("gru", 2)]
    return [
        build_recurrent_model(
            repository / f"demo-{kind}" / "1",
            kind=kind,
            name=f"demo-{kind}",
            features=["value"],
            target="value",
            frequency=60.0,
            horizon=12,
            hidden=16,
            seed=seed,
        )
        for kind, seed in kinds
    ]


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: write the demo models into a repository directory."""
    parser = argparse.ArgumentParser(
        prog="python -m models.onnx_builder",
        description="Write untrained demo-lstm/1 and demo-gru/1 contract models.",
    )
    parser.add_argument("repository", type=Path, help="model repository directory")
    args = parser.parse_args(argv)
    for manifest in write_demo_repository(args.repository):
        where = args.repository / manifest.name / str(manifest.version)
        print(f"wrote {where} (sha256 {manifest.sha256})")


if __name__ == "__main__":
    main()
