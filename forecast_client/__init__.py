"""A typed Python client of the stateful forecasting service (sync and async, on httpx).

::

    from forecast_client import ForecastClient

    with ForecastClient("http://127.0.0.1:8000", api_key="...") as client:
        client.create_stream("sensor-1", "taylor-lstm")
        answer = client.observe("sensor-1", [("2026-11-23T08:00:00Z", 31250.0)])
        print(answer.forecast.median)

Requests that fail on the way (connection errors, timeouts, 502/503/504) are retried with
backoff, honouring ``Retry-After``: safe, because the service skips a reading at or before a
stream's last timestamp. Refusals raise :class:`ApiError` subclasses carrying the service's
problem (status, code, title, detail, field, request id).
"""

from __future__ import annotations

from forecast_client.aio import AsyncForecastClient, AsyncStreamSocket
from forecast_client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    ForecastClientError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    ServiceUnreachable,
    StateMismatch,
    StreamLimitExceeded,
    Unauthorized,
)
from forecast_client.retry import NO_RETRY, Retry
from forecast_client.scores import Anomaly, LiveAccuracy, ReadingScore
from forecast_client.sync import ForecastClient, StreamSocket
from forecast_client.types import (
    Forecast,
    ModelRef,
    ModelVersion,
    ObserveResult,
    Reading,
    ReadingLike,
    Step,
    StoredReading,
    Stream,
    StreamAnswer,
    StreamEvent,
    StreamPage,
    StreamSummary,
    Summary,
)

__version__ = "0.1.0"

__all__ = [
    "NO_RETRY",
    "Anomaly",
    "ApiError",
    "AsyncForecastClient",
    "AsyncStreamSocket",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "Forecast",
    "ForecastClient",
    "ForecastClientError",
    "InvalidInput",
    "LiveAccuracy",
    "ModelRef",
    "ModelVersion",
    "NotFound",
    "ObserveResult",
    "PayloadTooLarge",
    "RateLimited",
    "Reading",
    "ReadingLike",
    "ReadingScore",
    "Retry",
    "ServerError",
    "ServiceUnavailable",
    "ServiceUnreachable",
    "StateMismatch",
    "Step",
    "StoredReading",
    "Stream",
    "StreamAnswer",
    "StreamEvent",
    "StreamLimitExceeded",
    "StreamPage",
    "StreamSocket",
    "StreamSummary",
    "Summary",
    "Unauthorized",
    "__version__",
]
