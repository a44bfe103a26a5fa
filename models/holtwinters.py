"""Damped-trend additive Holt-Winters with zero, one or two seasonal periods.

With two periods (a day and a week of half-hourly demand) this is Taylor's double-seasonal
Holt-Winters (J. W. Taylor, "Short-term electricity demand forecasting using double seasonal
exponential smoothing", JORS 54, 2003), including his AR(1) adjustment of the one-step error.
It is a baseline of every comparison and, because its whole memory is a short state row, also
a servable kind (``--kind ets``, :mod:`models.graphs`).

Innovations form, per observation y_t::

    base_t = l + phi * b + sum_i s_i[slot_i(t)]      one-step forecast before the AR term
    e_t    = y_t - base_t
    l      = l + phi * b + alpha * e_t
    b      = phi * b + beta * e_t
    s_i[slot_i(t)] += gamma_i * e_t
    forecast(t + k) = l + (phi + ... + phi^k) * b + sum_i s_i[slot_i(t + k)] + ar^k * e_t

Seasonal terms are kept by *slot*, the observation's position in its season computed from its
timestamp (``round(time / frequency) mod m``), not as a queue. So a stream that starts anywhere
in the week, or skips readings, still reads and updates the terms of the right half-hour, and
a fresh stream starts from the fitted profile of the season, aligned to the calendar.

Parameters are fitted on the training split by minimising the squared one-step error of the
AR-adjusted forecast (L-BFGS-B within the usual bounds), on standardised values (the model is
affine-equivariant, so the fit is the same in any units and better conditioned).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Bounds of (alpha, beta, phi, ar) and of every gamma.
_BOUNDS = {"alpha": (0.0, 1.0), "beta": (0.0, 1.0), "phi": (0.8, 0.98), "ar": (-0.99, 0.99)}
_GAMMA_BOUNDS = (0.0, 1.0)
#: Starting points of the optimiser (the better fit is kept): with and without the AR term.
_STARTS = ({"alpha": 0.1, "beta": 0.01, "phi": 0.95, "ar": 0.0, "gamma": 0.1},
           {"alpha": 0.1, "beta": 0.01, "phi": 0.95, "ar": 0.5, "gamma": 0.1})  # fmt: skip


def grid_index(times: npt.ArrayLike, frequency: float) -> Array:
    """Each time's position on the grid of the model's period: ``floor(time / f + 0.5)``.

    float64 throughout, exactly as the ONNX graph computes it, so both agree on every slot.
    """
    return np.asarray(np.floor(np.asarray(times, dtype=np.float64) / frequency + 0.5))


def slot_of(index: npt.ArrayLike, period: int) -> IntArray:
    """Position in a season of ``period`` steps of each grid index (``index mod period``)."""
    n = np.asarray(index, dtype=np.float64)
    return np.asarray(n - np.floor(n / period) * period).astype(np.int64)


@dataclass(frozen=True)
class State:
    """Level, trend, the last one-step error, and each season's terms by slot."""

    level: float
    trend: float
    error: float
    seasons: tuple[Array, ...]

    def row(self) -> Array:
        """The state row the ONNX graph carries: level, trend, error, then every season."""
        return np.concatenate([[self.level, self.trend, self.error], *self.seasons])

    @classmethod
    def from_row(cls, row: npt.ArrayLike, periods: Sequence[int]) -> State:
        values = np.asarray(row, dtype=np.float64)
        seasons, start = [], 3
        for m in periods:
            seasons.append(values[start : start + m].copy())
            start += m
        return cls(float(values[0]), float(values[1]), float(values[2]), tuple(seasons))


