"""The MQTT bridge's pure parts: topic patterns, payloads, the broker URL, its settings."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr, ValidationError

from service.mqtt.connection import Broker
from service.mqtt.payloads import Refusal, readings
from service.mqtt.topics import ReadingsTopic, check_template, publish_topic
from service.settings import Settings


@pytest.mark.parametrize(
    ("pattern", "subscription", "topic", "stream_id"),
    [
        ("sensors/+/readings", "sensors/+/readings", "sensors/pump-1/readings", "pump-1"),
        ("plant/{stream_id}/telemetry", "plant/+/telemetry", "plant/b%20x/telemetry", "b%20x"),
        ("site/+/{stream_id}/#", "site/+/+/#", "site/north/meter/a/b", "meter"),
        ("{stream_id}", "+", "lonely", "lonely"),
    ],
)
def test_a_pattern_gives_its_filter_and_the_stream_of_a_topic(
    pattern: str, subscription: str, topic: str, stream_id: str
) -> None:
    parsed = ReadingsTopic.parse(pattern)
    assert parsed.filter == subscription
    assert parsed.subscription("grp") == f"$share/grp/{subscription}"
    assert parsed.stream_id(topic) == stream_id


def test_topics_that_do_not_match_name_no_stream() -> None:
    parsed = ReadingsTopic.parse("sensors/+/readings")
    for topic in ["sensors/a/other", "sensors/a/readings/x", "sensors//readings", "x/a/readings"]:
        assert parsed.stream_id(topic) is None


@pytest.mark.parametrize(
    "pattern",
    ["", "sensors/readings", "a/+/+", "a/{stream_id}/{stream_id}", "a/#/b", "a/x+/b", "$SYS/+"],
)
def test_patterns_without_one_place_for_the_id_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="pattern"):
        ReadingsTopic.parse(pattern)


def test_answer_topics_take_the_id_and_refuse_wildcards() -> None:
    assert publish_topic("forecasts/{stream_id}", "pump") == "forecasts/pump"
    assert publish_topic("forecasts/{stream_id}", "a#b") is None
    for bad in ["forecasts/+", "f/#", "{x}", "$share/a"]:
        with pytest.raises(ValueError, match="topic"):
            check_template(bad)


def test_payloads_decode_as_rest_bodies_do() -> None:
    one = readings(b'{"timestamp": "2027-01-15T08:00:00Z", "value": 1.5}')
    assert one.values.tolist() == [[1.5]]
    assert one.timestamps.tolist() == [1_800_000_000.0]
    many = readings(json.dumps([{"timestamp": 10, "values": [1, 2]}] * 1).encode())
    assert many.values.shape == (1, 2)


@pytest.mark.parametrize(
    ("payload", "code", "field"),
    [
        (b"{", "malformed-body", None),
        (b"\xff", "malformed-body", None),
        (b"3", "invalid-input", "payload"),
        (b"[]", "invalid-input", "payload"),
        (b'{"timestamp": 1}', "invalid-input", "payload"),
        (b'[{"timestamp": 2, "value": 1}, {"timestamp": 1, "value": 1}]', "invalid-input", None),
        (b"[" * 200 + b"]" * 200, "malformed-body", None),
    ],
    ids=["cut", "not-utf8", "number", "empty-list", "no-value", "out-of-order", "deep"],
)
def test_payloads_refused_carry_the_reason(payload: bytes, code: str, field: str | None) -> None:
    with pytest.raises(Refusal) as refused:
        readings(payload)
    assert refused.value.code == code
    if field is not None:
        assert refused.value.field == field
    body = json.loads(refused.value.body("sensors/x/readings", "x"))
    assert (body["topic"], body["stream_id"], body["code"]) == ("sensors/x/readings", "x", code)


def test_out_of_order_readings_name_their_place_in_the_payload() -> None:
    with pytest.raises(Refusal) as refused:
        readings(b'[{"timestamp": 2, "value": 1}, {"timestamp": 1, "value": 1}]')
    assert refused.value.field == "payload[1].timestamp"


def test_broker_urls_and_credentials() -> None:
    plain = Broker.from_url("mqtt://broker")
    assert (plain.host, plain.port, plain.tls, plain.username) == ("broker", 1883, False, None)
    secure = Broker.from_url("mqtts://u%40x:p%3Aw@broker:9000")
    assert (secure.port, secure.tls, secure.username, secure.password) == (9000, True, "u@x", "p:w")
    assert secure.tls_context() is not None
    assert "p:w" not in str(secure)
    chosen = Broker.from_url("mqtt://u:p@h", username="me", password=SecretStr("s"))
    assert (chosen.username, chosen.password) == ("me", "s")
    with pytest.raises(ValueError, match="port"):
        Broker.from_url("mqtt://h:99999")


def test_mqtt_settings_are_checked_at_start() -> None:
    settings = Settings(mqtt_url="mqtt://b:1883", mqtt_default_model="taylor-lstm")
    assert settings.mqtt_readings_topic == "sensors/+/readings"
    assert settings.mqtt_share_group == ""
    assert Settings(mqtt_url="").mqtt_url is None
    for bad in [
        {"mqtt_url": "http://b"},
        {"mqtt_readings_topic": "sensors/readings"},
        {"mqtt_forecasts_topic": "f/#"},
        {"mqtt_tenant": "a:b"},
        {"mqtt_qos": 3},
        {"mqtt_share_group": "a/b"},
    ]:
        with pytest.raises(ValidationError):
            Settings(**bad)
