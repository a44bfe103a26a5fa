"""The one table from errors to the v2 error form, for HTTP and gRPC alike.

HTTP answers non-2xx with ``{"error": "..."}`` (what tritonclient reads; the request id rides
beside it), gRPC with a status code and the same message. A step on an unknown sequence is
the client's error (400 / INVALID_ARGUMENT, as in Triton), not a missing resource.

The gRPC codes are kept as names so that the HTTP side never imports grpc.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from service import errors, request_id

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class V2Status:
    """How one kind of error is answered: its HTTP status and its gRPC status code's name."""

    http: int
    grpc: str


#: Domain error -> its v2 status. The most specific class listed wins.
STATUS: Final[dict[type[errors.ForecastError], V2Status]] = {
    errors.MalformedInput: V2Status(400, "INVALID_ARGUMENT"),
    errors.InvalidInput: V2Status(400, "INVALID_ARGUMENT"),
    errors.UnknownStream: V2Status(400, "INVALID_ARGUMENT"),
    errors.UnknownModel: V2Status(404, "NOT_FOUND"),
    errors.StateMismatch: V2Status(409, "FAILED_PRECONDITION"),
    errors.Conflict: V2Status(409, "ABORTED"),
    errors.PayloadTooLarge: V2Status(413, "RESOURCE_EXHAUSTED"),
    errors.StreamLimitExceeded: V2Status(403, "RESOURCE_EXHAUSTED"),
    errors.ModelNotReady: V2Status(503, "UNAVAILABLE"),
    errors.ModelFailed: V2Status(503, "UNAVAILABLE"),
    errors.StoreUnavailable: V2Status(503, "UNAVAILABLE"),
}
#: HTTP status of a transport-level refusal -> the gRPC code of the same refusal.
HTTP_TO_GRPC: Final[dict[int, str]] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    413: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
}
UNEXPECTED: Final = V2Status(500, "INTERNAL")
UNEXPECTED_MESSAGE: Final = "internal server error; it has been logged"


def status_of(exc: errors.ForecastError) -> V2Status:
    return next((STATUS[c] for c in type(exc).__mro__ if c in STATUS), V2Status(400, "UNKNOWN"))


def message_of(exc: errors.ForecastError) -> str:
    return exc.detail if exc.field is None else f"{exc.detail} (at {exc.field})"


def http_message(exc: HTTPException) -> str:
    message = str(exc.detail)
    if isinstance(exc.extra, list) and exc.extra:
        message += ": " + "; ".join(str(item) for item in exc.extra)
    return message


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> Response[Any]:
    """A v2 error over HTTP: ``error`` alone is what clients read; the id rides beside it."""
    body = {"error": message}
    rid = request_id.current()
    if rid is not None:
        body["request_id"] = rid
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def _domain_error(_: Request[Any, Any, Any], exc: errors.ForecastError) -> Response[Any]:
    headers = None
    if isinstance(exc, errors.StoreUnavailable):
        headers = {"Retry-After": str(exc.retry_after)}
    return error_response(status_of(exc).http, message_of(exc), headers)


def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    return error_response(exc.status_code, http_message(exc), exc.headers)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(UNEXPECTED.http, UNEXPECTED_MESSAGE)


def exception_handlers() -> ExceptionHandlersMap:
    """The v2 router's handlers: every key of the app-wide table, so no problem+json leaks."""
    return {
        errors.ForecastError: _domain_error,
        ValidationException: http_error,
        HTTPException: http_error,
        Exception: _unexpected,
    }


__all__ = [
    "HTTP_TO_GRPC",
    "STATUS",
    "UNEXPECTED",
    "UNEXPECTED_MESSAGE",
    "V2Status",
    "error_response",
    "exception_handlers",
    "http_error",
    "http_message",
    "message_of",
    "status_of",
]
