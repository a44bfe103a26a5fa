"""Export to the ONNX contract: torch vs onnxruntime, dynamic axes, refusal of bad graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from torch import Tensor  # noqa: E402

from models.export import (  # noqa: E402
    EXAMPLE_SHAPE,
    ExportRefused,
    export_model,
    next_version,
    onnx_bytes,
)
from models.networks import KINDS, Kind, RecurrentForecaster, build  # noqa: E402
from service.contract import relative_error, step_parity_error  # noqa: E402
from service.manifest import MANIFEST_FILE, ONNX_FILE, Manifest, file_sha256  # noqa: E402
from service.runtime import load_runtime  # noqa: E402

pytestmark = pytest.mark.train

NATIVE_OP = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


DAY = 86_400.0


def tiny(  # type: ignore[no-untyped-def]
    kind: Kind, seed: int = 0, differences: bool = False, seasonal: bool = False
):
    """A small network; ``seasonal`` adds a reference of 6 steps and calendar features."""
    torch.manual_seed(seed)
    model = build(
        kind,
        differences=differences,
        n_features=2,
        target_index=0,
        horizon=3,
        quantiles=(0.1, 0.5, 0.9),
        hidden=5,
        layers=2,
        window=6 if seasonal else 4,
        mean=[500.0, 1.0],
        std=[50.0, 2.0],
        reference=6 if seasonal else 0,
        calendar=(DAY, 7 * DAY) if seasonal else (),
    ).eval()
    with torch.no_grad():
        model.calibration.normal_(0.0, 20.0)
    return model


def export_tiny(model: object, directory: Path, name: str = "tiny") -> Manifest:
    return export_model(
        model,  # type: ignore[arg-type]
        directory / name / "1",
        name=name,
        version=1,
        features=["load", "temp"],
        target="load",
        frequency=60.0,
    )


@pytest.mark.parametrize(
    ("kind", "differences", "seasonal"),
    [(kind, False, False) for kind in KINDS]
    + [("lstm", True, False), ("gru", True, False), ("rnn", True, False)]
    + [(kind, kind != "mlp", True) for kind in KINDS],
)
def test_exported_graph_matches_torch_at_other_shapes(
    kind: Kind, differences: bool, seasonal: bool, tmp_path: Path
) -> None:
    model = tiny(kind, differences=differences, seasonal=seasonal)
    manifest = export_tiny(model, tmp_path)
    directory = tmp_path / "tiny" / "1"
    assert manifest.sha256 == file_sha256(directory / ONNX_FILE)
    assert Manifest.read(directory) == manifest
    assert manifest.kind == kind
    assert manifest.state_size == model.state_size
    assert manifest.time_input == seasonal
    # A fresh stream starts from zeros, except where the row holds raw observations (the
    # mlp's window, the differenced nets' last observation, the reference): those start at
    # the mean.
    assert (manifest.initial_state is not None) == (kind == "mlp" or differences or seasonal)

    graph = onnx.load(str(directory / ONNX_FILE))
    ops = {node.op_type for node in graph.graph.node}
    if kind in NATIVE_OP:
        assert NATIVE_OP[kind] in ops  # a native recurrent node, not an unrolled cell
    assert "Loop" not in ops

    runtime = load_runtime(directory)  # the service's own loader accepts it
    rng = np.random.default_rng(1)

    def times(batch: int, steps: int) -> np.ndarray:
        return 1.77e9 + rng.uniform(0, 3e8, (batch, 1)) + 60.0 * np.arange(steps)

    for batch, steps in ((7, 13), (1, 1), (2, 40)):
        assert (batch, steps) != EXAMPLE_SHAPE
        x = (500 + 50 * rng.standard_normal((batch, steps, 2))).astype(np.float32)
        state = runtime.initial_states(batch)
        time = times(batch, steps)
        forecast, state_out = runtime.run(x, state, time)
        with torch.no_grad():
            want, want_state = model(
                torch.from_numpy(x), torch.from_numpy(state), torch.from_numpy(time)
            )
        assert forecast.shape == (batch, 3, 3)
        assert relative_error(forecast, want.numpy()) < 1e-5
        assert relative_error(state_out, want_state.numpy()) < 1e-5
    x = (500 + 50 * rng.standard_normal((4, 10, 2))).astype(np.float32)
    time = times(4, 10) if seasonal else None
    assert step_parity_error(runtime.run, x, runtime.initial_states(4), time) < 1e-4
    runtime.close()


class LooksAtTheWholeSequence(RecurrentForecaster):
    """Broken on purpose: its forecast depends on the mean of the T observations it was given,
    which the state does not carry, so step-by-step and whole-sequence calls disagree."""

    def forward(
        self, x: Tensor, state: Tensor, time: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        forecast, state_out = super().forward(x, state, time)
        return forecast + x[..., :1].mean(dim=1, keepdim=True), state_out


class FixedAtTraceTime(RecurrentForecaster):
    """Broken on purpose: a Python branch on T is frozen when traced, so onnxruntime runs the
    T = 5 branch for every length while torch takes the other one for T < 3."""

    def forward(
        self, x: Tensor, state: Tensor, time: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        forecast, state_out = super().forward(x, state, time)
        if x.shape[1] < 3:
            forecast = forecast + 1.0
        return forecast, state_out


def _broken(cls: type[RecurrentForecaster]) -> RecurrentForecaster:
    torch.manual_seed(0)
    return cls(
        "gru",
        n_features=2,
        target_index=0,
        horizon=3,
        quantiles=(0.1, 0.5, 0.9),
        hidden=5,
        mean=[500.0, 1.0],
        std=[50.0, 2.0],
    ).eval()


def test_export_refuses_a_graph_that_breaks_step_parity(tmp_path: Path) -> None:
    with pytest.raises(ExportRefused, match="step-by-step"):
        export_tiny(_broken(LooksAtTheWholeSequence), tmp_path)
    assert not (tmp_path / "tiny" / "1" / ONNX_FILE).exists()
    assert not (tmp_path / "tiny" / "1" / MANIFEST_FILE).exists()


def test_export_refuses_a_graph_that_differs_from_torch(tmp_path: Path) -> None:
    with pytest.raises(ExportRefused, match="onnxruntime differs from torch"):
        export_tiny(_broken(FixedAtTraceTime), tmp_path)
    assert not (tmp_path / "tiny" / "1" / ONNX_FILE).exists()


def test_same_weights_same_bytes() -> None:
    assert onnx_bytes(tiny("lstm")) == onnx_bytes(tiny("lstm"))
    assert onnx_bytes(tiny("lstm")) != onnx_bytes(tiny("lstm", seed=1))


def test_features_must_match_the_network(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="features and target"):
        export_model(
            tiny("gru"),
            tmp_path / "x" / "1",
            name="x",
            version=1,
            features=["load", "temp"],
            target="temp",
            frequency=1.0,
        )


def test_next_version(tmp_path: Path) -> None:
    assert next_version(tmp_path / "absent") == 1
    for name in ("1", "3", "notes", "10"):
        (tmp_path / "m" / name).mkdir(parents=True)
    assert next_version(tmp_path / "m") == 11
