"""A user's CSV or Parquet file as a :class:`~models.data.Series`, with its spacing checked.

A series is only as regular as its timestamps: a file with 300 hourly rows missing would
otherwise train as if those hours never existed. So the loader finds the file's period, checks
that every spacing is a whole number of periods, and reports the missing rows (how many, and
the first few timestamps). By default it refuses them; with ``gaps="fill"`` it interpolates
them linearly in time, and the series records what it filled, for the manifest.

Timestamps are ISO 8601 strings or numbers (epoch seconds). Any other spelling is read only
when it is unambiguous (the same whether read day-first or month-first); otherwise the error
says so and asks for ``--timestamp-format``. No pandas parser error reaches the user raw.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from models.data import Array, GapPolicy, Gaps, Series, parse_seasons, regular_times

IntArray = npt.NDArray[np.int64]

#: How far (in periods) a spacing may stray from a whole number of periods: clocks jitter.
SPACING_TOLERANCE = 0.05
#: Missing timestamps named in a report (the count is always complete).
SHOWN_MISSING = 5


class DataGaps(ValueError):
    """The file has missing rows or values and the gap policy is ``refuse``."""


def load_table(
    path: Path,
    *,
    timestamp: str = "timestamp",
    target: str | None = None,
    features: Sequence[str] | None = None,
    seasons: Sequence[int] = (),
    name: str | None = None,
    timestamp_format: str | None = None,
    frequency: float | None = None,
    gaps: GapPolicy = "refuse",
) -> Series:
    """Load a user's series: a timestamp column and one numeric column per feature.

    Args:
        path: A ``.csv`` or ``.parquet`` file.
        timestamp: Name of the timestamp column (datetimes, or numbers read as seconds).
        target: The feature to forecast (the first feature when omitted).
        features: Columns to use, in order (every other column when omitted).
        seasons: Seasonal periods in steps, for the baselines, the networks' reference and
            MASE.
        name: Series name (the file's stem when omitted).
        timestamp_format: A ``strftime`` format such as ``"%d/%m/%Y %H:%M"``, for timestamps
            that are not ISO 8601.
        frequency: Seconds between readings; the most common spacing when omitted.
        gaps: ``"refuse"`` missing rows and values (the default) or ``"fill"`` them by linear
            interpolation in time, recorded in the series' ``gaps``.

    Raises:
        ValueError: with the file named and what is wrong; :class:`DataGaps` for gaps.
    """
    frame = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    if timestamp not in frame.columns:
        raise ValueError(f"{path}: no timestamp column {timestamp!r}")
    columns = list(features) if features else [c for c in frame.columns if c != timestamp]
    missing = [c for c in columns if c not in frame.columns]
    if missing or not columns:
        raise ValueError(f"{path}: feature columns {missing or columns} not found")
    seconds = _seconds(frame[timestamp], timestamp_format, path, timestamp)
    order = np.argsort(seconds, kind="stable")
    seconds = seconds[order]
    try:
        values = frame[columns].to_numpy(dtype=np.float64)[order]
    except ValueError as exc:
        raise ValueError(f"{path}: feature columns {columns} must be numeric: {exc}") from exc
    spacing = np.diff(seconds)
    if len(spacing) == 0 or np.any(spacing <= 0):
        raise ValueError(f"{path}: timestamps must be distinct and at least two")
    period = float(frequency) if frequency is not None else _most_common(spacing)
    if period <= 0:
        raise ValueError(f"{path}: the frequency must be positive, got {period}")
    steps = spacing / period
    whole = np.rint(steps)
    off = np.flatnonzero((np.abs(steps - whole) > SPACING_TOLERANCE) | (whole < 1))
    if len(off):
        i = int(off[0])
        raise ValueError(
            f"{path}: readings are not {period:g} s apart: {_stamp(seconds[i])} and "
            f"{_stamp(seconds[i + 1])} are {spacing[i]:g} s apart ({len(off)} spacing(s) like "
            "this). Pass --frequency if the period is another, or resample the file; "
            "day-first timestamps read month-first also look like this (see "
            "--timestamp-format)."
        )
    index = np.concatenate([[0], np.cumsum(whole.astype(np.int64))])  # grid position per row
    n = int(index[-1]) + 1
    grid = regular_times(seconds[0], period, n)
    present = np.zeros(n, dtype=bool)
    present[index] = True
    absent_rows = np.flatnonzero(~present).astype(np.int64)
    empty_cells = int(np.count_nonzero(~np.isfinite(values)))
    found = _describe(absent_rows, grid, empty_cells, values, index)
    if found is not None and gaps == "refuse":
        raise DataGaps(
            f"{path}: {found} Refused, since training across them would teach the model a "
            "series that never happened: pass --gaps fill to interpolate them (recorded in "
            "the manifest), or fix the file."
        )
    filled = np.full((n, values.shape[1]), np.nan)
    filled[index] = values
    record = None
    if found is not None:
        filled = _interpolate(filled)
        record = Gaps(
            missing_rows=len(absent_rows),
            missing_values=empty_cells,
            first_missing=tuple(_missing_stamps(absent_rows, grid, values, index)),
        )
    return Series(
        name=name or path.stem,
        values=filled,
        features=[str(c) for c in columns],
        target=target or str(columns[0]),
        frequency=period,
        seasons=parse_seasons(seasons),
        source=f"file {path.name}",
        times=grid,
        gaps=record,
    )


def _seconds(stamps: pd.Series, fmt: str | None, path: Path, column: str) -> Array:
    """Epoch seconds of a timestamp column, or a ValueError that says what to pass."""
    if fmt is None and pd.api.types.is_numeric_dtype(stamps):
        return stamps.to_numpy(dtype=np.float64)
    if stamps.isna().any():
        row = int(np.flatnonzero(stamps.isna().to_numpy())[0])
        raise ValueError(f"{path}: column {column!r} has an empty timestamp (row {row + 2})")
    text = stamps.astype(str)
    if fmt is not None:
        parsed = _parse(text, format=fmt)
        if parsed is None:
            raise ValueError(
                f"{path}: timestamps of column {column!r} do not match --timestamp-format "
                f"{fmt!r} (first row: {text.iloc[0]!r})"
            )
        return parsed
    iso = _parse(text, format="ISO8601")
    if iso is not None:
        return iso
    month_first = _parse(text, dayfirst=False)
    day_first = _parse(text, dayfirst=True)
    if month_first is not None and day_first is not None and np.array_equal(month_first, day_first):
        return month_first
    raise ValueError(
        f"{path}: cannot tell how to read the timestamps of column {column!r} (first row: "
        f"{text.iloc[0]!r}): they are not ISO 8601, and "
        + (
            "they read differently day-first and month-first"
            if month_first is not None or day_first is not None
            else "no single format fits every row"
        )
        + ". Pass --timestamp-format, e.g. '%d/%m/%Y %H:%M' for day-first dates or "
        "'%m/%d/%Y %H:%M' for month-first ones (times without an offset are read as UTC)."
    )


def _parse(text: pd.Series, **how: object) -> Array | None:
    """pandas' parser, quietly: its format guesses warn, and its failures are ours to word."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parsed = pd.to_datetime(text, utc=True, **how)  # type: ignore[call-overload]
        except (ValueError, TypeError, OverflowError):
            return None
    if parsed.isna().any():
        return None
    return np.asarray((parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds(), dtype=np.float64)


def _most_common(spacing: Array) -> float:
    """The most common spacing (the smallest among ties): one gap cannot set the period."""
    values, counts = np.unique(spacing, return_counts=True)
    return float(values[np.argmax(counts)])


def _stamp(seconds: float) -> str:
    return pd.Timestamp(seconds, unit="s", tz="UTC").isoformat()


def _describe(
    absent_rows: IntArray, grid: Array, empty_cells: int, values: Array, index: IntArray
) -> str | None:
    """A sentence naming what is missing, or None when nothing is."""
    parts = []
    if len(absent_rows):
        parts.append(f"{len(absent_rows)} missing row(s) at a period of {grid[1] - grid[0]:g} s")
    if empty_cells:
        parts.append(f"{empty_cells} empty value(s)")
    if not parts:
        return None
    first = ", ".join(_missing_stamps(absent_rows, grid, values, index))
    return f"{' and '.join(parts)}; first: {first}."


def _missing_stamps(
    absent_rows: IntArray, grid: Array, values: Array, index: IntArray
) -> list[str]:
    empty_rows = index[np.flatnonzero(~np.all(np.isfinite(values), axis=1))]
    rows = np.union1d(absent_rows, empty_rows).astype(np.int64)
    return [_stamp(float(grid[i])) for i in rows[:SHOWN_MISSING]]


def _interpolate(filled: Array) -> Array:
    """Every column's NaNs filled linearly between its neighbours (held at the ends)."""
    out = filled.copy()
    positions = np.arange(len(filled))
    for column in range(filled.shape[1]):
        known = np.isfinite(filled[:, column])
        if not known.any():
            raise ValueError(f"column {column} has no values at all")
        out[:, column] = np.interp(positions, positions[known], filled[known, column])
    return out
