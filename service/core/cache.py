"""The records this process last read or wrote, so a new reading usually costs the store one
round trip (the compare-and-set) instead of two (a read, then the compare-and-set).

An entry is only a guess at what the store holds: the engine steps from it and writes (or,
for an answer that writes nothing, verifies) with a compare-and-set on the record's stamp,
which names exactly one record ever written. So a stale entry (another replica advanced the
stream; it was deleted, re-created, expired; the store restarted or lost writes) can never
apply: its compare-and-set loses, returns the current record, and the engine steps again
from that.
"""

from __future__ import annotations

from collections.abc import Sequence


class RecordCache:
    """At most ``capacity`` records by key; the least recently stored is dropped first.

    ``capacity`` 0 turns the cache off (every batch reads its records).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"the record cache holds 0 (off) or more records, got {capacity}")
        self._capacity = capacity
        self._entries: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> bytes | None:
        return self._entries.get(key)

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        if not self._capacity:
            return
        entries = self._entries
        for key, value in items:
            entries.pop(key, None)  # to the back: most recently stored
            entries[key] = value
        excess = len(entries) - self._capacity
        if excess > 0:
            for key in list(_first(entries, excess)):
                del entries[key]

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)


def _first(entries: dict[str, bytes], count: int) -> list[str]:
    out: list[str] = []
    for key in entries:
        if len(out) == count:
            break
        out.append(key)
    return out
