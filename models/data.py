"""Series to train on: real data sets bundled in PyPI wheels, and users' CSV / Parquet files.

Every bundled loader reads files shipped inside an installed package, never the network
(``tests/unit/test_models_data.py`` checks that with sockets refused). A series is split
chronologically into train / validation / test; nothing is shuffled across the boundaries.
Users' files are read by :mod:`models.table`, which checks their spacing first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

Array = npt.NDArray[np.float64]
GapPolicy = Literal["refuse", "fill"]


@dataclass(frozen=True)
class Gaps:
    """What a loader filled in: missing rows (timestamps absent from the file) and missing
    values (empty cells), both interpolated linearly in time. Recorded in the manifest."""

    missing_rows: int
    missing_values: int
    first_missing: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy": "fill",
            "method": "linear interpolation in time",
            "missing_rows": self.missing_rows,
            "missing_values": self.missing_values,
            "first_missing": list(self.first_missing),
        }


@dataclass(frozen=True)
class Series:
    """A regularly sampled multivariate series, one column per feature.

    Attributes:
        name: Short name used in model names and reports.
        values: [N, F] observations in original units.
        features: F column names.
        target: The feature that is forecast.
        frequency: Seconds between consecutive observations.
        seasons: Seasonal periods in steps, increasing, each above 1 (empty when there is
            none): a day and a week for half-hourly demand are ``(48, 336)``.
        source: Where the data comes from, for the manifest's provenance.
        times: [N] epoch seconds (UTC) of the observations, ``frequency`` apart: what the
            service passes as the contract's ``time`` input, so the calendar a model learns
            from is the one it is served with.
        gaps: What the loader filled in, when it filled anything.
    """

    name: str
    values: Array
    features: list[str]
    target: str
    frequency: float
    seasons: tuple[int, ...]
    source: str
    times: Array
    gaps: Gaps | None = None

    def __post_init__(self) -> None:
        if self.values.ndim != 2 or self.values.shape[1] != len(self.features):
            raise ValueError("values must be [N, F] with one column per feature")
        if self.target not in self.features:
            raise ValueError(f"target {self.target!r} is not one of {self.features}")
        if not np.all(np.isfinite(self.values)):
            raise ValueError(f"series {self.name!r} has missing or infinite values")
        if self.times.shape != (len(self.values),):
            raise ValueError("times must hold one timestamp per observation")
        if tuple(sorted(set(self.seasons))) != self.seasons or any(m < 2 for m in self.seasons):
            raise ValueError(f"seasons must be increasing periods of 2 or more, not {self.seasons}")

    @property
    def target_index(self) -> int:
        return self.features.index(self.target)

    @property
    def y(self) -> Array:
        return self.values[:, self.target_index]

    @property
    def season(self) -> int:
        """The shortest seasonal period (1 without one): MASE is scaled by its seasonal naive."""
        return self.seasons[0] if self.seasons else 1

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def describe(self) -> dict[str, Any]:
        """What a checkpoint and a manifest keep of the series (not its values)."""
        described: dict[str, Any] = {
            "name": self.name,
            "features": self.features,
            "target": self.target,
            "frequency": self.frequency,
            "seasons": list(self.seasons),
            "source": self.source,
        }
        if self.gaps is not None:
            described["gaps"] = self.gaps.as_dict()
        return described


def parse_seasons(text: str | int | Sequence[int]) -> tuple[int, ...]:
    """``"48,336"`` (or 48, or [48, 336]) as increasing periods; 1 means no season."""
    if isinstance(text, str):
        try:
            periods = [int(part) for part in text.split(",") if part.strip()]
        except ValueError as exc:
            raise ValueError(f"seasons must be whole numbers of steps, got {text!r}") from exc
    elif isinstance(text, int):
        periods = [text]
    else:
        periods = [int(p) for p in text]
    if any(p < 1 for p in periods):
        raise ValueError(f"a seasonal period is at least 1 step, got {periods}")
    return tuple(sorted({p for p in periods if p > 1}))


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


def regular_times(start: float, frequency: float, n: int) -> Array:
    return np.asarray(start + frequency * np.arange(n), dtype=np.float64)


def _taylor() -> Series:
    from pmdarima.datasets import load_taylor

    y = np.asarray(load_taylor(as_series=False), dtype=np.float64)
    # Monday 5 June 2000, 00:00 UK time, which is British Summer Time (UTC+1) throughout.
    start = pd.Timestamp("2000-06-04T23:00:00Z").timestamp()
    return Series(
        name="taylor",
        values=y[:, None],
        features=["demand_mw"],
        target="demand_mw",
        frequency=1800.0,
        seasons=(48, 336),
        source="pmdarima.datasets.load_taylor: half-hourly electricity demand, England and "
        "Wales, Monday 5 June - Sunday 27 August 2000 (Taylor 2003); a day (48) and a week "
        "(336) are its seasons",
        times=regular_times(start, 1800.0, len(y)),
    )


def _co2() -> Series:
    from statsmodels.datasets import co2 as bundled

    frame = bundled.load_pandas().data
    # 59 weeks are missing; interpolate linearly in time so the series stays regular.
    co2 = frame["co2"].interpolate(method="linear", limit_direction="both")
    start = pd.Timestamp(frame.index[0], tz="UTC").timestamp()
    return Series(
        name="co2",
        values=co2.to_numpy(dtype=np.float64)[:, None],
        features=["co2_ppm"],
        target="co2_ppm",
        frequency=7 * 86400.0,
        seasons=(52,),
        source="statsmodels.datasets.co2: weekly atmospheric CO2 at Mauna Loa, 1958-2001 "
        "(missing weeks linearly interpolated)",
        times=regular_times(start, 7 * 86400.0, len(co2)),
    )


def _sunspots() -> Series:
    from statsmodels.datasets import sunspots as bundled

    frame = bundled.load_pandas().data
    year = 365.25 * 86400.0
    first = float(frame["YEAR"].iloc[0])
    return Series(
        name="sunspots",
        values=frame["SUNACTIVITY"].to_numpy(dtype=np.float64)[:, None],
        features=["sunactivity"],
        target="sunactivity",
        frequency=year,
        seasons=(11,),
        source="statsmodels.datasets.sunspots: yearly sunspot numbers, 1700-2008",
        times=regular_times((first - 1970.0) * year, year, len(frame)),
    )


BUILTIN: dict[str, Callable[[], Series]] = {
    "taylor": _taylor,
    "co2": _co2,
    "sunspots": _sunspots,
}


def load(
    spec: str,
    *,
    timestamp: str = "timestamp",
    target: str | None = None,
    features: Sequence[str] | None = None,
    seasons: Sequence[int] | None = None,
    timestamp_format: str | None = None,
    frequency: float | None = None,
    gaps: GapPolicy = "refuse",
) -> Series:
    """A bundled data set by name, or a CSV / Parquet file by path.

    ``seasons`` overrides a bundled set's own periods; the other options apply to files
    (see :func:`models.table.load_table`).
    """
    if spec in BUILTIN:
        series = BUILTIN[spec]()
        if seasons is not None:
            series = replace(series, seasons=parse_seasons(seasons))
        return series
    path = Path(spec)
    if path.suffix.lower() in (".csv", ".parquet") and path.exists():
        from models.table import load_table

        return load_table(
            path,
            timestamp=timestamp,
            target=target,
            features=features,
            seasons=seasons or (),
            timestamp_format=timestamp_format,
            frequency=frequency,
            gaps=gaps,
        )
    raise ValueError(f"unknown data set {spec!r}: use one of {sorted(BUILTIN)} or a .csv/.parquet")
