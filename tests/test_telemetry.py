"""OpenTelemetry: the spans and metrics an operator's dashboard gets, and what stays out of them.

In-process tests install in-memory SDK providers with ``telemetry.configure``;
the environment-driven path (``OTEL_*`` variables, the OTLP HTTP exporter) is
tested in a child process exporting to a real HTTP receiver here, and the
default (off) in a child process that must never load ``opentelemetry``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import engramdb
from engramdb import errors, telemetry
from engramdb.client import AsyncClient, Client
from tests.support.http_server import LiveServer

CANARY = "zq-canary-7731 the vault code is under the blue mat"
CANARY_MARK = "zq-canary-7731"
ROOT = Path(__file__).resolve().parents[1]


class Recorded:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, (name, [s.name for s in self.spans()])
        return found[0]

    def metric_points(self) -> dict[str, list[tuple[dict, object]]]:
        out: dict[str, list[tuple[dict, object]]] = {}
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out.setdefault(m.name, []).extend(
                        (dict(p.attributes), p) for p in m.data.data_points)
        return out


def _attribute_text(rec: Recorded) -> str:
    """Every span name, attribute, event and status text, and every metric label, as one string."""
    parts: list[str] = []
    for s in rec.spans():
        parts += [s.name, json.dumps(dict(s.attributes or {}), default=str),
                  str(s.status.description)]
        for ev in s.events:
            parts += [ev.name, json.dumps(dict(ev.attributes or {}), default=str)]
    for name, points in rec.metric_points().items():
        parts += [name, *(json.dumps(a) for a, _ in points)]
    return "\n".join(parts)


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    rec = Recorded()
    telemetry.configure(tracer_provider=rec.tracer_provider, meter_provider=rec.meter_provider)
    try:
        yield rec
    finally:
        telemetry.disable()


def _workload(db: engramdb.Database) -> None:
    """Remember, recall, context, decide, change the basis, explain, maintain."""
    m = db.remember(CANARY, namespace="ops/keys", subject="vault", predicate="code",
                    value="mat")
    result = db.recall(f"where is {CANARY_MARK} kept", namespace="ops/**", k=3)
    assert [h.memory.id for h in result.hits] == [m.id]
    db.context(f"open the vault {CANARY_MARK}", 500, namespace="ops/**")
    decision = db.decide(f"use the mat {CANARY_MARK}", basis=result.receipt,
                         namespace="ops/keys")
    db.update(m.id, text=f"{CANARY} moved", expected_version=m.version)
    assert db.explain(decision.id).stale
    db.maintain()


def test_engine_spans_carry_counts_and_timings_never_memory_text(recorded, tmp_path, embedder):
    db = engramdb.open(tmp_path / "engram.db", embedder=embedder)
    try:
        _workload(db)
        with pytest.raises(errors.InvalidInput) as bad:
            db.remember(CANARY, namespace="Bad Namespace!")
    finally:
        db.close()

    names = {s.name for s in recorded.spans()}
    assert {"engram.remember", "engram.recall", "engram.context", "engram.decide",
            "engram.update", "engram.explain", "engram.maintain", "engram.search",
            "engram.commit"} <= names

    remember = recorded.named("engram.remember")[0]
    assert remember.attributes["engram.principal"] == "admin"
    assert remember.attributes["engram.namespace"] == "ops/keys"
    assert remember.attributes["engram.memory.version"] == 1
    # The write's commit is a child of the call that made it, and names the event.
    commits = [s for s in recorded.named("engram.commit")
               if s.parent is not None and s.parent.span_id == remember.context.span_id]
    assert [c.attributes["engram.event.kind"] for c in commits] == ["memory.remembered"]
    assert commits[0].attributes["engram.event.seq"] >= 1

    # The update closed the version the decision rested on: its commit says one turned stale.
    update = recorded.one("engram.update")
    update_commit = [s for s in recorded.named("engram.commit")
                     if s.parent is not None and s.parent.span_id == update.context.span_id]
    assert update_commit[0].attributes["engram.decisions.stale"] == 1

    recall = recorded.one("engram.recall")
    assert recall.attributes["engram.k"] == 3 and recall.attributes["engram.hits"] == 1
    search = next(s for s in recorded.named("engram.search")
                  if s.parent.span_id == recall.context.span_id)
    assert search.attributes["engram.candidates.text"] >= 1
    assert search.attributes["engram.candidates.vector"] >= 1
    assert search.attributes["engram.hits"] == 1
    stages = {s.name for s in recorded.spans()
              if s.parent is not None and s.parent.span_id == search.context.span_id}
    assert stages == {"engram.search.text", "engram.search.embed", "engram.search.vector",
                      "engram.search.rank", "engram.search.contested"}
    for stage in ("text", "embed", "vector", "rank"):
        assert search.attributes[f"engram.{stage}_ms"] > 0

    # context runs a search of its own, inside its span.
    context = recorded.one("engram.context")
    assert any(s.parent.span_id == context.context.span_id
               for s in recorded.named("engram.search"))

    refused = [s for s in recorded.named("engram.remember") if not s.status.is_ok]
    # The error's code, as the caller saw it (the message, which may quote input, is not kept).
    assert [s.attributes["error.type"] for s in refused] == [bad.value.code]

    points = recorded.metric_points()
    ops = {a["engram.operation"] for a, _ in points["engram.operation.duration"]}
    assert {"remember", "recall", "context", "decide", "maintain"} <= ops
    errors_seen = {a.get("error.type") for a, _ in points["engram.operation.duration"]
                   if a["engram.operation"] == "remember"}
    assert errors_seen == {None, bad.value.code}
    kinds = {a["engram.event.kind"]: p.value for a, p in points["engram.events"]}
    assert kinds["memory.remembered"] == 1 and kinds["decision.stale"] == 1
    assert {a["engram.source"] for a, _ in points["engram.recall.candidates"]} == {
        "text", "vector"}

    assert CANARY_MARK not in _attribute_text(recorded)


def test_memory_text_is_recorded_only_when_the_operator_opts_in(tmp_path):
    rec = Recorded()
    telemetry.configure(tracer_provider=rec.tracer_provider, meter_provider=rec.meter_provider,
                        capture_text=True)
    db = engramdb.open(tmp_path / "engram.db", embedder=None)
    try:
        db.remember(CANARY, namespace="ops")
        db.recall(f"{CANARY_MARK} where", namespace="ops")
    finally:
        db.close()
        telemetry.disable()
    assert rec.one("engram.remember").attributes["engram.text"] == CANARY
    assert rec.one("engram.recall").attributes["engram.query"] == f"{CANARY_MARK} where"


def test_traceparent_joins_the_callers_trace_over_a_real_http_server(recorded, tmp_path):
    db = engramdb.open(tmp_path / "engram.db", embedder=None)
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with LiveServer(db) as server:
        key = server.admin_key()
        http = httpx.Client(base_url=server.url, timeout=30)
        r = http.post("/v1/memories", json={"text": CANARY, "namespace": "ops"},
                      headers={"Authorization": f"Bearer {key}",
                               "traceparent": f"00-{trace_id}-{parent_id}-01"})
        assert r.status_code == 201, r.text
        refused = http.post("/v1/recall", json={"query": CANARY},
                            headers={"Authorization": "Bearer ek_nope_nope",
                                     "traceparent": f"00-{trace_id}-{parent_id}-01"})
        assert refused.status_code == 401
        # The Python client carries the current trace itself.
        tracer = recorded.tracer_provider.get_tracer("agent")
        with tracer.start_as_current_span("agent.step") as step, \
                Client(server.url, key) as client:
            client.recall(CANARY_MARK, namespace="ops")

        async def async_agent() -> Any:
            with tracer.start_as_current_span("agent.async_step") as span:
                async with AsyncClient(server.url, key) as client:
                    await client.get(r.json()["id"])
            return span

        async_step = asyncio.run(async_agent())
        http.close()
    db.close()

    servers = [s for s in recorded.spans() if s.kind == SpanKind.SERVER]
    joined = [s for s in servers if format(s.context.trace_id, "032x") == trace_id]
    write = next(s for s in joined if s.name == "POST /v1/memories")
    assert format(write.parent.span_id, "016x") == parent_id and write.parent.is_remote
    assert write.attributes["http.response.status_code"] == 201
    assert write.attributes["engram.principal"] == "admin"
    # The engine's span of that request is inside the same trace, under the server span.
    remember = recorded.one("engram.remember")
    assert remember.context.trace_id == write.context.trace_id
    assert remember.parent.span_id == write.context.span_id
    refusal = next(s for s in joined if s.name == "POST /v1/recall")
    assert refusal.attributes["http.response.status_code"] == 401

    step_trace = step.get_span_context().trace_id
    recall_server = next(s for s in servers if s.name == "POST /v1/recall"
                         and s.context.trace_id == step_trace)
    assert recall_server.parent.span_id == step.get_span_context().span_id
    assert any(s.name == "engram.recall" and s.context.trace_id == step_trace
               for s in recorded.spans())
    async_trace = async_step.get_span_context().trace_id
    get_server = next(s for s in servers if s.context.trace_id == async_trace)
    assert get_server.name == "GET /v1/memories/{memory_id}"
    assert get_server.parent.span_id == async_step.get_span_context().span_id
    assert CANARY_MARK not in _attribute_text(recorded)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "ENGRAM_OTEL", "FASTAPI_OTEL"))}
    return {**env, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", **extra}


_WORKLOAD = f"""
import sys, engramdb
db = engramdb.open(sys.argv[1], embedder=None)
m = db.remember({CANARY!r}, namespace="ops")
db.recall("vault {CANARY_MARK}", namespace="ops")
db.close()
print("loaded:", sorted({{n.split(".")[0] for n in sys.modules if n.startswith("opentelemetry")}}))
"""


def test_off_by_default_and_opentelemetry_is_never_imported(tmp_path):
    out = subprocess.run([sys.executable, "-c", _WORKLOAD, str(tmp_path / "e.db")],
                         env=_clean_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("loaded: []"), out.stdout


class _Collector(BaseHTTPRequestHandler):
    bodies: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).bodies.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_otel_variables_alone_export_spans_over_otlp_http(tmp_path):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    _Collector.bodies = []
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        env = _clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.server_port}",
                         OTEL_SERVICE_NAME="memory-under-test", OTEL_METRICS_EXPORTER="none")
        out = subprocess.run([sys.executable, "-c", _WORKLOAD, str(tmp_path / "e.db")],
                             env=env, capture_output=True, text=True, timeout=120)
    finally:
        receiver.shutdown()
        thread.join()
    assert out.returncode == 0, out.stderr
    traces = [body for path, body in _Collector.bodies if path == "/v1/traces"]
    assert traces, _Collector.bodies
    names, services = set(), set()
    for body in traces:
        request = ExportTraceServiceRequest.FromString(body)
        for rs in request.resource_spans:
            services |= {a.value.string_value for a in rs.resource.attributes
                         if a.key == "service.name"}
            names |= {s.name for ss in rs.scope_spans for s in ss.spans}
    assert services == {"memory-under-test"}
    assert {"engram.remember", "engram.recall", "engram.search", "engram.commit"} <= names
    assert all(CANARY_MARK.encode() not in body for body in traces)


def test_asking_for_an_unsupported_exporter_is_a_configuration_error(tmp_path):
    code = ("import engramdb, sys\n"
            "try:\n    engramdb.open(sys.argv[1], embedder=None)\n"
            "except engramdb.errors.ConfigurationError as exc:\n    print('refused:', exc)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "e.db")],
                         env=_clean_env(OTEL_TRACES_EXPORTER="zipkin"),
                         capture_output=True, text=True, timeout=120)
    assert "refused: OTEL_TRACES_EXPORTER='zipkin'" in out.stdout, out.stderr


_NO_SDK = ("import sys; sys.modules['opentelemetry.sdk'] = None  # as if the extra were absent\n"
           "import engramdb\n"
           "try:\n    engramdb.open(sys.argv[1], embedder=None).close(); print('opened')\n"
           "except engramdb.errors.MissingExtra as exc:\n    print('refused:', exc)\n")


def test_without_the_extra_otel_variables_warn_and_engram_otel_on_refuses(tmp_path):
    auto = subprocess.run([sys.executable, "-c", _NO_SDK, str(tmp_path / "a.db")],
                          env=_clean_env(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9"),
                          capture_output=True, text=True, timeout=120)
    assert auto.stdout.strip() == "opened", auto.stderr
    assert "pip install 'engramdb[otel]'" in auto.stderr
    named = subprocess.run([sys.executable, "-c", _NO_SDK, str(tmp_path / "b.db")],
                           env=_clean_env(ENGRAM_OTEL="on"), capture_output=True, text=True,
                           timeout=120)
    assert named.stdout.startswith("refused:"), named.stderr
    assert "pip install 'engramdb[otel]'" in named.stdout
