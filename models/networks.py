"""The four network kinds, each with the service's contract as its ``forward``.

``forward(x [B, T, F] raw, state [B, S][, time [B, T]]) -> (forecast [B, H, Q] raw, state_out)``.

Everything the service must not know lives in here: normalisation (constants fitted on the
training split, stored as buffers so they are exported into the graph), the packing of the
state into one flat row, the mlp's sliding window, the seasonal reference, the calendar
features, the quantile head and its calibration. Because the forecast is a function of the
state after the last observation only, feeding a series one step at a time with carried state
gives the same forecast as one call over the whole series.

Two things let a network see seasons longer than what it is trained on at once:

- **A seasonal reference.** With ``reference = m`` (the longest season, a week of half-hourly
  demand is 336), the state row ends with the last m raw target values, shifted inside the
  graph. The network forecasts the difference from the value one season before each target
  (the seasonal naive of period m) and reads each step's difference from one season earlier,
  so what it must learn is the correction to last week, not the week itself. Without it
  (``reference = 0``) it forecasts the change from the last observation.
- **Calendar features.** With calendar periods (a day, a week, a year; those the data's
  frequency and span can show), the graph takes the contract's optional ``time`` input (float64
  epoch seconds) and computes the sine and cosine of each period's phase itself, in float64
  before casting, so a stream's time of day and day of week reach the network from its own
  timestamps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, NotRequired, TypedDict, Unpack

import torch
from torch import Tensor, nn

Kind = Literal["lstm", "gru", "rnn", "mlp"]
KINDS: tuple[Kind, ...] = ("lstm", "gru", "rnn", "mlp")

#: Calendar periods a network may read from ``time``, in seconds.
CALENDAR_PERIODS: dict[str, float] = {
    "day": 86_400.0,
    "week": 7 * 86_400.0,
    "year": 365.2425 * 86_400.0,
}


def calendar_periods(frequency: float, span: float) -> tuple[float, ...]:
    """The calendar periods worth reading for data every ``frequency`` s over ``span`` s.

    A period needs at least four observations per cycle (else its phase barely moves) and two
    whole cycles in the training data (else the network cannot tell it from a trend).
    """
    return tuple(p for p in CALENDAR_PERIODS.values() if 4 * frequency <= p and span >= 2 * p)


class CommonArguments(TypedDict):
    """What every kind is built from, whatever its core: passed through to :class:`Forecaster`.

    One typed list, so the kinds and :func:`build` pass it on as ``**common`` instead of
    repeating its parameters each.
    """

    n_features: int
    target_index: int
    horizon: int
    quantiles: Sequence[float]
    mean: NotRequired[Sequence[float] | None]
    std: NotRequired[Sequence[float] | None]
    reference: NotRequired[int]
    reference_std: NotRequired[float | None]
    calendar: NotRequired[Sequence[float]]


def _offset_matrix(quantiles: Sequence[float]) -> Tensor:
    """Matrix A such that ``median + softplus(raw) @ A`` is non-decreasing across quantiles.

    Quantile q above the median is the median plus the cumulative sum of positive offsets of
    the levels between them; below the median, minus. The median column of A is zero, so the
    median is the raw output itself. A MatMul exports to ONNX more simply than flips and
    cumulative sums.
    """
    levels = list(quantiles)
    m = levels.index(0.5)
    q = len(levels)
    a = torch.zeros(q, q)
    for col in range(q):
        if col < m:
            a[col:m, col] = -1.0
        elif col > m:
            a[m + 1 : col + 1, col] = 1.0
    return a


class Forecaster(nn.Module):
    """Shared part of every kind: normalisation, reference, calendar, head, calibration.

    The head predicts, in units of ``scale``, the target's difference from ``base``: the last
    observation (no reference) or the value one season before each target (reference m). So
    an untrained network starts near the naive or seasonal naive forecast.
    """

    kind: Kind
    mean: Tensor
    std: Tensor
    offsets: Tensor
    scale: Tensor
    periods: Tensor
    calibration: Tensor

    def __init__(
        self,
        *,
        n_features: int,
        target_index: int,
        horizon: int,
        quantiles: Sequence[float],
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        reference: int = 0,
        reference_std: float | None = None,
        calendar: Sequence[float] = (),
        width: int,
    ) -> None:
        super().__init__()
        if not 0 <= target_index < n_features:
            raise ValueError(f"target_index {target_index} outside 0..{n_features - 1}")
        if 0.5 not in quantiles or sorted(set(quantiles)) != list(quantiles):
            raise ValueError("quantiles must be strictly increasing and include 0.5")
        if reference and reference < horizon:
            raise ValueError(f"a seasonal reference of {reference} steps is shorter than H")
        self.n_features = n_features
        self.target_index = target_index
        self.horizon = horizon
        self.quantiles = [float(q) for q in quantiles]
        self.reference = int(reference)
        mean_t = torch.zeros(n_features) if mean is None else torch.tensor(list(mean))
        std_t = torch.ones(n_features) if std is None else torch.tensor(list(std))
        if mean_t.shape != (n_features,) or std_t.shape != (n_features,):
            raise ValueError("mean and std need one value per feature")
        if not bool(torch.all(std_t > 0)):
            raise ValueError("std must be positive")
        scale = std_t[target_index] if reference_std is None else torch.tensor(reference_std)
        if not float(scale) > 0:
            raise ValueError("reference_std must be positive")
        # Copies: a buffer sharing storage with another would be overwritten by its load.
        self.register_buffer("mean", mean_t.float().clone())
        self.register_buffer("std", std_t.float().clone())
        self.register_buffer("scale", scale.float().reshape(()).clone())
        self.register_buffer("offsets", _offset_matrix(self.quantiles))
        self.register_buffer("periods", torch.tensor(list(calendar), dtype=torch.float64))
        self.register_buffer("calibration", torch.zeros(horizon, len(self.quantiles)))
        self.head = nn.Linear(width, horizon * len(self.quantiles))

    @property
    def n_quantiles(self) -> int:
        return len(self.quantiles)

    @property
    def takes_time(self) -> bool:
        """The graph has the contract's ``time`` input (it reads calendar features)."""
        return len(self.periods) > 0

    @property
    def n_calendar(self) -> int:
        return 2 * len(self.periods)

    @property
    def state_size(self) -> int:
        raise NotImplementedError

    @property
    def context(self) -> int:
        """Observations before a sub-sequence that :meth:`state_from_history` needs."""
        raise NotImplementedError

    def initial_state(self) -> Tensor:
        """The state row of a fresh stream."""
        raise NotImplementedError

    def state_from_history(self, history: Tensor) -> Tensor:
        """The state rows [B, S] after ``history`` [B, context, F], recurrent part at zero.

        Training starts each sub-sequence here: its reference and last observation are the
        real readings before it (the state carried across the cut), only h (and c) start
        fresh and warm up during the burn-in.
        """
        raise NotImplementedError

    def hyper_parameters(self) -> dict[str, Any]:
        """Everything :func:`build` needs, besides the data's shapes, to rebuild the network."""
        return {"reference": self.reference, "calendar": [float(p) for p in self.periods]}

    def _normalise(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def _calendar(self, time: Tensor | None, steps: int) -> list[Tensor]:
        """[B, T, 2P] sin and cos of each period's phase, or nothing without periods."""
        if not self.takes_time:
            return []
        if time is None:
            raise ValueError("this network reads each observation's time: pass time [B, T]")
        if time.shape[-1] != steps:
            raise ValueError(f"time has {time.shape[-1]} steps, x has {steps}")
        cycles = time.to(torch.float64).unsqueeze(-1) / self.periods  # float64: epoch seconds
        angle = ((cycles - torch.floor(cycles)) * (2.0 * math.pi)).to(torch.float32)
        return [torch.sin(angle), torch.cos(angle)]

    def _quantiles(self, hidden: Tensor, base: Tensor) -> Tensor:
        """Encodings [..., D] and base forecasts [..., H] to calibrated forecasts [..., H, Q]."""
        raw = self.head(hidden)
        raw = raw.reshape(*raw.shape[:-1], self.horizon, self.n_quantiles)
        median = raw[..., self.quantiles.index(0.5)].unsqueeze(-1)
        z = median + nn.functional.softplus(raw) @ self.offsets
        return self._monotone(base.unsqueeze(-1) + z * self.scale + self.calibration)

    def _monotone(self, out: Tensor) -> Tensor:
        """Quantiles non-decreasing outward from the median again after the calibration."""
        m = self.quantiles.index(0.5)
        columns = [out[..., j] for j in range(self.n_quantiles)]
        for j in range(m + 1, self.n_quantiles):
            columns[j] = torch.maximum(columns[j], columns[j - 1])
        for j in range(m - 1, -1, -1):
            columns[j] = torch.minimum(columns[j], columns[j + 1])
        return torch.stack(columns, dim=-1)

    def forward(
        self, x: Tensor, state: Tensor, time: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """The contract: forecast after the last of the T observations, and the new state."""
        raise NotImplementedError

    def forward_all(self, x: Tensor, state: Tensor, time: Tensor | None = None) -> Tensor:
        """Forecasts after every observation, [B, T, H, Q]: what training and evaluation use."""
        raise NotImplementedError


class RecurrentForecaster(Forecaster):
    """LSTM, GRU or tanh RNN; the state row is h (and c for the LSTM) of every layer, then
    the last raw observation (with ``differences``), then the reference's last m targets.

    With ``differences`` the core also reads each step's change from the previous observation.
    Why: on a trending series (co2) the test levels lie outside the training range, where the
    saturating gates extrapolate badly, while the changes stay in range.
    """

    diff_std: Tensor

    def __init__(
        self,
        kind: Literal["lstm", "gru", "rnn"],
        *,
        hidden: int = 32,
        layers: int = 1,
        differences: bool = False,
        diff_std: Sequence[float] | None = None,
        **common: Unpack[CommonArguments],
    ) -> None:
        super().__init__(width=hidden, **common)
        self.kind = kind
        self.hidden = hidden
        self.layers = layers
        self.differences = differences
        f = self.n_features
        scale = torch.ones(f) if diff_std is None else torch.tensor(list(diff_std))
        if scale.shape != (f,) or not bool(torch.all(scale > 0)):
            raise ValueError("diff_std needs one positive value per feature")
        self.register_buffer("diff_std", scale.float())
        cell: type[nn.Module] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind]
        inputs = f * (2 if differences else 1) + (1 if self.reference else 0) + self.n_calendar
        self.rnn = cell(inputs, hidden, num_layers=layers, batch_first=True)

    @property
    def _recurrent_size(self) -> int:
        per = self.layers * self.hidden
        return 2 * per if self.kind == "lstm" else per

    @property
    def state_size(self) -> int:
        return self._recurrent_size + (self.n_features if self.differences else 0) + self.reference

    @property
    def context(self) -> int:
        return max(self.reference, 1 if self.differences else 0)

    def initial_state(self) -> Tensor:
        parts = [torch.zeros(self._recurrent_size)]
        if self.differences:
            parts.append(self.mean)
        if self.reference:
            parts.append(self.mean[self.target_index].repeat(self.reference))
        return torch.cat(parts)

    def state_from_history(self, history: Tensor) -> Tensor:
        parts = [torch.zeros(history.shape[0], self._recurrent_size)]
        if self.differences:
            parts.append(history[:, -1])
        if self.reference:
            parts.append(history[:, -self.reference :, self.target_index])
        return torch.cat(parts, dim=1)

    def hyper_parameters(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "hidden": self.hidden,
            "layers": self.layers,
            "differences": self.differences,
            **super().hyper_parameters(),
        }

    def _unpack(self, rows: Tensor) -> Tensor:
        """[B, L*D] -> [L, B, D], torch's layout of a recurrent layer's state."""
        return rows.reshape(-1, self.layers, self.hidden).transpose(0, 1).contiguous()

    def _pack(self, h: Tensor) -> Tensor:
        return h.transpose(0, 1).reshape(-1, self.layers * self.hidden)

    def _encode(
        self, x: Tensor, state: Tensor, time: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Encodings [B, T, D], state_out, and the target preceded by the reference buffer."""
        steps = x.shape[1]
        per = self.layers * self.hidden
        at = self._recurrent_size
        inputs = [self._normalise(x)]
        tail: list[Tensor] = []
        if self.differences:
            last = state[:, at : at + self.n_features]  # [B, F] raw
            at += self.n_features
            previous = torch.cat([last.unsqueeze(1), x[:, :-1]], dim=1)
            inputs.append((x - previous) / self.diff_std)
            tail.append(x[:, -1])
        seq = None
        if self.reference:
            m = self.reference
            seq = torch.cat([state[:, at : at + m], x[..., self.target_index]], dim=1)
            inputs.append(((seq[:, m:] - seq[:, :steps]) / self.scale).unsqueeze(-1))
            tail.append(seq[:, -m:].reshape(-1, m))  # the reshape keeps S static in ONNX
        inputs += self._calendar(time, steps)
        core = torch.cat(inputs, dim=-1)
        if self.kind == "lstm":
            h0 = self._unpack(state[:, :per])
            c0 = self._unpack(state[:, per : 2 * per])
            out, (h, c) = self.rnn(core, (h0, c0))
            state_out = torch.cat([self._pack(h), self._pack(c), *tail], dim=1)
        else:
            out, h = self.rnn(core, self._unpack(state[:, :per]))
            state_out = torch.cat([self._pack(h), *tail], dim=1)
        return out, state_out, seq

    def forward(
        self, x: Tensor, state: Tensor, time: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        out, state_out, _ = self._encode(x, state, time)
        if self.reference:
            # The reference's last m targets: the k-th forecast's base is the k-th of them.
            s = self.state_size
            base = state_out[:, s - self.reference : s - self.reference + self.horizon]
        else:
            base = x[:, -1, self.target_index].unsqueeze(-1).expand(-1, self.horizon)
        return self._quantiles(out[:, -1], base), state_out

    def forward_all(self, x: Tensor, state: Tensor, time: Tensor | None = None) -> Tensor:
        out, _, seq = self._encode(x, state, time)
        if seq is not None:
            # Step t (seq index m + t) forecasts seq index m + t + k from seq index t + k.
            base = seq.unfold(1, self.horizon, 1)[:, 1 : x.shape[1] + 1]
        else:
            base = x[..., self.target_index].unsqueeze(-1).expand(-1, -1, self.horizon)
        return self._quantiles(out, base)


class WindowForecaster(Forecaster):
    """Feed-forward net over the last W observations; the state row is that raw window.

    The window slides inside the graph: the new observations are appended to the state's
    window and the last W rows kept. With a reference of m <= W steps, the base of each
    forecast is read from the window itself. A fresh stream starts from the training mean of
    every feature (the manifest's ``initial_state``), so its first W - 1 forecasts see a
    window padded with "average" values; they are rough until W real observations arrived.
    """

    kind: Kind = "mlp"

    def __init__(
        self,
        *,
        window: int = 48,
        hidden: int = 64,
        layers: int = 2,
        **common: Unpack[CommonArguments],
    ) -> None:
        super().__init__(width=hidden, **common)
        if self.reference > window:
            raise ValueError(f"the mlp's window ({window}) is shorter than its reference")
        self.window = window
        self.hidden = hidden
        self.layers = layers
        blocks: list[nn.Module] = []
        width = window * self.n_features + self.n_calendar
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.net = nn.Sequential(*blocks)

    @property
    def state_size(self) -> int:
        return self.window * self.n_features

    @property
    def context(self) -> int:
        return self.window

    def initial_state(self) -> Tensor:
        return self.mean.repeat(self.window)

    def state_from_history(self, history: Tensor) -> Tensor:
        return history[:, -self.window :].reshape(history.shape[0], -1)

    def hyper_parameters(self) -> dict[str, Any]:
        return {
            "kind": "mlp",
            "hidden": self.hidden,
            "layers": self.layers,
            "window": self.window,
            **super().hyper_parameters(),
        }

    def _base(self, windows: Tensor) -> Tensor:
        """Base forecasts [..., H] from raw windows [..., W, F]."""
        t = self.target_index
        if self.reference:
            first = self.window - self.reference
            return windows[..., first : first + self.horizon, t]
        return windows[..., -1, t].unsqueeze(-1).expand(*windows.shape[:-2], self.horizon)

    def forward_all(self, x: Tensor, state: Tensor, time: Tensor | None = None) -> Tensor:
        w, f = self.window, self.n_features
        seq = torch.cat([state.reshape(-1, w, f), x], dim=1)  # [B, W + T, F]
        # Every step's window [B, T, W, F]; unfold puts the window axis last.
        windows = seq[:, 1:].unfold(1, w, 1).transpose(2, 3)
        inputs = [self._normalise(windows).flatten(2), *self._calendar(time, x.shape[1])]
        hidden = self.net(torch.cat(inputs, dim=-1))
        return self._quantiles(hidden, self._base(windows))

    def forward(
        self, x: Tensor, state: Tensor, time: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        # Only the last window matters here: skip the others (and keep the graph small).
        w, f = self.window, self.n_features
        seq = torch.cat([state.reshape(-1, w, f), x], dim=1)
        last = seq[:, -w:]
        calendar = [c[:, -1] for c in self._calendar(time, x.shape[1])]
        hidden = self.net(torch.cat([self._normalise(last).flatten(1), *calendar], dim=-1))
        return self._quantiles(hidden, self._base(last)), last.reshape(-1, w * f)


def build(
    kind: Kind,
    *,
    hidden: int = 32,
    layers: int = 1,
    window: int = 48,
    differences: bool = False,
    diff_std: Sequence[float] | None = None,
    **common: Unpack[CommonArguments],
) -> Forecaster:
    """A network of the given kind; ``window`` is for the mlp, ``differences`` for the rest."""
    if kind == "mlp":
        return WindowForecaster(window=window, hidden=hidden, layers=layers, **common)
    if kind in ("lstm", "gru", "rnn"):
        return RecurrentForecaster(
            kind,
            hidden=hidden,
            layers=layers,
            differences=differences,
            diff_std=diff_std,
            **common,
        )
    raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
