"""A reading message's payload, decoded by the same rules as a REST observe body.

A payload is one JSON reading, ``{"timestamp": ..., "value": 1.5}`` (or ``"values": [...]``
for a model of several features), or a JSON list of them. Times and values mean what they
mean in ``POST /v1/streams/{id}/observations``: the same decoder reads them. What it refuses
becomes a ``Refusal``, published to the errors topic with its reason.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.exceptions import ValidationException

from service.api.bodies import check_depth
from service.api.decoders import observe_body
from service.core.observations import Observations
from service.errors import ForecastError, MalformedInput

#: How the decoder names the readings, and how a refusal names them for MQTT.
_FIELD, _PAYLOAD = "observations", "payload"


class Refusal(Exception):
    """A message that cannot be applied, and why (a problem code, its detail, the field)."""

    def __init__(
        self, code: str, detail: str, field: str | None = None, errors: list[Any] | None = None
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.field = field
        self.errors = errors

    @classmethod
    def of(cls, exc: ForecastError) -> Refusal:
        return cls(exc.code, exc.detail, _renamed(exc.field))

    def body(self, topic: str, stream_id: str | None) -> bytes:
        """What the errors topic carries for this refusal."""
        out: dict[str, Any] = {
            "topic": topic,
            "stream_id": stream_id,
            "code": self.code,
            "detail": self.detail,
        }
        if self.field is not None:
            out["field"] = self.field
        if self.errors:
            out["errors"] = self.errors
        return msgspec.json.encode(out)


def readings(payload: bytes) -> Observations:
    """The readings of one message, or ``Refusal``."""
    try:
        check_depth(payload, "the payload")
        shape = msgspec.json.decode(payload)
    except ForecastError as exc:
        raise Refusal.of(exc) from None
    except msgspec.DecodeError as exc:
        raise Refusal(MalformedInput.code, f"the payload is not valid JSON: {exc}") from None
    if isinstance(shape, dict):
        body = b'{"observations":[' + payload + b"]}"
    elif isinstance(shape, list) and shape:
        body = b'{"observations":' + payload + b"}"
    else:
        raise Refusal(
            "invalid-input",
            'the payload is a reading {"timestamp": ..., "value": ...} or a non-empty list of them',
            _PAYLOAD,
        )
    try:
        return observe_body(body, ("MQTT", "readings"))
    except ForecastError as exc:
        raise Refusal.of(exc) from None
    except ValidationException as exc:
        errors = [
            {**e, "key": _renamed(str(e.get("key")))} if isinstance(e, dict) else e
            for e in (exc.extra if isinstance(exc.extra, list) else [])
        ]
        raise Refusal(
            "invalid-input", "the payload's readings are not valid", _PAYLOAD, errors
        ) from None


def _renamed(field: str | None) -> str | None:
    """``observations[1].timestamp`` as ``payload[1].timestamp``."""
    if field is None or not field.startswith(_FIELD):
        return field
    return _PAYLOAD + field[len(_FIELD) :]


__all__ = ["Refusal", "readings"]
