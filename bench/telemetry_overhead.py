"""What OpenTelemetry costs: nothing measurable when off, and how much when on.

Three figures, all in this one process:

1. The off path, per hook: a public call's wrapper with the telemetry check
   (``_guard._traced``) against the plain wrapper it replaced
   (``_guard._guarded``) around an empty method, and one no-op
   ``telemetry.span`` block (what ``engram.search``, its stages and
   ``engram.commit`` cost when off).
2. ``remember`` and ``recall`` latency on SQLite (full-text only, so the
   engine dominates rather than the embedder), telemetry off, then on with
   an in-memory exporter (SDK spans and metrics, no network).
3. The off overhead per operation, derived: hooks per operation times their
   cost, over the operation's latency.

    PYTHONPATH=src python bench/telemetry_overhead.py [--memories N] [--ops M]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import engramdb
from engramdb import _guard, telemetry

WORDS = ("outlook revenue churn pricing hiring roadmap launch margin risk supplier"
         " contract renewal forecast budget audit").split()


class _Empty:
    def call(self, x: int, *, k: int = 1) -> int:
        return x


def _per_call_ns(fn: Any, n: int = 200_000) -> float:
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter_ns()
        for i in range(n):
            fn(i, k=2)
        best = min(best, (time.perf_counter_ns() - t) / n)
    return best


def _noop_span_ns(n: int = 200_000) -> float:
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter_ns()
        for _ in range(n):
            with telemetry.span("engram.x", None) as sp:
                sp.set("engram.k", 1)
        best = min(best, (time.perf_counter_ns() - t) / n)
    return best


def _ops(db: engramdb.Database, m: int) -> tuple[float, float]:
    """Median ms of ``m`` remembers and ``m`` recalls."""
    writes, reads = [], []
    for i in range(m):
        t = time.perf_counter()
        db.remember(f"note {i} {WORDS[i % len(WORDS)]} {WORDS[(i * 7) % len(WORDS)]}",
                    namespace=f"team/{i % 5}")
        writes.append(time.perf_counter() - t)
        t = time.perf_counter()
        db.recall(f"{WORDS[i % len(WORDS)]} {WORDS[(i * 3) % len(WORDS)]}", k=10)
        reads.append(time.perf_counter() - t)
    return statistics.median(writes) * 1000, statistics.median(reads) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--memories", type=int, default=2000)
    ap.add_argument("--ops", type=int, default=300)
    args = ap.parse_args()
    assert telemetry.active() is None, "unset OTEL_* / ENGRAM_OTEL to measure the off path"

    plain = _guard._guarded(_Empty.call)
    traced = _guard._traced(_Empty.call)
    obj = _Empty()
    plain_ns = _per_call_ns(lambda x, k: plain(obj, x, k=k))
    traced_ns = _per_call_ns(lambda x, k: traced(obj, x, k=k))
    span_ns = _noop_span_ns()

    with tempfile.TemporaryDirectory() as tmp:
        db = engramdb.open(Path(tmp) / "bench.db", embedder=None)
        db.remember_many([{"text": f"seed {i} {WORDS[i % len(WORDS)]} "
                                   f"{WORDS[(i * 11) % len(WORDS)]}",
                           "namespace": f"team/{i % 5}"} for i in range(args.memories)])
        off_w, off_r = _ops(db, args.ops)

        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        tp = TracerProvider()
        exporter = InMemorySpanExporter()
        tp.add_span_processor(SimpleSpanProcessor(exporter))
        telemetry.configure(tracer_provider=tp,
                            meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]))
        on_w, on_r = _ops(db, args.ops)
        telemetry.disable()
        spans = len(exporter.get_finished_spans())
        db.close()

    hook = traced_ns - plain_ns
    # Off: remember = 1 wrapper + 1 commit span; recall = 1 wrapper + search + 5 stages.
    w_pct = (hook + span_ns) / (off_w * 1e6) * 100
    r_pct = (hook + 6 * span_ns) / (off_r * 1e6) * 100
    print(f"load average: {os.getloadavg()[0]:.2f}")
    print(f"wrapper, plain {plain_ns:.0f} ns, with telemetry check {traced_ns:.0f} ns "
          f"(+{hook:.0f} ns per public call); no-op span block {span_ns:.0f} ns")
    print(f"remember median: off {off_w:.3f} ms, on {on_w:.3f} ms ({on_w / off_w:.2f}x)")
    print(f"recall   median: off {off_r:.3f} ms, on {on_r:.3f} ms ({on_r / off_r:.2f}x)")
    print(f"off overhead, derived: remember {w_pct:.3f}%, recall {r_pct:.3f}% "
          f"({spans} spans recorded while on)")


if __name__ == "__main__":
    main()
