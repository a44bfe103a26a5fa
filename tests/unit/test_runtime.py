"""One model version in onnxruntime: loading, refusing, provider choice, running."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest

from models.onnx_builder import build_recurrent_model
from service.contract import step_parity_error
from service.errors import InvalidInput, ModelNotReady, ModelRefused
from service.manifest import MANIFEST_FILE, ONNX_FILE, Manifest, file_sha256
from service.runtime import CPU, ModelRuntime, cuda_usable, load_runtime


@pytest.fixture
def lstm_dir(model_repository: Path) -> Path:
    return model_repository / "demo-lstm" / "1"


@pytest.fixture
def runtime(lstm_dir: Path) -> ModelRuntime:
    return load_runtime(lstm_dir)


def _edit_manifest(directory: Path, **changes: object) -> None:
    document = json.loads((directory / MANIFEST_FILE).read_text())
    document.update(changes)
    (directory / MANIFEST_FILE).write_text(json.dumps(document))


def _rename_graph_input(directory: Path, old: str, new: str) -> None:
    """Rewrite the graph with one input renamed, and re-sign it so only the name is wrong."""
    model = onnx.load(str(directory / ONNX_FILE))
    for value in model.graph.input:
        if value.name == old:
            value.name = new
    for node in model.graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
    onnx.save(model, str(directory / ONNX_FILE))
    _edit_manifest(directory, sha256=file_sha256(directory / ONNX_FILE))


def test_loads_with_manifest_facts(runtime: ModelRuntime, lstm_dir: Path) -> None:
    assert (runtime.name, runtime.version) == ("demo-lstm", 1)
    assert runtime.fingerprint == file_sha256(lstm_dir / ONNX_FILE)
    assert runtime.manifest == Manifest.read(lstm_dir)
    assert runtime.providers == [CPU]
    assert (runtime.n_features, runtime.state_size, runtime.horizon, runtime.n_quantiles) == (
        2,
        16,
        4,
        3,
    )
    assert runtime.initial_state.dtype == np.float32
    assert np.array_equal(runtime.initial_state, np.zeros(16))
    assert not runtime.initial_state.flags.writeable
    assert runtime.initial_states(3).shape == (3, 16)


def test_initial_state_from_manifest(lstm_dir: Path) -> None:
    _edit_manifest(lstm_dir, initial_state=[0.25] * 16)
    runtime = load_runtime(lstm_dir)
    assert np.array_equal(runtime.initial_state, np.full(16, 0.25, np.float32))


@pytest.mark.parametrize("name", ["demo-lstm", "demo-gru"])
def test_run_shapes_and_step_parity(model_repository: Path, name: str) -> None:
    runtime = load_runtime(model_repository / name / "1")
    x = (np.random.default_rng(0).normal(size=(3, 7, 2)) * 3 + 10).astype(np.float32)
    state = runtime.initial_states(3)

    forecast, state_out = runtime.run(x, state)

    assert forecast.shape == (3, 4, 3)
    assert state_out.shape == (3, runtime.state_size)
    assert forecast.dtype == state_out.dtype == np.float32
    assert step_parity_error(runtime.run, x, state) < 1e-4


def test_run_accepts_other_layouts_with_same_result(runtime: ModelRuntime) -> None:
    x = np.random.default_rng(1).normal(size=(2, 5, 2)).astype(np.float32)
    state = runtime.initial_states(2)
    expected_forecast, expected_state = runtime.run(x, state)

    strided = np.asfortranarray(x.astype(np.float64))  # not C-contiguous, not float32
    forecast, state_out = runtime.run(strided, state.tolist())

    np.testing.assert_allclose(forecast, expected_forecast, rtol=1e-6)
    np.testing.assert_allclose(state_out, expected_state, rtol=1e-6)


@pytest.mark.parametrize(
    ("x_shape", "state_shape", "field", "message"),
    [
        ((2, 5, 3), (2, 16), "x", "x must be [B, T, 2]"),
        ((2, 5), (2, 16), "x", "x must be [B, T, 2]"),
        ((2, 0, 2), (2, 16), "x", "B, T >= 1"),
        ((0, 1, 2), (0, 16), "x", "B, T >= 1"),
        ((2, 5, 2), (3, 16), "state", "state must be [2, 16], got [3, 16]"),
        ((2, 5, 2), (2, 8), "state", "state must be [2, 16], got [2, 8]"),
    ],
)
def test_run_refuses_shapes_that_do_not_fit(
    runtime: ModelRuntime,
    x_shape: tuple[int, ...],
    state_shape: tuple[int, ...],
    field: str,
    message: str,
) -> None:
    with pytest.raises(InvalidInput) as caught:
        runtime.run(np.zeros(x_shape, np.float32), np.zeros(state_shape, np.float32))
    assert caught.value.field == field
    assert message in caught.value.detail


async def test_run_async_matches_run(runtime: ModelRuntime) -> None:
    x = np.random.default_rng(2).normal(size=(4, 3, 2)).astype(np.float32)
    state = np.random.default_rng(3).normal(scale=0.2, size=(4, 16)).astype(np.float32)

    forecast, state_out = await runtime.run_async(x, state)
    expected_forecast, expected_state = runtime.run(x, state)

    np.testing.assert_array_equal(forecast, expected_forecast)
    np.testing.assert_array_equal(state_out, expected_state)


def test_closed_runtime_is_not_ready(runtime: ModelRuntime) -> None:
    runtime.close()
    assert runtime.closed
    with pytest.raises(ModelNotReady):
        runtime.run(np.zeros((1, 1, 2), np.float32), runtime.initial_states(1))


def test_cpu_only_is_quiet(
    lstm_dir: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    with caplog.at_level(logging.DEBUG, logger="service.runtime"):
        runtime = load_runtime(lstm_dir, providers="cpu", threads=1)
    assert runtime.providers == [CPU]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "onnxruntime" not in capfd.readouterr().err


def test_cuda_without_gpu_falls_back_to_cpu_with_one_warning(
    lstm_dir: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    usable, reason = cuda_usable()
    if usable:
        pytest.skip("this machine has a usable GPU; the fallback cannot be observed")
    with caplog.at_level(logging.DEBUG, logger="service.runtime"):
        runtime = load_runtime(lstm_dir, providers="cuda")

    assert runtime.providers == [CPU]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "CUDA requested (providers=cuda) for model demo-lstm version 1" in warnings[0]
    assert reason in warnings[0]
    # Native onnxruntime must not spray provider-loading errors on stderr.
    assert "onnxruntime" not in capfd.readouterr().err


def test_auto_without_gpu_quietly_uses_cpu(
    lstm_dir: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    if cuda_usable()[0]:
        pytest.skip("this machine has a usable GPU")
    with caplog.at_level(logging.DEBUG, logger="service.runtime"):
        runtime = load_runtime(lstm_dir, providers="auto")

    assert runtime.providers == [CPU]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("running on CPU" in r.getMessage() for r in caplog.records)
    assert "onnxruntime" not in capfd.readouterr().err


def test_session_has_the_last_word_on_cuda(
    lstm_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Even when the driver probe says yes, a session that ends on CPU is reported as such."""
    if cuda_usable()[0]:
        pytest.skip("this machine has a usable GPU; CUDA would really be used")
    # The probe is the one part that cannot say yes here; onnxruntime then really tries CUDA.
    monkeypatch.setattr("service.runtime.cuda_usable", lambda: (True, "probe says yes"))
    with caplog.at_level(logging.WARNING, logger="service.runtime"):
        runtime = load_runtime(lstm_dir, providers="cuda")

    assert runtime.providers == [CPU]
    assert "onnxruntime fell back to CPU creating the session" in caplog.text


