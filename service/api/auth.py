"""API keys, tenants and roles: who is calling, and may they do this.

A key maps to one tenant and one role (``read`` < ``write`` < ``admin``). Only the sha256 of
each key is held in memory, and a presented key is compared against every stored digest with
:func:`hmac.compare_digest`, so neither the keys nor the timing of a lookup give one away.

Every route is guarded by :func:`auth_guard` (installed app-wide): GET and HEAD need ``read``,
every other method ``write``, and a handler (or its controller) may ask for more with
``opt={"role": "admin"}``. The guard runs before the handler touches anything, so a key with
too weak a role gets 403 whatever the stream, and a stream's existence never leaks. Health
probes, ``/metrics`` and the OpenAPI documents are open (see :data:`PUBLIC_PREFIXES`).

The guard covers WebSocket routes too. A refused socket is accepted and at once closed with
code 4401 (no key, or an unknown one) or 4403 (a key whose role is too weak), the reason
saying which: refused during the handshake instead, every client would see the same HTTP 403
(ASGI has no other way to refuse a handshake), and a browser's WebSocket sees no status at
all, only a close code. A handler reads who is calling with :func:`principal_of`, and code
outside a route can call :func:`authenticate` with a connection or headers and
:func:`require` with a role.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import tomllib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from litestar import Litestar, Request, WebSocket
from litestar.connection import ASGIConnection
from litestar.exceptions import (
    NotAuthorizedException,
    PermissionDeniedException,
    WebSocketException,
)
from litestar.handlers.base import BaseRouteHandler
from pydantic import TypeAdapter, ValidationError

from service.settings import ApiKeyEntry, Role, Settings

log = logging.getLogger(__name__)

#: Rank of each role: a principal may act with any role of lower or equal rank.
ROLE_RANK: Final[dict[Role, int]] = {"read": 1, "write": 2, "admin": 3}
#: Methods that only read; every other method writes.
READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
#: Paths open without a key: probes must work for orchestrators and Prometheus, which hold
#: no keys, and the API's description is not a secret. Nothing under them reads a stream.
PUBLIC_PREFIXES: Final = ("/health/", "/v2/health/", "/docs")
PUBLIC_PATHS: Final = frozenset({"/metrics"})
#: Key of the authenticated principal in the connection's scope state.
PRINCIPAL_KEY: Final = "forecast_principal"
API_KEY_HEADER: Final = "x-api-key"
CHALLENGE: Final = 'Bearer realm="stateful-forecast", charset="UTF-8"'
#: A refused WebSocket closes with this plus the HTTP status: 4401 no key, 4403 weak role.
WS_CLOSE_BASE: Final = 4000


class AuthConfigError(ValueError):
    """The key settings are inconsistent or a key file cannot be read; start-up stops."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as. ``key_id`` is a digest prefix for logs (None: anonymous)."""

    tenant: str
    role: Role
    key_id: str | None = None

    def allows(self, role: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


@dataclass(frozen=True, slots=True)
class _StoredKey:
    digest: bytes
    tenant: str
    role: Role


def digest_of(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def read_key_file(path: Path) -> list[ApiKeyEntry]:
    """Entries of a JSON or TOML key file: ``{"keys": [...]}`` (JSON may be a bare list).

    Raises:
        AuthConfigError: unreadable, unparsable, or an entry that is not a valid key.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AuthConfigError(f"cannot read API key file {path}: {exc.strerror or exc}") from exc
    try:
        document: Any = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise AuthConfigError(f"API key file {path} cannot be parsed: {exc}") from exc
    entries = document.get("keys") if isinstance(document, dict) else document
    if not isinstance(entries, list):
        raise AuthConfigError(f"API key file {path} must hold a list of keys under 'keys'")
    try:
        return TypeAdapter(list[ApiKeyEntry]).validate_python(entries)
    except ValidationError as exc:
        problems = "; ".join(
            f"keys[{'.'.join(str(p) for p in e['loc'])}]: {e['msg']}" for e in exc.errors()
        )
        raise AuthConfigError(f"API key file {path}: {problems}") from exc


class Authenticator:
    """The key table and the policy of one app, built once at start-up.

    Args:
        entries: The configured keys.
        enforced: Whether a key is required. When not, every request is ``anonymous``.
        anonymous: The principal of unauthenticated use.
    """

    def __init__(
        self, entries: Sequence[ApiKeyEntry], *, enforced: bool, anonymous: Principal
    ) -> None:
        self.enforced = enforced
        self.anonymous = anonymous
        keys: list[_StoredKey] = []
        seen: dict[bytes, tuple[str, Role]] = {}
        for entry in entries:
            digest = bytes.fromhex(entry.sha256)
            if digest in seen:
                if seen[digest] != (entry.tenant, entry.role):
                    raise AuthConfigError(
                        "one API key is configured twice with different tenants or roles"
                    )
                continue
            seen[digest] = (entry.tenant, entry.role)
            keys.append(_StoredKey(digest, entry.tenant, entry.role))
        self._keys = tuple(keys)

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        """The keys of ``settings.api_keys`` and ``settings.api_keys_file``, and the policy.

        Raises:
            AuthConfigError: ``auth=required`` without keys, or a bad key file.
        """
        entries = list(settings.api_keys)
        if settings.api_keys_file is not None:
            entries += read_key_file(settings.api_keys_file)
        if settings.auth == "required" and not entries:
            raise AuthConfigError(
                "FORECAST_AUTH=required but no API key is configured: set FORECAST_API_KEYS or "
                "FORECAST_API_KEYS_FILE"
            )
        enforced = settings.auth == "required" or (settings.auth == "auto" and bool(entries))
        return cls(
            entries, enforced=enforced, anonymous=Principal(tenant=settings.tenant, role="admin")
        )

    def __len__(self) -> int:
        return len(self._keys)

    def describe(self) -> str:
        """One line for the start-up log."""
        if self.enforced:
            tenants = sorted({k.tenant for k in self._keys})
            return f"API keys enforced: {len(self._keys)} key(s) for tenant(s) {tenants}"
        return (
            f"authentication is OFF: every request acts as tenant {self.anonymous.tenant!r} with "
            "the admin role; configure FORECAST_API_KEYS or FORECAST_API_KEYS_FILE before "
            "exposing this service"
        )

    def lookup(self, key: str) -> Principal | None:
        """The principal of ``key``, or None. Compares with every stored digest, no early exit."""
        presented = digest_of(key)
        found: _StoredKey | None = None
        for stored in self._keys:
            if hmac.compare_digest(stored.digest, presented):
                found = stored
        if found is None:
            return None
        return Principal(tenant=found.tenant, role=found.role, key_id=found.digest.hex()[:8])

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The principal of a request's headers.

        Raises:
            NotAuthorizedException: (401, with ``WWW-Authenticate``) no key or an unknown one.
        """
        if not self.enforced:
            return self.anonymous
        key = presented_key(headers)
        if key is None:
            raise NotAuthorizedException(
                "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key'",
                headers={"WWW-Authenticate": CHALLENGE},
            )
        principal = self.lookup(key)
        if principal is None:
            raise NotAuthorizedException(
                "the API key is not valid",
                headers={"WWW-Authenticate": CHALLENGE + ', error="invalid_token"'},
            )
        return principal


def announce(
    authenticator: Authenticator,
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """A lifespan that logs the authentication mode at start-up (a WARNING when it is off)."""

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        level = logging.INFO if authenticator.enforced else logging.WARNING
        log.log(level, "%s", authenticator.describe())
        yield

    return lifespan


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key of ``Authorization: Bearer <key>`` or, failing that, of ``X-API-Key``."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get(API_KEY_HEADER)
    if key and key.strip():
        return key.strip()
    return None


def authenticate(
    source: ASGIConnection[Any, Any, Any, Any] | Mapping[str, str],
    auth: Authenticator | Settings | None = None,
) -> Principal:
    """The principal behind a connection (HTTP or WebSocket) or a header mapping.

    ``auth`` defaults to the authenticator of the connection's app (``app.state.authenticator``);
    a :class:`Settings` builds one (reading any key file), for callers outside an app.

    Raises:
        NotAuthorizedException: no key, or an unknown one, while keys are enforced.
    """
    authenticator: Authenticator | None = (
        Authenticator.from_settings(auth) if isinstance(auth, Settings) else auth
    )
    if isinstance(source, ASGIConnection):
        if authenticator is None:
            authenticator = source.app.state.authenticator
        headers: Mapping[str, str] = source.headers
    else:
        headers = {k.lower(): v for k, v in source.items()}
    if authenticator is None:
        raise TypeError("authenticate() needs an Authenticator or Settings outside an app")
    return authenticator.authenticate(headers)


def require(principal: Principal, role: Role) -> None:
    """Raise PermissionDeniedException (403) unless ``principal`` may act as ``role``."""
    if not principal.allows(role):
        raise PermissionDeniedException(
            f"this API key has the {principal.role!r} role; this needs {role!r}"
        )


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def required_role(connection: ASGIConnection[Any, Any, Any, Any], opt: Mapping[str, Any]) -> Role:
    role = opt.get("role")
    if role in ROLE_RANK:
        return role  # type: ignore[no-any-return]
    method = connection.scope.get("method")
    return "read" if method in READ_METHODS else "write"


async def auth_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """App-wide guard: authenticate, check the role, remember the principal for the handler.

    A refused WebSocket is accepted, then closed with 4000 + the HTTP status (4401, 4403),
    the usual convention, rather than refused at the handshake (see the module).
    """
    if handler.opt.get("public") or is_public(connection.scope["path"]):
        return
    try:
        principal = authenticate(connection)
        require(principal, required_role(connection, handler.opt))
    except (NotAuthorizedException, PermissionDeniedException) as exc:
        if isinstance(connection, WebSocket):
            await connection.accept()
            raise WebSocketException(
                detail=_close_reason(str(exc.detail)), code=WS_CLOSE_BASE + exc.status_code
            ) from exc
        raise
    connection.scope.setdefault("state", {})[PRINCIPAL_KEY] = principal


def _close_reason(text: str) -> str:
    """``text`` cut to the 123 bytes a WebSocket close frame has room for."""
    data = text.encode("utf-8")
    return text if len(data) <= 123 else data[:120].decode("utf-8", "ignore") + "..."


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The principal the guard authenticated (or authenticate now if it did not run)."""
    principal = connection.scope.get("state", {}).get(PRINCIPAL_KEY)
    if isinstance(principal, Principal):
        return principal
    return authenticate(connection)


def provide_tenant(request: Request[Any, Any, Any]) -> str:
    """The ``tenant`` dependency: the tenant of the caller's key."""
    return principal_of(request).tenant


__all__ = [
    "PUBLIC_PATHS",
    "PUBLIC_PREFIXES",
    "ROLE_RANK",
    "AuthConfigError",
    "Authenticator",
    "Principal",
    "announce",
    "auth_guard",
    "authenticate",
    "digest_of",
    "presented_key",
    "principal_of",
    "provide_tenant",
    "read_key_file",
    "require",
]
