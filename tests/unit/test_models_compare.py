"""A smoke run of ``python -m models compare`` on a tiny budget (the real run is not a test)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from models.compare import (  # noqa: E402
    ADDING_CONSTANT_MSE,
    CompareConfig,
    DemoModel,
    adding_batch,
    run_comparison,
)
from service.manifest import Manifest  # noqa: E402
from service.registry import ModelRegistry  # noqa: E402

pytestmark = pytest.mark.train


def test_adding_batch_marks_two_values_and_sums_them() -> None:
    x, y = adding_batch(64, 30, torch.Generator().manual_seed(0))
    assert x.shape == (64, 30, 2)
    markers = x[..., 1]
    assert torch.all(markers.sum(dim=1) == 2)
    first = markers[:, :3].argmax(dim=1)  # first tenth
    assert torch.all(markers[:, :3].sum(dim=1) == 1)
    assert torch.all(markers[:, 15:].sum(dim=1) == 1)  # second half
    torch.testing.assert_close(y, (x[..., 0] * markers).sum(dim=1))
    assert bool(torch.all(first < 3))
    # Guessing the mean (1.0) scores about 1/6, the report's reference line.
    assert abs(float(((y - 1.0) ** 2).mean()) - ADDING_CONSTANT_MSE) < 0.06


@pytest.mark.slow
def test_compare_smoke_run_writes_report_plots_and_demo(tmp_path: Path) -> None:
    config = CompareConfig(
        datasets=("sunspots",),
        seeds=(0,),
        epochs=1,
        adding_lengths=(8,),
        adding_epochs=1,
        quick=True,
        demos=(
            DemoModel("sunspots", "gru", "sunspots-gru", allow_worse=True, reason="a smoke run"),
            DemoModel("sunspots", "snaive", "sunspots-snaive"),
            DemoModel("sunspots", "ets", "sunspots-ets"),
        ),
    )
    report = tmp_path / "docs" / "model-comparison.md"
    images = tmp_path / "docs" / "img"
    repository = tmp_path / "repository"
    refused = run_comparison(
        config, report=report, images=images, demo_repository=repository, progress=False
    )
    text = report.read_text()
    for kind in ("lstm", "gru", "rnn", "mlp"):
        assert f"| **{kind}** |" in text
    assert "| **snaive** (= seasonal_naive_11) |" in text
    assert "| **ets** (= ets_11) |" in text
    for baseline in ("naive", "seasonal_naive_11", "ets_11"):
        assert f"| {baseline} |" in text
    assert "coverage before → after calibration" in text
    assert "## The adding problem" in text
    assert "T = 8" in text
    for png in ("fan-sunspots.png", "error-by-step-sunspots.png", "adding-problem.png"):
        assert (images / png).stat().st_size > 1000
        assert f"(img/{png})" in text
    # The demo model carries exactly the numbers the report prints for it.
    manifest = Manifest.read(repository / "sunspots-gru" / "1")
    assert manifest.accuracy is not None
    assert f"{manifest.accuracy['model']['mase']:.3f}" in text.split("## Demo models")[1]
    # On sunspots the seasonal naive wins: ets is refused by the gate, which says so.
    assert [m.split(":")[1].strip().split()[0] for m in refused] == ["sunspots-ets"]
    assert "sunspots-ets is not shipped" in text
    with ModelRegistry.load(repository) as registry:
        assert registry.names() == ["sunspots-gru", "sunspots-snaive"]
