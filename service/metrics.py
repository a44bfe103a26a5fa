"""Every Prometheus instrument of the service, built once on a registry passed in.

Nothing is registered on prometheus-client's global registry, so two apps in one process
(tests, or two instances side by side) never collide.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


class Metrics:
    """The service's instruments. One instance per app, on that app's registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "forecast_http_requests",
            "HTTP requests handled, by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_latency = Histogram(
            "forecast_http_request_duration_seconds",
            "Time from request start to response end, by route template and method.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_latency = Histogram(
            "forecast_inference_duration_seconds",
            "Wall time of one onnxruntime call, by model and version.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_rows = Histogram(
            "forecast_inference_batch_rows",
            "Streams or series (batch rows B) per onnxruntime call.",
            ["model", "version"],
            buckets=_ROW_BUCKETS,
            registry=r,
        )
        self.inference_steps = Histogram(
            "forecast_inference_batch_steps",
            "Observations per row (time steps T) per onnxruntime call.",
            ["model", "version"],
            buckets=_ROW_BUCKETS,
            registry=r,
        )
        self.batch_items = Histogram(
            "forecast_batch_items",
            "Observe requests (across streams and connections) processed as one batch.",
            buckets=_ROW_BUCKETS,
            registry=r,
        )
        self.store_latency = Histogram(
            "forecast_store_duration_seconds",
            "Latency of state store operations.",
            ["op"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.store_errors = Counter(
            "forecast_store_errors",
            "State store operations that failed (unreachable or timed out).",
            ["op"],
            registry=r,
        )
        self.cas_conflicts = Counter(
            "forecast_state_conflicts",
            "Compare-and-set writes that lost a race and were retried.",
            registry=r,
        )
        self.observations = Counter(
            "forecast_observations_applied",
            "Observations applied to stream state, by model.",
            ["model"],
            registry=r,
        )
        self.duplicates = Counter(
            "forecast_observations_skipped",
            "Observations skipped because they were at or before the stream's last timestamp.",
            ["model"],
            registry=r,
        )
        self.streams_created = Counter(
            "forecast_streams_created",
            "Streams created or reset, by model.",
            ["model"],
            registry=r,
        )
        self.streams_rebuilt = Counter(
            "forecast_streams_rebuilt",
            "Streams whose state was rebuilt by replaying their history under new weights.",
            ["model"],
            registry=r,
        )
        self.streams_refused = Counter(
            "forecast_streams_refused",
            "Stream creations refused, by reason (stream-limit: the tenant keeps its most).",
            ["reason"],
            registry=r,
        )
        self.streams_deleted = Counter(
            "forecast_streams_deleted", "Streams deleted on request.", registry=r
        )
        self.active_streams = Gauge(
            "forecast_active_streams",
            "Distinct streams this process updated in the last five minutes.",
            registry=r,
        )
        self._score_metrics(r)
        self.model_info = Gauge(
            "forecast_model_info",
            "Loaded model versions (value 1) with their kind and execution providers.",
            ["model", "version", "kind", "providers"],
            registry=r,
        )

    def _score_metrics(self, r: CollectorRegistry) -> None:
        """Live accuracy (``service.core.scoring``): sums in the target's units, by model,
        version and horizon bucket (``1``, ``2-6``, ``7-24``, ``25+`` steps ahead)."""
        labels = ["model", "version", "horizon"]
        self.scored = Counter(
            "forecast_score_readings",
            "Readings scored against the forecast issued for their time.",
            labels,
            registry=r,
        )
        self.unscored = Counter(
            "forecast_score_unscored",
            "Readings applied with no forecast issued for their time (first, after a long "
            "gap, after a replay): not scored.",
            ["model", "version"],
            registry=r,
        )
        self.abs_error = Counter(
            "forecast_score_abs_error",
            "Sum of |reading - forecast median| over scored readings (target units).",
            labels,
            registry=r,
        )
        self.squared_error = Counter(
            "forecast_score_squared_error",
            "Sum of (reading - forecast median)^2 over scored readings (target units squared).",
            labels,
            registry=r,
        )
        self.naive_error = Counter(
            "forecast_score_naive_abs_error",
            "Sum of |reading - last reading at the forecast's origin| over the same readings: "
            "the naive forecast's error, the denominator of the live skill.",
            labels,
            registry=r,
        )
        self.pinball = Counter(
            "forecast_score_pinball",
            "Sum of the pinball loss of each quantile over scored readings (target units).",
            [*labels, "quantile"],
            registry=r,
        )
        self.inside = Counter(
            "forecast_score_inside_interval",
            "Scored readings inside the outer interval (lowest to highest quantile).",
            labels,
            registry=r,
        )
        self.anomalies = Counter(
            "forecast_anomalies",
            "Readings outside the outer interval by more than the anomaly margin.",
            ["model", "version"],
            registry=r,
        )
