"""The key layout: injective across tenants and ids, spread over Cluster slots, stable."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from service.ids import MAX_ID_BYTES, id_problem
from service.settings import TENANT_PATTERN
from service.state.keys import (
    channel_pattern,
    quota_key,
    stream_channel,
    stream_key,
    tag,
)

PREFIX = "fcst"
tenants = st.from_regex(TENANT_PATTERN, fullmatch=True)
#: Ids as the rule allows them, biased towards the characters the layout must escape.
ids = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("{}%:s/ 7")), st.characters(codec="utf-8", categories=["L", "N"])
    ),
    min_size=1,
    max_size=40,
).filter(lambda text: id_problem(text) is None)


def hash_tag(key: str) -> str:
    """What Redis Cluster hashes: the text between the first '{' and the next '}'."""
    start = key.index("{")
    return key[start + 1 : key.index("}", start + 1)]


def parsed(key: str, kind: str) -> tuple[str, str]:
    """The (tenant, stream id) a stream key or channel names: the inverse of the layout."""
    match = re.fullmatch(rf"{PREFIX}:{kind}:\{{([^:]*):(.*)\}}", key, re.DOTALL)
    assert match is not None, key
    escapes = {"%25": "%", "%7B": "{", "%7D": "}"}
    unescaped = re.sub("%25|%7B|%7D", lambda m: escapes[m[0]], match[2])
    return match[1], unescaped


@given(tenants, ids)
def test_stream_keys_and_channels_give_back_their_tenant_and_id(tenant: str, stream: str) -> None:
    """The layout has an inverse, so no two (tenant, id) pairs share a key or a channel."""
    key = stream_key(PREFIX, tenant, stream)
    channel = stream_channel(PREFIX, key)
    assert parsed(key, "s") == (tenant, stream)
    assert parsed(channel, "fc") == (tenant, stream)
    # One hash tag, and it is the whole pair: the id cannot end it early.
    assert hash_tag(key) == f"{tenant}:{tag(stream)}"
    assert key.count("{") == 1
    assert key.count("}") == 1
    assert key_slot(channel.encode()) == key_slot(key.encode())


@given(st.lists(st.tuples(tenants, ids), min_size=2, max_size=30, unique=True))
def test_distinct_pairs_never_share_a_name(pairs: list[tuple[str, str]]) -> None:
    keys = [stream_key(PREFIX, t, s) for t, s in pairs]
    channels = [stream_channel(PREFIX, k) for k in keys]
    quotas = {quota_key(PREFIX, t) for t, _ in pairs}
    assert len(set(keys)) == len(pairs)
    assert len(set(channels)) == len(pairs)
    assert len(quotas) == len({t for t, _ in pairs})
    names = [*keys, *channels, *quotas]
    assert len(set(names)) == len(names)  # no kind ever shares a name with another


def test_plain_ids_keep_the_keys_they_always_had() -> None:
    """Running deployments keep their streams: an id without % { } is not rewritten."""
    assert stream_key("fcst", "acme", "pump-7") == "fcst:s:{acme:pump-7}"
    assert stream_key("fcst", "default", "v2:s:a.b@c") == "fcst:s:{default:v2:s:a.b@c}"
    assert quota_key("fcst", "acme") == "fcst:q:{acme}"
    assert stream_channel("fcst", "fcst:s:{acme:pump-7}") == "fcst:fc:{acme:pump-7}"
    assert channel_pattern("fcst") == "fcst:fc:*"
    assert stream_key("a", "t", "x") != stream_key("b", "t", "x")


def test_the_prefix_never_moves_a_stream_to_another_slot() -> None:
    assert key_slot(stream_key("a", "t", "x").encode()) == key_slot(b"t:x")
    assert key_slot(stream_key("b", "t", "x").encode()) == key_slot(b"t:x")


def test_streams_spread_over_slots_whatever_braces_their_ids_hold() -> None:
    for shape in ("s#", "}#", "{}#", "#}", "{#", "a}b#", "%#"):
        streams = [shape.replace("#", str(i)) for i in range(200)]
        slots = {key_slot(stream_key(PREFIX, "t", s).encode()) for s in streams}
        assert len(slots) > 100, shape  # the unescaped layout put each shape in 1 slot


def test_longest_ids_make_keys_redis_takes() -> None:
    """An id of 256 bytes of braces triples when escaped: still a small key."""
    key = stream_key(PREFIX, "t" * 64, "}" * MAX_ID_BYTES)
    assert len(key.encode()) < 1024


def test_channel_pattern_escapes_glob_characters() -> None:
    assert channel_pattern("a*b?[c]") == "a\\*b\\?\\[c\\]:fc:*"


def test_a_key_of_another_prefix_has_no_channel() -> None:
    try:
        stream_channel("other", stream_key(PREFIX, "t", "x"))
    except ValueError:
        return
    raise AssertionError("a foreign key was given a channel")
