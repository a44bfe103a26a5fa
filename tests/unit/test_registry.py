"""The model registry: scanning a repository, refusing bad versions, picking versions."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from models.onnx_builder import build_recurrent_model
from service.errors import ModelRefused, UnknownModel
from service.manifest import MANIFEST_FILE, ONNX_FILE, Manifest
from service.registry import ModelRegistry
from service.runtime import CPU
from service.settings import DEFAULT_MODEL_REPOSITORY


def _add_version(repository: Path, name: str, version: int, *, seed: int = 5) -> Manifest:
    return build_recurrent_model(
        repository / name / str(version),
        kind="lstm",
        name=name,
        version=version,
        features=["load", "temp"],
        target="load",
        frequency=3600,
        seed=seed,
    )


def _edit_manifest(directory: Path, **changes: object) -> None:
    document = json.loads((directory / MANIFEST_FILE).read_text())
    document.update(changes)
    (directory / MANIFEST_FILE).write_text(json.dumps(document))


def test_loads_every_model(model_repository: Path) -> None:
    with ModelRegistry.load(model_repository) as registry:
        assert registry.names() == ["demo-gru", "demo-lstm"]
        assert [(r.name, r.version) for r in registry.all()] == [
            ("demo-gru", 1),
            ("demo-lstm", 1),
        ]
        assert registry.get("demo-gru").manifest.kind == "gru"
        assert registry.providers_in_use() == [CPU]
        assert registry.refused == {}
        assert len(registry) == 2


def test_highest_version_wins_unless_one_is_named(model_repository: Path) -> None:
    second = _add_version(model_repository, "demo-lstm", 2)
    tenth = _add_version(model_repository, "demo-lstm", 10, seed=6)  # 10 > 2 numerically

    with ModelRegistry.load(model_repository) as registry:
        assert registry.get("demo-lstm").version == 10
        assert registry.get("demo-lstm").fingerprint == tenth.sha256
        assert registry.get("demo-lstm", 2).fingerprint == second.sha256
        assert registry.get("demo-lstm", 1).version == 1
        assert [r.version for r in registry.versions("demo-lstm")] == [1, 2, 10]
        assert registry.versions("absent") == []


def test_unknown_model_or_version_names_what_exists(model_repository: Path) -> None:
    _add_version(model_repository, "demo-lstm", 3)
    with ModelRegistry.load(model_repository) as registry:
        with pytest.raises(UnknownModel) as unknown_name:
            registry.get("demo-rnn")
        assert unknown_name.value.field == "model"
        assert "'demo-rnn'" in unknown_name.value.detail
        assert "demo-gru, demo-lstm" in unknown_name.value.detail

        with pytest.raises(UnknownModel) as unknown_version:
            registry.get("demo-lstm", 2)
        assert unknown_version.value.field == "version"
        assert "no version 2; versions available: 1, 3" in unknown_version.value.detail


def test_bad_versions_are_refused_and_the_good_ones_still_load(
    model_repository: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _add_version(model_repository, "demo-lstm", 2)
    broken: dict[str, str] = {}

    missing = model_repository / "no-manifest" / "1"
    _add_version(model_repository, "no-manifest", 1)
    (missing / MANIFEST_FILE).unlink()
    broken["no-manifest/1"] = "no manifest"

    malformed = model_repository / "malformed" / "1"
    _add_version(model_repository, "malformed", 1)
    (malformed / MANIFEST_FILE).write_text('{"name": "malformed", "version": "one"')
    broken["malformed/1"] = "invalid manifest"

    tampered = model_repository / "demo-gru" / "2"
    build_recurrent_model(
        tampered,
        kind="gru",
        name="demo-gru",
        version=2,
        features=["load", "temp"],
        target="load",
        frequency=3600,
        seed=9,
    )
    (tampered / ONNX_FILE).write_bytes((tampered / ONNX_FILE).read_bytes() + b"\x00")
    broken["demo-gru/2"] = "has sha256"

    wrong_features = model_repository / "wide" / "1"
    _add_version(model_repository, "wide", 1)
    _edit_manifest(wrong_features, features=["load", "temp", "humidity"])
    broken["wide/1"] = "(features F) is 2, the manifest says 3"

    misplaced = model_repository / "demo-lstm" / "7"
    _add_version(model_repository, "demo-lstm", 7)
    _edit_manifest(misplaced, version=3)
    broken["demo-lstm/7"] = "manifest says 'demo-lstm' version 3, the directory says"

    renamed = model_repository / "other-name" / "1"
    build_recurrent_model(
        renamed,
        kind="lstm",
        name="demo-lstm",
        features=["load", "temp"],
        target="load",
        frequency=3600,
    )
    broken["other-name/1"] = "manifest says 'demo-lstm' version 1, the directory says 'other-name'"

    with caplog.at_level(logging.WARNING, logger="service.registry"):
        registry = ModelRegistry.load(model_repository)

    with registry:
        assert registry.names() == ["demo-gru", "demo-lstm"]
        assert [r.version for r in registry.versions("demo-lstm")] == [1, 2]
        assert [r.version for r in registry.versions("demo-gru")] == [1]
        assert sorted(registry.refused) == sorted(broken)
        for key, reason in broken.items():
            assert reason in registry.refused[key], key
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == len(broken)
        for key in broken:
            path = str(model_repository / key)
            assert any(w.startswith(f"refused model {path}: ") for w in warnings), key


def test_entries_that_are_not_versions_are_ignored(
    model_repository: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lstm = model_repository / "demo-lstm"
    for name in ["0", "007", "latest", "-1"]:
        (lstm / name).mkdir()
    (lstm / "README.md").write_text("notes")
    (model_repository / "README.md").write_text("notes")
    (model_repository / ".cache").mkdir()

    with caplog.at_level(logging.DEBUG, logger="service.registry"):
        registry = ModelRegistry.load(model_repository)

    with registry:
        assert registry.refused == {}
        assert [r.version for r in registry.versions("demo-lstm")] == [1]
        ignored = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
        for name in ["0", "007", "latest", "-1", "README.md"]:
            assert f"ignoring {lstm / name}" in ignored
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_empty_repository_loads_nothing_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="service.registry"):
        registry = ModelRegistry.load(tmp_path)
    assert registry.all() == []
    assert registry.providers_in_use() == []
    assert "holds no servable model" in caplog.text


def test_missing_repository_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelRefused, match="is not a directory"):
        ModelRegistry.load(tmp_path / "absent")


def test_close_closes_every_runtime(model_repository: Path) -> None:
    registry = ModelRegistry.load(model_repository)
    runtimes = registry.all()
    registry.close()
    assert all(runtime.closed for runtime in runtimes)
    assert registry.names() == []


def test_shipped_repository_loads_cleanly() -> None:
    """The models committed in models/repository are what the service serves out of the box."""
    with ModelRegistry.load(DEFAULT_MODEL_REPOSITORY) as registry:
        assert registry.refused == {}
        assert registry.all()
