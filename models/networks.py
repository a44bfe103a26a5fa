"""The four forecaster kinds, each with the service's contract as its ``forward``.

``forward(x [B, T, F] raw, state [B, S]) -> (forecast [B, H, Q] raw, state_out [B, S])``.

Everything the service must not know lives in here: normalisation (constants fitted on the
training split, stored as buffers so they are exported into the graph), the packing of
recurrent state into one flat row, the mlp's sliding window, and the quantile head. Because
the forecast is a function of the state after the last observation only, feeding a series one
step at a time with carried state gives the same forecast as one call over the whole series.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NotRequired, TypedDict, Unpack

import torch
from torch import Tensor, nn

Kind = Literal["lstm", "gru", "rnn", "mlp"]
KINDS: tuple[Kind, ...] = ("lstm", "gru", "rnn", "mlp")


class CommonArguments(TypedDict):
    """What every kind is built from, whatever its core: passed through to :class:`Forecaster`.

    One typed list, so the kinds and :func:`build` pass it on as ``**common`` instead of
    repeating six parameters each.
    """

    n_features: int
    target_index: int
    horizon: int
    quantiles: Sequence[float]
    mean: NotRequired[Sequence[float] | None]
    std: NotRequired[Sequence[float] | None]


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
    """Shared part of every kind: normalisation, head, and the contract's ``forward``.

    The head predicts the target's change from the last observation in normalised units, so
    an untrained network starts near the naive forecast and trends do not leave the range
    seen in training.
    """

    kind: Kind
    mean: Tensor
    std: Tensor
    offsets: Tensor

    def __init__(
        self,
        *,
        n_features: int,
        target_index: int,
        horizon: int,
        quantiles: Sequence[float],
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        width: int,
    ) -> None:
        super().__init__()
        if not 0 <= target_index < n_features:
            raise ValueError(f"target_index {target_index} outside 0..{n_features - 1}")
        if 0.5 not in quantiles or sorted(set(quantiles)) != list(quantiles):
            raise ValueError("quantiles must be strictly increasing and include 0.5")
        self.n_features = n_features
        self.target_index = target_index
        self.horizon = horizon
        self.quantiles = [float(q) for q in quantiles]
        mean_t = torch.zeros(n_features) if mean is None else torch.tensor(list(mean))
        std_t = torch.ones(n_features) if std is None else torch.tensor(list(std))
        if mean_t.shape != (n_features,) or std_t.shape != (n_features,):
            raise ValueError("mean and std need one value per feature")
        if not bool(torch.all(std_t > 0)):
            raise ValueError("std must be positive")
        self.register_buffer("mean", mean_t.float())
        self.register_buffer("std", std_t.float())
        self.register_buffer("offsets", _offset_matrix(self.quantiles))
        self.head = nn.Linear(width, horizon * len(self.quantiles))

    @property
    def n_quantiles(self) -> int:
        return len(self.quantiles)

    @property
    def state_size(self) -> int:
        raise NotImplementedError

    def initial_state(self) -> Tensor:
        """The state row of a fresh stream (zeros for the recurrent kinds)."""
        return torch.zeros(self.state_size)

    def hyper_parameters(self) -> dict[str, int | float | str]:
        raise NotImplementedError

    def _normalise(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def _quantiles(self, hidden: Tensor, last_z: Tensor) -> Tensor:
        """Map encodings [..., D] and last normalised target [...] to raw forecasts [..., H, Q]."""
        raw = self.head(hidden)
        raw = raw.reshape(*raw.shape[:-1], self.horizon, self.n_quantiles)
        median = raw[..., self.quantiles.index(0.5)].unsqueeze(-1)
        z = median + nn.functional.softplus(raw) @ self.offsets + last_z[..., None, None]
        t = self.target_index
        out: Tensor = z * self.std[t] + self.mean[t]
        return out

    def encode(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Run the observations: encodings [B, T, D], normalised target [B, T], state_out."""
        raise NotImplementedError

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """The contract: forecast after the last of the T observations, and the new state."""
        hidden, target_z, state_out = self.encode(x, state)
        return self._quantiles(hidden[:, -1], target_z[:, -1]), state_out

    def forward_all(self, x: Tensor, state: Tensor) -> Tensor:
        """Forecasts after every observation, [B, T, H, Q]: what training and evaluation use."""
        hidden, target_z, _ = self.encode(x, state)
        return self._quantiles(hidden, target_z)


