"""MQTT topics: where readings come in (and which stream they are for), where answers go.

A readings pattern is a topic filter with one place for the stream id: ``{stream_id}`` where
it is written (``plant/{stream_id}/telemetry``), else its only ``+`` (``sensors/+/readings``).
Other ``+`` levels and a final ``#`` stay wildcards. The stream id is that whole topic level
as it arrived (so it holds no ``/``, ``+`` or ``#``).

Forecast and error topics are templates: ``{stream_id}`` is replaced by the stream's id.
"""

from __future__ import annotations

from dataclasses import dataclass

PLACEHOLDER = "{stream_id}"


def _levels(pattern: str) -> list[str]:
    if not pattern or "\0" in pattern:
        raise ValueError("a topic pattern is non-empty text without NUL")
    return pattern.split("/")


@dataclass(frozen=True, slots=True)
class ReadingsTopic:
    """A readings pattern: its subscription filter, and the stream id of a matching topic."""

    filter: str
    levels: tuple[str, ...]
    at: int

    @classmethod
    def parse(cls, pattern: str) -> ReadingsTopic:
        levels = _levels(pattern)
        if pattern.startswith("$"):
            raise ValueError("the readings pattern may not start with '$' (a broker's topics)")
        named = [i for i, level in enumerate(levels) if level == PLACEHOLDER]
        plus = [i for i, level in enumerate(levels) if level == "+"]
        if len(named) > 1 or (not named and len(plus) != 1):
            raise ValueError(
                f"readings pattern {pattern!r} needs one {PLACEHOLDER} level, or one '+' level "
                "for the stream id"
            )
        for i, level in enumerate(levels):
            bad = level not in {"+", "#", PLACEHOLDER} and any(c in level for c in "+#{}")
            if bad or (level == "#" and i != len(levels) - 1):
                raise ValueError(f"readings pattern {pattern!r}: level {level!r} is not valid")
        at = named[0] if named else plus[0]
        wildcard = tuple("+" if i == at else level for i, level in enumerate(levels))
        return cls("/".join(wildcard), wildcard, at)

    def subscription(self, share_group: str) -> str:
        """The filter to subscribe to; under ``$share/<group>/`` the broker hands each
        message to one member of the group (one replica), not to all of them."""
        return f"$share/{share_group}/{self.filter}" if share_group else self.filter

    def stream_id(self, topic: str) -> str | None:
        """The stream id in ``topic``, or None when the topic does not match the filter."""
        got = topic.split("/")
        pattern = self.levels
        if pattern[-1] == "#":
            if len(got) < len(pattern) - 1:
                return None
        elif len(got) != len(pattern):
            return None
        for level, value in zip(pattern, got, strict=False):
            if level == "#":
                break
            if level != "+" and level != value:
                return None
        found = got[self.at]
        return found or None


def check_template(template: str) -> str:
    """A forecasts or errors topic template: a topic name, ``{stream_id}`` allowed."""
    _levels(template)
    rest = template.replace(PLACEHOLDER, "")
    if any(c in rest for c in "+#{}") or template.startswith("$"):
        raise ValueError(f"topic {template!r} may hold no wildcard, brace but {PLACEHOLDER}, or $")
    return template


def publish_topic(template: str, stream_id: str) -> str | None:
    """The template with the stream id put in; None for an id no topic name can carry."""
    if any(c in stream_id for c in "+#\0"):
        return None
    return template.replace(PLACEHOLDER, stream_id)


__all__ = ["PLACEHOLDER", "ReadingsTopic", "check_template", "publish_topic"]
