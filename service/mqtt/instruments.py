"""The MQTT bridge's Prometheus instruments, on the app's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class MqttMetrics:
    """Messages in and what became of each; answers published; the connection's state."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.received = Counter(
            "forecast_mqtt_messages_received",
            "Messages taken from the readings topic.",
            registry=r,
        )
        self.applied = Counter(
            "forecast_mqtt_messages_applied",
            "Messages of which at least one reading was applied to its stream.",
            registry=r,
        )
        self.skipped = Counter(
            "forecast_mqtt_messages_skipped",
            "Messages whose readings were all duplicates (a redelivery or a retained replay).",
            registry=r,
        )
        self.rejected = Counter(
            "forecast_mqtt_messages_rejected",
            "Messages refused to the errors topic, by reason (the problem code).",
            ["reason"],
            registry=r,
        )
        self.published = Counter(
            "forecast_mqtt_forecasts_published",
            "Forecast answers published to the forecasts topic.",
            registry=r,
        )
        self.unpublished = Counter(
            "forecast_mqtt_forecasts_dropped",
            "Forecast answers not published (broker away, or a stream id no topic can carry).",
            registry=r,
        )
        self.connected = Gauge(
            "forecast_mqtt_connected", "1 while the bridge is connected to its broker.", registry=r
        )
        self.connects = Counter(
            "forecast_mqtt_connects", "Successful connections to the broker.", registry=r
        )


__all__ = ["MqttMetrics"]
