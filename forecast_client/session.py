"""What the sync and the async client share: defaults, headers, which failures to retry."""

from __future__ import annotations

from typing import Final

import httpx

from forecast_client.errors import ServiceUnreachable

DEFAULT_URL: Final = "http://127.0.0.1:8000"
#: A subscription with no event and no keep-alive (the service sends one after 15 s of
#: silence by default) for this long counts as broken and is followed again.
SSE_READ_TIMEOUT: Final = 60.0
#: Failures after which the request may or may not have reached the service: a retry is
#: safe (readings are deduplicated), and the only way to know.
TRANSIENT: Final = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)


def headers_for(api_key: str | None) -> dict[str, str]:
    from forecast_client import __version__

    headers = {"User-Agent": f"forecast-client/{__version__}"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def unreachable(method: str, where: str, cause: BaseException | None) -> ServiceUnreachable:
    reason = f": {cause}" if cause is not None and str(cause) else ""
    kind = f" ({type(cause).__name__})" if cause is not None else ""
    error = ServiceUnreachable(f"{method} {where} failed after the retries allowed{kind}{reason}")
    error.__cause__ = cause
    return error


__all__ = ["DEFAULT_URL", "SSE_READ_TIMEOUT", "TRANSIENT", "headers_for", "unreachable"]
