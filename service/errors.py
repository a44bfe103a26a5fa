"""Domain exceptions. No HTTP here: ``service.api.errors`` maps each leaf to a response.

Every leaf only sets attributes; the mapping table decides status codes.
"""

from __future__ import annotations


class ForecastError(Exception):
    """Base of every error the service reports to a client."""

    title = "Forecasting error"
    code = "error"
    #: Attributes of a leaf that its problem+json body carries too (machine-readable detail).
    extensions: tuple[str, ...] = ()

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class InvalidInput(ForecastError):
    """The request is well-formed but its values break the model contract."""

    title = "Invalid input"
    code = "invalid-input"


class WrongModel(InvalidInput):
    """The stream runs another model (or version) than the one the request is for."""

    title = "Stream runs another model"
    code = "wrong-model"

    def __init__(self, detail: str, *, model: str, version: int, field: str | None = None) -> None:
        super().__init__(detail, field=field)
        self.model = model
        self.version = version


class MalformedInput(ForecastError):
    """A body or message that cannot be read at all: not JSON, or nested too deeply."""

    title = "Malformed request body"
    code = "malformed-body"


class UnknownModel(ForecastError):
    title = "Unknown model"
    code = "unknown-model"


class UnknownStream(ForecastError):
    title = "Unknown stream"
    code = "unknown-stream"


class Conflict(ForecastError):
    """The request cannot apply to the stream as it is now."""

    title = "Conflict"
    code = "conflict"


class StateMismatch(Conflict):
    """The stream's state was made by a model that is not the one serving it now."""

    title = "Stream state belongs to another model"
    code = "state-mismatch"


class PayloadTooLarge(ForecastError):
    title = "Payload too large"
    code = "payload-too-large"


class StreamLimitExceeded(ForecastError):
    """The tenant keeps as many streams as it may; a new one needs an old one gone first.

    Waiting does not help (streams only leave when deleted or idle past their expiry), so
    this is a refusal of the request, not a rate limit to retry.
    """

    title = "Stream limit reached"
    code = "stream-limit"
    extensions = ("limit",)

    def __init__(self, detail: str, *, limit: int) -> None:
        super().__init__(detail)
        self.limit = limit


class ModelNotReady(ForecastError):
    title = "Model not ready"
    code = "model-not-ready"


class ModelFailed(ForecastError):
    """onnxruntime failed on a request the model's contract accepts (logged where it fails)."""

    title = "Model failed"
    code = "model-failed"


class StoreUnavailable(ForecastError):
    """The state store cannot be reached; the client should retry later."""

    title = "State store unavailable"
    code = "store-unavailable"

    def __init__(self, detail: str, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class StoreBusy(StoreUnavailable):
    """Every connection to the store stayed in use for the whole store timeout.

    The store is healthy; this replica has more calls in flight than its connection pool
    (``store_max_connections``) serves in time. Retrying later helps, as for an outage.
    """

    title = "State store busy"
    code = "store-busy"


class ModelRefused(Exception):
    """A model directory does not conform to the contract (raised at load, never to clients)."""
