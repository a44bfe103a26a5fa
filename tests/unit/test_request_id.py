"""Which incoming X-Request-ID values are kept, and what replaces the others."""

from __future__ import annotations

import re

import pytest

from service import request_id


@pytest.mark.parametrize(
    "incoming",
    ["abc", "0" * 32, "3f2a9c1e-8d4b-4e6f-9a1b-2c3d4e5f6a7b", "01HZX3J9:worker.7_a", "x" * 128],
)
def test_well_formed_ids_are_kept(incoming: str) -> None:
    assert request_id.accept(incoming) == incoming
    assert request_id.accept(incoming.encode()) == incoming


@pytest.mark.parametrize(
    "incoming", [None, "", b"", "x" * 129, "a b", "line\nbreak", 'quote"', "é", "a;b", "{}"]
)
def test_anything_else_gets_a_new_id(incoming: str | bytes | None) -> None:
    made = request_id.accept(incoming)
    assert re.fullmatch("[0-9a-f]{32}", made)
    assert made != incoming


def test_new_ids_differ() -> None:
    assert len({request_id.new_id() for _ in range(1000)}) == 1000


def test_bind_and_unbind_nest() -> None:
    assert request_id.current() is None
    outer = request_id.bind("a")
    inner = request_id.bind("b")
    assert request_id.current() == "b"
    request_id.unbind(inner)
    assert request_id.current() == "a"
    request_id.unbind(outer)
    assert request_id.current() is None
