"""Optional OpenTelemetry tracing: spans for the request, the batch, the store and the model.

Off unless ``FORECAST_OTEL_ENDPOINT`` is set (the ``otel`` extra installs the packages), and
then free: OpenTelemetry is not even imported, and every place that could open a span pays
one context-variable lookup. When on, the app's :class:`Tracing` is made current for each
request by the request middleware; everything awaited below it (store calls, the stateless
model calls, worker threads through ``asyncio.to_thread``) finds it there.

A batch serves many requests at once, so its span cannot be every request's child: it is the
child of the first traced request in it and carries a link to each of them (the OpenTelemetry
way to model fan-in), and the store and model spans of the batch are its children.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from service import __version__

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, SpanContext

log = logging.getLogger(__name__)

SERVICE_NAME: Final = "stateful-forecast"
_NOOP: Final[AbstractContextManager[None]] = nullcontext()
_active: ContextVar[Tracing | None] = ContextVar("forecast_tracing", default=None)

Attributes = dict[str, str | int | float | bool]


@dataclass(frozen=True, slots=True)
class Origin:
    """The span an item was submitted under, for the batch that later serves it."""

    tracing: Tracing
    context: SpanContext


class Tracing:
    """One app's tracer. Built from an endpoint (:meth:`to_endpoint`) or, in tests, around a
    provider with an in-memory exporter."""

    def __init__(self, provider: TracerProvider, *, owned: bool = False) -> None:
        from opentelemetry import propagate, trace
        from opentelemetry.trace import Link, NonRecordingSpan, SpanKind, Status, StatusCode

        self.provider = provider
        self._owned = owned
        self._tracer = provider.get_tracer(SERVICE_NAME, __version__)
        self._trace = trace
        self._propagator = propagate.get_global_textmap()
        self._link = Link
        self._remote = NonRecordingSpan
        self._server = SpanKind.SERVER
        self._client = SpanKind.CLIENT
        self._internal = SpanKind.INTERNAL
        self._error = Status(StatusCode.ERROR)

    @classmethod
    def to_endpoint(cls, endpoint: str) -> Tracing:
        """Spans exported in batches over OTLP/HTTP to ``endpoint`` (a collector's base URL,
        e.g. ``http://otel-collector:4318``, or its full ``.../v1/traces`` URL).

        The SDK's own ``OTEL_*`` variables apply (``OTEL_SERVICE_NAME``,
        ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``...); the service name defaults
        to ``stateful-forecast``.
        """
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            raise RuntimeError(
                "FORECAST_OTEL_ENDPOINT is set but OpenTelemetry is not installed: "
                "pip install 'stateful-forecast[otel]'"
            ) from exc
        resource = Resource.create({"service.version": __version__})
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
        url = endpoint.rstrip("/")
        if not url.endswith("/v1/traces"):
            url += "/v1/traces"
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
        log.info("exporting traces to %s", url)
        return cls(provider, owned=True)

    def close(self) -> None:
        """Export what is left and stop, if this object made the provider."""
        if self._owned:
            self.provider.shutdown()

    @contextmanager
    def request(
        self, method: str, path: str, headers: Sequence[tuple[bytes, bytes]]
    ) -> Iterator[Span]:
        """The server span of one request, continuing the caller's trace (W3C
        ``traceparent``) when it sent one; makes this tracing current for the request."""
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in headers
            if name in (b"traceparent", b"tracestate")
        }
        parent = self._propagator.extract(carrier) if carrier else None
        with self._tracer.start_as_current_span(
            method,
            context=parent,
            kind=self._server,
            attributes={"http.request.method": method, "url.path": path},
        ) as span:
            token = _active.set(self)
            try:
                yield span
            finally:
                _active.reset(token)

    def finish_request(self, span: Span, method: str, route: str | None, status: int) -> None:
        """Name the server span after its route once routing knew it, and record the status."""
        if route is not None:
            span.update_name(f"{method} {route}")
            span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(self._error)

    @contextmanager
    def _batch(
        self, name: str, origins: Sequence[Origin], attributes: Attributes
    ) -> Iterator[None]:
        parent = self._trace.set_span_in_context(self._remote(origins[0].context))
        links = [self._link(origin.context) for origin in origins]
        with self._tracer.start_as_current_span(
            name, context=parent, links=links, attributes=attributes
        ):
            token = _active.set(self)
            try:
                yield
            finally:
                _active.reset(token)

    def _span(
        self, name: str, attributes: Attributes | None, client: bool
    ) -> AbstractContextManager[Any]:
        return self._tracer.start_as_current_span(
            name, attributes=attributes, kind=self._client if client else self._internal
        )


def span(
    name: str, attributes: Attributes | None = None, *, client: bool = False
) -> AbstractContextManager[Any]:
    """A child span of whatever span is current, or nothing when tracing is off.

    ``client``: the span is a call to another system (the state store).
    """
    active = _active.get()
    if active is None:
        return _NOOP
    return active._span(name, attributes, client)


def origin() -> Origin | None:
    """Where an item submitted now comes from (the current span), if tracing is on."""
    active = _active.get()
    if active is None:
        return None
    context = active._trace.get_current_span().get_span_context()
    return Origin(active, context) if context.is_valid else None


def batch_span(
    name: str, origins: Sequence[Origin | None], attributes: Attributes | None = None
) -> AbstractContextManager[Any]:
    """The span of one batch serving items submitted under ``origins`` (nothing if none of
    them was traced); current, with its tracing, while the batch runs."""
    traced = [o for o in origins if o is not None]
    if not traced:
        return _NOOP
    return traced[0].tracing._batch(name, traced, attributes or {})


def current_ids() -> tuple[str, str] | None:
    """Hex trace and span ids of the current span, for log lines; None when off or outside."""
    active = _active.get()
    if active is None:
        return None
    context = active._trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def from_settings(endpoint: str | None) -> Tracing | None:
    """The tracing ``FORECAST_OTEL_ENDPOINT`` asks for (None: off)."""
    if not endpoint:
        return None
    return Tracing.to_endpoint(endpoint)


__all__ = [
    "Origin",
    "Tracing",
    "batch_span",
    "current_ids",
    "from_settings",
    "origin",
    "span",
]
