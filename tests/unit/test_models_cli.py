"""``python -m models``: train -> export -> validate into a repository the service loads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from models.__main__ import main
from models.gate import EXIT_REFUSED
from service.manifest import ONNX_FILE, Manifest, file_sha256
from service.registry import ModelRegistry

pytestmark = pytest.mark.train

#: A tiny budget: the point is the plumbing, not the accuracy.
TINY = [
    "--hidden", "4", "--horizon", "3", "--epochs", "2", "--samples-per-epoch", "8",
    "--batch-size", "4", "--seq-len", "24", "--burn-in", "6", "--window", "6", "--quiet",
]  # fmt: skip


@pytest.fixture
def plant_csv(tmp_path: Path) -> Path:
    """Two features (temperature drives load), 15-minute readings with a daily-ish cycle."""
    rng = np.random.default_rng(0)
    n = 240
    t = np.arange(n)
    temp = 20 + 5 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.3, n)
    load = 100 + 3 * temp + rng.normal(0, 1.0, n)
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range("2026-03-01", periods=n, freq="15min", tz="UTC"),
            "temp": temp,
            "load": load,
        }
    )
    path = tmp_path / "plant.csv"
    frame.to_csv(path, index=False)
    return path


def _train(csv: Path, repository: Path, *extra: str) -> None:
    """Train and export whatever the gate says (tests/integration/test_quality_gate.py)."""
    args = ["train", str(csv), "--target", "load", "--season", "24", "--repository"]
    assert main([*args, str(repository), *TINY, "--allow-worse", *extra]) == 0


@pytest.mark.slow  # the first training in a process imports statsmodels and friends
@pytest.mark.parametrize("kind", ["gru", "mlp"])
def test_train_export_validate_then_the_service_loads_it(
    kind: str, plant_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repository = tmp_path / "repo"
    checkpoint = tmp_path / "net.pt"
    _train(plant_csv, repository, "--kind", kind, "--checkpoint", str(checkpoint))
    first = repository / f"plant-{kind}" / "1"
    manifest = Manifest.read(first)
    assert manifest.kind == kind
    assert manifest.features == ["temp", "load"]
    assert manifest.target == "load"
    assert manifest.frequency == 900.0
    assert manifest.horizon == 3
    assert manifest.training is not None
    assert manifest.training.seed == 0
    assert manifest.training.split == {"train": 168, "validation": 36, "test": 36}
    assert manifest.accuracy is not None
    assert set(manifest.accuracy) == {"model", "naive", "seasonal_naive_24", "ets_24"}
    assert set(manifest.accuracy["model"]) >= {
        "mae",
        "rmse",
        "mase",
        "pinball",
        "coverage",
        "coverage_uncalibrated",
    }

    # Export the saved checkpoint again: the next version, the same graph.
    export = ["export", str(checkpoint), "--repository", str(repository), "--allow-worse"]
    assert main(export) == 0
    second = repository / f"plant-{kind}" / "2"
    assert file_sha256(second / ONNX_FILE) == manifest.sha256

    capsys.readouterr()
    assert main(["validate", str(repository)]) == 0
    out = capsys.readouterr().out
    assert out.count("ok  ") == 2
    assert "FAIL" not in out
    gate = (manifest.training.model_extra or {})["quality_gate"]
    assert out.count("WARN") == (0 if gate["passed"] else 2)

    with ModelRegistry.load(repository) as registry:
        assert registry.refused == {}
        runtime = registry.get(f"plant-{kind}")
        assert runtime.version == 2
        forecast, _state = runtime.run(
            np.full((2, 5, 2), [20.0, 160.0], dtype=np.float32),
            runtime.initial_states(2),
            1.77e9 + 900.0 * np.arange(5)[None].repeat(2, axis=0),
        )
        assert forecast.shape == (2, 3, 3)
        assert np.all(np.isfinite(forecast))


def test_validate_fails_on_a_tampered_model(plant_csv: Path, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    _train(plant_csv, repository, "--kind", "lstm")
    manifest_path = repository / "plant-lstm" / "1" / "model.json"
    document = json.loads(manifest_path.read_text())
    document["horizon"] = 4
    manifest_path.write_text(json.dumps(document))
    assert main(["validate", str(repository / "plant-lstm" / "1")]) == 1
    assert main(["validate", str(tmp_path / "empty")]) == 1


@pytest.mark.slow
def test_training_is_deterministic_given_the_seed(plant_csv: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        _train(plant_csv, tmp_path / name, "--kind", "lstm", "--seed", "3")
    _train(plant_csv, tmp_path / "c", "--kind", "lstm", "--seed", "4")
    sha = {n: Manifest.read(tmp_path / n / "plant-lstm" / "1").sha256 for n in "abc"}
    assert sha["a"] == sha["b"]
    assert sha["a"] != sha["c"]


def test_bad_quantiles_are_refused(plant_csv: Path) -> None:
    with pytest.raises(SystemExit):
        main(["train", str(plant_csv), "--quantiles", "0.1,0.9"])


def test_export_of_a_losing_checkpoint_is_refused_unless_allowed(
    plant_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = tmp_path / "net.pt"
    args = ["train", str(plant_csv), "--target", "load", "--season", "24", *TINY]
    assert main([*args, "--kind", "gru", "--epochs", "1", "--checkpoint", str(checkpoint)]) == 0
    from models.train import load_checkpoint

    accuracy = load_checkpoint(checkpoint).accuracy
    if accuracy["model"]["mase"] <= min(v["mase"] for k, v in accuracy.items() if k != "model"):
        pytest.skip("the one-epoch network happens to win here")
    capsys.readouterr()
    repository = tmp_path / "repo"
    assert main(["export", str(checkpoint), "--repository", str(repository)]) == EXIT_REFUSED
    assert "is not shipped" in capsys.readouterr().err
    assert not repository.exists()


def test_a_csv_with_missing_rows_is_refused_by_default_and_filled_on_request(
    plant_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = pd.read_csv(plant_csv).drop(index=range(50, 80))
    gappy = tmp_path / "gappy.csv"
    frame.to_csv(gappy, index=False)
    args = ["train", str(gappy), "--target", "load", "--season", "24", "--kind", "snaive"]
    repository = tmp_path / "repo"
    assert main([*args, "--repository", str(repository), "--allow-worse"]) == 2
    err = capsys.readouterr().err
    assert "30 missing row(s) at a period of 900 s" in err
    assert "--gaps fill" in err
    assert "Traceback" not in err
    assert not repository.exists()

    assert main([*args, "--gaps", "fill", "--repository", str(repository), "--allow-worse"]) == 0
    manifest = Manifest.read(repository / "gappy-snaive" / "1")
    assert manifest.training is not None
    gaps = (manifest.training.model_extra or {})["gaps"]
    assert (gaps["policy"], gaps["missing_rows"]) == ("fill", 30)


def test_day_first_timestamps_get_a_clear_error_then_train_with_a_format(
    plant_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = pd.read_csv(plant_csv, parse_dates=["timestamp"])
    frame["timestamp"] = frame["timestamp"].dt.strftime("%d/%m/%Y %H:%M")
    day_first = tmp_path / "day-first.csv"
    frame.to_csv(day_first, index=False)
    args = ["train", str(day_first), "--target", "load", "--season", "24", "--kind", "ets"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "--timestamp-format" in err
    assert "Traceback" not in err
    assert main([*args, "--timestamp-format", "%d/%m/%Y %H:%M"]) == 0
