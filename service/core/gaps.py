"""Readings that come more than 1.5 model periods apart: how many are missing, and the
policies for them (``accept``, ``reject``, ``forward``, ``median``).

A gap is a step of more than 1.5 periods; it misses round(step / period) - 1 readings. The
first reading of a request has a gap only after one the stream already holds. Every answer
says how many readings were missing before the ones it applied, whatever the policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from service.errors import Conflict, ForecastError, InvalidInput

GapPolicy = Literal["accept", "reject", "forward", "median"]

FloatArray = npt.NDArray[np.float32]
TimeArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def missing_before(ts: TimeArray, previous: TimeArray, period: float) -> IntArray:
    """Readings missing right before each row, given the reading before each (-inf: none)."""
    known = np.isfinite(previous)
    steps = np.where(known, ts - np.where(known, previous, 0.0), 0.0) / period
    return np.where(steps > 1.5, np.rint(steps).astype(np.int64) - 1, 0)


def refusal(
    policy: GapPolicy, missing: IntArray, period: float, max_gap: int, offset: int
) -> ForecastError | None:
    """The error a request's fresh rows get under ``policy``, or None if they may apply.

    ``accept`` never refuses; a gap longer than ``max_gap`` needs the stream re-warmed (409)
    under every other policy; ``reject`` refuses any gap (422). ``offset`` is the index of
    the first fresh row in the request, for the error's field.
    """
    if policy == "accept":
        return None
    if int(missing.max()) > max_gap:
        row = int(np.argmax(missing > max_gap))
        return Conflict(
            f"{int(missing[row])} readings are missing, more than "
            f"max_gap_steps={max_gap}; re-warm the stream with PUT and a history",
            field=f"observations[{offset + row}].timestamp",
        )
    if policy == "reject":
        row = int(np.argmax(missing > 0))
        return InvalidInput(
            f"{int(missing[row])} reading(s) missing before this one (one every "
            f"{period:g} s); send them, or re-warm the stream",
            field=f"observations[{offset + row}].timestamp",
        )
    return None


def fill_forward(
    ts: TimeArray,
    values: FloatArray,
    missing: IntArray,
    last_ts: float,
    last_values: FloatArray | None,
    period: float,
    offset: int,
) -> tuple[TimeArray, FloatArray]:
    """The rows with each missing reading inserted as a copy of the last one before it.

    No model call is needed, so these rows are fed like any others.
    """
    out_ts: list[float] = []
    out_values: list[FloatArray] = []
    for j in range(len(ts)):
        gap = int(missing[j])
        if gap:
            source = values[j - 1] if j else last_values
            if source is None:
                raise Conflict(
                    "cannot fill the gap forward: the stream keeps no history "
                    "(history_length=0); re-warm it with PUT",
                    field=f"observations[{offset + j}].timestamp",
                )
            base = float(ts[j - 1]) if j else last_ts
            out_ts.extend(base + k * period for k in range(1, gap + 1))
            out_values.extend([source] * gap)
        out_ts.append(float(ts[j]))
        out_values.append(values[j])
    return np.array(out_ts, dtype=np.float64), np.stack(out_values).astype(np.float32)


@dataclass(frozen=True, slots=True)
class Feed:
    """One model call's rows for one stream: ``fill`` rows made from the forecast the stream
    holds when the call starts (the median in the target column, ``carried`` in the others),
    then real rows."""

    fill_ts: TimeArray  # [fill]
    carried: FloatArray | None  # [F], with fill rows
    ts: TimeArray  # [k]
    values: FloatArray  # [k, F]

    @property
    def fill(self) -> int:
        return len(self.fill_ts)

    def rows(self, forecast: FloatArray | None, target: int, median: int) -> FloatArray:
        """The call's input rows [fill + k, F], the filled ones from ``forecast`` [H, Q]."""
        if not self.fill:
            return self.values
        assert forecast is not None
        assert self.carried is not None
        filled = np.repeat(self.carried[None], self.fill, axis=0)
        filled[:, target] = forecast[: self.fill, median]
        return np.concatenate((filled, self.values)).astype(np.float32, copy=False)

    @property
    def times(self) -> TimeArray:
        return np.concatenate((self.fill_ts, self.ts)) if self.fill else self.ts


def median_feeds(
    ts: TimeArray,
    values: FloatArray,
    missing: IntArray,
    *,
    last_ts: float,
    last_values: FloatArray | None,
    has_forecast: bool,
    horizon: int,
    period: float,
    offset: int,
) -> list[Feed]:
    """The calls that apply fresh rows with gaps, each gap filled from the model's median.

    The k-th missing reading after a known one gets, in the target column, step k of the
    median forecast made from the state right before the gap, and the known reading's values
    in the other columns (nothing forecasts them). A gap longer than the horizon H is rolled
    out: its first H filled rows are fed, and the forecast after them fills the next H. So
    the rows before a gap must run before it is filled: one call per gap and per H filled.
    """
    width = values.shape[1]
    feeds: list[Feed] = []
    fill_ts: TimeArray = np.empty(0)
    carried: FloatArray | None = None
    real: list[int] = []
    known = last_values

    def close() -> None:
        nonlocal fill_ts, carried, real
        if len(fill_ts) or real:
            feeds.append(Feed(fill_ts, carried, ts[real], values[real]))
        fill_ts, carried, real = np.empty(0), None, []

    for j in range(len(ts)):
        gap = int(missing[j])
        if gap:
            field = f"observations[{offset + j}].timestamp"
            close()
            if not feeds and not has_forecast:
                raise Conflict(
                    "cannot fill the gap from the model's forecast: the stream holds none; "
                    "re-warm it with PUT and a history",
                    field=field,
                )
            if known is None and width > 1:
                raise Conflict(
                    "cannot carry the other features over the gap: the stream keeps no "
                    "history (history_length=0); re-warm it with PUT",
                    field=field,
                )
            source = np.zeros(width, np.float32) if known is None else known
            base = float(ts[j - 1]) if j else last_ts
            for start in range(0, gap, horizon):
                close()
                count = min(horizon, gap - start)
                fill_ts = base + period * np.arange(start + 1, start + count + 1, dtype=np.float64)
                carried = source
        real.append(j)
        known = values[j]
    close()
    return feeds
