"""The MQTT bridge's settings, ``FORECAST_MQTT_*``, a part of ``service.settings.Settings``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

from service.mqtt.topics import ReadingsTopic, check_template


class MqttSettings(BaseModel):
    """Fields only; ``Settings`` inherits them (one object, one set of variables)."""

    mqtt_url: str | None = Field(
        default=None,
        description=(
            "MQTT broker to bridge: mqtt://[user:password@]host[:port] (1883) or mqtts:// for "
            "TLS (8883). Unset (the default) runs no bridge."
        ),
    )
    mqtt_username: str | None = Field(
        default=None, description="Broker user name (overrides the URL's)."
    )
    mqtt_password: SecretStr | None = Field(
        default=None, description="Broker password (overrides the URL's)."
    )
    mqtt_tenant: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Tenant that owns every stream the bridge feeds (default: tenant).",
    )
    mqtt_readings_topic: str = Field(
        default="sensors/+/readings",
        description=(
            "Topic filter readings arrive on; the stream id is its {stream_id} level "
            "(plant/{stream_id}/telemetry) or else its one '+' level."
        ),
    )
    mqtt_forecasts_topic: str = Field(
        default="forecasts/{stream_id}",
        description="Topic each forecast answer is published to.",
    )
    mqtt_errors_topic: str = Field(
        default="errors/{stream_id}",
        description="Topic a refused message's reason is published to.",
    )
    mqtt_default_model: str | None = Field(
        default=None,
        description=(
            "Model of streams created on their first MQTT reading; unset: readings for an "
            "unknown stream are refused to the errors topic."
        ),
    )
    mqtt_share_group: str = Field(
        default="",
        pattern=r"^[^/+#\s]{0,64}$",
        description=(
            "Empty (the default): every replica gets every reading, and the store's "
            "deduplication applies each one once, in order. A group name subscribes as "
            "$share/<group>/..., each reading going to one replica: less work, but readings "
            "of one stream may then be applied out of order (an earlier one skipped) unless "
            "the broker keeps a topic on one member or each message holds all of them."
        ),
    )
    mqtt_qos: Literal[0, 1, 2] = Field(
        default=1, description="QoS of the subscription and of published answers."
    )
    mqtt_client_id: str | None = Field(
        default=None,
        description=(
            "Client id; set (one per replica) for a persistent session, so the broker keeps "
            "QoS 1 readings while the bridge is away. Unset: a fresh id and clean session."
        ),
    )
    mqtt_reconnect_max_seconds: float = Field(
        default=30.0, gt=0, description="Longest wait between reconnection attempts."
    )

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_scheme(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("mqtt://", "mqtts://")) or value[-3:] == "://":
            raise ValueError("mqtt_url must be an mqtt:// or mqtts:// URL")
        return value

    @field_validator("mqtt_readings_topic")
    @classmethod
    def _readings_pattern(cls, value: str) -> str:
        ReadingsTopic.parse(value)
        return value

    @field_validator("mqtt_forecasts_topic", "mqtt_errors_topic")
    @classmethod
    def _answer_topic(cls, value: str) -> str:
        return check_template(value)


__all__ = ["MqttSettings"]
