"""The OpenTelemetry side of :mod:`engramdb.telemetry` (imported only when it is on).

Spans: one per public engine call (``engram.<call>``, from :mod:`engramdb._guard`),
``engram.search`` with its stages inside a recall, ``engram.commit`` per logged
write (the one commit path), and an HTTP server span per request joined to the
caller's ``traceparent`` (:mod:`engramdb.server.tracing`).

Metrics: ``engram.operation.duration`` (s, per call and error type),
``engram.recall.candidates`` (per source), ``engram.events`` (per event kind).

Attributes carry identifiers and counts, never memory text or queries,
unless ``capture_text`` is on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as metadata_version
from typing import Any

from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from engramdb.errors import ConfigurationError

__all__ = ["Telemetry"]

SCOPE = "engramdb"
try:
    __version__ = metadata_version("engramdb")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0"
TEXT_LIMIT = 1024  # characters of captured text per attribute (opt-in only)

# Arguments of public calls that are identifiers or numbers, never memory text.
_SAFE_ARGS = {
    "namespace": "engram.namespace", "k": "engram.k", "layer": "engram.layer",
    "memory_id": "engram.memory.id", "decision_id": "engram.decision.id",
    "conflict_id": "engram.conflict.id", "limit": "engram.limit", "since": "engram.since",
    "budget": "engram.budget", "max_tokens": "engram.max_tokens", "name": "engram.name",
}
# Arguments that are text an agent wrote or asked: recorded only when capture_text is on.
_TEXT_ARGS = {"text": "engram.text", "query": "engram.query", "content": "engram.text",
              "task": "engram.query", "description": "engram.text", "reason": "engram.reason"}


def _unconfigured(provider: Any) -> bool:
    return isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def _exporter_names(variable: str) -> list[str]:
    raw = os.environ.get(variable, "otlp")
    return [n.strip().lower() for n in raw.split(",") if n.strip() and n.strip() != "none"]


def _check_protocol() -> None:
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf").strip()
    if protocol != "http/protobuf":
        raise ConfigurationError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: engramdb[otel] ships "
            "the OTLP HTTP exporter; set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
            variable="OTEL_EXPORTER_OTLP_PROTOCOL")


def _resource() -> Any:
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create({"service.version": __version__})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "engramdb"}))
    return resource


def _unknown(variable: str, name: str) -> ConfigurationError:
    return ConfigurationError(f"{variable}={name!r} is not supported here; use otlp, console "
                              "or none", variable=variable)


def tracer_provider_from_env() -> Any:
    """The global tracer provider, or a new SDK one exporting as ``OTEL_TRACES_EXPORTER`` says."""
    current = trace.get_tracer_provider()
    if not _unconfigured(current):
        return current  # the host application configured OpenTelemetry itself
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=_resource())
    for name in _exporter_names("OTEL_TRACES_EXPORTER"):
        if name == "otlp":
            _check_protocol()
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        else:
            raise _unknown("OTEL_TRACES_EXPORTER", name)
    trace.set_tracer_provider(provider)
    return provider


def meter_provider_from_env() -> Any:
    """The global meter provider, or a new SDK one exporting as ``OTEL_METRICS_EXPORTER`` says."""
    current = metrics.get_meter_provider()
    if not isinstance(current, metrics.NoOpMeterProvider) and \
            type(current).__name__ != "_ProxyMeterProvider":
        return current
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        PeriodicExportingMetricReader,
    )

    readers = []
    for name in _exporter_names("OTEL_METRICS_EXPORTER"):
        if name == "otlp":
            _check_protocol()
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        elif name == "console":
            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
        else:
            raise _unknown("OTEL_METRICS_EXPORTER", name)
    provider = MeterProvider(resource=_resource(), metric_readers=readers)
    metrics.set_meter_provider(provider)
    return provider


class _Span:
    """A live span with the small surface the engine uses (``set``, ``stage``)."""

    __slots__ = ("_span", "_tel", "name")

    def __init__(self, tel: Telemetry, span: Any, name: str) -> None:
        self._tel = tel
        self._span = span
        self.name = name

    def set(self, key: str, value: Any) -> None:
        self._span.set_attribute(key, value)

    def result(self, value: Any) -> None:
        self._tel.result(self, value)

    @contextmanager
    def stage(self, name: str) -> Iterator[_Span]:
        """A child span ``<this>.<name>``; its duration also lands here as ``engram.<name>_ms``."""
        started = time.perf_counter()
        with self._tel.tracer.start_as_current_span(f"{self.name}.{name}") as child:
            yield _Span(self._tel, child, f"{self.name}.{name}")
        self._span.set_attribute(f"engram.{name}_ms",
                                 round((time.perf_counter() - started) * 1000, 3))


class Telemetry:
    """Tracer, meter and instruments of one process."""

    def __init__(self, *, tracer_provider: Any, meter_provider: Any, capture_text: bool,
                 from_env: bool) -> None:
        if from_env:
            tracer_provider = tracer_provider or tracer_provider_from_env()
            meter_provider = meter_provider or meter_provider_from_env()
        self.capture_text = capture_text
        self.tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(
            SCOPE, __version__)
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(SCOPE, __version__)
        self.duration = meter.create_histogram(
            "engram.operation.duration", unit="s",
            description="Duration of public engine calls, by call and error type.")
        self.candidates = meter.create_histogram(
            "engram.recall.candidates", unit="{candidate}",
            description="Candidates a recall ranked, by source (text, vector).")
        self.events = meter.create_counter(
            "engram.events", unit="{event}", description="Events logged, by kind.")

    # -- spans -------------------------------------------------------------------------

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[_Span]:
        with self.tracer.start_as_current_span(name, attributes=attributes) as s:
            yield _Span(self, s, name)

    def annotate(self, key: str, value: Any) -> None:
        trace.get_current_span().set_attribute(key, value)

    def text(self, s: _Span, key: str, value: Any) -> None:
        """Record ``value`` (memory text or a query) only if the operator opted in."""
        if self.capture_text and isinstance(value, str):
            s.set(key, value[:TEXT_LIMIT])

    @contextmanager
    def operation(self, name: str, owner: Any, fn: Any, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> Iterator[_Span]:
        attrs: dict[str, Any] = {"engram.operation": name}
        principal = _principal_of(owner)
        if principal is not None:
            attrs["engram.principal"] = principal
        texts: list[tuple[str, Any]] = []
        for param, value in _arguments(fn, args, kwargs):
            key = _SAFE_ARGS.get(param)
            if key is not None and isinstance(value, str | int | float | bool):
                attrs[key] = value
            elif param in _TEXT_ARGS:
                texts.append((_TEXT_ARGS[param], value))
        started = time.perf_counter()
        error: str | None = None
        with self.tracer.start_as_current_span(f"engram.{name}", attributes=attrs,
                                               record_exception=False,
                                               set_status_on_exception=False) as s:
            span = _Span(self, s, f"engram.{name}")
            for key, value in texts:
                self.text(span, key, value)
            try:
                yield span
            except BaseException as exc:
                # The error's code only: messages may quote the caller's input.
                error = str(getattr(exc, "code", None) or type(exc).__name__)
                s.set_attribute("error.type", error)
                s.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            finally:
                labels = {"engram.operation": name}
                if error is not None:
                    labels["error.type"] = error
                self.duration.record(time.perf_counter() - started, labels)

    def result(self, span: _Span, value: Any) -> None:
        """Counts and identifiers of a call's result (never its text)."""
        hits = getattr(value, "hits", None)
        if isinstance(hits, tuple | list):
            span.set("engram.hits", len(hits))
        elif isinstance(value, list | tuple):
            span.set("engram.results", len(value))
        mid, version = getattr(value, "id", None), getattr(value, "version", None)
        if isinstance(mid, str) and isinstance(version, int):
            span.set("engram.memory.id", mid)
            span.set("engram.memory.version", version)

    # -- HTTP -----------------------------------------------------------------------------

    @contextmanager
    def server_span(self, method: str, route: str, path: str,
                    headers: Mapping[str, str]) -> Iterator[_Span]:
        """The span of one HTTP request, continuing the caller's trace (W3C ``traceparent``)."""
        parent = propagate.extract(headers)
        attrs = {"http.request.method": method, "http.route": route, "url.path": path}
        with self.tracer.start_as_current_span(f"{method} {route}", context=parent,
                                               kind=SpanKind.SERVER, attributes=attrs,
                                               record_exception=False) as s:
            yield _Span(self, s, f"{method} {route}")

    def inject(self, headers: dict[str, str]) -> None:
        propagate.inject(headers)


_PARAMS: dict[Any, tuple[str, ...]] = {}


def _arguments(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
               ) -> Iterator[tuple[str, Any]]:
    names = _PARAMS.get(fn)
    if names is None:
        code = fn.__code__
        names = _PARAMS[fn] = code.co_varnames[:code.co_argcount]
    yield from zip(names[1:], args[1:], strict=False)  # [0] is self
    yield from kwargs.items()


def _principal_of(owner: Any) -> str | None:
    principal = getattr(owner, "_principal", None)
    if principal is None:
        principal = getattr(getattr(owner, "_caller", None), "principal", None)
    name = getattr(principal, "name", None)
    return name if isinstance(name, str) else None