class RecurrentForecaster(Forecaster):
    """LSTM, GRU or tanh RNN; the state row is h (and c for the LSTM) of every layer.

    With ``differences`` the core also reads each step's change from the previous
    observation, so the state row ends with the last raw observation (F values; a fresh
    stream starts from the training mean there). Why: on a trending series (co2) the test
    levels lie outside the training range, where the saturating gates extrapolate badly,
    while the changes stay in range.
    """

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
        inputs = 2 * f if differences else f
        self.rnn = cell(inputs, hidden, num_layers=layers, batch_first=True)

    diff_std: Tensor

    @property
    def _recurrent_size(self) -> int:
        per = self.layers * self.hidden
        return 2 * per if self.kind == "lstm" else per

    @property
    def state_size(self) -> int:
        return self._recurrent_size + (self.n_features if self.differences else 0)

    def initial_state(self) -> Tensor:
        zeros = torch.zeros(self._recurrent_size)
        return torch.cat([zeros, self.mean]) if self.differences else zeros

    def hyper_parameters(self) -> dict[str, int | float | str]:
        return {"hidden": self.hidden, "layers": self.layers, "differences": self.differences}

    def _unpack(self, rows: Tensor) -> Tensor:
        """[B, L*D] -> [L, B, D], torch's layout of a recurrent layer's state."""
        return rows.reshape(-1, self.layers, self.hidden).transpose(0, 1).contiguous()

    def _pack(self, h: Tensor) -> Tensor:
        return h.transpose(0, 1).reshape(-1, self.layers * self.hidden)

    def encode(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        z = self._normalise(x)
        per = self.layers * self.hidden
        inputs = z
        tail: list[Tensor] = []
        if self.differences:
            last = state[:, self._recurrent_size :]  # [B, F] raw
            previous = torch.cat([last.unsqueeze(1), x[:, :-1]], dim=1)
            inputs = torch.cat([z, (x - previous) / self.diff_std], dim=-1)
            tail = [x[:, -1]]
        if self.kind == "lstm":
            h0 = self._unpack(state[:, :per])
            c0 = self._unpack(state[:, per : 2 * per])
            out, (h, c) = self.rnn(inputs, (h0, c0))
            state_out = torch.cat([self._pack(h), self._pack(c), *tail], dim=1)
        else:
            out, h = self.rnn(inputs, self._unpack(state[:, :per]))
            state_out = torch.cat([self._pack(h), *tail], dim=1)
        return out, z[..., self.target_index], state_out


class WindowForecaster(Forecaster):
    """Feed-forward net over the last W observations; the state row is that raw window.

    The window slides inside the graph: the new observations are appended to the state's
    window and the last W rows kept. A fresh stream starts from the training mean of every
    feature (the manifest's ``initial_state``), which normalises to zero, so the first W - 1
    forecasts see a window padded with "average" values rather than with zeros in raw units;
    they are rough until W real observations have arrived.
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
        self.window = window
        self.hidden = hidden
        self.layers = layers
        blocks: list[nn.Module] = []
        width = window * self.n_features
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.net = nn.Sequential(*blocks)

    @property
    def state_size(self) -> int:
        return self.window * self.n_features

    def initial_state(self) -> Tensor:
        return self.mean.repeat(self.window)

    def hyper_parameters(self) -> dict[str, int | float | str]:
        return {"hidden": self.hidden, "layers": self.layers, "window": self.window}

    def encode(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        w, f = self.window, self.n_features
        seq = torch.cat([state.reshape(-1, w, f), x], dim=1)  # [B, W + T, F]
        # Every step's window [B, T, W, F]; unfold puts the window axis last.
        windows = seq[:, 1:].unfold(1, w, 1).transpose(2, 3)
        z = self._normalise(windows)
        hidden = self.net(z.flatten(2))
        state_out = seq[:, -w:].reshape(-1, w * f)
        return hidden, z[:, :, -1, self.target_index], state_out

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        # Only the last window matters here: skip the others (and keep the graph small).
        w, f = self.window, self.n_features
        seq = torch.cat([state.reshape(-1, w, f), x], dim=1)
        last = seq[:, -w:]
        z = self._normalise(last)
        hidden = self.net(z.flatten(1))
        return self._quantiles(hidden, z[:, -1, self.target_index]), last.reshape(-1, w * f)


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
