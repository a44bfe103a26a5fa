"""The one layout of every name the service writes to a store: keys and pub/sub channels.

::

    <prefix>:s:{<tenant>:<tag(stream id)>}     a stream's record
    <prefix>:q:{<tenant>}                      a tenant's stream quota (members: stream ids)
    <prefix>:fc:{<tenant>:<tag(stream id)>}    a stream's forecast channel

Injective: a tenant (``TENANT_PATTERN``) holds no ``:``, ``{``, ``}`` or ``%``, so the first
``:`` inside the braces ends it; ``tag`` escapes ``%``, ``{`` and ``}`` as ``%25``, ``%7B``
and ``%7D``, which is reversible, so the rest gives back the stream id. Two different
(tenant, stream id) pairs never share a key or a channel, and the kinds (``s``, ``q``,
``fc``) never share a name. Quota members are the stream ids themselves, inside the tenant's
own quota key.

Redis Cluster hashes only the text between the first ``{`` and the next ``}``. Escaping the
braces keeps that the whole of ``tenant:stream id``, whatever the id holds, so streams spread
over every slot (an unescaped ``}`` in an id would end the tag early: every id starting with
``}`` would share one slot). A channel carries its stream's tag, so on a cluster it lives on
the node that serves the stream. The prefix (``Settings.key_prefix``) holds no brace.

Ids without ``%``, ``{`` or ``}`` (every id the service accepted before ids could be any
text) keep exactly the keys they had, so running deployments keep their streams.
"""

from __future__ import annotations

import re
from typing import Final

#: What ``tag`` escapes, and how.
_ESCAPES: Final = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D"})
#: An escape ``tag`` writes, and the character it stands for.
_UNESCAPE: Final = re.compile("%(25|7B|7D)")
_UNESCAPED: Final = {"25": "%", "7B": "{", "7D": "}"}
#: Characters special to Redis glob patterns (``PUBSUB CHANNELS``).
_GLOB: Final = str.maketrans({c: f"\\{c}" for c in "\\*?[]"})


def tag(stream_id: str) -> str:
    """The stream id as it appears inside a hash tag: ``%``, ``{`` and ``}`` escaped."""
    if "%" in stream_id or "{" in stream_id or "}" in stream_id:
        return stream_id.translate(_ESCAPES)
    return stream_id


def untag(tagged: str) -> str:
    """The stream id of a ``tag``: its escapes undone."""
    if "%" not in tagged:
        return tagged
    return _UNESCAPE.sub(lambda m: _UNESCAPED[m.group(1)], tagged)


def tenant_streams(prefix: str, tenant: str, id_start: str = "") -> str:
    """What the key of each of ``tenant``'s streams whose id begins with ``id_start`` begins
    with (``tag`` escapes character by character, so the tagged start begins the tagged id).
    The tenant ends at its ``:``, so no other tenant's key begins so."""
    return f"{prefix}:s:{{{tenant}:{tag(id_start)}"


def stream_id_of(prefix: str, tenant: str, key: str) -> str | None:
    """The stream id of ``tenant``'s stream key ``key``; None for any other key."""
    start = tenant_streams(prefix, tenant)
    if not key.startswith(start) or not key.endswith("}"):
        return None
    return untag(key[len(start) : -1])


def stream_key(prefix: str, tenant: str, stream_id: str) -> str:
    """The key of one stream's record, namespaced by tenant; its hash tag is the pair."""
    return f"{prefix}:s:{{{tenant}:{tag(stream_id)}}}"


def quota_key(prefix: str, tenant: str) -> str:
    """The set of a tenant's counted streams (see ``service.quota``).

    Its hash tag is the tenant alone, so on a Redis Cluster the set sits in its own slot,
    apart from the streams it counts, and every quota call on it is a single-key command.
    """
    return f"{prefix}:q:{{{tenant}}}"


def stream_channel(prefix: str, key: str) -> str:
    """The pub/sub channel of the stream whose key (``stream_key``) is ``key``.

    It is the key with the kind ``s`` replaced by ``fc``: same tenant, same tag.
    """
    kind = f"{prefix}:s:"
    if not key.startswith(kind):
        raise ValueError(f"{key!r} is not a stream key of prefix {prefix!r}")
    return f"{prefix}:fc:{key[len(kind) :]}"


def channel_pattern(prefix: str) -> str:
    """A Redis glob that matches every forecast channel of ``prefix`` and nothing else."""
    return f"{prefix.translate(_GLOB)}:fc:*"


__all__ = [
    "channel_pattern",
    "quota_key",
    "stream_channel",
    "stream_id_of",
    "stream_key",
    "tag",
    "tenant_streams",
    "untag",
]
