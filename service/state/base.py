"""The state store protocol that every backend implements.

Stores deal in opaque encoded records (see ``record.py``); the only thing they know about a
record is where its compare-and-set token sits (bytes 4..20).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class StateStore(Protocol):
    """Async key-value store with per-key compare-and-set and idle expiry.

    Every method raises ``service.errors.StoreUnavailable`` when the backend cannot be
    reached or does not answer within the configured timeout; never anything else for an
    outage, and never a silent empty answer.
    """

    async def get(self, key: str) -> bytes | None:
        """The record under ``key``, or None if there is none (never stored, deleted, expired)."""
        ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """``get`` for many keys in one round trip, in the order given."""
        ...

    async def compare_and_set(
        self, key: str, expected_token: bytes | None, value: bytes, ttl_seconds: float
    ) -> bool:
        """Store ``value`` if the current record's token equals ``expected_token``.

        ``expected_token=None`` means the key must not exist. Returns False, writing
        nothing, when the condition does not hold. The key expires ``ttl_seconds`` after
        this write unless written again.

        A key that already holds exactly ``value`` counts as written (True, TTL refreshed),
        so a call retried after its reply was lost reports the write that landed. Every
        record carries a random write nonce, so this matches only a writer's own retry:
        two replicas that compute the same update still write different bytes, and the
        slower one loses the race and sees the observation as a duplicate.
        """
        ...

    async def compare_and_set_many(
        self, items: Sequence[tuple[str, bytes | None, bytes]], ttl_seconds: float
    ) -> list[bool]:
        """``compare_and_set`` for many ``(key, expected_token, value)`` in one round trip.

        Each item succeeds or fails on its own.
        """
        ...

    async def put(self, key: str, value: bytes, ttl_seconds: float) -> None:
        """Store ``value`` unconditionally (stream creation or reset)."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True if it existed."""
        ...

    async def ping(self) -> None:
        """Return if the backend answers, raise ``StoreUnavailable`` otherwise."""
        ...

    async def close(self) -> None:
        """Release connections the store opened itself."""
        ...


# Re-exported for backends.
__all__ = ["StateStore"]
