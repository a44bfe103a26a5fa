"""The msgspec decoding of the hot bodies (service.api.decoders) means what the pydantic
models mean.

For every body, the fast path's readings (or its refusal) equal those of the reference path
(the pydantic models, as Litestar used them); the usual bodies take the fast path; and epoch
times are read to the microsecond as pydantic reads them.
"""

from __future__ import annotations

import functools
import json
import math
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from litestar.exceptions import ClientException, ValidationException
from pydantic import TypeAdapter

from service.api import decoders as bodies
from service.api import epochs
from service.api.requests import BulkObserveRequest, ForecastRequest, ObserveRequest, StreamCreate
from service.errors import ForecastError

T0 = 1_790_000_000
WHERE = ("POST", "/test")
_DATETIME = TypeAdapter(datetime)


def pydantic_epoch(value: float) -> float:
    moment = _DATETIME.validate_python(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(
        st.floats(min_value=0, max_value=7.2e12, allow_nan=False),
        st.integers(min_value=0, max_value=7_200_000_000_000).map(float),
        st.floats(min_value=1e9, max_value=3e9).map(lambda x: round(x, 3)),
        st.floats(min_value=1e12, max_value=3e12).map(lambda x: round(x, 2)),
    )
)
def test_epoch_numbers_are_read_as_pydantic_reads_them(value: float) -> None:
    expected = pydantic_epoch(value)
    assert epochs.epochs([value])[0] == expected  # one alone: plain Python
    assert epochs.epochs([value, value])[1] == expected  # many: numpy


@pytest.mark.parametrize(
    "value",
    [2e10, 2e10 + 0.5, 20_000_000_001.0, 5e-7, 2.5e-6, 1_700_000_000.9999996, -1.25, 9e12, 1e14],
)
def test_epoch_edges(value: float) -> None:
    assert epochs.epochs([value])[0] == pydantic_epoch(value)


def obs(i: int, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"timestamp": T0 + 3600 * i, "values": [1.0 + i, 20.0 - i]}
    row.update(changes)
    return row


#: Observation lists, most refused somewhere, some only by the pydantic models.
OBSERVATIONS: list[Any] = [
    [obs(0)],
    [obs(0), obs(1), obs(2)],
    [obs(0, values=None, value=2.5)],
    [obs(0, timestamp="2026-11-23T08:00:00Z"), obs(1, timestamp="2026-11-23T09:00:00+01:00")],
    [obs(0, timestamp="2026-11-24"), obs(1, timestamp="2026-11-24 10:00:00")],
    [obs(0, timestamp=str(T0))],
    [obs(0, timestamp=(T0 + 0.5) * 1000)],
    [obs(0, timestamp=T0 + 0.1234567)],
    [obs(0, timestamp=-5.5)],
    [obs(0, timestamp=True)],
    [obs(0, timestamp=None)],
    [obs(0, timestamp="yesterday")],
    [obs(0, values=[True, 2])],
    [obs(0, values=["1.5", 2])],
    [obs(0, values=[1e39, 2])],
    [obs(0, values=[123456789012345678901234567890, 2])],
    [obs(0, values=[1, 2], value=3)],
    [{"timestamp": T0}],
    [obs(0, extra=1)],
    [obs(1), obs(0)],
    [obs(0), obs(0)],
    [obs(0), {"timestamp": T0 + 7200, "values": [1, 2, 3]}],
    [],
    "nope",
    [None],
]


def outcome(decode: Any, raw: bytes) -> Any:
    """What a decoder makes of ``raw``, comparable across the two paths."""
    try:
        return ("ok", normal(decode(raw)))
    except ValidationException as exc:
        return ("422", exc.extra)
    except ClientException as exc:
        return ("400", exc.detail)
    except ForecastError as exc:
        return (type(exc).__name__, exc.detail, exc.field)


