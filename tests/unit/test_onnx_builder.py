"""The untrained LSTM/GRU builder: real recurrent graphs that obey the model contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from models.onnx_builder import RecurrentKind, build_recurrent_model, main
from service.contract import step_parity_error
from service.manifest import MANIFEST_FILE, ONNX_FILE, Manifest, file_sha256

FEATURES = ["load", "temp"]


def _session(directory: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(directory / ONNX_FILE), providers=["CPUExecutionProvider"])


def _run(
    session: ort.InferenceSession, x: np.ndarray, state: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    forecast, state_out = session.run(["forecast", "state_out"], {"x": x, "state": state})
    return forecast, state_out


def _series(batch: int, steps: int, *, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(batch, steps, len(FEATURES))) * [5.0, 2.0] + [50.0, 10.0]).astype(
        np.float32
    )


@pytest.mark.parametrize(
    ("kind", "op_type", "state_size"), [("lstm", "LSTM", 12), ("gru", "GRU", 6)]
)
def test_writes_native_recurrent_graph_and_matching_manifest(
    tmp_path: Path, kind: RecurrentKind, op_type: str, state_size: int
) -> None:
    manifest = build_recurrent_model(
        tmp_path,
        kind=kind,
        name="m",
        version=3,
        features=FEATURES,
        target="temp",
        frequency=900,
        hidden=6,
        horizon=5,
        quantiles=[0.05, 0.5, 0.75, 0.95],
        seed=4,
    )
    assert Manifest.read(tmp_path) == manifest
    assert manifest.sha256 == file_sha256(tmp_path / ONNX_FILE)
    assert (manifest.name, manifest.version, manifest.kind) == ("m", 3, kind)
    assert (manifest.horizon, manifest.state_size, manifest.frequency) == (5, state_size, 900)
    assert manifest.training is not None
    assert manifest.training.dataset == "untrained"
    assert manifest.training.seed == 4

    model = onnx.load(str(tmp_path / ONNX_FILE))
    onnx.checker.check_model(model, full_check=True)
    assert [node.op_type for node in model.graph.node].count(op_type) == 1
    dims = {
        value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in [*model.graph.input, *model.graph.output]
    }
    assert dims == {
        "x": ["batch", "time", 2],
        "state": ["batch", state_size],
        "forecast": ["batch", 5, 4],
        "state_out": ["batch", state_size],
    }


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_step_parity_with_batch_and_time_unlike_anything_fixed(
    tmp_path: Path, kind: RecurrentKind
) -> None:
    build_recurrent_model(
        tmp_path,
        kind=kind,
        name="m",
        features=FEATURES,
        target="load",
        frequency=60,
    )
    session = _session(tmp_path)
    x = _series(3, 7)
    rng = np.random.default_rng(1)
    state = rng.normal(scale=0.3, size=(3, Manifest.read(tmp_path).state_size)).astype(np.float32)

    assert step_parity_error(lambda a, b: _run(session, a, b), x, state) < 1e-4


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize(
    "quantiles", [[0.5], [0.1, 0.5], [0.5, 0.9], [0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98]]
)
def test_quantiles_never_cross(tmp_path: Path, kind: RecurrentKind, quantiles: list[float]) -> None:
    build_recurrent_model(
        tmp_path,
        kind=kind,
        name="m",
        features=FEATURES,
        target="load",
        frequency=60,
        quantiles=quantiles,
        horizon=3,
    )
    # Large inputs drive the head to extremes, where crossing quantiles would show.
    x = _series(16, 4) * 40.0
    forecast, _ = _run(
        _session(tmp_path), x, np.zeros((16, Manifest.read(tmp_path).state_size), np.float32)
    )
    assert forecast.shape == (16, 3, len(quantiles))
    assert np.all(np.isfinite(forecast))
    assert np.all(np.diff(forecast, axis=2) > 0)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_scaling_lives_in_the_graph(tmp_path: Path, kind: RecurrentKind) -> None:
    """Same weights, other units: the forecast is the same normalised value in the new units."""
    mean_a, scale_a = np.array([50.0, 10.0]), np.array([5.0, 2.0])
    mean_b, scale_b = np.array([-3000.0, 1.0]), np.array([400.0, 0.5])
    build_recurrent_model(
        tmp_path / "a",
        kind=kind,
        name="m",
        features=FEATURES,
        target="load",
        frequency=60.0,
        seed=7,
        mean=mean_a,
        scale=scale_a,
    )
    build_recurrent_model(
        tmp_path / "b",
        kind=kind,
        name="m",
        features=FEATURES,
        target="load",
        frequency=60.0,
        seed=7,
        mean=mean_b,
        scale=scale_b,
    )
    x_a = _series(2, 5)
    x_b = ((x_a - mean_a) / scale_a * scale_b + mean_b).astype(np.float32)
    state = np.zeros((2, Manifest.read(tmp_path / "a").state_size), np.float32)

    forecast_a, state_a = _run(_session(tmp_path / "a"), x_a, state)
    forecast_b, state_b = _run(_session(tmp_path / "b"), x_b, state)

    np.testing.assert_allclose(state_b, state_a, atol=1e-4)
    expected_b = (forecast_a - mean_a[0]) / scale_a[0] * scale_b[0] + mean_b[0]
    np.testing.assert_allclose(forecast_b, expected_b, rtol=1e-4)
    # Untrained but sane: the median stays within a few scales of the target's mean.
    assert np.all(np.abs(forecast_b[..., 1] - mean_b[0]) < 5 * scale_b[0])


def test_lstm_state_row_is_h_then_c(tmp_path: Path) -> None:
    build_recurrent_model(
        tmp_path, kind="lstm", name="m", features=FEATURES, target="load", frequency=60, hidden=4
    )
    session = _session(tmp_path)
    x = _series(1, 1)
    zeros = np.zeros((1, 8), np.float32)
    only_c = zeros.copy()
    only_c[0, 4:] = 5.0

    forecast_zero, state_zero = _run(session, x, zeros)
    forecast_c, state_c = _run(session, x, only_c)

    # The cell memory enters the step: a different c0 moves the forecast and h.
    assert not np.allclose(forecast_zero, forecast_c)
    assert not np.allclose(state_zero[:, :4], state_c[:, :4])
    # h = o * tanh(c) stays inside (-1, 1) while a large c0 carries over (forget gate ~0.5):
    # so the row is [h (4), c (4)], in that order.
    assert np.all(np.abs(state_c[:, :4]) < 1.0)
    assert np.max(np.abs(state_c[:, 4:])) > 1.0


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path: Path) -> None:
    def build(directory: Path, seed: int) -> Manifest:
        return build_recurrent_model(
            directory, kind="gru", name="m", features=["v"], target="v", frequency=1, seed=seed
        )

    first, again, other = (
        build(tmp_path / "a", 1),
        build(tmp_path / "b", 1),
        build(tmp_path / "c", 2),
    )
    assert first.sha256 == again.sha256
    assert first.sha256 != other.sha256


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"kind": "rnn"}, ValueError),
        ({"opset": 12}, ValueError),
        ({"hidden": 0}, ValueError),
        ({"scale": [1.0, 0.0]}, ValueError),
        ({"mean": [1.0]}, ValueError),
        ({"target": "humidity"}, ValidationError),
        ({"quantiles": [0.1, 0.9]}, ValidationError),
        ({"name": "bad name!"}, ValidationError),
    ],
)
def test_refuses_bad_arguments_before_writing(
    tmp_path: Path, overrides: dict[str, object], error: type[Exception]
) -> None:
    arguments: dict[str, object] = {
        "kind": "lstm",
        "name": "m",
        "features": FEATURES,
        "target": "load",
        "frequency": 60.0,
    }
    with pytest.raises(error):
        build_recurrent_model(tmp_path / "out", **{**arguments, **overrides})  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_command_line_writes_the_demo_repository(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main([str(tmp_path)])
    printed = capsys.readouterr().out

    for name, kind in [("demo-lstm", "lstm"), ("demo-gru", "gru")]:
        directory = tmp_path / name / "1"
        manifest = Manifest.read(directory)
        assert (manifest.name, manifest.kind, manifest.features) == (name, kind, ["value"])
        assert (manifest.horizon, manifest.frequency) == (12, 60.0)
        assert (directory / MANIFEST_FILE).is_file()
        assert manifest.sha256 == file_sha256(directory / ONNX_FILE)
        assert manifest.sha256 in printed


@pytest.fixture(scope="module")
def gru_session(tmp_path_factory: pytest.TempPathFactory) -> ort.InferenceSession:
    directory = tmp_path_factory.mktemp("gru")
    build_recurrent_model(
        directory,
        kind="gru",
        name="m",
        features=FEATURES,
        target="load",
        frequency=60,
        quantiles=[0.1, 0.25, 0.5, 0.75, 0.9],
        mean=[50.0, 10.0],
        scale=[5.0, 2.0],
    )
    return _session(directory)


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 6),
    steps=st.integers(1, 12),
    spread=st.floats(0.01, 1000.0),
    seed=st.integers(0, 2**16),
)
def test_any_batch_and_length_keep_parity_and_order(
    gru_session: ort.InferenceSession, batch: int, steps: int, spread: float, seed: int
) -> None:
    x = (_series(batch, steps, seed=seed) - 30.0) * spread
    state = np.zeros((batch, 8), np.float32)

    forecast, _ = _run(gru_session, x.astype(np.float32), state)

    assert forecast.shape == (batch, 4, 5)
    assert np.all(np.diff(forecast, axis=2) > 0)
    assert (
        step_parity_error(lambda a, b: _run(gru_session, a, b), x.astype(np.float32), state) < 1e-4
    )
