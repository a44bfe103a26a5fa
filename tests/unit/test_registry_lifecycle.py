"""The registry at run time: re-scan, load, unload, and no session closed under a request.

Old runtimes are retired, not closed: a caller still holding one finishes on it, and once
nobody does, its onnxruntime session is gone (checked through weak references).
"""

from __future__ import annotations

import gc
import shutil
import weakref
from pathlib import Path

import numpy as np
import pytest

from models.onnx_builder import build_recurrent_model
from service.errors import ModelRefused, UnknownModel
from service.manifest import ONNX_FILE
from service.registry import ModelRegistry


def add_version(repository: Path, name: str, version: int, *, seed: int = 5) -> str:
    manifest = build_recurrent_model(
        repository / name / str(version),
        kind="lstm",
        name=name,
        version=version,
        features=["load", "temp"],
        target="load",
        frequency=3600,
        seed=seed,
    )
    return manifest.sha256


def test_reload_loads_new_replaces_changed_and_drops_removed(model_repository: Path) -> None:
    with ModelRegistry.load(model_repository) as registry:
        gru = registry.get("demo-gru")
        lstm = registry.get("demo-lstm")
        new_sha = add_version(model_repository, "demo-lstm", 2)
        changed_sha = add_version(model_repository, "demo-gru", 1, seed=99)
        shutil.rmtree(model_repository / "demo-lstm" / "1")

        report = registry.reload()

        assert report.loaded == ["demo-lstm/2"]
        assert report.replaced == ["demo-gru/1"]
        assert report.unloaded == ["demo-lstm/1"]
        assert report.refused == {}
        assert registry.get("demo-lstm").fingerprint == new_sha
        assert registry.get("demo-gru").fingerprint == changed_sha
        assert registry.get("demo-gru") is not gru
        with pytest.raises(UnknownModel):
            registry.get("demo-lstm", 1)
        # Retired, not closed: a request holding them would still run.
        assert not gru.closed
        assert not lstm.closed


def test_reload_of_an_unchanged_repository_creates_no_session(model_repository: Path) -> None:
    with ModelRegistry.load(model_repository) as registry:
        before = registry.all()
        report = registry.reload()
        assert not report.changed
        assert sorted(report.unchanged) == ["demo-gru/1", "demo-lstm/1"]
        assert all(a is b for a, b in zip(before, registry.all(), strict=True))
        assert registry.retired_alive() == 0


def test_retired_runtimes_are_released_once_nobody_holds_them(model_repository: Path) -> None:
    with ModelRegistry.load(model_repository) as registry:
        in_flight = registry.get("demo-lstm")  # a request that started before the reload
        held = weakref.ref(in_flight)
        dropped = weakref.ref(registry.get("demo-gru"))
        add_version(model_repository, "demo-lstm", 1, seed=42)
        add_version(model_repository, "demo-gru", 1, seed=43)
        registry.reload()
        gc.collect()
        assert dropped() is None  # nobody held the old GRU: its session is gone
        assert registry.retired_alive() == 1
        # The held one still answers, on its own (old) weights.
        x = np.ones((1, 3, 2), dtype=np.float32)
        old_forecast, _ = in_flight.run(x, in_flight.initial_states(1))
        new = registry.get("demo-lstm")
        new_forecast, _ = new.run(x, new.initial_states(1))
        assert not np.allclose(old_forecast, new_forecast)
        del in_flight
        gc.collect()
        assert held() is None
        assert registry.retired_alive() == 0


def test_many_reloads_leak_no_session(model_repository: Path) -> None:
    with ModelRegistry.load(model_repository) as registry:
        for seed in range(5):
            add_version(model_repository, "demo-lstm", 1, seed=100 + seed)
            assert registry.reload().replaced == ["demo-lstm/1"]
        gc.collect()
        assert registry.retired_alive() == 0
        assert len(registry) == 2


def test_unload_holds_a_version_out_until_loaded_again(model_repository: Path) -> None:
    with ModelRegistry.load(model_repository) as registry:
        runtime = registry.unload("demo-lstm", 1)
        assert runtime.name == "demo-lstm"
        with pytest.raises(UnknownModel):
            registry.get("demo-lstm")
        assert registry.names() == ["demo-gru"]
        assert "demo-lstm/1" not in registry.reload().loaded  # a re-scan leaves it out
        with pytest.raises(UnknownModel):
            registry.get("demo-lstm")
        with pytest.raises(UnknownModel):
            registry.unload("demo-lstm", 1)

        loaded = registry.load_version("demo-lstm", 1)
        assert registry.get("demo-lstm") is loaded
        assert registry.load_version("demo-lstm", 1) is loaded  # unchanged: same session
        with pytest.raises(UnknownModel):
            registry.load_version("demo-lstm", 7)
        with pytest.raises(UnknownModel):
            registry.load_version("nope", 1)


def test_a_broken_change_keeps_the_old_version_serving(model_repository: Path) -> None:
    with ModelRegistry.load(model_repository) as registry:
        serving = registry.get("demo-lstm")
        add_version(model_repository, "demo-lstm", 1, seed=7)
        (model_repository / "demo-lstm" / "1" / ONNX_FILE).write_bytes(b"not onnx")
        report = registry.reload()
        assert "demo-lstm/1" in report.refused
        assert registry.get("demo-lstm") is serving
        assert "demo-lstm/1" in registry.refused
        # Not retried (nor warned about again) until its files change.
        assert registry.reload().refused.keys() == {"demo-lstm/1"}
        with pytest.raises(ModelRefused):
            registry.load_version("demo-lstm", 1)
        add_version(model_repository, "demo-lstm", 1, seed=8)
        assert registry.reload().replaced == ["demo-lstm/1"]
        assert registry.refused == {}


def test_close_closes_retired_runtimes_still_held(model_repository: Path) -> None:
    registry = ModelRegistry.load(model_repository)
    held = registry.get("demo-lstm")
    registry.unload("demo-lstm", 1)
    registry.close()
    assert held.closed