@dataclass(frozen=True)
class HoltWinters:
    """A fitted model: parameters and the state before the first training observation."""

    periods: tuple[int, ...]
    frequency: float
    alpha: float
    beta: float
    phi: float
    gammas: tuple[float, ...]
    ar: float
    initial: State

    @property
    def state_size(self) -> int:
        return 3 + sum(self.periods)

    def parameters(self) -> dict[str, Any]:
        return {
            "periods": list(self.periods),
            "alpha": self.alpha,
            "beta": self.beta,
            "phi": self.phi,
            "gammas": list(self.gammas),
            "ar": self.ar,
        }

    @classmethod
    def fit(cls, y: Array, times: Array, periods: Sequence[int], frequency: float) -> HoltWinters:
        """Fit on ``y`` (the training split) observed at ``times``.

        Raises:
            ValueError: fewer than two seasons of the longest period to initialise from, or
                more than two periods.
        """
        periods = tuple(sorted(int(m) for m in periods if m > 1))
        if len(periods) > 2:
            raise ValueError(f"Holt-Winters takes at most two seasonal periods, not {periods}")
        longest = periods[-1] if periods else 1
        if len(y) < max(2 * longest, 4):
            raise ValueError(
                f"Holt-Winters needs two seasons of {longest} steps to start from; the training "
                f"split has {len(y)} observations"
            )
        mean, std = float(np.mean(y)), float(np.std(y)) or 1.0
        z = (np.asarray(y, dtype=np.float64) - mean) / std
        index = grid_index(times, frequency)
        slots = [slot_of(index, m).tolist() for m in periods]
        start = _initial_state(z, index, periods)
        names = ["alpha", "beta", "phi", "ar"]
        bounds = [_BOUNDS[n] for n in names] + [_GAMMA_BOUNDS] * len(periods)
        values = z.tolist()
        best = None
        for guess in _STARTS:
            x0 = [guess[n] for n in names] + [guess["gamma"]] * len(periods)
            found = minimize(
                _mean_squared_error,
                np.asarray(x0),
                args=(values, slots, start),
                method="L-BFGS-B",
                bounds=bounds,
            )
            if best is None or found.fun < best.fun:
                best = found
        assert best is not None
        alpha, beta, phi, ar, *gammas = (float(v) for v in best.x)
        initial = State(
            level=mean + std * start.level,
            trend=std * start.trend,
            error=0.0,
            seasons=tuple(std * s for s in start.seasons),
        )
        return cls(periods, float(frequency), alpha, beta, phi, tuple(gammas), ar, initial)

    def run(
        self,
        y: Array,
        times: Array,
        *,
        state: State | None = None,
        at: npt.NDArray[np.int64] | None = None,
        horizon: int = 0,
    ) -> tuple[State, Array]:
        """Filter ``y`` from ``state`` (the fitted initial state by default).

        Returns the state after the last observation, and the H-step forecasts [O, H] made
        after each observation index in ``at`` (empty without ``at``).
        """
        start = state or self.initial
        index = grid_index(times, self.frequency)
        slots = [slot_of(index, m).tolist() for m in self.periods]
        seasons = [s.tolist() for s in start.seasons]
        level, trend, error = start.level, start.trend, start.error
        alpha, beta, phi = self.alpha, self.beta, self.phi
        gammas = self.gammas
        wanted = {} if at is None else {int(t): i for i, t in enumerate(at)}
        out = np.empty((len(wanted), horizon))
        steps = np.arange(1, horizon + 1)
        damp = np.cumsum(phi**steps)
        ar_k = self.ar**steps
        for t, value in enumerate(np.asarray(y, dtype=np.float64).tolist()):
            base = level + phi * trend
            for s, slot in zip(seasons, slots, strict=True):
                base += s[slot[t]]
            error = value - base
            level = level + phi * trend + alpha * error
            trend = phi * trend + beta * error
            for s, slot, gamma in zip(seasons, slots, gammas, strict=True):
                s[slot[t]] += gamma * error
            if t in wanted:
                point = level + damp * trend + ar_k * error
                for s, m in zip(seasons, self.periods, strict=True):
                    point = point + np.asarray(s)[slot_of(index[t] + steps, m)]
                out[wanted[t]] = point
        final = State(level, trend, error, tuple(np.asarray(s) for s in seasons))
        return final, out


def _initial_state(z: Array, index: Array, periods: tuple[int, ...]) -> State:
    """A classical decomposition of the first two seasons of the longest period.

    A least-squares line gives the level (one step before the first observation) and the
    trend; each period's terms are the mean residual at each position, shortest period first,
    centred, and stored at the slots of the observations they came from.
    """
    longest = periods[-1] if periods else 1
    k = min(len(z), max(2 * longest, 10))
    j = np.arange(k, dtype=np.float64)
    slope, intercept = np.polyfit(j, z[:k], 1)
    residual = z[:k] - (intercept + slope * j)
    seasons = []
    for m in periods:
        by_position = np.array([residual[p::m].mean() for p in range(m)])
        by_position -= by_position.mean()
        residual = residual - by_position[np.arange(k) % m]
        terms = np.zeros(m)
        terms[slot_of(index[:m], m)] = by_position
        seasons.append(terms)
    return State(float(intercept - slope), float(slope), 0.0, tuple(seasons))


def _mean_squared_error(
    params: Array, y: list[float], slots: list[list[int]], start: State
) -> float:
    """Mean squared one-step error of the AR-adjusted forecast over ``y`` (the objective)."""
    alpha, beta, phi, ar, *gammas = (float(v) for v in params)
    level, trend, error = start.level, start.trend, 0.0
    seasons = [s.tolist() for s in start.seasons]
    total = 0.0
    if len(seasons) == 2:  # the common case, unrolled: this loop is the whole fit's cost
        (s1, s2), (p1, p2), (g1, g2) = seasons, slots, gammas
        for t, value in enumerate(y):
            a, b = p1[t], p2[t]
            base = level + phi * trend + s1[a] + s2[b]
            miss = value - base - ar * error
            total += miss * miss
            error = value - base
            level = level + phi * trend + alpha * error
            trend = phi * trend + beta * error
            s1[a] += g1 * error
            s2[b] += g2 * error
        return total / len(y)
    for t, value in enumerate(y):
        base = level + phi * trend
        for s, slot in zip(seasons, slots, strict=True):
            base += s[slot[t]]
        miss = value - base - ar * error
        total += miss * miss
        error = value - base
        level = level + phi * trend + alpha * error
        trend = phi * trend + beta * error
        for s, slot, gamma in zip(seasons, slots, gammas, strict=True):
            s[slot[t]] += gamma * error
    return total / len(y)
