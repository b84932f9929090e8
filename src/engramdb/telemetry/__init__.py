"""OpenTelemetry traces and metrics, off unless the operator turns them on.

This module is the switch and the no-op side: it never imports
``opentelemetry``. When telemetry is off (the default) every helper here
returns at once (one global read), so the engine pays nothing measurable and
the OpenTelemetry packages are never loaded. When it is on, the work is done
by :mod:`engramdb.telemetry._sdk` (the ``otel`` extra).

Turning it on, the standard way (see docs/observability.md):

* environment: ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` set to
  something other than ``none``, or ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or its
  ``_TRACES_`` / ``_METRICS_`` forms) set; ``ENGRAM_OTEL=on`` forces it on
  (using whatever global provider the host application installed),
  ``ENGRAM_OTEL=off`` or ``OTEL_SDK_DISABLED=true`` forces it off. Read once,
  when the first database is opened (:func:`configure_from_env`).
* code: :func:`configure` with your own providers (tests use in-memory ones).

Memory text (what agents wrote, and recall queries) never goes into span
attributes unless ``ENGRAM_OTEL_CAPTURE_TEXT=true`` or
``configure(capture_text=True)``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from engramdb.errors import MissingExtra

__all__ = [
    "NOOP",
    "active",
    "annotate",
    "candidates",
    "configure",
    "configure_from_env",
    "disable",
    "inject",
    "logged",
    "operation",
    "span",
]

log = logging.getLogger("engramdb.telemetry")

# The live telemetry (an ``engramdb.telemetry._sdk.Telemetry``) or None when off. Hot paths
# read this one global and do nothing else when it is None.
_active: Any = None
_env_checked = False

_TRUE = frozenset({"1", "true", "yes", "on"})
_OTLP_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                   "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")


class _NoopSpan:
    """What :func:`span` yields when telemetry is off: accepts everything, records nothing."""

    __slots__ = ()

    def __enter__(self) -> _NoopSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set(self, key: str, value: Any) -> None:
        return None

    def stage(self, name: str) -> _NoopSpan:
        return self

    def result(self, value: Any) -> None:
        return None


NOOP = _NoopSpan()


def active() -> Any:
    """The live telemetry object, or ``None`` when telemetry is off."""
    return _active


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether ``environ`` asks for telemetry (the rules in the module docstring)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return False
    explicit = environ.get("ENGRAM_OTEL", "").strip().lower()
    if explicit:
        return explicit in _TRUE
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"):
        value = environ.get(name, "").strip().lower()
        if value and value != "none":
            return True
    return any(environ.get(name, "").strip() for name in _OTLP_ENDPOINTS)


def configure_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """Turn telemetry on if the environment asks for it; once per process.

    Called when a database is opened and when the HTTP app is built, so an
    operator needs only the ``OTEL_*`` variables. Returns whether it is on.

    When only ``OTEL_*`` variables ask (they may be meant for the host
    application) and the SDK is not installed, a warning is logged and
    telemetry stays off.

    Raises:
        MissingExtra: ``ENGRAM_OTEL=on`` but the ``otel`` extra is not installed.
        ConfigurationError: an ``OTEL_*`` exporter or protocol this build cannot serve.
    """
    global _env_checked
    if _env_checked or _active is not None:
        return _active is not None
    env = os.environ if environ is None else environ
    if not wanted(env):
        _env_checked = True
        return False
    capture = env.get("ENGRAM_OTEL_CAPTURE_TEXT", "").strip().lower() in _TRUE
    try:
        configure(capture_text=capture, from_env=True)  # a bad setting raises on every open
    except MissingExtra:
        if env.get("ENGRAM_OTEL", "").strip().lower() in _TRUE:
            raise  # asked for by name: say so
        # OTEL_* may be meant for the host application alone: run without telemetry.
        _env_checked = True
        log.warning("OTEL_* variables are set but the OpenTelemetry SDK is not installed: "
                    "EngramDB sends no telemetry (pip install 'engramdb[otel]', or set "
                    "ENGRAM_OTEL=off to silence this)")
        return False
    _env_checked = True
    return True


def configure(*, tracer_provider: Any = None, meter_provider: Any = None,
              capture_text: bool = False, from_env: bool = False) -> None:
    """Turn telemetry on.

    Args:
        tracer_provider: an OpenTelemetry ``TracerProvider``; by default the
            global one, or (with ``from_env``) one built from ``OTEL_*`` when
            the host application has not installed its own.
        meter_provider: the same for metrics.
        capture_text: put memory text and recall queries into span
            attributes (``engram.text``, ``engram.query``). Off by default:
            memories are what agents wrote, often personal data.
        from_env: build and install SDK providers with the exporters the
            ``OTEL_*`` variables name, where none is installed yet.

    Raises:
        MissingExtra: the ``otel`` extra is not installed.
    """
    global _active
    try:
        from engramdb.telemetry import _sdk

        tel = _sdk.Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider,
                             capture_text=capture_text, from_env=from_env)
    except ImportError as exc:  # the SDK or the OTLP exporter
        raise MissingExtra(
            "OpenTelemetry was asked for (OTEL_* or ENGRAM_OTEL variables) but is not "
            "installed: pip install 'engramdb[otel]', or unset those variables",
            extra="otel") from exc
    _active = tel


def disable() -> None:
    """Turn telemetry off again (spans already ended stay with their exporter)."""
    global _active
    _active = None


def span(name: str, attributes: Mapping[str, Any] | None = None) -> Any:
    """A span around a block (a child of the current one); :data:`NOOP` when off.

    The yielded object has ``set(key, value)`` and ``stage(name)`` (a child
    span whose duration is also recorded on this one as ``engram.<name>_ms``).
    """
    tel = _active
    if tel is None:
        return NOOP
    return tel.span(name, attributes)


def annotate(key: str, value: Any) -> None:
    """Set an attribute on the current span, if telemetry is on."""
    tel = _active
    if tel is not None:
        tel.annotate(key, value)


def operation(name: str, owner: Any, fn: Any, args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> Any:
    """The span of one public engine call (see :mod:`engramdb._guard`); :data:`NOOP` when off.

    The yielded object also takes ``result(value)``: counts and ids of what the call returned.
    """
    tel = _active
    if tel is None:
        return NOOP
    return tel.operation(name, owner, fn, args, kwargs)


def candidates(text: int, vector: int) -> None:
    """Record how many candidates a recall ranked from each source."""
    tel = _active
    if tel is not None:
        tel.candidates.record(text, {"engram.source": "text"})
        tel.candidates.record(vector, {"engram.source": "vector"})


def logged(kind: str, n: int = 1) -> None:
    """Count ``n`` logged events of ``kind``."""
    tel = _active
    if tel is not None and n:
        tel.events.add(n, {"engram.event.kind": kind})


def inject(headers: dict[str, str]) -> None:
    """Add the current trace context (``traceparent``) to outgoing HTTP ``headers``."""
    tel = _active
    if tel is not None:
        tel.inject(headers)
