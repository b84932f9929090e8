"""Prometheus metrics of one server process, rendered as text exposition 0.0.4.

Request counters and latency histograms are kept here per route template
(``/v1/memories/{memory_id}``, never the raw path, so label sets stay
bounded). Database gauges (memories per layer and status, open conflicts, log
length) are read from the database at scrape time; the last ``verify`` result
is the one this process last ran.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from typing import Any

from engramdb.model import LAYERS, VerifyReport

__all__ = ["BUCKETS", "Metrics"]

BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                              2.5, 5.0, 10.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Mapping[str, str]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs.items()) + "}"


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _Histogram:
    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.counts[i] += 1
        self.sum += seconds
        self.count += 1


class Metrics:
    """Thread-safe request metrics plus the last verify outcome."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}
        self._latency: dict[tuple[str, str], _Histogram] = {}
        self._verify: tuple[VerifyReport, float] | None = None
        self.started = time.time()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one finished request and its latency."""
        with self._lock:
            key = (method, route, str(status))
            self._requests[key] = self._requests.get(key, 0) + 1
            hist = self._latency.get((method, route))
            if hist is None:
                hist = self._latency[(method, route)] = _Histogram()
            hist.observe(seconds)

    def verified(self, report: VerifyReport) -> None:
        """Remember the outcome of the last ``verify`` this process ran."""
        with self._lock:
            self._verify = (report, time.time())

    def render(self, counts: Mapping[str, int] | None) -> str:
        """The exposition text; ``counts`` is ``storage.counts()`` or ``None`` if unreadable."""
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        def sample(name: str, labels: Mapping[str, str], value: float) -> None:
            out.append(f"{name}{_labels(labels)} {_num(value)}")

        with self._lock:
            requests = sorted(self._requests.items())
            latency = sorted((k, (list(h.counts), h.sum, h.count))
                             for k, h in self._latency.items())
            verify = self._verify

        family("engram_http_requests_total", "counter", "HTTP requests by route and status.")
        for (method, route, status), n in requests:
            sample("engram_http_requests_total",
                   {"method": method, "route": route, "status": status}, n)

        family("engram_http_request_duration_seconds", "histogram",
               "HTTP request latency by route, from first byte in to last byte out.")
        for (method, route), (counts_, total, n) in latency:
            labels = {"method": method, "route": route}
            for bound, c in zip(BUCKETS, counts_, strict=True):
                sample("engram_http_request_duration_seconds_bucket",
                       {**labels, "le": _num(bound)}, c)
            sample("engram_http_request_duration_seconds_bucket", {**labels, "le": "+Inf"}, n)
            sample("engram_http_request_duration_seconds_sum", labels, total)
            sample("engram_http_request_duration_seconds_count", labels, n)

        family("engram_database_up", "gauge", "1 if the database answered this scrape.")
        sample("engram_database_up", {}, 0 if counts is None else 1)
        if counts is not None:
            self._render_counts(counts, family, sample)

        family("engram_last_verify_ok", "gauge",
               "1 if the last verify run by this server found the log intact, 0 if not, "
               "-1 if none has run yet.")
        sample("engram_last_verify_ok", {}, -1 if verify is None else int(verify[0].ok))
        if verify is not None:
            report, when = verify
            family("engram_last_verify_timestamp_seconds", "gauge",
                   "Unix time of the last verify run by this server.")
            sample("engram_last_verify_timestamp_seconds", {}, round(when, 3))
            family("engram_last_verify_events_checked", "gauge",
                   "Events the last verify checked.")
            sample("engram_last_verify_events_checked", {}, report.events_checked)
        family("engram_server_start_time_seconds", "gauge", "Unix time this server started.")
        sample("engram_server_start_time_seconds", {}, round(self.started, 3))
        return "\n".join(out) + "\n"

    @staticmethod
    def _render_counts(counts: Mapping[str, int], family: Any, sample: Any) -> None:
        family("engram_memories", "gauge", "Current active memories per layer.")
        layers = {k[len("layer_"):]: v for k, v in counts.items() if k.startswith("layer_")}
        for layer in sorted(set(LAYERS) | set(layers)):
            sample("engram_memories", {"layer": layer}, layers.get(layer, 0))
        family("engram_memories_by_status", "gauge",
               "Current memory versions per status (active, retracted, ...).")
        for key in sorted(k for k in counts if k.startswith("memories_")):
            sample("engram_memories_by_status", {"status": key[len("memories_"):]}, counts[key])
        family("engram_open_conflicts", "gauge", "Conflicts with status open.")
        sample("engram_open_conflicts", {}, counts.get("open_conflicts", 0))
        family("engram_log_events", "gauge", "Length of the append-only log (events).")
        sample("engram_log_events", {}, counts.get("events", 0))
