"""The streams of one model in a batch, as columns, while the batch applies to them.

A ``Streams`` holds, per stream, what its record says (state row, forecast, seq, last time,
the kept raw history) in arrays, takes the model's answers for any subset of them
(``apply``), and finally writes the next records of the streams that changed as blocks of
the record codec (``next_records``): every stream is read once and written once per batch,
however many calls its rows took.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from service.core.answers import Model
from service.runtime import ModelRuntime
from service.state.record import (
    FLAG_FORECAST,
    FLAG_SCORE,
    FORMAT_VERSION,
    MAGIC,
    NO_TIMESTAMP,
    Block,
    Layout,
    new_nonces,
)

FloatArray = npt.NDArray[np.float32]
TimeArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: The record's last-anomaly fields, the columns of ``Streams.anomaly`` in this order.
ANOMALY_FIELDS = ("anomaly_ts", "anomaly_value", "anomaly_position", "anomaly_low", "anomaly_high")


class Streams:
    """``n`` streams served by ``runtime``; row ``i`` of every array is stream ``i``."""

    def __init__(
        self,
        runtime: ModelRuntime,
        *,
        incarnation: npt.NDArray[np.uint64],
        seq: IntArray,
        last_ts: TimeArray,
        state: FloatArray,
        forecast: FloatArray | None,
        history_ts: TimeArray | None,
        history_values: FloatArray | None,
        history_length: int,
        rebuilt: bool = False,
        tail: Block | None = None,
    ) -> None:
        n = len(seq)
        m = runtime.manifest
        self.runtime = runtime
        self.model = Model.of(runtime)
        self.incarnation = incarnation
        self.seq = seq
        self.last_ts = last_ts
        self.state = np.array(state, dtype=np.float32)  # a writable copy
        self.forecast = np.zeros((n, m.horizon, len(m.quantiles)), dtype=np.float32)
        self.has_forecast = np.zeros(n, dtype=bool)
        if forecast is not None:
            self.forecast[:] = forecast
            self.has_forecast[:] = True
        self._keep = history_length
        self._old_ts = history_ts  # [n, R] or None
        self._old_values = history_values  # [n, R, F] or None
        #: The last raw reading each stream holds (for carrying values over a gap).
        self.last_values = np.zeros((n, runtime.n_features), dtype=np.float32)
        self.has_last = np.zeros(n, dtype=bool)
        if history_values is not None and history_values.shape[1]:
            self.last_values[:] = history_values[:, -1]
            self.has_last[:] = True
        self.fed = np.zeros(n, dtype=np.int64)
        self.rebuilt = np.full(n, rebuilt)
        #: Whether the forecast held was issued to a client (a replayed one was not).
        self.issued = self.has_forecast & ~self.rebuilt
        self._score_tail(n, tail)
        #: Anomalous readings found by this batch's scoring, by stream: their times.
        self.flagged: dict[int, list[float]] = {}
        self._log: list[tuple[IntArray, IntArray, TimeArray, FloatArray]] = []

    def __len__(self) -> int:
        return len(self.seq)

    @classmethod
    def of_block(
        cls, runtime: ModelRuntime, block: Block, layout: Layout, history_length: int
    ) -> Streams:
        """The streams whose records are the rows of ``block`` (one layout)."""
        return cls(
            runtime,
            incarnation=block["incarnation"],
            seq=block["seq"].astype(np.int64),
            last_ts=block["last_ts"].astype(np.float64),
            state=block["state"],
            forecast=block["forecast"] if layout.horizon else None,
            history_ts=block["history_ts"] if layout.rows else None,
            history_values=block["history_values"] if layout.rows else None,
            history_length=history_length,
            tail=block if layout.scored else None,
        )

    def _score_tail(self, n: int, tail: Block | None) -> None:
        """What the record's score tail holds (a format 1 record: the last target value from
        its history, if it kept one, and no anomaly)."""
        self.target = self.runtime.manifest.features.index(self.runtime.manifest.target)
        if tail is not None:
            self.last_target = tail["last_target"].astype(np.float32)
            self.anomaly = np.stack(
                [tail[name].astype(np.float64) for name in ANOMALY_FIELDS], axis=1
            )
            self.anomaly_bits = tail["anomaly_bits"].astype(np.uint64)
            return
        self.anomaly_bits = np.zeros(n, dtype=np.uint64)
        self.last_target = np.full(n, np.nan, dtype=np.float32)
        self.last_target[self.has_last] = self.last_values[self.has_last, self.target]
        self.anomaly = np.full((n, len(ANOMALY_FIELDS)), np.nan)
        self.anomaly[:, 0] = NO_TIMESTAMP

    def last_row(self, i: int) -> FloatArray | None:
        return self.last_values[i] if self.has_last[i] else None

    def apply(
        self,
        slots: IntArray,
        counts: IntArray,
        ts: TimeArray,
        values: FloatArray,
        forecast: FloatArray,
        state: FloatArray,
    ) -> None:
        """Streams ``slots`` were fed ``counts`` rows each (``ts``/``values``, in order):
        their new forecasts [n, H, Q] and states [n, S]."""
        self.state[slots] = state
        self.forecast[slots] = forecast
        self.has_forecast[slots] = True
        self.seq[slots] += counts
        ends = np.cumsum(counts) - 1
        self.last_ts[slots] = ts[ends]
        self.last_target[slots] = values[ends, self.target]
        self.issued[slots] = True
        self._shift_flags(slots, counts, ts, ends)
        self.fed[slots] += counts
        if self._keep > 0:
            self.last_values[slots] = values[ends]
            self.has_last[slots] = True
            self._log.append((slots, counts, ts, values))

    def _shift_flags(
        self, slots: IntArray, counts: IntArray, ts: TimeArray, ends: IntArray
    ) -> None:
        """Make room in each stream's anomaly bits for the rows just fed; set the anomalies'."""
        wide = counts >= 64
        shift = np.where(wide, 0, counts).astype(np.uint64)
        self.anomaly_bits[slots] = np.where(wide, 0, self.anomaly_bits[slots] << shift)
        if not self.flagged:
            return
        for k, slot in enumerate(slots.tolist()):
            times = self.flagged.get(slot)
            if times is None:
                continue
            end = int(ends[k])
            fed = ts[end - int(counts[k]) + 1 : end + 1]
            for at in times:
                age = len(fed) - 1 - int(np.searchsorted(fed, at))  # 0: the newest row fed
                if 0 <= age < 64 and at in fed:
                    self.anomaly_bits[slot] |= np.uint64(1) << np.uint64(age)

    @property
    def dirty(self) -> IntArray:
        """The streams whose record changes: fed rows, or rebuilt under new weights."""
        return np.flatnonzero((self.fed > 0) | self.rebuilt)

    def next_records(self, slots: IntArray) -> list[tuple[IntArray, Block]]:
        """The next records of ``slots`` (dirty streams), as blocks: one per history length
        and number of rows fed (streams that share both share every array shape)."""
        old_rows = 0 if self._old_ts is None else self._old_ts.shape[1]
        fed = self.fed[slots] if self._keep > 0 else np.zeros(len(slots), dtype=np.int64)
        if self._keep > 0:
            rows = np.where(fed > 0, np.minimum(old_rows + fed, self._keep), old_rows)
        else:
            rows = np.full(len(slots), old_rows)
        appended = self._appended()
        out: list[tuple[IntArray, Block]] = []
        shapes = rows * (int(fed.max(initial=0)) + 1) + fed
        for shape in np.unique(shapes).tolist():
            mine = shapes == shape
            chosen = slots[mine]
            count, added = int(rows[mine][0]), int(fed[mine][0])
            out.append((chosen, self._block(chosen, count, added, old_rows, appended)))
        return out

    def _appended(self) -> tuple[TimeArray, FloatArray, IntArray] | None:
        """Every stream's fed rows in order (for the history): times, values, and the index
        of each stream's first row."""
        if not self._log:
            return None
        first = np.zeros(len(self.seq), dtype=np.int64)
        np.cumsum(self.fed[:-1], out=first[1:])
        if len(self._log) == 1:
            slots, _, ts, values = self._log[0]
            if len(slots) == len(self.seq) and (np.diff(slots) == 1).all():
                return ts, values, first  # every stream once, in order: nothing to sort
        slot_of = np.concatenate([np.repeat(s, c) for s, c, _, _ in self._log])
        order = np.argsort(slot_of, kind="stable")
        ts = np.concatenate([t for _, _, t, _ in self._log])[order]
        values = np.concatenate([v for _, _, _, v in self._log])[order]
        return ts, values, first

    def _block(
        self,
        slots: IntArray,
        rows: int,
        added: int,
        old_rows: int,
        appended: tuple[TimeArray, FloatArray, IntArray] | None,
    ) -> Block:
        runtime, m = self.runtime, self.runtime.manifest
        name = m.name.encode("utf-8")
        width = runtime.n_features if rows else 0
        layout = Layout(len(name), runtime.state_size, m.horizon, len(m.quantiles), rows, width)
        n = len(slots)
        block = np.zeros(n, dtype=layout.dtype)
        block["magic"] = MAGIC
        block["format"] = FORMAT_VERSION
        block["flags"] = FLAG_FORECAST | FLAG_SCORE
        block["incarnation"] = self.incarnation[slots]
        block["seq"] = self.seq[slots]
        block["last_ts"] = self.last_ts[slots]
        block["fingerprint"] = np.void(bytes.fromhex(runtime.fingerprint))
        block["version"] = runtime.version
        block["name_len"] = layout.name_len
        block["horizon"] = layout.horizon
        block["quantiles"] = layout.quantiles
        block["state_size"] = layout.state_size
        block["nonce"] = new_nonces(n)
        block["rows"] = rows
        block["width"] = width
        block["name"] = np.void(name)
        block["state"] = self.state[slots]
        block["forecast"] = self.forecast[slots]
        block["last_target"] = self.last_target[slots]
        for k, field in enumerate(ANOMALY_FIELDS):
            block[field] = self.anomaly[slots, k]
        block["anomaly_bits"] = self.anomaly_bits[slots]
        if rows:
            kept = rows - min(rows, added)  # rows of the old history still kept
            if kept:
                assert self._old_ts is not None
                assert self._old_values is not None
                block["history_ts"][:, :kept] = self._old_ts[slots, old_rows - kept :]
                block["history_values"][:, :kept] = self._old_values[slots, old_rows - kept :]
            if kept < rows:
                assert appended is not None
                new_ts, new_values, first = appended
                take = rows - kept  # the last ``take`` of the rows each stream was fed
                index = (first[slots] + added - take)[:, None] + np.arange(take)[None, :]
                block["history_ts"][:, kept:] = new_ts[index]
                block["history_values"][:, kept:] = new_values[index]
        return block
