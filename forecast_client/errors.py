"""What the client raises: the service's problem+json answers as typed exceptions.

Every answer the service refuses carries ``type``, ``title``, ``status``, ``detail``, ``code``,
the offending ``field`` where one input is at fault, and the ``request_id`` (also in the
``X-Request-ID`` header). :func:`problem_error` turns one into the most specific class below:
by its ``code`` first (``stream-limit``, ``state-mismatch``), else by its status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ForecastClientError(Exception):
    """Base of everything this client raises."""


class ServiceUnreachable(ForecastClientError):
    """No answer came (connection refused or lost, a timeout) within the retries allowed."""


class ApiError(ForecastClientError):
    """The service answered with an error (a problem+json body, or a bare HTTP status).

    Attributes:
        status: The HTTP status (or the status of a per-stream answer in a bulk or WebSocket
            answer).
        code: The service's machine-readable code, e.g. ``unknown-stream``.
        title: A short summary of the kind of problem.
        detail: What went wrong with this request.
        field: The offending input (a dotted/indexed path into the request), if one is.
        request_id: The id the service logged the request under.
        retry_after: Seconds the service asked to wait (a 503's ``Retry-After``), if any.
        body: The whole problem body (it may carry more, e.g. ``limit``).
    """

    def __init__(
        self,
        status: int,
        *,
        code: str | None = None,
        title: str | None = None,
        detail: str | None = None,
        field: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.title = title or f"HTTP {status}"
        self.detail = detail or self.title
        self.field = field
        self.request_id = request_id
        self.retry_after = retry_after
        self.body: Mapping[str, Any] = body or {}
        where = f" (field {field})" if field else ""
        rid = f" [request {request_id}]" if request_id else ""
        super().__init__(f"{status} {self.title}: {self.detail}{where}{rid}")


class BadRequest(ApiError):
    """400: the body is not JSON, or not readable (nested too deep, say)."""


class Unauthorized(ApiError):
    """401: no API key, or one the service does not know."""


class Forbidden(ApiError):
    """403: the key's role is too weak for this request."""


class StreamLimitExceeded(Forbidden):
    """403 ``stream-limit``: the tenant keeps as many streams as it may (see ``limit``)."""

    @property
    def limit(self) -> int | None:
        value = self.body.get("limit")
        return value if isinstance(value, int) else None


class NotFound(ApiError):
    """404: no such stream (never created, deleted, expired) or model."""


class Conflict(ApiError):
    """409: the request cannot apply to the stream as it is now."""


class StateMismatch(Conflict):
    """409 ``state-mismatch``: the stream's state was built by weights no longer served;
    re-create it with a history."""


class PayloadTooLarge(ApiError):
    """413: too many readings, series or bytes in one request."""


class InvalidInput(ApiError):
    """422: well-formed, but breaking the model's contract (feature count, NaN, order...)."""


class RateLimited(ApiError):
    """429: a WebSocket message over the connection's rate; not applied."""


class ServiceUnavailable(ApiError):
    """503: the state store (or the model) is not available; safe to retry later."""


class ServerError(ApiError):
    """Any other 5xx."""


_BY_CODE: dict[str, type[ApiError]] = {
    "stream-limit": StreamLimitExceeded,
    "state-mismatch": StateMismatch,
}
_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidInput,
    429: RateLimited,
    503: ServiceUnavailable,
}


def problem_error(
    status: int,
    body: Any,
    *,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> ApiError:
    """The exception for a refused request: ``body`` is its parsed problem (or anything else)."""
    problem: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
    code = _text(problem.get("code"))
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else ApiError
    if retry_after is None and isinstance(problem.get("retry_after"), int | float):
        retry_after = float(problem["retry_after"])
    return cls(
        status,
        code=code,
        title=_text(problem.get("title")),
        detail=_text(problem.get("detail")),
        field=_text(problem.get("field")),
        request_id=_text(problem.get("request_id")) or request_id,
        retry_after=retry_after,
        body=problem,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


__all__ = [
    "ApiError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "ForecastClientError",
    "InvalidInput",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServerError",
    "ServiceUnavailable",
    "ServiceUnreachable",
    "StateMismatch",
    "StreamLimitExceeded",
    "Unauthorized",
    "problem_error",
]
