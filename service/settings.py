"""One typed settings object, read from ``FORECAST_*`` environment variables.

Bad values fail at start-up with pydantic's message naming the variable; nothing silently
defaults.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.mqtt.settings import MqttSettings

#: Roles of an API key, weakest first; each one may do everything the ones before it may.
Role = Literal["read", "write", "admin"]
TENANT_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
MIN_KEY_LENGTH = 16


class ApiKeyEntry(BaseModel):
    """One API key as the service keeps it: the sha256 of the secret, a tenant and a role.

    An entry is written with either ``key`` (the secret, at least 16 characters) or ``sha256``
    (its hex digest, so a key file need not hold the secret). A ``key`` is hashed while the
    entry is validated, so no settings object ever holds a secret, and errors never echo it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex sha256 of the key.")
    tenant: str = Field(pattern=TENANT_PATTERN, description="Tenant whose streams it reaches.")
    role: Role = Field(description="read < write < admin.")

    @model_validator(mode="before")
    @classmethod
    def _hash_key(cls, data: object) -> object:
        if not isinstance(data, Mapping):
            return data
        if ("key" in data) == ("sha256" in data):
            raise ValueError("give exactly one of 'key' and 'sha256'")
        if "sha256" in data:
            return data
        key = data["key"]
        if isinstance(key, SecretStr):
            key = key.get_secret_value()
        if not isinstance(key, str) or len(key) < MIN_KEY_LENGTH:
            raise ValueError(f"an API key is a string of at least {MIN_KEY_LENGTH} characters")
        entry = {name: value for name, value in data.items() if name != "key"}
        entry["sha256"] = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return entry


#: The demo repository shipped in the source tree (``models/repository``).
DEFAULT_MODEL_REPOSITORY = Path(__file__).resolve().parent.parent / "models" / "repository"


