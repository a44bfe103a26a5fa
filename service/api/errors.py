"""The one table from domain errors to HTTP responses (``application/problem+json``).

Bodies carry ``type``, ``title``, ``status``, ``detail``, ``code``, where one input is at
fault ``field`` (a dotted/indexed path into the request), and the ``request_id`` of the
request (as in its ``X-Request-ID`` header and its log lines). The per-stream errors inside
a bulk or WebSocket answer (``problem_body``) leave it out: their request's id is in the
answer's header, and repeating it in each of thousands of items would cost bytes for nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

from service import errors, request_id

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)

#: Domain error -> HTTP status. The most specific class listed wins.
STATUS: dict[type[errors.ForecastError], int] = {
    errors.MalformedInput: 400,
    errors.InvalidInput: 422,
    errors.UnknownModel: 404,
    errors.UnknownStream: 404,
    errors.StateMismatch: 409,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    # 403, not 429: a count of streams, not a request rate, is used up; retrying cannot help
    # until a stream is deleted or expires, and clients retry a 429 by themselves.
    errors.StreamLimitExceeded: 403,
    errors.ModelNotReady: 503,
    errors.ModelFailed: 503,
    errors.StoreUnavailable: 503,
}


def status_of(exc: errors.ForecastError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": f"urn:stateful-forecast:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if field is not None:
        body["field"] = field
    _add_request_id(body)
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _add_request_id(body: dict[str, Any]) -> None:
    rid = request_id.current()
    if rid is not None:
        body["request_id"] = rid


def problem_body(exc: errors.ForecastError) -> dict[str, Any]:
    """The problem+json body of a domain error, for interfaces that answer many at once."""
    body: dict[str, Any] = {
        "type": f"urn:stateful-forecast:problem:{exc.code}",
        "title": exc.title,
        "status": status_of(exc),
        "detail": exc.detail,
        "code": exc.code,
    }
    if exc.field is not None:
        body["field"] = exc.field
    for name in exc.extensions:
        body[name] = getattr(exc, name)
    return body


def _domain(_: Request[Any, Any, Any], exc: errors.ForecastError) -> Response[dict[str, Any]]:
    headers = None
    if isinstance(exc, errors.StoreUnavailable):
        headers = {"Retry-After": str(exc.retry_after)}
    body = problem_body(exc)
    _add_request_id(body)
    return Response(body, status_code=body["status"], media_type=PROBLEM_JSON, headers=headers)


def _field_of(extra: Any) -> str | None:
    """The offending field of Litestar's validation error list, as ``a.b[0].c``."""
    if not isinstance(extra, list) or not extra or not isinstance(extra[0], dict):
        return None
    key = extra[0].get("key")
    if not key:
        return None
    parts = str(key).split(".")
    return "".join(f"[{p}]" if p.isdigit() else (f".{p}" if i else p) for i, p in enumerate(parts))


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    detail = str(exc.detail)
    if "JSON" in detail and not exc.extra:
        return problem(400, "malformed-body", "Malformed request body", detail)
    messages = exc.extra if isinstance(exc.extra, list) else []
    text = "; ".join(
        f"{m.get('key', '')}: {m.get('message', '')}" for m in messages if isinstance(m, dict)
    )
    return problem(
        422,
        "invalid-input",
        "Invalid input",
        text or detail,
        _field_of(exc.extra),
    )


_HTTP_CODES = {
    # Litestar raises 400 for a body that is not JSON at all; NaN and Infinity literals are
    # not JSON either (non-finite values sent as strings reach validation and get a 422).
    400: ("malformed-body", "Malformed request body"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    408: ("request-timeout", "Request timeout"),
    413: ("payload-too-large", "Payload too large"),
}


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    code, title = _HTTP_CODES.get(status, ("http-error", str(exc.detail)))
    return problem(status, code, title, str(exc.detail), headers=exc.headers)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(
        HTTP_500_INTERNAL_SERVER_ERROR,
        "internal",
        "Internal server error",
        "the server failed to handle this request; it has been logged",
    )


def _under_v2(request: Request[Any, Any, Any]) -> bool:
    path = request.scope.get("path", "")
    return path == "/v2" or path.startswith("/v2/")


def exception_handlers() -> ExceptionHandlersMap:
    """The app-wide table. Errors under ``/v2`` that no v2 route caught (an unknown path or
    method, refused by the router before any route) get the v2 form all the same."""
    from service.api.kserve.errors import exception_handlers as v2_handlers

    v2 = v2_handlers()
    rest: ExceptionHandlersMap = {
        errors.ForecastError: _domain,
        ValidationException: _validation,
        HTTPException: _http,
        Exception: _unexpected,
    }

    def either(kind: Any) -> Any:
        def handle(request: Request[Any, Any, Any], exc: Any) -> Response[Any]:
            handler = v2[kind] if _under_v2(request) else rest[kind]
            return handler(request, exc)

        return handle

    return {kind: either(kind) for kind in rest}


__all__ = [
    "PROBLEM_JSON",
    "STATUS",
    "exception_handlers",
    "problem",
    "problem_body",
    "status_of",
]