def test_refuses_missing_manifest(lstm_dir: Path) -> None:
    (lstm_dir / MANIFEST_FILE).unlink()
    with pytest.raises(ModelRefused, match=r"no manifest: .*model\.json does not exist"):
        load_runtime(lstm_dir)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "invalid manifest"),
        ('{"name": "demo-lstm"}', "version: Field required"),
    ],
)
def test_refuses_malformed_manifest(lstm_dir: Path, text: str, message: str) -> None:
    (lstm_dir / MANIFEST_FILE).write_text(text)
    with pytest.raises(ModelRefused, match=message):
        load_runtime(lstm_dir)


def test_refuses_manifest_breaking_its_own_rules(lstm_dir: Path) -> None:
    _edit_manifest(lstm_dir, quantiles=[0.9, 0.5])
    with pytest.raises(ModelRefused, match=r"quantiles: .*strictly increasing"):
        load_runtime(lstm_dir)


def test_refuses_missing_graph(lstm_dir: Path) -> None:
    (lstm_dir / ONNX_FILE).unlink()
    with pytest.raises(ModelRefused, match=r"cannot read .*model\.onnx"):
        load_runtime(lstm_dir)


def test_refuses_sha_mismatch(lstm_dir: Path) -> None:
    _edit_manifest(lstm_dir, sha256="0" * 64)
    with pytest.raises(ModelRefused, match="the manifest says 0000"):
        load_runtime(lstm_dir)


def test_refuses_graph_onnxruntime_cannot_read(lstm_dir: Path) -> None:
    (lstm_dir / ONNX_FILE).write_bytes(b"not a protobuf at all")
    _edit_manifest(lstm_dir, sha256=file_sha256(lstm_dir / ONNX_FILE))
    with pytest.raises(ModelRefused, match="onnxruntime cannot load"):
        load_runtime(lstm_dir)


def test_refuses_wrong_input_name(lstm_dir: Path) -> None:
    _rename_graph_input(lstm_dir, "x", "inputs")
    with pytest.raises(ModelRefused, match=r"missing \['x'\]"):
        load_runtime(lstm_dir)


def test_refuses_feature_count_unlike_manifest(lstm_dir: Path) -> None:
    _edit_manifest(lstm_dir, features=["load", "temp", "humidity"])
    with pytest.raises(ModelRefused, match=r"axis 2 \(features F\) is 2, the manifest says 3"):
        load_runtime(lstm_dir)


def test_refuses_graph_whose_real_call_is_not_finite(tmp_path: Path) -> None:
    """The signature can be perfect while the numbers are not: a trial call catches it."""
    directory = tmp_path / "m"
    build_recurrent_model(
        directory, kind="gru", name="m", features=["v"], target="v", frequency=1, hidden=4
    )
    model = onnx.load(str(directory / ONNX_FILE))
    (last,) = [node for node in model.graph.node if node.output[0] == "forecast"]
    last.output[0] = "forecast_finite"
    model.graph.initializer.append(
        onnx.numpy_helper.from_array(np.array(0.0, np.float32), "zero_divisor")
    )
    model.graph.node.append(
        onnx.helper.make_node("Div", ["forecast_finite", "zero_divisor"], ["forecast"])
    )
    onnx.save(model, str(directory / ONNX_FILE))
    _edit_manifest(directory, sha256=file_sha256(directory / ONNX_FILE))

    with pytest.raises(ModelRefused, match="returns non-finite values"):
        load_runtime(directory)
