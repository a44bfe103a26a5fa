"""A tiny hand-built graph with the contract's optional ``time`` input, for the service's tests.

``clock`` (one feature ``value``, half-hourly, H = 4, quantiles 0.1/0.5/0.9) keeps in its state
the running sum of sin(2 pi * time-of-day) over every observation it has seen, and the last
value. Its median forecast is that sum plus the last value, and the outer quantiles lie 1
below and above. So every forecast depends on every observation's timestamp, in order: a
service that passes no times, the wrong ones or the wrong number gives other numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from service.manifest import ONNX_FILE, Manifest, file_sha256

DAY = 86_400.0
HORIZON = 4
QUANTILES = [0.1, 0.5, 0.9]
OPSET = 17


def clock_reference(times: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The forecast [H, Q] after a whole series, computed in numpy (float64)."""
    phase = np.mod(times, DAY) * (2 * np.pi / DAY)
    median = float(np.sin(phase).sum() + values[-1])
    return np.tile(np.array([median - 1.0, median, median + 1.0]), (HORIZON, 1))


def build_clock_model(directory: Path, *, name: str = "clock", version: int = 1) -> Manifest:
    """Write ``model.onnx`` and ``model.json`` of the clock model into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    consts = [
        numpy_helper.from_array(np.array([DAY]), "day"),
        numpy_helper.from_array(np.array([2 * np.pi / DAY], dtype=np.float32), "radians"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "zero"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "minus1"),
        numpy_helper.from_array(np.array([2**62], dtype=np.int64), "end"),
        numpy_helper.from_array(
            np.tile(np.array([-1.0, 0.0, 1.0], dtype=np.float32), (1, HORIZON, 1)), "offsets"
        ),
    ]
    nodes = [
        # time of day in float64 (epoch seconds do not fit float32), then the phase in float32
        helper.make_node("Div", ["time", "day"], ["days"]),
        helper.make_node("Floor", ["days"], ["whole_days"]),
        helper.make_node("Mul", ["whole_days", "day"], ["midnight"]),
        helper.make_node("Sub", ["time", "midnight"], ["tod64"]),
        helper.make_node("Cast", ["tod64"], ["tod"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["tod", "radians"], ["phase"]),
        helper.make_node("Sin", ["phase"], ["wave"]),
        helper.make_node("ReduceSum", ["wave", "axis1"], ["wave_sum"], keepdims=1),  # [B, 1]
        helper.make_node("Slice", ["state", "zero", "axis1", "axis1"], ["acc_in"]),  # [B, 1]
        helper.make_node("Add", ["acc_in", "wave_sum"], ["acc"]),
        helper.make_node("Slice", ["x", "minus1", "end", "axis1"], ["last3"]),  # [B, 1, 1]
        helper.make_node("Squeeze", ["last3", "axis1"], ["last"]),  # [B, 1]
        helper.make_node("Concat", ["acc", "last"], ["state_out"], axis=1),
        helper.make_node("Add", ["acc", "last"], ["median"]),  # [B, 1]
        helper.make_node("Unsqueeze", ["median", "axis2"], ["median3"]),  # [B, 1, 1]
        helper.make_node("Add", ["median3", "offsets"], ["forecast"]),  # [B, H, Q]
    ]
    graph = helper.make_graph(
        nodes,
        "clock",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", 1]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, ["B", 2]),
            helper.make_tensor_value_info("time", TensorProto.DOUBLE, ["B", "T"]),
        ],
        [
            helper.make_tensor_value_info("forecast", TensorProto.FLOAT, ["B", HORIZON, 3]),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, ["B", 2]),
        ],
        initializer=consts,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = directory / ONNX_FILE
    onnx.save(model, path)
    manifest = Manifest(
        name=name,
        version=version,
        kind="rnn",
        features=["value"],
        target="value",
        frequency=1800.0,
        horizon=HORIZON,
        quantiles=QUANTILES,
        state_size=2,
        time_input=True,
        sha256=file_sha256(path),
        opset=OPSET,
        description="test graph: a running sum of each reading's time of day",
    )
    manifest.write(directory)
    return manifest
