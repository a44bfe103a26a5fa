"""Series to train on: real data sets bundled in PyPI wheels, and users' CSV / Parquet files.

Every bundled loader reads files shipped inside an installed package, never the network
(``tests/unit/test_models_data.py`` checks that with sockets refused). A series is split
chronologically into train / validation / test; nothing is shuffled across the boundaries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Series:
    """A regularly sampled multivariate series, one column per feature.

    Attributes:
        name: Short name used in model names and reports.
        values: [N, F] observations in original units.
        features: F column names.
        target: The feature that is forecast.
        frequency: Seconds between consecutive observations.
        season: Seasonal period in steps (1 when there is none), for seasonal naive and MASE.
        source: Where the data comes from, for the manifest's provenance.
    """

    name: str
    values: Array
    features: list[str]
    target: str
    frequency: float
    season: int
    source: str

    def __post_init__(self) -> None:
        if self.values.ndim != 2 or self.values.shape[1] != len(self.features):
            raise ValueError("values must be [N, F] with one column per feature")
        if self.target not in self.features:
            raise ValueError(f"target {self.target!r} is not one of {self.features}")
        if not np.all(np.isfinite(self.values)):
            raise ValueError(f"series {self.name!r} has missing or infinite values")

    @property
    def target_index(self) -> int:
        return self.features.index(self.target)

    @property
    def y(self) -> Array:
        return self.values[:, self.target_index]

    def __len__(self) -> int:
        return int(self.values.shape[0])


@dataclass(frozen=True)
class Split:
    """Chronological boundaries: train is ``[0, train_end)``, val ``[train_end, val_end)``,
    test ``[val_end, n)``."""

    train_end: int
    val_end: int
    n: int

    def as_dict(self) -> dict[str, int]:
        return {
            "train": self.train_end,
            "validation": self.val_end - self.train_end,
            "test": self.n - self.val_end,
        }


def chronological_split(n: int, *, val: float = 0.15, test: float = 0.15) -> Split:
    """Split n observations into consecutive train / validation / test blocks."""
    if not (0 < val < 1 and 0 < test < 1 and val + test < 1):
        raise ValueError("val and test must be fractions with val + test < 1")
    n_test = round(n * test)
    n_val = round(n * val)
    if min(n_test, n_val, n - n_val - n_test) < 1:
        raise ValueError(f"{n} observations are too few to split")
    return Split(train_end=n - n_val - n_test, val_end=n - n_test, n=n)


def _taylor() -> Series:
    from pmdarima.datasets import load_taylor

    y = np.asarray(load_taylor(as_series=False), dtype=np.float64)
    return Series(
        name="taylor",
        values=y[:, None],
        features=["demand_mw"],
        target="demand_mw",
        frequency=1800.0,
        season=48,
        source="pmdarima.datasets.load_taylor: half-hourly electricity demand, England and "
        "Wales, 5 June - 27 August 2000 (Taylor 2003)",
    )


def _co2() -> Series:
    from statsmodels.datasets import co2 as bundled

    frame = bundled.load_pandas().data
    # 59 weeks are missing; interpolate linearly in time so the series stays regular.
    co2 = frame["co2"].interpolate(method="linear", limit_direction="both")
    return Series(
        name="co2",
        values=co2.to_numpy(dtype=np.float64)[:, None],
        features=["co2_ppm"],
        target="co2_ppm",
        frequency=7 * 86400.0,
        season=52,
        source="statsmodels.datasets.co2: weekly atmospheric CO2 at Mauna Loa, 1958-2001 "
        "(missing weeks linearly interpolated)",
    )


def _sunspots() -> Series:
    from statsmodels.datasets import sunspots as bundled

    frame = bundled.load_pandas().data
    return Series(
        name="sunspots",
        values=frame["SUNACTIVITY"].to_numpy(dtype=np.float64)[:, None],
        features=["sunactivity"],
        target="sunactivity",
        frequency=365.25 * 86400.0,
        season=11,
        source="statsmodels.datasets.sunspots: yearly sunspot numbers, 1700-2008",
    )


BUILTIN: dict[str, Callable[[], Series]] = {
    "taylor": _taylor,
    "co2": _co2,
    "sunspots": _sunspots,
}


def load_table(
    path: Path,
    *,
    timestamp: str = "timestamp",
    target: str | None = None,
    features: Sequence[str] | None = None,
    season: int = 1,
    name: str | None = None,
) -> Series:
    """Load a user's series: a timestamp column and one numeric column per feature.

    Rows are sorted by time; the frequency is the median spacing. Missing values are refused
    rather than guessed, because a silent fill changes what the model learns.

    Args:
        path: A ``.csv`` or ``.parquet`` file.
        timestamp: Name of the timestamp column (datetimes, or numbers read as seconds).
        target: The feature to forecast (the first feature when omitted).
        features: Columns to use, in order (every other column when omitted).
        season: Seasonal period in steps, for seasonal naive and MASE.
        name: Series name (the file's stem when omitted).
    """
    frame = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    if timestamp not in frame.columns:
        raise ValueError(f"{path}: no timestamp column {timestamp!r}")
    columns = list(features) if features else [c for c in frame.columns if c != timestamp]
    missing = [c for c in columns if c not in frame.columns]
    if missing or not columns:
        raise ValueError(f"{path}: feature columns {missing or columns} not found")
    stamps = frame[timestamp]
    if pd.api.types.is_numeric_dtype(stamps):
        seconds = stamps.to_numpy(dtype=np.float64)
    else:
        parsed = pd.to_datetime(stamps, utc=True)
        seconds = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    order = np.argsort(seconds, kind="stable")
    seconds = seconds[order]
    spacing = np.diff(seconds)
    if len(spacing) == 0 or np.any(spacing <= 0):
        raise ValueError(f"{path}: timestamps must be distinct and at least two")
    values = frame[columns].to_numpy(dtype=np.float64)[order]
    return Series(
        name=name or path.stem,
        values=values,
        features=[str(c) for c in columns],
        target=target or str(columns[0]),
        frequency=float(np.median(spacing)),
        season=season,
        source=f"file {path.name}",
    )


def load(
    spec: str,
    *,
    timestamp: str = "timestamp",
    target: str | None = None,
    features: Sequence[str] | None = None,
    season: int = 1,
) -> Series:
    """A bundled data set by name, or a CSV / Parquet file by path (options apply to files)."""
    if spec in BUILTIN:
        return BUILTIN[spec]()
    path = Path(spec)
    if path.suffix.lower() in (".csv", ".parquet") and path.exists():
        return load_table(
            path, timestamp=timestamp, target=target, features=features, season=season
        )
    raise ValueError(f"unknown data set {spec!r}: use one of {sorted(BUILTIN)} or a .csv/.parquet")
