"""What the sync and the async client share: defaults, headers, which failures to retry."""

from __future__ import annotations

from typing import Final

import httpx

from forecast_client.errors import ServiceUnreachable
from forecast_client.retry import Retry

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


class Attempts:
    """The tries of one request (or connection, or subscription) under a retry policy."""

    def __init__(self, policy: Retry, method: str, where: str) -> None:
        self.policy = policy
        self.method = method
        self.where = where
        self.retries = 0

    def after_failure(self, cause: BaseException | None) -> float:
        """The pause before trying again after no answer came.

        Raises:
            ServiceUnreachable: the policy's tries are spent.
        """
        self.retries += 1
        pause = self.policy.pause(self.retries)
        if pause is None:
            raise unreachable(self.method, self.where, cause)
        return pause

    def after_answer(self, status: int, retry_after: float | None) -> float | None:
        """The pause before trying again after an answer of ``status``; None when the answer
        is final (not one to retry, or the tries are spent)."""
        if status not in self.policy.statuses:
            return None
        pause = self.policy.pause(self.retries + 1, retry_after)
        if pause is not None:
            self.retries += 1
        return pause


__all__ = [
    "DEFAULT_URL",
    "SSE_READ_TIMEOUT",
    "TRANSIENT",
    "Attempts",
    "headers_for",
    "unreachable",
]
