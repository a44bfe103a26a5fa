"""The id rule: any text of 1-256 UTF-8 bytes without control characters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.errors import InvalidInput
from service.ids import (
    MAX_ID_BYTES,
    check_id,
    check_stream_id,
    id_problem,
    sequence_stream_id,
    shown,
)

#: Every character the rule refuses.
FORBIDDEN = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]]


@pytest.mark.parametrize(
    "good",
    [
        "pump-7",
        "plant/line-1/temp",
        "Kühlhaus 3",
        "sensor-\u03b1",
        " leading and trailing ",
        "{braces}:and%percent",
        "\u00a0",  # no-break space: not a control character
        "\U0001f321",  # four bytes in UTF-8
        "x" * MAX_ID_BYTES,
        "\u00fc" * (MAX_ID_BYTES // 2),  # two bytes each
    ],
)
def test_valid_ids(good: str) -> None:
    assert id_problem(good) is None
    assert check_id(good, field="stream_id") == good


@pytest.mark.parametrize("char", FORBIDDEN)
def test_every_control_character_is_refused_anywhere(char: str) -> None:
    for text in (char, f"a{char}", f"{char}a", f"a{char}b"):
        assert id_problem(text) is not None, repr(text)


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("", "is empty"),
        ("evil\n", "U+000A"),
        ("a\u2028b", "U+2028"),
        ("a\x85b", "U+0085"),
        ("a\ud800", "lone surrogate"),
        ("x" * (MAX_ID_BYTES + 1), "257 bytes"),
        ("\u00fc" * (MAX_ID_BYTES // 2 + 1), "258 bytes"),
        ("x" * 20_000, "20000 bytes"),
    ],
)
def test_invalid_ids_name_the_field_and_the_reason(bad: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_id(bad, field="stream_id")
    assert refused.value.field == "stream_id"
    assert fragment in refused.value.detail
    # The message never carries the id raw: no newline, and a long id is cut short.
    assert "\n" not in refused.value.detail
    assert len(refused.value.detail) < 500


def test_a_non_string_is_refused() -> None:
    with pytest.raises(InvalidInput, match="must be a string"):
        check_id(42, field="sequence_id")


@given(st.text(min_size=1, max_size=80))
def test_the_rule_is_exactly_length_and_characters(text: str) -> None:
    expected = len(text.encode("utf-8", "surrogatepass")) <= MAX_ID_BYTES and not any(
        c in FORBIDDEN or "\ud800" <= c <= "\udfff" for c in text
    )
    assert (id_problem(text) is None) == expected


def test_v2_sequence_streams_may_exceed_the_limit_by_their_prefix() -> None:
    longest = "s" * MAX_ID_BYTES
    stream = sequence_stream_id(longest)
    assert stream == f"v2:s:{longest}"
    assert check_stream_id(stream) == stream
    assert sequence_stream_id(42) == "v2:42"
    with pytest.raises(InvalidInput):
        check_stream_id("v2:s:" + "s" * (MAX_ID_BYTES + 1))
    with pytest.raises(InvalidInput):
        check_stream_id("v2:s:bad\n")
    with pytest.raises(InvalidInput):
        check_stream_id("x" * (MAX_ID_BYTES + 1))


def test_shown_escapes_and_cuts() -> None:
    assert shown("a\nb") == "'a\\nb'"
    assert shown("x" * 100).endswith("...'")
    assert len(shown("x" * 100)) < 50
