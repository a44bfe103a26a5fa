"""The statistical kinds as ONNX graphs under the model contract, built with ``onnx.helper``.

``--kind snaive`` (:class:`~models.baselines.SeasonalNaive`) and ``--kind ets``
(:class:`~models.holtwinters.HoltWinters`) obey the same contract as the networks, so the
service serves them unchanged: inputs ``x`` [B, T, F], ``state`` [B, S] and ``time`` [B, T]
(float64 epoch seconds), outputs ``forecast`` [B, H, Q] and ``state_out`` [B, S].

- The state row is the model's whole memory: for ets ``[level, trend, last one-step error,
  the terms of each season by slot]``, for snaive the last value seen at each slot of its
  season.
- A ``Scan`` runs the recursion over the T observations, so any T works and one call over a
  series equals T calls of one observation, operation for operation.
- Each observation's slot comes from its timestamp, computed in float64 in the graph exactly
  as :func:`models.holtwinters.grid_index` and :func:`~models.holtwinters.slot_of` compute it.
- The quantiles are the point forecast plus the conformal offsets [H, Q] from the
  validation errors (:mod:`models.calibrate`), a constant of the graph.

Only the target column of ``x`` is read; other features are accepted and ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper

from models.baselines import SeasonalNaive, StatisticalModel
from models.holtwinters import HoltWinters
from models.onnx_builder import _Initializers, finish_model
from service.manifest import INPUT_STATE, INPUT_TIME, INPUT_X, OUTPUT_FORECAST, OUTPUT_STATE

#: Opset of the statistical graphs (GatherElements / ScatterElements need 11, Slice inputs 10).
OPSET = 17
_INT_MAX = np.iinfo(np.int64).max
#: :meth:`models.onnx_builder._Initializers.add`: adds a constant, returns its name.
_Const = Callable[..., str]


def statistical_graph(
    model: StatisticalModel,
    *,
    n_features: int,
    target_index: int,
    horizon: int,
    offsets: npt.NDArray[np.float64],
    name: str,
) -> onnx.ModelProto:
    """The contract graph of a fitted seasonal naive or Holt-Winters model."""
    if offsets.shape[0] != horizon:
        raise ValueError(f"offsets are for {offsets.shape[0]} steps, the horizon is {horizon}")
    consts = _Initializers()
    c = consts.add
    periods = model.periods
    nodes = [
        # The target column [B, T] and each observation's grid index (float64, as numpy does).
        helper.make_node(
            "Gather", [INPUT_X, c("target", np.int64(target_index), np.int64)], ["y_bt"], axis=2
        ),
        helper.make_node(
            "Div", [INPUT_TIME, c("frequency", model.frequency, np.float64)], ["cycles"]
        ),
        helper.make_node("Add", ["cycles", c("half", 0.5, np.float64)], ["cycles_half"]),
        helper.make_node("Floor", ["cycles_half"], ["grid"]),
    ]
    for i, m in enumerate(periods):
        nodes += _slots("grid", m, f"slot{i}", c)
    if isinstance(model, HoltWinters):
        recursion, carried = _ets_nodes(model, c)
    else:
        recursion, carried = _snaive_nodes(model)
    nodes += _state_slices(model, c)
    nodes += recursion
    # Future grid indices of the H steps after the last observation, and their slots.
    nodes += [
        helper.make_node(
            "Slice",
            [
                "grid",
                c("minus1", [-1], np.int64),
                c("int_max", [_INT_MAX], np.int64),
                c("axis1", [1], np.int64),
            ],
            ["grid_last"],
        ),
        helper.make_node(
            "Add",
            ["grid_last", c("steps", np.arange(1, horizon + 1, dtype=np.float64), np.float64)],
            ["grid_future"],
        ),
    ]
    for i, m in enumerate(periods):
        nodes += _slots("grid_future", m, f"future{i}", c)
        nodes.append(
            helper.make_node(
                "GatherElements", [carried[f"season{i}"], f"future{i}"], [f"ahead{i}"], axis=1
            )
        )
    nodes += _point_nodes(model, horizon, carried, c)
    nodes += [
        helper.make_node("Unsqueeze", ["point", c("axis2", [2], np.int64)], ["point3"]),
        helper.make_node(
            "Add", ["point3", c("offsets", offsets.astype(np.float32))], [OUTPUT_FORECAST]
        ),
        helper.make_node("Concat", list(carried.values()), [OUTPUT_STATE], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        f"{name}-{'ets' if isinstance(model, HoltWinters) else 'snaive'}",
        inputs=[
            helper.make_tensor_value_info(
                INPUT_X, TensorProto.FLOAT, ["batch", "time", n_features]
            ),
            helper.make_tensor_value_info(
                INPUT_STATE, TensorProto.FLOAT, ["batch", model.state_size]
            ),
            helper.make_tensor_value_info(INPUT_TIME, TensorProto.DOUBLE, ["batch", "time"]),
        ],
        outputs=[
            helper.make_tensor_value_info(
                OUTPUT_FORECAST, TensorProto.FLOAT, ["batch", horizon, offsets.shape[1]]
            ),
            helper.make_tensor_value_info(
                OUTPUT_STATE, TensorProto.FLOAT, ["batch", model.state_size]
            ),
        ],
        initializer=consts.tensors,
    )
    built = finish_model(graph, OPSET, "stateful-forecast.models.graphs")
    onnx.checker.check_model(built, full_check=True)
    return built


def _tensor(name: str, kind: int, shape: list[int | str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, kind, shape)


def _slots(grid: str, period: int, out: str, c: _Const) -> list[onnx.NodeProto]:
    """``grid - floor(grid / period) * period`` as int64: the slot of each grid index."""
    p = c(f"period{period}", float(period), np.float64)
    return [
        helper.make_node("Div", [grid, p], [f"{out}_cycles"]),
        helper.make_node("Floor", [f"{out}_cycles"], [f"{out}_whole"]),
        helper.make_node("Mul", [f"{out}_whole", p], [f"{out}_start"]),
        helper.make_node("Sub", [grid, f"{out}_start"], [f"{out}_float"]),
        helper.make_node("Cast", [f"{out}_float"], [out], to=TensorProto.INT64),
    ]


def _state_slices(model: StatisticalModel, c: _Const) -> list[onnx.NodeProto]:
    """Slice ``state`` [B, S] into the carried parts the recursion starts from."""
    if isinstance(model, HoltWinters):
        parts = ["level", "trend", "error"] + [f"season{i}" for i in range(len(model.periods))]
        widths = [1, 1, 1, *model.periods]
    else:
        parts, widths = ["season0"], [model.period]
    nodes, start = [], 0
    for part, width in zip(parts, widths, strict=True):
        nodes.append(
            helper.make_node(
                "Slice",
                [
                    INPUT_STATE,
                    c(f"from{start}", [start], np.int64),
                    c(f"to{start + width}", [start + width], np.int64),
                    c("axis1", [1], np.int64),
                ],
                [f"{part}_in"],
            )
        )
        start += width
    return nodes


def _scan(carried: list[str], scanned: list[str], body: onnx.GraphProto) -> onnx.NodeProto:
    return helper.make_node(
        "Scan",
        [f"{name}_in" for name in carried] + scanned,
        [f"{name}_out" for name in carried],
        body=body,
        num_scan_inputs=len(scanned),
        scan_input_axes=[1] * len(scanned),
    )


def _body_graph(
    name: str,
    nodes: list[onnx.NodeProto],
    carried: Mapping[str, int],
    scanned: Mapping[str, int],
    initializers: _Initializers,
) -> onnx.GraphProto:
    """A Scan body: carried [B, width] in and out, one observation's scanned values [B]."""

    inputs = [_tensor(f"{k}_prev", TensorProto.FLOAT, ["batch", w]) for k, w in carried.items()]
    inputs += [_tensor(f"{k}_t", kind, ["batch"]) for k, kind in scanned.items()]
    outputs = [_tensor(f"{k}_next", TensorProto.FLOAT, ["batch", w]) for k, w in carried.items()]
    return helper.make_graph(nodes, name, inputs, outputs, initializer=initializers.tensors)


