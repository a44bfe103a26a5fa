"""Contract checks: the graph signature against the manifest, and step parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from models.onnx_builder import RecurrentKind, build_recurrent_model
from service.contract import (
    FLOAT32,
    TensorSpec,
    check_signature,
    relative_error,
    step_parity_error,
)
from service.errors import ModelRefused
from service.manifest import ONNX_FILE, Manifest

# The contract for F=2, S=16, H=4, Q=3 (an LSTM with hidden 8 and the builder's defaults).
GOOD_INPUTS = [
    TensorSpec("x", FLOAT32, ["batch", "time", 2]),
    TensorSpec("state", FLOAT32, ["batch", 16]),
]
GOOD_OUTPUTS = [
    TensorSpec("forecast", FLOAT32, ["batch", 4, 3]),
    TensorSpec("state_out", FLOAT32, ["batch", 16]),
]


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    return build_recurrent_model(
        tmp_path, kind="lstm", name="m", features=["load", "temp"], target="load", frequency=60
    )


def test_built_graph_passes_as_onnxruntime_describes_it(tmp_path: Path, manifest: Manifest) -> None:
    session = ort.InferenceSession(str(tmp_path / ONNX_FILE), providers=["CPUExecutionProvider"])
    check_signature(session.get_inputs(), session.get_outputs(), manifest)


def test_unnamed_dynamic_axes_are_dynamic(manifest: Manifest) -> None:
    inputs = [TensorSpec("state", FLOAT32, [None, 16]), TensorSpec("x", FLOAT32, [None, None, 2])]
    check_signature(inputs, list(reversed(GOOD_OUTPUTS)), manifest)


def _replace(specs: list[TensorSpec], index: int, **changes: object) -> list[TensorSpec]:
    spec = specs[index]
    fields: dict[str, object] = {"name": spec.name, "type": spec.type, "shape": spec.shape}
    fields.update(changes)
    return [
        TensorSpec(**fields) if i == index else other  # type: ignore[arg-type]
        for i, other in enumerate(specs)
    ]


@pytest.mark.parametrize(
    ("inputs", "outputs", "message"),
    [
        (_replace(GOOD_INPUTS, 0, name="input"), GOOD_OUTPUTS, "missing ['x']"),
        (GOOD_INPUTS[:1], GOOD_OUTPUTS, "missing ['state']"),
        (
            [*GOOD_INPUTS, TensorSpec("mask", FLOAT32, ["batch"])],
            GOOD_OUTPUTS,
            "unexpected ['mask']",
        ),
        (GOOD_INPUTS, _replace(GOOD_OUTPUTS, 1, name="hidden"), "missing ['state_out']"),
        (_replace(GOOD_INPUTS, 0, type="tensor(double)"), GOOD_OUTPUTS, "'x' is tensor(double)"),
        (GOOD_INPUTS, _replace(GOOD_OUTPUTS, 0, type="tensor(float16)"), "float32"),
        (_replace(GOOD_INPUTS, 0, shape=["batch", 2]), GOOD_OUTPUTS, "'x' has rank 2"),
        (
            _replace(GOOD_INPUTS, 0, shape=["batch", "time", 3]),
            GOOD_OUTPUTS,
            "'x' axis 2 (features F) is 3, the manifest says 2",
        ),
        (
            _replace(GOOD_INPUTS, 1, shape=["batch", 8]),
            GOOD_OUTPUTS,
            "'state' axis 1 (state size S) is 8, the manifest says 16",
        ),
        (
            GOOD_INPUTS,
            _replace(GOOD_OUTPUTS, 0, shape=["batch", 12, 3]),
            "'forecast' axis 1 (horizon H) is 12, the manifest says 4",
        ),
        (
            GOOD_INPUTS,
            _replace(GOOD_OUTPUTS, 0, shape=["batch", 4, 1]),
            "'forecast' axis 2 (quantiles Q) is 1, the manifest says 3",
        ),
        (
            GOOD_INPUTS,
            _replace(GOOD_OUTPUTS, 1, shape=["batch", "s"]),
            "'state_out' axis 1 (state size S) is 's', the manifest says 16",
        ),
        (
            _replace(GOOD_INPUTS, 0, shape=[1, "time", 2]),
            GOOD_OUTPUTS,
            "'x' axis 0 (batch) is fixed to 1; it must be dynamic",
        ),
        (
            _replace(GOOD_INPUTS, 0, shape=["batch", 48, 2]),
            GOOD_OUTPUTS,
            "'x' axis 1 (time) is fixed to 48; it must be dynamic",
        ),
    ],
)
def test_refuses_each_breach_by_name(
    manifest: Manifest, inputs: list[TensorSpec], outputs: list[TensorSpec], message: str
) -> None:
    with pytest.raises(ModelRefused) as caught:
        check_signature(inputs, outputs, manifest)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("actual", "reference", "expected"),
    [
        ([101.0], [100.0], 0.01),  # relative where the reference is large
        ([0.5], [0.0], 0.5),  # absolute near zero, no division blow-up
        ([-2.0, 3.0], [-2.0, 3.0], 0.0),
        ([[1.0, 2.0]], [[1.0, 2.5]], 0.2),
    ],
)
def test_relative_error(actual: list[float], reference: list[float], expected: float) -> None:
    assert relative_error(actual, reference) == pytest.approx(expected)


def test_relative_error_edges() -> None:
    assert relative_error([np.nan], [1.0]) == float("inf")
    assert relative_error(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        relative_error([1.0, 2.0], [1.0])


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_step_parity_of_recurrent_graphs(tmp_path: Path, kind: RecurrentKind) -> None:
    build_recurrent_model(
        tmp_path, kind=kind, name="m", features=["load", "temp"], target="load", frequency=60
    )
    session = ort.InferenceSession(str(tmp_path / ONNX_FILE), providers=["CPUExecutionProvider"])

    def run(x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        forecast, state_out = session.run(None, {"x": x, "state": state})
        return forecast, state_out

    rng = np.random.default_rng(3)
    x = (rng.normal(size=(3, 7, 2)) * 4 + 20).astype(np.float32)
    state = np.zeros((3, Manifest.read(tmp_path).state_size), np.float32)
    assert step_parity_error(run, x, state) < 1e-4


def _running_sum(x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A genuinely stateful model: the state is the running sum of the first feature."""
    total = state + x[:, :, :1].sum(axis=1)
    return total[:, None, :].astype(np.float32), total.astype(np.float32)


def _forgets_state(x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Breaks the contract: it ignores the state it is given, as a window model without one."""
    return _running_sum(x, np.zeros_like(state))


def test_step_parity_tells_stateful_from_stateless() -> None:
    x = np.arange(1, 13, dtype=np.float32).reshape(2, 3, 2)
    state = np.array([[0.5], [-1.0]], dtype=np.float32)

    assert step_parity_error(_running_sum, x, state) == 0.0
    # Whole sequence of the second stream: 7 + 9 + 11 = 27; stepwise it only remembers 11.
    assert step_parity_error(_forgets_state, x, state) == pytest.approx(16 / 27)


def test_step_parity_needs_a_sequence() -> None:
    with pytest.raises(ValueError, match="T >= 1"):
        step_parity_error(
            _running_sum, np.zeros((2, 0, 1), np.float32), np.zeros((2, 1), np.float32)
        )
