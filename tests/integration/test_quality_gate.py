"""The quality gate end to end, on a smooth series where Holt-Winters wins.

``train`` refuses to export a network that loses (exit 3, naming the baselines that beat it
and by how much); ``--allow-worse`` exports it and the manifest says so, and ``validate``
warns; ``--kind ets`` on the same series exports, validates and serves through the service,
where its step-by-step forecasts equal the whole-series call.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from litestar.testing import AsyncTestClient

pytest.importorskip("torch")

from models.__main__ import main
from models.gate import EXIT_REFUSED
from service.app import create_app
from service.manifest import Manifest
from service.settings import Settings
from tests.support.stream_parity import check_stream_parity

pytestmark = pytest.mark.train

#: A tiny network budget: it must lose, and quickly.
TINY = [
    "--hidden", "4", "--horizon", "6", "--epochs", "2", "--samples-per-epoch", "8",
    "--batch-size", "4", "--seq-len", "24", "--burn-in", "6", "--quiet",
]  # fmt: skip
START = pd.Timestamp("2026-03-01", tz="UTC")
DAYS = 40


def normals(hour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Smooth hourly temperature normals: a daily wave on a slow seasonal drift."""
    return (
        15
        + 6 * np.sin(2 * np.pi * (hour - 9) / 24)
        + 2 * np.sin(2 * np.pi * hour / (24 * 60))
        + rng.normal(0, 0.2, len(hour))
    )


@pytest.fixture(scope="module")
def smooth_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    hour = np.arange(24 * DAYS)
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range(START, periods=len(hour), freq="h"),
            "temp": normals(hour, np.random.default_rng(0)),
        }
    )
    path = tmp_path_factory.mktemp("data") / "normals.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def repository(smooth_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """Train the network (refused, then allowed) and fit ets, once for the module."""
    repo = tmp_path_factory.mktemp("repo")
    args = ["train", str(smooth_csv), "--season", "24", "--repository", str(repo)]
    refused = _run([*args, "--kind", "lstm", *TINY])
    allowed = _run([*args, "--kind", "lstm", *TINY, "--allow-worse"])
    assert _run([*args, "--kind", "ets", "--horizon", "6"])[0] == 0
    assert refused[0] == EXIT_REFUSED
    assert allowed[0] == 0
    return repo, refused[1], allowed[1]


def _run(argv: list[str]) -> tuple[int, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue() + err.getvalue()


def test_train_refuses_a_network_that_holt_winters_beats(repository: tuple[Path, str, str]) -> None:
    repo, refused, _ = repository
    assert "quality gate: normals-lstm is not shipped" in refused
    # The winner is named with its MASE, the margin, and how to serve it instead.
    assert "ets_24 " in refused
    assert "lower by" in refused
    assert "train it with `--kind ets --season 24`" in refused
    assert "--allow-worse" in refused
    assert not (repo / "normals-lstm" / "2").exists()  # the refusal wrote nothing


def test_allow_worse_exports_and_the_manifest_and_validate_say_so(
    repository: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    repo, _, allowed = repository
    assert "exported:" in allowed
    manifest = Manifest.read(repo / "normals-lstm" / "1")
    assert manifest.training is not None
    gate = (manifest.training.model_extra or {})["quality_gate"]
    assert gate["passed"] is False
    assert gate["allow_worse"] is True
    assert gate["best_baseline"] == "ets_24"
    assert "ets_24" in gate["beaten_by"]
    assert manifest.accuracy is not None
    assert manifest.accuracy["model"]["mase"] > manifest.accuracy["ets_24"]["mase"]

    capsys.readouterr()
    assert main(["validate", str(repo)]) == 0  # a warning, not a failure
    out = capsys.readouterr().out
    assert out.count("ok  ") == 2
    warnings = [line for line in out.splitlines() if line.startswith("WARN")]
    assert len(warnings) == 1
    assert "normals-lstm" in warnings[0]
    assert "loses to ets_24" in warnings[0]
    assert "shipped with --allow-worse" in warnings[0]


def test_the_ets_kind_exports_with_the_numbers_of_its_baseline(
    repository: tuple[Path, str, str],
) -> None:
    repo, _, _ = repository
    manifest = Manifest.read(repo / "normals-ets" / "1")
    assert manifest.kind == "ets"
    assert manifest.time_input
    assert manifest.state_size == 3 + 24  # level, trend, last error, a day of seasonal terms
    assert manifest.accuracy is not None
    assert manifest.accuracy["model"] == manifest.accuracy["ets_24"]
    assert manifest.training is not None
    extra = manifest.training.model_extra or {}
    assert extra["baseline"] == "ets_24"
    assert extra["quality_gate"]["passed"] is True
    assert set(extra["fitted"]) == {"periods", "alpha", "beta", "phi", "gammas", "ar"}


@pytest.fixture(params=["memory", "redis"])
async def client(
    request: pytest.FixtureRequest, repository: tuple[Path, str, str]
) -> AsyncIterator[AsyncTestClient[Any]]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    settings = Settings(model_repository=repository[0], providers="cpu", store_url=url)
    async with AsyncTestClient(app=create_app(settings)) as c:
        yield c


async def test_the_ets_kind_serves_with_step_by_step_parity(
    client: AsyncTestClient[Any], repository: tuple[Path, str, str]
) -> None:
    manifest = Manifest.read(repository[0] / "normals-ets" / "1")
    # The days after the training data, as a sensor would send them.
    hour = np.arange(24 * DAYS, 24 * DAYS + 30)
    values = normals(hour, np.random.default_rng(1))
    readings = [
        {"timestamp": (START + pd.Timedelta(hours=int(h))).isoformat(), "value": float(v)}
        for h, v in zip(hour, values, strict=True)
    ]
    await check_stream_parity(client, manifest, readings, (1, 2, 15, 30), stream="ets")
    # And the forecasts are good ones: the stream follows the daily wave it was fitted on.
    r = await client.get("/v1/streams/ets")
    forecast = r.json()["forecast"]
    expected = normals(hour[-1] + np.arange(1, 7), np.random.default_rng(2))
    medians = np.array([step["median"] for step in forecast["steps"]])
    assert np.max(np.abs(medians - expected)) < 1.5
    assert json.loads(r.text)["seq"] == 30