class Settings(BaseSettings, MqttSettings):
    """Service configuration. Each field maps to ``FORECAST_<FIELD>`` (case-insensitive)."""

    # Errors never echo input values: API keys and store URLs may hold secrets.
    model_config = SettingsConfigDict(
        env_prefix="FORECAST_",
        extra="forbid",
        frozen=True,
        validate_default=True,
        hide_input_in_errors=True,
    )

    model_repository: Path = Field(
        default=DEFAULT_MODEL_REPOSITORY,
        description="Directory laid out as <repository>/<name>/<version>/model.onnx + model.json.",
    )
    providers: Literal["auto", "cuda", "cpu"] = Field(
        default="auto",
        description="onnxruntime execution providers: auto picks CUDA when present, else CPU.",
    )
    store_url: str = Field(
        default="memory://",
        description="State store: memory:// (embedded, lost on exit) or redis://host:port/db.",
    )
    stream_ttl_seconds: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="A stream that receives no observation for this long is forgotten.",
    )
    store_timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        description="Upper bound on every state store call, waiting for a connection included.",
    )
    store_max_connections: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description=(
            "Connections to Redis (to each node of a cluster) at most; calls beyond them wait "
            "for one, and a call that gets none within store_timeout_seconds is answered 503 "
            "(code store-busy: the pool is exhausted, the store is fine)."
        ),
    )
    key_prefix: str = Field(
        default="fcst",
        pattern=r"^[^{}\s]{1,64}$",
        description=(
            "Namespace of every key the service writes: 1-64 characters, no braces (they "
            "would move Redis Cluster hash tags) and no spaces."
        ),
    )
    tenant: str = Field(
        default="default",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Tenant that owns the streams of unauthenticated requests.",
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 above)."
    )
    max_observations: int = Field(
        default=10_000, ge=1, description="Most observations in one request (413 above)."
    )
    max_series: int = Field(
        default=1_000, ge=1, description="Most series in one stateless forecast request."
    )
    max_streams_per_tenant: int = Field(
        default=100_000,
        ge=0,
        description=(
            "Most streams one tenant keeps at a time; creating one more is answered 403 "
            "(code stream-limit) until one is deleted or expires. 0 turns the limit off."
        ),
    )
    cas_retries: int = Field(
        default=16, ge=1, description="Compare-and-set attempts before a write is reported as 409."
    )
    record_cache_streams: int = Field(
        default=65_536,
        ge=0,
        description=(
            "Stream records this process keeps from its last reads and writes (~700 bytes "
            "each), so a new reading usually costs one store round trip instead of two; a "
            "cached record is only ever a guess the compare-and-set checks. 0 turns it off."
        ),
    )
    batch_max_rows: int = Field(
        default=1024,
        ge=1,
        le=65536,
        description="Most observe requests (across streams) applied together in one batch.",
    )
    batch_max_delay_ms: float = Field(
        default=0.0,
        ge=0,
        le=100,
        description=(
            "How long a non-full batch may wait for more requests. 0 sends what is waiting: "
            "requests that arrive while a batch runs form the next one anyway."
        ),
    )
    history_length: int = Field(
        default=48,
        ge=0,
        le=4096,
        description=(
            "Raw observations kept beside each stream's state, to rebuild it under new model "
            "weights (on_model_change=replay) and to fill gaps forward. 0 keeps none."
        ),
    )
    gap_policy: Literal["accept", "reject", "forward", "median"] = Field(
        default="accept",
        description=(
            "Readings more than 1.5 model periods apart leave a gap: accept feeds them as they "
            "are, reject answers 422, forward inserts copies of the last reading, median "
            "inserts the model's own median forecast for the target (the other features "
            "carried forward)."
        ),
    )
    max_gap_steps: int = Field(
        default=48,
        ge=1,
        description="Longest gap (missing readings) bridged; a longer one needs a re-warm (409).",
    )
    on_model_change: Literal["reject", "replay"] = Field(
        default="reject",
        description=(
            "A stream whose state was made by weights no longer served: reject answers 409 "
            "(re-warm it with PUT), replay rebuilds it from its kept history."
        ),
    )
    scoring: Literal["on", "off"] = Field(
        default="on",
        description=(
            "Score every reading against the forecast issued for its time (live accuracy "
            "metrics, anomaly flags); off answers without scores."
        ),
    )
    anomaly_margin: float = Field(
        default=0.5,
        ge=0.0,
        le=100.0,
        description=(
            "A reading is an anomaly when it lies outside the forecast's outer interval by "
            "more than this many times the interval's width."
        ),
    )
    ws_max_in_flight: int = Field(
        default=256,
        ge=1,
        description="WebSocket messages processed at once per connection; more wait unread.",
    )
    ws_max_message_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest WebSocket message; a bigger one closes the socket (code 1009).",
    )
    ws_max_messages_per_second: float = Field(
        default=1000.0,
        ge=0,
        description=(
            "Sustained WebSocket message rate allowed per connection (a token bucket holding "
            "ws_message_burst messages); a message over it is answered 429 and not applied, "
            "and a sender that keeps going is closed with code 1008. 0 turns the limit off."
        ),
    )
    ws_message_burst: int = Field(
        default=1000,
        ge=1,
        description="Messages a WebSocket connection may send at once above the sustained rate.",
    )
    sse_keepalive_seconds: float = Field(
        default=15.0,
        gt=0,
        le=3600,
        description=(
            "A server-sent events subscription quiet for this long gets a comment line, so "
            "proxies and load balancers do not close it as idle; keep it under their timeout."
        ),
    )
    inference_threads: int = Field(
        default=0, ge=0, description="onnxruntime intra-op threads per session; 0 lets it choose."
    )
    http_header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description=(
            "A connection must send a request's headers within this long (of opening, or of "
            "its first byte after the previous answer), or it gets 408 and is closed."
        ),
    )
    http_body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description=(
            "A request's whole body must arrive within this long of its headers, or the "
            "request is answered 408 and the connection closed."
        ),
    )
    http_max_connections: int = Field(
        default=4096,
        ge=1,
        description=(
            "Open connections (HTTP and WebSocket, SSE subscribers included) a replica serves "
            "at once; a request beyond them is answered 503. Keep it under the process's "
            "file descriptor limit."
        ),
    )
    host: str = Field(default="127.0.0.1", description="Address the HTTP server binds.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port the HTTP server binds.")
    grpc_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description=(
            "Port of the v2 gRPC endpoint (Triton's GRPCInferenceService, as tritonclient.grpc "
            "and KServe clients call it), bound on the same host; 0 turns it off."
        ),
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        default="info", description="Log level of the service and the ASGI server."
    )
    log_format: Literal["json", "text"] = Field(
        default="text",
        description=(
            "text: one readable line per record; json: one JSON object per line (for log "
            "collectors), the access log included. Either way every line of a request "
            "carries its request id (X-Request-ID)."
        ),
    )
    otel_endpoint: str | None = Field(
        default=None,
        description=(
            "OpenTelemetry collector (OTLP over HTTP, e.g. http://otel-collector:4318) to "
            "send traces to: spans for each request, batch, store call and model call. Empty "
            "or unset turns tracing off (the default; needs the 'otel' extra when set)."
        ),
    )
    auth: Literal["auto", "required", "disabled"] = Field(
        default="auto",
        description=(
            "auto: API keys are enforced as soon as any is configured, and without keys every "
            "request acts as ``tenant`` with the admin role (the quick start; a WARNING says "
            "so at start-up). required: refuse to start without keys. disabled: ignore the "
            "keys and let everyone in (loud WARNING)."
        ),
    )
    api_keys: list[ApiKeyEntry] = Field(
        default_factory=list,
        description='API keys as JSON: [{"key": "...", "tenant": "acme", "role": "write"}].',
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="JSON or TOML (by suffix) file of more API keys, under a top-level 'keys'.",
    )
    model_poll_seconds: float = Field(
        default=0.0,
        ge=0,
        description="Re-scan the model repository this often (seconds); 0 turns polling off.",
    )

    @field_validator("store_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in {"memory", "redis", "rediss", "redis+cluster"}:
            raise ValueError(
                "store_url must start with memory://, redis://, rediss:// or redis+cluster://"
            )
        return value

    @field_validator("otel_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")) or len(value) <= len("https://"):
            raise ValueError("otel_endpoint must be an http:// or https:// URL")
        return value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """``FORECAST_*`` variables that name no setting: almost always a typo worth refusing."""
    prefix = "FORECAST_"
    known = {name.upper() for name in Settings.model_fields}
    return sorted(
        key
        for key in environ
        if key.upper().startswith(prefix) and key.upper()[len(prefix) :] not in known
    )