def _ets_nodes(model: HoltWinters, c: _Const) -> tuple[list[onnx.NodeProto], dict[str, str]]:
    """The Holt-Winters recursion (see :mod:`models.holtwinters`) as a Scan over time."""
    body = _Initializers()
    b = body.add
    k = len(model.periods)
    nodes = [
        helper.make_node("Unsqueeze", ["y_t", b("step_axis1", [1], np.int64)], ["y"]),
        helper.make_node("Mul", ["trend_prev", b("phi", np.float32(model.phi))], ["damped"]),
        helper.make_node("Add", ["level_prev", "damped"], ["expected"]),
    ]
    base = "expected"
    for i in range(k):
        nodes += [
            helper.make_node("Unsqueeze", [f"slot{i}_t", "step_axis1"], [f"at{i}"]),
            helper.make_node("GatherElements", [f"season{i}_prev", f"at{i}"], [f"term{i}"], axis=1),
            helper.make_node("Add", [base, f"term{i}"], [f"base{i}"]),
        ]
        base = f"base{i}"
    nodes += [
        helper.make_node("Sub", ["y", base], ["error_next"]),
        helper.make_node("Mul", ["error_next", b("alpha", np.float32(model.alpha))], ["a_e"]),
        helper.make_node("Add", ["expected", "a_e"], ["level_next"]),
        helper.make_node("Mul", ["error_next", b("beta", np.float32(model.beta))], ["b_e"]),
        helper.make_node("Add", ["damped", "b_e"], ["trend_next"]),
    ]
    for i, gamma in enumerate(model.gammas):
        nodes += [
            helper.make_node("Mul", ["error_next", b(f"gamma{i}", np.float32(gamma))], [f"g_e{i}"]),
            helper.make_node("Add", [f"term{i}", f"g_e{i}"], [f"updated{i}"]),
            helper.make_node(
                "ScatterElements",
                [f"season{i}_prev", f"at{i}", f"updated{i}"],
                [f"season{i}_next"],
                axis=1,
            ),
        ]
    widths = {"level": 1, "trend": 1, "error": 1} | {
        f"season{i}": m for i, m in enumerate(model.periods)
    }
    scanned = {"y": TensorProto.FLOAT} | {f"slot{i}": TensorProto.INT64 for i in range(k)}
    graph = _body_graph("ets_step", nodes, widths, scanned, body)
    scan = _scan(list(widths), ["y_bt"] + [f"slot{i}" for i in range(k)], graph)
    return [scan], {name: f"{name}_out" for name in widths}


