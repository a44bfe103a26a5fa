"""The per-reading score arithmetic and the record's score tail."""

from __future__ import annotations

import math

import numpy as np

from service.core.scoring import HORIZON_BUCKETS, horizon_bucket, positions
from service.state.record import SCORE_SIZE, StreamRecord

TAUS = np.array([0.1, 0.5, 0.9], dtype=np.float32)


def test_positions_interpolate_between_quantiles_and_clip_outside() -> None:
    q = np.tile(np.array([[-1.0, 0.0, 1.0]], dtype=np.float32), (6, 1))
    actual = np.array([-5.0, -1.0, -0.5, 0.0, 0.5, 3.0], dtype=np.float32)
    np.testing.assert_allclose(positions(q, TAUS, actual), [0.0, 0.1, 0.3, 0.5, 0.7, 1.0])


def test_positions_of_tied_quantiles_stay_in_range() -> None:
    q = np.zeros((2, 3), dtype=np.float32)
    got = positions(q, TAUS, np.array([0.0, 1e-3], dtype=np.float32))
    assert ((got >= 0) & (got <= 1)).all()
    assert got[1] == 1.0


def test_horizon_buckets_are_the_labelled_ranges() -> None:
    steps = np.array([1, 2, 6, 7, 24, 25, 400])
    labels = [HORIZON_BUCKETS[b][1] for b in horizon_bucket(steps).tolist()]
    assert labels == ["1", "2-6", "2-6", "7-24", "7-24", "25+", "25+"]


def test_the_score_tail_round_trips_and_costs_its_size() -> None:
    base = StreamRecord(
        "m", 1, bytes(32).hex(), 1, 2, 3.0, np.zeros(2, dtype=np.float32),
        np.zeros((4, 3), dtype=np.float32),
    )  # fmt: skip
    scored = StreamRecord(
        "m", 1, bytes(32).hex(), 1, 2, 3.0, np.zeros(2, dtype=np.float32),
        np.zeros((4, 3), dtype=np.float32), last_target=1.5, anomaly_ts=9.0,
        anomaly_value=7.0, anomaly_position=1.0, anomaly_low=-1.0, anomaly_high=1.0,
        anomaly_bits=0b101,
    )  # fmt: skip
    assert len(scored.encode()) == len(base.encode()) + SCORE_SIZE
    back = StreamRecord.decode(scored.encode())
    assert (back.last_target, back.anomaly_ts, back.anomaly_value) == (1.5, 9.0, 7.0)
    assert (back.anomaly_low, back.anomaly_high, back.anomaly_bits) == (-1.0, 1.0, 0b101)
    plain = StreamRecord.decode(base.encode())
    assert math.isnan(plain.last_target)
    assert plain.anomaly_ts == -math.inf
