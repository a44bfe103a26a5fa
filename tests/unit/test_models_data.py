"""Data: bundled sets load with the network refused; user files; chronological splits."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from models.data import BUILTIN, Series, chronological_split, load, load_table


class _NoNetwork(socket.socket):
    def connect(self, *args: Any, **kwargs: Any) -> None:
        raise OSError("network refused by the test")

    def connect_ex(self, *args: Any, **kwargs: Any) -> int:
        raise OSError("network refused by the test")


@pytest.mark.slow  # importing pmdarima / statsmodels takes seconds on a busy machine
@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_bundled_sets_load_offline(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "socket", _NoNetwork)
    monkeypatch.setattr(
        socket, "create_connection", lambda *a, **k: (_ for _ in ()).throw(OSError("refused"))
    )
    series = load(name)
    assert series.name == name
    assert len(series) > 300
    assert np.all(np.isfinite(series.values))
    assert series.frequency > 0
    assert series.season >= 1
    assert series.target in series.features


@pytest.mark.slow
def test_known_sizes() -> None:
    assert len(load("taylor")) == 4032
    assert len(load("co2")) == 2284  # NaN weeks interpolated, none dropped


def test_split_is_chronological_and_complete() -> None:
    split = chronological_split(100, val=0.2, test=0.1)
    assert (split.train_end, split.val_end, split.n) == (70, 90, 100)
    assert split.as_dict() == {"train": 70, "validation": 20, "test": 10}
    with pytest.raises(ValueError, match="too few"):
        chronological_split(3, val=0.1, test=0.1)
    with pytest.raises(ValueError, match="fractions"):
        chronological_split(100, val=0.6, test=0.5)


def _frame(n: int = 30) -> pd.DataFrame:
    stamps = pd.date_range("2026-01-01", periods=n, freq="15min", tz="UTC")
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {"timestamp": stamps, "temp": rng.normal(20, 1, n), "load": rng.normal(5, 1, n)}
    )


def test_csv_loader_sorts_and_infers_frequency(tmp_path: Path) -> None:
    frame = _frame()
    path = tmp_path / "plant.csv"
    frame.iloc[::-1].to_csv(path, index=False)  # rows out of order on purpose
    series = load(str(path), target="load", season=4)
    assert series.name == "plant"
    assert series.features == ["temp", "load"]
    assert series.target_index == 1
    assert series.frequency == 900.0
    assert series.season == 4
    np.testing.assert_allclose(series.y, frame["load"].to_numpy())


def test_parquet_loader_with_chosen_features(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    frame = _frame()
    frame["timestamp"] = np.arange(len(frame)) * 60.0  # numeric timestamps are seconds
    path = tmp_path / "plant.parquet"
    frame.to_parquet(path)
    series = load_table(path, features=["load"])
    assert series.features == ["load"]
    assert series.target == "load"
    assert series.frequency == 60.0


def test_missing_values_are_refused_not_guessed(tmp_path: Path) -> None:
    frame = _frame()
    frame.loc[5, "load"] = np.nan
    path = tmp_path / "gappy.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match="missing"):
        load_table(path)


def test_bad_files(tmp_path: Path) -> None:
    frame = _frame()
    path = tmp_path / "dup.csv"
    pd.concat([frame, frame.iloc[:1]]).to_csv(path, index=False)
    with pytest.raises(ValueError, match="distinct"):
        load_table(path)
    with pytest.raises(ValueError, match="no timestamp column"):
        load_table(path, timestamp="time")
    with pytest.raises(ValueError, match="not found"):
        load_table(path, features=["pressure"])
    with pytest.raises(ValueError, match="unknown data set"):
        load("no-such-set")


def test_series_checks_its_shape() -> None:
    with pytest.raises(ValueError, match="one column per feature"):
        Series("s", np.zeros((3, 2)), ["a"], "a", 1.0, 1, "test")
    with pytest.raises(ValueError, match="target"):
        Series("s", np.zeros((3, 1)), ["a"], "b", 1.0, 1, "test")