def normal(value: Any) -> Any:
    if isinstance(value, ForecastError):
        return (type(value).__name__, value.detail, value.field)
    if hasattr(value, "timestamps") and hasattr(value, "values"):
        return (value.timestamps.tolist(), value.values.tolist())
    if isinstance(value, list | tuple):
        return [normal(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: normal(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, dict):
        return {k: normal(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def reference(model: Any, convert: Any) -> Any:
    return lambda raw: convert(bodies._reference(raw, model, *WHERE))


def observe_ref(m: Any) -> Any:
    return bodies._to_observations(m.observations, "observations")


def create_ref(m: Any) -> Any:
    return bodies.CreateBody(m.model, m.version, m.observations())


def forecast_ref(m: Any) -> Any:
    series = [s.series(f"series[{i}]") for i, s in enumerate(m.series)]
    return bodies.ForecastBody(m.version, [s.id for s in m.series], series)


@pytest.mark.parametrize("observations", OBSERVATIONS)
def test_every_body_means_what_the_models_say(observations: Any) -> None:
    cases = [
        (
            {"observations": observations},
            bodies.observe_body,
            reference(ObserveRequest, observe_ref),
        ),
        (
            {"model": "m", "history": observations},
            bodies.create_body,
            reference(StreamCreate, create_ref),
        ),
        (
            {"series": [{"id": "a", "observations": observations}]},
            bodies.forecast_body,
            reference(
                ForecastRequest,
                lambda m: bodies.ForecastBody(
                    m.version, [s.id for s in m.series],
                    [s.series(f"series[{i}]") for i, s in enumerate(m.series)],
                ),
            ),
        ),
        (
            {"streams": [{"stream_id": "x", "observations": observations}, {"stream_id": "y",
             "observations": [obs(3)]}], "detail": "summary"},
            bodies.bulk_body,
            reference(BulkObserveRequest, bodies.reference_bulk),
        ),
    ]  # fmt: skip
    for body, fast, slow in cases:
        raw = json.dumps(body).encode()
        assert outcome(functools.partial(fast, where=WHERE), raw) == outcome(slow, raw), body


@pytest.mark.parametrize("raw", [b"{", b"", b"null", b"[]", b"\xff", b'{"observations": [NaN]}'])
def test_bytes_that_are_not_a_body_are_refused_alike(raw: bytes) -> None:
    slow = reference(ObserveRequest, lambda m: m)
    assert outcome(lambda r: bodies.observe_body(r, WHERE), raw)[0] == outcome(slow, raw)[0]


@pytest.mark.parametrize(
    "columns",
    [
        {"timestamps": [T0, T0 + 60, "2026-11-23T08:00:00Z"], "values": [[1, 2], [3, 4], [5, 6]]},
        {"start": T0, "step": 60, "values": [[1, 2], [3, 4]]},
        {"start": "2026-11-23T08:00:00Z", "step": 0.5, "values": [[1, 2]]},
        {"start": T0, "step": 60, "values": [1.0, 2.0]},
        {"timestamps": [T0], "values": [[1, 2], [3, 4]]},
        {"start": T0, "values": [[1, 2]]},
        {"start": T0, "step": 0, "values": [[1, 2]]},
        {"timestamps": [T0 + 60, T0], "values": [[1, 2], [3, 4]]},
        {"start": T0, "step": 60, "values": [[1, 2], [math.inf, 4]]},
        {"start": T0, "step": 60, "values": []},
        {"start": T0, "step": 60, "values": [[1, 2], [3]]},
        {"start": T0, "step": 60, "values": [[1, 2], 3]},
        {"timestamps": [T0, T0 + 1], "values": [1e39, 2]},
    ],
)
def test_columns_mean_what_the_models_say(columns: dict[str, Any]) -> None:
    body = {"series": [{"id": "c", **columns}]}
    raw = json.dumps(body).encode()
    slow = reference(
        ForecastRequest,
        lambda m: bodies.ForecastBody(
            m.version,
            [s.id for s in m.series],
            [s.series(f"series[{i}]") for i, s in enumerate(m.series)],
        ),
    )
    assert outcome(lambda r: bodies.forecast_body(r, WHERE), raw) == outcome(slow, raw)
    create = json.dumps({"model": "m", "history": columns}).encode()
    slow_create = reference(
        StreamCreate, lambda m: bodies.CreateBody(m.model, m.version, m.observations())
    )
    assert outcome(lambda r: bodies.create_body(r, WHERE), create) == outcome(slow_create, create)


def test_the_usual_bodies_take_the_fast_path() -> None:
    observe = {"observations": [obs(0), obs(1, timestamp="2026-11-23T08:00:00Z")]}
    fast = msgspec.json.decode(json.dumps(observe).encode(), type=bodies._Observe)
    bodies._series(fast.observations, "observations")  # no _Slow
    bulk = {"streams": [{"stream_id": f"s{i}", "observations": [obs(i)]} for i in range(50)]}
    decoded = bodies.fast_bulk(msgspec.json.decode(json.dumps(bulk).encode(), type=bodies._Bulk))
    (chosen, ts, _), = decoded.single.values()  # fmt: skip
    assert chosen == list(range(50))
    assert ts.tolist() == [float(T0 + 3600 * i) for i in range(50)]
    series = {"series": [{"start": T0, "step": 1800, "values": [[1, 2]] * 512}]}
    msgspec.json.decode(json.dumps(series).encode(), type=bodies._Forecast)
