"""JSON nesting bounded before decoding; the time range; paths that keep an encoded '/'."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.api.bodies import MAX_JSON_DEPTH, check_depth, decode_json, json_depth, message_id
from service.api.paths import PathNotUTF8, routing_path
from service.errors import InvalidInput, MalformedInput
from service.forecaster import Observations
from service.timerange import EARLIEST, LATEST, in_range, out_of_range, outside

# --- nesting ---------------------------------------------------------------------------------

texts = st.text(alphabet=st.sampled_from([*'ab[]{}":,\\\n', "\u00fc", "\u2028"]))
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=40,
)


def depth_of(value: Any) -> int:
    """The reference: nesting counted on the decoded value."""
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


@given(values, st.booleans())
def test_depth_of_the_text_is_the_depth_of_the_value(value: Any, ascii_only: bool) -> None:
    """Brackets, quotes and backslashes inside strings never count."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert json_depth(text) == depth_of(value)
    assert json_depth(text.encode()) == depth_of(value)


def test_deep_bodies_are_malformed_input_before_any_decoder_runs() -> None:
    for deep in ('{"a":' * 5000 + "1" + "}" * 5000, "[" * 5000 + "]" * 5000, "[" * 100_000):
        with pytest.raises(MalformedInput, match="levels deep"):
            decode_json(deep)
    at_limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert decode_json(at_limit.encode()) is not None
    with pytest.raises(MalformedInput, match=f"{MAX_JSON_DEPTH + 1} levels"):
        check_depth("[" + at_limit + "]")
    # Many brackets side by side are not deep.
    wide = json.dumps([[i] for i in range(10_000)])
    assert decode_json(wide)[-1] == [9999]


@pytest.mark.parametrize(
    "text",
    [b"{inputs: ", b"[NaN]", b"[Infinity]", b"[1e400]", b'"\xff"', b"[" + b"9" * 5000 + b"]", b""],
)
def test_what_is_not_json_is_malformed_input(text: bytes) -> None:
    with pytest.raises(MalformedInput, match="not valid JSON"):
        decode_json(text)


def test_message_ids_are_read_when_they_can_be() -> None:
    assert message_id('{"id": "m1", "x": 1}') == "m1"
    assert message_id(b'{"x": 1, "id": 7}') == 7
    # Read without decoding from messages that are too deep or not JSON.
    assert message_id('{"id": "m2", "x": ' + "[" * 5000 + "]" * 5000 + "}") == "m2"
    assert message_id('{"x": [{"id": 5}], "id": -7, "v": NaN}') == -7
    assert message_id('{"s": "\\"id\\": 3", "id": "ok\\n"}') == "ok\n"
    for unreadable in (
        "{not json",
        "[1, 2]",
        '{"id": true}',
        '{"id": [1]}',
        "",
        '{"a": {"id": 1}}',
    ):
        assert message_id(unreadable) is None


# --- time range ------------------------------------------------------------------------------


def test_the_range_is_1700_to_2200() -> None:
    assert datetime(1700, 1, 1, tzinfo=UTC).timestamp() == EARLIEST
    assert datetime(2200, 1, 1, tzinfo=UTC).timestamp() == LATEST
    assert in_range(EARLIEST)
    assert in_range(0.0)
    assert not in_range(LATEST)
    assert not in_range(EARLIEST - 1e-3)
    assert not in_range(float("nan"))
    ts = np.array([EARLIEST, LATEST, np.nan, np.inf, 1.8e9, 1.8e12])
    assert outside(ts).tolist() == [False, True, True, True, False, True]


def test_out_of_range_names_the_field_and_the_time() -> None:
    error = out_of_range(datetime(9999, 1, 1, tzinfo=UTC).timestamp(), "observations[3].timestamp")
    assert error.field == "observations[3].timestamp"
    assert "9999-01-01T00:00:00Z" in error.detail
    assert "2200-01-01" in error.detail
    assert "epoch seconds" in out_of_range(1e300, "x").detail


@pytest.mark.parametrize("rows", [1, 40])  # the plain-Python check and the numpy one
def test_observations_outside_the_range_are_refused(rows: int) -> None:
    ts = [1.8e9 + 3600.0 * i for i in range(rows)]
    ts[-1] = datetime(9999, 12, 31, tzinfo=UTC).timestamp()
    with pytest.raises(InvalidInput) as refused:
        Observations.build(ts, [[1.0, 2.0]] * rows)
    assert refused.value.field == f"observations[{rows - 1}].timestamp"
    assert "outside the range" in refused.value.detail


# --- paths -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b"/v1/streams/sensor-1", None),
        (b"/v1/streams/K%C3%BChlhaus%203/observations", "/v1/streams/Kühlhaus 3/observations"),
        (b"/v1/streams/a%252Fb", "/v1/streams/a%252Fb"),  # the text "a%2Fb", escaped once
        (b"/v1/streams/plant%2Fline-1%2Ftemp", "/v1/streams/plant%2Fline-1%2Ftemp"),
        (b"/v1/streams/a%2fb/observations", "/v1/streams/a%2Fb/observations"),
        (b"/v1/streams/50%25%2F", "/v1/streams/50%25%2F"),
        (b"/v1/streams/%2F%2F?x=%2F", "/v1/streams/%2F%2F"),
    ],
)
def test_routing_path_keeps_encoded_slashes_in_their_segment(raw: bytes, path: str | None) -> None:
    assert routing_path(raw) == path


def test_a_path_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(PathNotUTF8):
        routing_path(b"/v1/streams/%FF")
    with pytest.raises(PathNotUTF8):
        routing_path(b"/v1/streams/%C3")
