"""The broker URL and credential settings as the MQTT client's connection options."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr


@dataclass(frozen=True, slots=True)
class Broker:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def from_url(
        cls, url: str, *, username: str | None = None, password: SecretStr | None = None
    ) -> Broker:
        """``mqtt://[user:password@]host[:port]`` or ``mqtts://``; the settings' user and
        password, when given, win over the URL's."""
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        if parts.scheme not in {"mqtt", "mqtts"} or not parts.hostname:
            raise ValueError("the MQTT URL is mqtt://host[:port] or mqtts://host[:port]")
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise ValueError("the MQTT URL's port is not a number from 0 to 65535") from exc
        user = username if username is not None else _unquoted(parts.username)
        secret = password.get_secret_value() if password is not None else None
        return cls(
            host=parts.hostname,
            port=port,
            username=user,
            password=secret if secret is not None else _unquoted(parts.password),
            tls=tls,
        )

    def tls_context(self) -> ssl.SSLContext | None:
        """The system's trusted CAs, host name checked; None for plain mqtt://."""
        return ssl.create_default_context() if self.tls else None

    def __str__(self) -> str:  # never the password
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def _unquoted(text: str | None) -> str | None:
    return unquote(text) if text else None


__all__ = ["Broker"]