def _snaive_nodes(model: SeasonalNaive) -> tuple[list[onnx.NodeProto], dict[str, str]]:
    """Write each observation at its slot, in order, as a Scan over time."""
    body = _Initializers()
    nodes = [
        helper.make_node("Unsqueeze", ["y_t", body.add("step_axis1", [1], np.int64)], ["y"]),
        helper.make_node("Unsqueeze", ["slot0_t", "step_axis1"], ["at0"]),
        helper.make_node("ScatterElements", ["season0_prev", "at0", "y"], ["season0_next"], axis=1),
    ]
    graph = _body_graph(
        "snaive_step",
        nodes,
        {"season0": model.period},
        {"y": TensorProto.FLOAT, "slot0": TensorProto.INT64},
        body,
    )
    return [_scan(["season0"], ["y_bt", "slot0"], graph)], {"season0": "season0_out"}


def _point_nodes(
    model: StatisticalModel, horizon: int, carried: dict[str, str], c: _Const
) -> list[onnx.NodeProto]:
    """The point forecast [B, H] from the final state and the terms ahead."""
    if isinstance(model, SeasonalNaive):
        return [helper.make_node("Identity", ["ahead0"], ["point"])]
    steps = np.arange(1, horizon + 1, dtype=np.float64)
    damp = np.cumsum(model.phi**steps).astype(np.float32)
    ar_k = (model.ar**steps).astype(np.float32)
    nodes = [
        helper.make_node("Mul", [carried["trend"], c("damp", damp)], ["trend_ahead"]),
        helper.make_node("Add", [carried["level"], "trend_ahead"], ["level_ahead"]),
        helper.make_node("Mul", [carried["error"], c("ar_k", ar_k)], ["error_ahead"]),
        helper.make_node("Add", ["level_ahead", "error_ahead"], ["point_0"]),
    ]
    point = "point_0"
    for i in range(len(model.periods)):
        nodes.append(helper.make_node("Add", [point, f"ahead{i}"], [f"point_{i + 1}"]))
        point = f"point_{i + 1}"
    nodes.append(helper.make_node("Identity", [point], ["point"]))
    return nodes
