"""The contract's optional ``time`` input: checked at load, required, or else ignored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.validate import validate_directory
from service.contract import PARITY_TOLERANCE, step_parity_error
from service.errors import InvalidInput, ModelRefused
from service.manifest import Manifest
from service.runtime import load_runtime
from tests.support.clock_model import build_clock_model, clock_reference
from tests.support.demo_repository import build_demo_repository

START = 1_800_000_000.0


def test_a_graph_with_the_time_input_reads_every_observations_time(tmp_path: Path) -> None:
    build_clock_model(tmp_path / "clock" / "1")
    runtime = load_runtime(tmp_path / "clock" / "1")
    assert runtime.takes_time
    times = START + 1800.0 * np.arange(7)
    values = np.linspace(1.0, 2.0, 7)
    forecast, _ = runtime.run(
        values.reshape(1, 7, 1).astype(np.float32), runtime.initial_states(1), times[None]
    )
    np.testing.assert_allclose(forecast[0], clock_reference(times, values), atol=1e-4)
    shifted, _ = runtime.run(
        values.reshape(1, 7, 1).astype(np.float32),
        runtime.initial_states(1),
        (times + 3 * 3600.0)[None],
    )
    assert not np.allclose(shifted, forecast)


def test_it_refuses_a_call_without_times_or_with_the_wrong_shape(tmp_path: Path) -> None:
    build_clock_model(tmp_path / "clock" / "1")
    runtime = load_runtime(tmp_path / "clock" / "1")
    x = np.zeros((2, 3, 1), np.float32)
    with pytest.raises(InvalidInput, match="reads each observation's time") as info:
        runtime.run(x, runtime.initial_states(2))
    assert info.value.field == "time"
    with pytest.raises(InvalidInput, match=r"time must be \[2, 3\]"):
        runtime.run(x, runtime.initial_states(2), np.zeros((2, 4)))


def test_step_parity_holds_with_times(tmp_path: Path) -> None:
    build_clock_model(tmp_path / "clock" / "1")
    runtime = load_runtime(tmp_path / "clock" / "1")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 11, 1)).astype(np.float32)
    times = START + 1800.0 * np.arange(11) + rng.uniform(0, 1e6, (3, 1))
    error = step_parity_error(runtime.run, x, runtime.initial_states(3), times)
    assert error < PARITY_TOLERANCE
    assert validate_directory(tmp_path / "clock" / "1").ok


def test_a_manifest_must_declare_the_time_input_its_graph_has(tmp_path: Path) -> None:
    directory = tmp_path / "clock" / "1"
    manifest = build_clock_model(directory)
    manifest.model_copy(update={"time_input": False}).write(directory)
    with pytest.raises(ModelRefused, match=r"unexpected \['time'\]"):
        load_runtime(directory)


def test_a_manifest_may_not_declare_a_time_input_its_graph_lacks(tmp_path: Path) -> None:
    directory = build_demo_repository(tmp_path) / "demo-lstm" / "1"
    manifest = Manifest.read(directory)
    manifest.model_copy(update={"time_input": True}).write(directory)
    with pytest.raises(ModelRefused, match=r"missing \['time'\]"):
        load_runtime(directory)


def test_a_graph_without_the_time_input_ignores_times(tmp_path: Path) -> None:
    runtime = load_runtime(build_demo_repository(tmp_path) / "demo-gru" / "1")
    assert not runtime.takes_time
    x = np.ones((1, 4, 2), np.float32)
    plain, _ = runtime.run(x, runtime.initial_states(1))
    timed, _ = runtime.run(x, runtime.initial_states(1), START + np.arange(4.0)[None])
    np.testing.assert_array_equal(plain, timed)
