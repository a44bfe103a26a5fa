"""Data: bundled sets load with the network refused; user files; chronological splits."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from models.data import BUILTIN, Series, chronological_split, load, parse_seasons
from models.table import DataGaps, load_table


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
    assert series.times.shape == (len(series),)
    np.testing.assert_allclose(np.diff(series.times), series.frequency)


@pytest.mark.slow
def test_bundled_sets_declare_their_seasons() -> None:
    taylor = load("taylor")
    assert taylor.seasons == (48, 336)  # a day and a week of half-hours
    assert taylor.season == 48  # MASE's scale is the daily seasonal naive
    # Monday 5 June 2000, midnight in London (British Summer Time, UTC+1).
    assert pd.Timestamp(taylor.times[0], unit="s", tz="Europe/London").isoformat() == (
        "2000-06-05T00:00:00+01:00"
    )
    assert load("taylor", seasons=[48]).seasons == (48,)
    assert load("co2").seasons == (52,)


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
    series = load(str(path), target="load", seasons=[4])
    assert series.name == "plant"
    assert series.features == ["temp", "load"]
    assert series.target_index == 1
    assert series.frequency == 900.0
    assert series.seasons == (4,)
    assert series.gaps is None
    np.testing.assert_allclose(series.y, frame["load"].to_numpy())
    assert series.times[0] == pd.Timestamp("2026-01-01", tz="UTC").timestamp()


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
    with pytest.raises(DataGaps, match=r"1 empty value\(s\); first: 2026-01-01T01:15:00\+00:00"):
        load_table(path)
    filled = load_table(path, gaps="fill")
    assert filled.values[5, 1] == pytest.approx((frame["load"][4] + frame["load"][6]) / 2)
    assert filled.gaps is not None
    assert (filled.gaps.missing_rows, filled.gaps.missing_values) == (0, 1)


def test_missing_rows_are_refused_by_default_and_filled_on_request(tmp_path: Path) -> None:
    """300 hourly rows missing from a series of 1000: named, counted, refused or filled."""
    n = 1000
    stamps = pd.date_range("2026-01-01", periods=n, freq="h", tz="UTC")
    value = np.sin(np.arange(n) / 10.0) + 10
    frame = pd.DataFrame({"timestamp": stamps, "value": value})
    dropped = list(range(100, 400))
    path = tmp_path / "meter.csv"
    frame.drop(index=dropped).to_csv(path, index=False)

    with pytest.raises(DataGaps) as refused:
        load_table(path)
    message = str(refused.value)
    assert "300 missing row(s) at a period of 3600 s" in message
    assert "first: 2026-01-05T04:00:00+00:00, 2026-01-05T05:00:00+00:00" in message
    assert "--gaps fill" in message

    series = load_table(path, gaps="fill")
    assert len(series) == n
    assert series.frequency == 3600.0
    np.testing.assert_allclose(series.times, [t.timestamp() for t in stamps])
    assert series.gaps is not None
    assert series.gaps.as_dict() == {
        "policy": "fill",
        "method": "linear interpolation in time",
        "missing_rows": 300,
        "missing_values": 0,
        "first_missing": [stamps[i].isoformat() for i in dropped[:5]],
    }
    # Linear in time between the readings either side of the gap, the rest untouched.
    line = np.linspace(value[99], value[400], 302)[1:-1]
    np.testing.assert_allclose(series.y[100:400], line)
    np.testing.assert_allclose(np.delete(series.y, dropped), np.delete(value, dropped))
    assert series.describe()["gaps"]["missing_rows"] == 300


def test_spacing_that_is_no_whole_number_of_periods_is_refused(tmp_path: Path) -> None:
    frame = _frame(10)
    frame.loc[5:, "timestamp"] += pd.Timedelta(minutes=7)
    path = tmp_path / "odd.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match="are 1320 s apart"):
        load_table(path)
    # Stated outright, a period that fits every spacing is accepted (with the gaps it makes).
    assert len(load_table(path, frequency=60.0, gaps="fill")) == 9 * 15 + 7 + 1


def _day_first(tmp_path: Path, first_day: int) -> Path:
    stamps = pd.date_range(f"2026-01-{first_day:02d}", periods=48, freq="h")
    frame = pd.DataFrame({"timestamp": stamps.strftime("%d/%m/%Y %H:%M"), "value": 1.0})
    frame["value"] = np.arange(48.0)
    path = tmp_path / f"day-first-{first_day}.csv"
    frame.to_csv(path, index=False)
    return path


def test_day_first_timestamps_get_a_clear_error_and_a_format_reads_them(tmp_path: Path) -> None:
    # 12/01 ... 13/01: month-first and day-first readings disagree (or fail): refused.
    path = _day_first(tmp_path, 12)
    with pytest.raises(ValueError, match="cannot tell how to read the timestamps") as refused:
        load_table(path)
    message = str(refused.value)
    assert "'12/01/2026 00:00'" in message
    assert "--timestamp-format" in message
    assert "%d/%m/%Y %H:%M" in message
    series = load_table(path, timestamp_format="%d/%m/%Y %H:%M")
    assert series.times[0] == pd.Timestamp("2026-01-12", tz="UTC").timestamp()
    assert series.frequency == 3600.0
    # A format that does not fit is named as such.
    with pytest.raises(ValueError, match="do not match --timestamp-format '%Y-%m-%d'"):
        load_table(path, timestamp_format="%Y-%m-%d")


def test_timestamps_readable_only_one_way_are_read(tmp_path: Path) -> None:
    """31/01/2026 can only be day-first: read, with no pandas warning reaching the user."""
    series = load_table(_day_first(tmp_path, 25))
    assert series.times[0] == pd.Timestamp("2026-01-25", tz="UTC").timestamp()
    assert len(series) == 48


def test_seasons_parse() -> None:
    assert parse_seasons("48,336") == (48, 336)
    assert parse_seasons("336, 48") == (48, 336)
    assert parse_seasons("1") == ()
    assert parse_seasons(24) == (24,)
    with pytest.raises(ValueError, match="whole numbers"):
        parse_seasons("daily")


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
    times = np.arange(3.0)
    with pytest.raises(ValueError, match="one column per feature"):
        Series("s", np.zeros((3, 2)), ["a"], "a", 1.0, (), "test", times)
    with pytest.raises(ValueError, match="target"):
        Series("s", np.zeros((3, 1)), ["a"], "b", 1.0, (), "test", times)
    with pytest.raises(ValueError, match="one timestamp per observation"):
        Series("s", np.zeros((3, 1)), ["a"], "a", 1.0, (), "test", times[:2])
    with pytest.raises(ValueError, match="increasing periods"):
        Series("s", np.zeros((3, 1)), ["a"], "a", 1.0, (336, 48), "test", times)
