"""The MCP door, driven by the official ``mcp`` client against real server processes.

Every server here is ``engram mcp`` launched as a subprocess (stdio) or
listening on loopback (streamable HTTP), on a real SQLite file with the real
default embedder; the tests speak the real protocol through ``mcp.Client``.
Server processes are few (one per principal per module) because each loads
the embedding model.

The authorisation matrix repeats issue 3's check through this door: every
agent tries every tool on every namespace; a success the agent's grants do
not allow, or a canary string from an unreadable namespace anywhere in a
response, counts as an unauthorised success, and there must be none.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult

import engramdb
from engramdb.codec import new_id
from tests.support.mcp_client import McpSession, text_of

ENGRAM = str(Path(sys.executable).with_name("engram"))
DOCS = Path(__file__).resolve().parents[1] / "docs" / "mcp.md"
TOOLS = {"remember", "recall", "get", "update", "retract", "history", "namespaces", "context",
         "decide", "explain", "conflicts", "resolve", "forget",
         "pin", "unpin", "blocks", "episode", "episodes", "summarize", "extract", "tool_outcome",
         "tool_outcomes", "tool_stats", "procedure", "procedure_outcome", "procedures", "recommend",
         "my_grants"}
NO_ARGUMENTS = {"my_grants"}
SERVER_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
              # the server runs the code under test, also from a checkout on PYTHONPATH
              **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}


def stdio(db_path: Path | str, key: str, errlog: Path,
          *flags: str) -> Callable[[], Any]:
    """The transport that launches ``engram --db PATH mcp`` with ``key`` in its environment."""
    params = StdioServerParameters(command=ENGRAM, args=["--db", str(db_path), "mcp", *flags],
                                   env={**SERVER_ENV, "ENGRAM_API_KEY": key})

    def make() -> Any:
        return stdio_client(params, errlog=errlog.open("a"))
    return make


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def http_server(db_path: Path, key: str | None, log: Path) -> Iterator[str]:
    """``engram mcp --transport http`` on a free loopback port; yields its /mcp URL.

    Without ``key`` the server is the shared one, serving every principal.
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "ENGRAM_API_KEY"}
    with log.open("w") as err:
        proc = subprocess.Popen(
            [ENGRAM, "--db", str(db_path), "mcp", "--transport", "http", "--port", str(port)],
            env={**env, **SERVER_ENV, **({"ENGRAM_API_KEY": key} if key else {})},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, f"server exited: {log.read_text()}"
                with contextlib.suppress(OSError), socket.create_connection(
                        ("127.0.0.1", port), timeout=0.5):
                    break
                assert time.monotonic() < deadline, "server did not listen in time"
                time.sleep(0.1)
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def bearer_transport(url: str, key: str) -> Callable[[], Any]:
    def make() -> Any:
        client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"},
                                    timeout=httpx2.Timeout(30, read=300))
        return streamable_http_client(url, http_client=client)
    return make


def initialize_body() -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}}


MCP_HEADERS = {"Accept": "application/json, text/event-stream",
               "Content-Type": "application/json"}


# -- the shared world: one database, one server for alice ----------------------------------------


@dataclass
class World:
    db: engramdb.Database
    path: Path
    keys: dict[str, str]
    vault_id: str
    vault_conflict: str
    vault_decision: str
    logs: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory, embedder) -> Iterator[World]:
    root = tmp_path_factory.mktemp("mcp")
    path = root / "engram.db"
    db = engramdb.open(path, embedder=embedder)
    keys = {name: db.admin.create_agent(name) for name in ("alice", "dave", "erin")}
    db.admin.grant("alice", "team/**", ["read", "write"])
    db.admin.grant("dave", "ops/**", ["read", "write"])
    vault = db.remember("vault canary: the launch code is quasar-7741-zulu",
                        namespace="vault/secrets", subject="launch:code", predicate="value",
                        value="quasar-7741-zulu")
    rival = db.remember("vault canary: the launch code is quasar-9000-yankee",
                        namespace="vault/secrets", subject="launch:code", predicate="value",
                        value="quasar-9000-yankee")
    decision = db.decide("rotate the launch code", basis=[vault, rival],
                         namespace="vault/secrets")
    db.remember("Ops runbook: restart the ingest worker when the queue stalls",
                namespace="ops/runbooks", layer="procedural")
    try:
        yield World(db, path, keys, vault.id, rival.conflicts[0].id, decision.id, root)
    finally:
        db.close()


@pytest.fixture(scope="module")
def alice(world) -> Iterator[McpSession]:
    session = McpSession(stdio(world.path, world.keys["alice"], world.logs / "alice.log"))
    try:
        yield session
    finally:
        session.close()
    log = (world.logs / "alice.log").read_text()
    assert "Traceback" not in log, log


# -- tools -------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_mcp_combine_on_postgresql_writes_through_the_combiner(pg_url, embedder, tmp_path):
    """``engram mcp --combine``: an agent's MCP server on PostgreSQL sends its writes through
    the write combiner (each carries a token, kept in ``append_tokens``)."""
    import psycopg

    with engramdb.open(pg_url, embedder=embedder) as db:
        key = db.admin.create_agent("carol")
        db.admin.grant("carol", "team/**", ["read", "write"])
    session = McpSession(stdio(pg_url, key, tmp_path / "carol.log", "--combine"))
    try:
        ids = [session.ok("remember", text=f"combined note {k}", namespace="team/notes",
                          layer="episodic")["id"] for k in range(3)]
    finally:
        session.close()
    with psycopg.connect(pg_url) as conn:
        tokens = conn.execute("SELECT count(*) FROM append_tokens").fetchone()[0]
    assert tokens == 3
    with engramdb.open(pg_url, embedder=embedder) as db:
        assert [db.get(i).text for i in ids] == [f"combined note {k}" for k in range(3)]
        assert db.verify().ok


def test_my_grants_lists_alices_grants_and_nobody_elses(alice, world):
    grants = alice.ok("my_grants")["grants"]
    assert [(g["grantee"], g["pattern"], sorted(g["actions"])) for g in grants] == [
        ("alice", "team/**", ["read", "write"])]
    assert "ops/**" not in json.dumps(grants)  # dave's grant


def test_every_tool_has_a_description_and_an_input_schema(alice):
    tools = alice.tools()
    assert set(tools) == TOOLS
    for name, tool in tools.items():
        assert len(tool.description) > 150, name
        schema = tool.input_schema
        assert schema["type"] == "object", name
        # Only a call that takes no arguments (api.py declares none) has an empty schema.
        assert bool(schema["properties"]) == (name not in NO_ARGUMENTS), name
        for arg, spec in schema["properties"].items():
            assert len(spec.get("description", "")) > 10, f"{name}.{arg} is undocumented"
    assert tools["remember"].input_schema["required"] == ["text"]
    assert tools["remember"].input_schema["properties"]["layer"]["enum"] == [
        "working", "episodic", "semantic", "procedural"]
    assert tools["recall"].input_schema["required"] == ["query"]
    assert tools["recall"].annotations.read_only_hint is True
    assert tools["retract"].annotations.destructive_hint is True


def test_remember_then_recall_returns_the_memory_with_a_receipt(alice):
    stored = alice.ok("remember", text="The staging cluster runs Postgres 18 on port 5433",
                      namespace="team/infra", subject="cluster:staging",
                      predicate="postgres_port", value=5433, metadata={"ticket": "OPS-12"})
    assert stored["version"] == 1
    assert stored["author"] == "alice"  # provenance comes from the key, not the caller
    assert stored["namespace"] == "team/infra"

    found = alice.ok("recall", query="which port does staging Postgres use?")
    hits = {h["memory"]["id"]: h for h in found["hits"]}
    assert stored["id"] in hits
    assert hits[stored["id"]]["memory"]["value"] == 5433
    assert hits[stored["id"]]["why"]  # score parts are there for the model to read
    assert {"id": stored["id"], "version": 1} in found["receipt"]["items"]

    result = alice.call("get", id=stored["id"])
    assert json.loads(text_of(result)) == result.structured_content  # same JSON for the model
    assert result.structured_content["text"].startswith("The staging cluster")


def test_update_retract_and_history_round_trip(alice):
    m = alice.ok("remember", text="Standup is at 09:30", namespace="team/rituals")
    v2 = alice.ok("update", id=m["id"], expected_version=1, text="Standup is at 10:00")
    assert v2["version"] == 2
    gone = alice.ok("retract", id=m["id"], reason="standup cancelled", expected_version=2)
    assert gone["status"] == "retracted"
    versions = alice.ok("history", id=m["id"])["versions"]
    assert [v["version"] for v in versions] == [1, 2, 3]
    assert [v["text"] for v in versions][:2] == ["Standup is at 09:30", "Standup is at 10:00"]
    hits = alice.ok("recall", query="when is standup", namespace="team/**")["hits"]
    assert m["id"] not in {h["memory"]["id"] for h in hits}


def test_context_then_decide_then_explain_shows_a_stale_basis(alice):
    fact = alice.ok("remember", text="Vendor Acme's SLA guarantees 99.9% uptime",
                    namespace="team/vendors", subject="vendor:acme", predicate="sla",
                    value="99.9")
    ctx = alice.ok("context", task="Should we renew the Acme contract given its SLA?",
                   budget_tokens=300, namespace="team/**")
    assert "99.9% uptime" in ctx["text"]
    assert ctx["tokens"] <= 300
    assert {"id": fact["id"], "version": 1} in ctx["receipt"]["items"]

    decision = alice.ok("decide", description="renew the Acme contract", basis=ctx["receipt"],
                        outcome={"renew": True})
    assert decision["principal"] == "alice"
    assert {"id": fact["id"], "version": 1} in decision["basis"]
    assert alice.ok("explain", decision_id=decision["id"])["stale"] is False

    alice.ok("update", id=fact["id"], expected_version=1, value="99.0",
             text="Vendor Acme's SLA was cut to 99.0% uptime")
    explained = alice.ok("explain", decision_id=decision["id"])
    assert explained["stale"] is True
    item = next(b for b in explained["basis"] if b["item"]["id"] == fact["id"])
    assert item["superseded"] is True
    assert item["then"]["text"] == "Vendor Acme's SLA guarantees 99.9% uptime"
    assert item["now"]["text"] == "Vendor Acme's SLA was cut to 99.0% uptime"


def test_layer_tools_pin_episode_tools_procedures_and_context(alice):
    block = alice.ok("pin", name="goal", text="Renew the Acme contract before May")
    assert (block["version"], block["layer"], block["author"]) == (1, "working", "alice")
    conflict = alice.call("pin", name="goal", text="stale edit", expected_version=0)
    assert conflict.is_error and "version_conflict" in text_of(conflict)
    alice.ok("episode", session="mcp-s1", role="user", content="Check Acme's SLA history")
    alice.ok("episode", session="mcp-s1", role="assistant", content="Acme met its SLA in Q1")
    listed = alice.ok("episodes", session="mcp-s1")["memories"]
    assert [e["metadata"]["role"] for e in listed] == ["user", "assistant"]
    summary = alice.ok("summarize", session="mcp-s1")
    assert summary["metadata"]["summary_of"] == "mcp-s1"
    missing = alice.call("extract", session="mcp-s1")
    assert missing.is_error and "llm_not_configured" in text_of(missing)
    def with_tool(name: str, **arguments: Any) -> dict[str, Any]:
        # `tool` is an argument of these tools, and the name of ok()'s first parameter
        result = alice.run(lambda c: c.call_tool(name, arguments))
        assert not result.is_error, text_of(result)
        return result.structured_content

    for ok in (True, False, False):
        assert with_tool("tool_outcome", tool="sla_lookup", ok=ok,
                         error=None if ok else "503") == {"ok": True}
    (stats,) = with_tool("tool_stats", tool="sla_lookup")["tools"]
    assert (stats["calls"], stats["successes"], stats["errors"]) == (3, 1, [["503", 2]])
    assert with_tool("tool_outcomes", outcomes=[
        {"tool": "sla_lookup", "ok": True, "latency_ms": 40},
        {"tool": "sla_lookup", "ok": False, "error": "503"}]) == {"recorded": 2}
    bad = alice.call("tool_outcomes", outcomes=[{"tool": "sla_lookup", "ok": "yes"}])
    assert bad.is_error and "outcome 0" in text_of(bad)
    (stats,) = with_tool("tool_stats", tool="sla_lookup")["tools"]
    assert (stats["calls"], stats["successes"], stats["errors"]) == (5, 2, [["503", 3]])
    # since=: a window from an hour ago holds all five; one from the next hour none.
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    (stats,) = with_tool("tool_stats", tool="sla_lookup", since=hour_ago)["tools"]
    assert (stats["calls"], stats["successes"], stats["errors"]) == (5, 2, [["503", 3]])
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert with_tool("tool_stats", tool="sla_lookup", since=later)["tools"] == []
    alice.ok("procedure", name="renewal", text="Check the SLA, then the price, then renew")
    alice.ok("procedure_outcome", name="renewal", version=1, ok=True)
    (proc,) = alice.ok("procedures", namespace="agents/alice")["procedures"]
    assert proc["versions"] == [{"version": 1, "uses": 1, "successes": 1, "success_rate": 1.0}]
    recs = alice.ok("recommend", task="renewal of a contract")["recommendations"]
    assert recs[0]["name"] == "renewal" and recs[0]["version"] == 1
    ctx = alice.ok("context", task="renew Acme with sla_lookup", budget_tokens=400,
                   session="mcp-s1")
    assert ctx["parts"][0]["kind"] == "block" and "Renew the Acme contract" in ctx["text"]
    assert "sla_lookup: 3 of the last 5 calls failed" in ctx["text"]
    assert ctx["tokens"] <= 400
    assert [b["metadata"]["block"] for b in alice.ok("blocks")["memories"]] == ["goal"]
    assert alice.ok("unpin", name="goal")["status"] == "retracted"


def test_conflicts_are_listed_and_resolved_only_with_the_admin_grant(alice, world):
    first = alice.ok("remember", text="The office closes at 18:00", namespace="team/office",
                     subject="office:main", predicate="closes_at", value="18:00")
    second = alice.ok("remember", text="The office closes at 20:00", namespace="team/office",
                      subject="office:main", predicate="closes_at", value="20:00")
    assert [c["outcome"] for c in second["conflicts"]] == ["flagged"]
    inbox = alice.ok("conflicts", namespace="team/office")["conflicts"]
    assert len(inbox) == 1
    conflict = inbox[0]
    assert {m["id"] for m in conflict["memories"]} == {first["id"], second["id"]}
    hits = alice.ok("recall", query="when does the office close", namespace="team/office")
    assert all(h["contested"] for h in hits["hits"] if h["memory"]["id"] == first["id"])

    refused = alice.call("resolve", conflict_id=conflict["id"], winner=second["id"],
                         reason="new hours")
    assert refused.is_error
    assert refused.structured_content["error"]["code"] == "permission_denied"
    assert alice.ok("conflicts", namespace="team/office")["conflicts"]  # still open

    world.db.admin.grant("alice", "team/office", ["admin"])  # the running server sees it
    resolved = alice.ok("resolve", conflict_id=conflict["id"], winner=second["id"],
                        reason="new hours")
    assert resolved["status"] == "resolved" and resolved["winner"] == second["id"]
    assert alice.ok("conflicts", namespace="team/office")["conflicts"] == []
    both = alice.ok("conflicts", namespace="team/office", status=None)["conflicts"]
    assert [c["id"] for c in both] == [conflict["id"]]
    assert alice.ok("get", id=first["id"])["status"] == "rejected"


def test_a_namespace_without_a_grant_is_invisible(alice, world):
    for namespace in ("**", "vault/**", "vault/secrets"):
        found = alice.ok("recall", query="launch code canary quasar", namespace=namespace)
        assert "quasar" not in json.dumps(found)

    unknown = new_id()
    forbidden = alice.call("get", id=world.vault_id)
    missing = alice.call("get", id=unknown)
    assert forbidden.is_error and missing.is_error
    assert forbidden.structured_content["error"]["code"] == "not_found"
    assert (text_of(forbidden).replace(world.vault_id, "<id>")
            == text_of(missing).replace(unknown, "<id>"))
    for tool in ("history", "update", "retract"):
        args = {"text": "pwned"} if tool == "update" else {}
        a = alice.call(tool, id=world.vault_id, **args)
        b = alice.call(tool, id=unknown, **args)
        assert a.is_error and b.is_error, tool
        assert text_of(a).replace(world.vault_id, "<id>") == text_of(b).replace(unknown, "<id>")
    assert world.db.get(world.vault_id).version == 1  # nothing was written

    same = {  # tool -> (arguments naming the forbidden object, the same for an unknown one)
        "decide": ({"description": "d", "basis": [{"id": world.vault_id, "version": 1}]},
                   {"description": "d", "basis": [{"id": unknown, "version": 1}]}),
        "explain": ({"decision_id": world.vault_decision}, {"decision_id": unknown}),
        "resolve": ({"conflict_id": world.vault_conflict}, {"conflict_id": unknown}),
    }
    for tool, (forbidden_args, unknown_args) in same.items():
        a, b = alice.call(tool, **forbidden_args), alice.call(tool, **unknown_args)
        assert a.is_error and b.is_error, tool
        assert a.structured_content["error"]["code"] == "not_found", tool
        hidden = {world.vault_id, world.vault_decision, world.vault_conflict}
        masked = text_of(a)
        for secret_id in hidden:
            masked = masked.replace(secret_id, "<id>")
        assert masked == text_of(b).replace(unknown, "<id>"), tool
    for status in ("open", None):
        inbox = alice.ok("conflicts", status=status)["conflicts"]
        assert all(c["namespace"].startswith("team/") for c in inbox)
        assert world.vault_conflict not in json.dumps(inbox)
    ctx = alice.ok("context", task="launch code quasar", namespace="**")
    assert "quasar" not in json.dumps(ctx)

    denied = alice.call("remember", text="planted", namespace="vault/secrets")
    assert denied.is_error
    # The message never echoes the namespace (issue 17); the fix names it, for an admin.
    assert text_of(denied).startswith("permission_denied: 'alice' may not write in that "
                                      "namespace")


def test_engine_errors_arrive_as_tool_errors_with_code_and_advice(alice):
    bad = alice.call("remember", text="x", namespace="team/notes", layer="longterm")
    assert bad.is_error
    assert text_of(bad).startswith("invalid_layer: unknown layer; use one of: "
                                   "working, episodic, semantic, procedural")
    assert bad.structured_content["error"]["code"] == "invalid_layer"

    m = alice.ok("remember", text="Deploy freeze starts Friday", namespace="team/notes")
    alice.ok("update", id=m["id"], expected_version=1, text="Deploy freeze starts Thursday")
    late = alice.call("update", id=m["id"], expected_version=1, text="Deploy freeze is off")
    assert late.is_error
    error = late.structured_content["error"]
    assert error["code"] == "version_conflict"
    assert error["details"]["current_version"] == 2
    assert "re-read it, reapply your change and retry" in text_of(late)
    assert alice.ok("get", id=m["id"])["text"] == "Deploy freeze starts Thursday"

    malformed = alice.call("recall", query="x", namespace="Team/**")
    assert malformed.is_error and text_of(malformed).startswith("invalid_namespace:")

    missing_arg = alice.call("remember", namespace="team/notes")
    assert missing_arg.is_error and "text" in text_of(missing_arg)
    for result in (bad, late, malformed, missing_arg):
        assert "Traceback" not in text_of(result)


def test_forget_needs_the_erase_grant_and_erases(alice, world):
    m = alice.ok("remember", text="Temp badge code ZQX55CANARY", namespace="team/badges",
                 subject="badge:55")
    denied = alice.call("forget", subject="badge:55", reason="rotated")
    assert denied.is_error and denied.structured_content["error"]["code"] == "permission_denied"
    hidden = alice.call("forget", id=world.vault_id, reason="curious")  # unreadable: missing
    assert hidden.structured_content["error"]["code"] == "not_found"
    grant = world.db.admin.grant("alice", "team/badges", ["erase"])
    try:
        receipt = alice.ok("forget", subject="badge:55", reason="rotated")
    finally:
        world.db.admin.revoke(grant.id)
    assert receipt["memories"] == [m["id"]] and receipt["counts"]["versions"] == 1
    assert alice.call("get", id=m["id"]).structured_content["error"]["code"] == "not_found"


def test_resources_list_only_readable_namespaces(alice, world):
    alice.ok("remember", text="Team lunch on Wednesday", namespace="team/social")
    uris = alice.resources()
    assert "engram://namespaces" in uris
    listed = {u.removeprefix("engram://namespace/") for u in uris
              if u.startswith("engram://namespace/")}
    assert "team/social" in listed
    assert listed == set(world.db.as_agent("alice").namespaces())
    assert not any(ns.startswith(("vault", "ops")) for ns in listed)
    assert alice.read("engram://namespaces")["namespaces"] == sorted(listed)

    recent = alice.read("engram://namespace/team/social")
    assert "Team lunch on Wednesday" in [m["text"] for m in recent["memories"]]
    forbidden = alice.read("engram://namespace/vault/secrets")
    nowhere = alice.read("engram://namespace/no/such/place")
    assert forbidden["memories"] == nowhere["memories"] == []

    with pytest.raises(MCPError) as err:
        alice.read("engram://namespace/Not_Valid")
    assert err.value.message.startswith("invalid_namespace:")


# -- startup and the HTTP transport ------------------------------------------------------------


def test_a_bad_or_missing_key_fails_at_startup_with_a_clear_message(world):
    env = {k: v for k, v in os.environ.items() if k != "ENGRAM_API_KEY"}
    bad = subprocess.run([ENGRAM, "--db", str(world.path), "mcp", "--api-key", "ek_nope_nope"],
                         env={**env, **SERVER_ENV}, capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL)
    assert bad.returncode == 2
    assert "[unauthenticated] API key is unknown or revoked" in bad.stderr
    assert bad.stdout == "" and "Traceback" not in bad.stderr

    none = subprocess.run([ENGRAM, "--db", str(world.path), "mcp"], env={**env, **SERVER_ENV},
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert none.returncode == 2
    assert "pass --api-key or set ENGRAM_API_KEY" in none.stderr


def test_streamable_http_serves_the_bound_principal_and_checks_its_key(world):
    key = world.keys["dave"]
    with http_server(world.path, key, world.logs / "dave-http.log") as url:
        anonymous = httpx.post(url, json=initialize_body(), headers=MCP_HEADERS)
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "unauthenticated"
        alices = {**MCP_HEADERS, "Authorization": f"Bearer {world.keys['alice']}"}
        other = httpx.post(url, json=initialize_body(), headers=alices)
        assert other.status_code == 401
        assert "acts for 'dave'" in other.json()["error"]["message"]

        dave = McpSession(bearer_transport(url, key))
        try:
            assert set(dave.tools()) == TOOLS
            stored = dave.ok("remember", text="Pager rotation moves to Mondays",
                             namespace="ops/oncall")
            assert stored["author"] == "dave"
            hits = dave.ok("recall", query="pager rotation", namespace="ops/**")["hits"]
            assert stored["id"] in [h["memory"]["id"] for h in hits]
            assert "quasar" not in json.dumps(dave.ok("recall", query="launch code quasar"))
            assert sorted(u for u in dave.resources() if u.startswith("engram://namespace/")) == [
                "engram://namespace/ops/oncall", "engram://namespace/ops/runbooks"]

            world.db.admin.revoke_key(key)  # the HTTP layer refuses the next request (401)
            with pytest.raises(MCPError):
                dave.call("recall", query="pager rotation")
        finally:
            dave.close()
        revoked = httpx.post(url, json=initialize_body(),
                             headers={**MCP_HEADERS, "Authorization": f"Bearer {key}"})
        assert revoked.status_code == 401
    assert "Traceback" not in (world.logs / "dave-http.log").read_text()


def test_one_http_server_serves_each_principal_as_its_own_key(world):
    carol_key = world.db.admin.create_agent("carol")
    world.db.admin.grant("carol", "ops/**", ["read"])
    with http_server(world.path, None, world.logs / "shared-http.log") as url:
        anonymous = httpx.post(url, json=initialize_body(), headers=MCP_HEADERS)
        assert anonymous.status_code == 401
        alice = McpSession(bearer_transport(url, world.keys["alice"]))
        carol = McpSession(bearer_transport(url, carol_key))
        try:
            assert set(alice.tools()) == TOOLS
            mine = alice.ok("remember", text="Standup moves to 9:30", namespace="team/daily")
            assert mine["author"] == "alice"
            theirs = carol.ok("recall", query="standup moves", namespace="**")
            assert mine["id"] not in json.dumps(theirs)  # carol reads ops/** only
            assert carol.call("remember", text="carol may not write",
                              namespace="ops/oncall").is_error
            seen = carol.ok("recall", query="restart the ingest worker", namespace="ops/**")
            assert any("ingest worker" in h["memory"]["text"] for h in seen["hits"])
            again = alice.ok("recall", query="standup moves", namespace="team/**")
            assert mine["id"] in [h["memory"]["id"] for h in again["hits"]]
            assert carol.read("engram://namespaces")["principal"] == "carol"
            assert alice.read("engram://namespaces")["principal"] == "alice"
            world.db.admin.revoke_key(carol_key)  # revocation holds on the shared server too
            with pytest.raises(MCPError):
                carol.call("recall", query="standup")
            assert alice.ok("recall", query="standup moves", namespace="team/**")["hits"]
        finally:
            alice.close()
            carol.close()
    assert "Traceback" not in (world.logs / "shared-http.log").read_text()


def test_revoking_the_key_stops_a_running_stdio_server(world):
    key = world.db.admin.create_key("erin")
    erin = McpSession(stdio(world.path, key, world.logs / "erin.log"))
    try:
        assert erin.ok("namespaces")["namespaces"] == []
        world.db.admin.revoke_key(key)
        after = erin.call("namespaces")
        assert after.is_error
        assert text_of(after) == ("unauthenticated: API key is unknown or revoked; ask an admin "
                                  "for a new key")
        assert erin.call("remember", text="too late").is_error
    finally:
        erin.close()
    assert world.db.recall("too late", filters={"author": "erin"}).hits == ()


# -- docs --------------------------------------------------------------------------------------


def test_every_tool_and_resource_is_documented(alice):
    doc = DOCS.read_text()
    for name in alice.tools():
        assert f"### `{name}`" in doc, f"tool {name} is not documented in docs/mcp.md"
    for uri in ("engram://namespaces", "engram://namespace/{+namespace}"):
        assert f"`{uri}`" in doc, f"resource {uri} is not documented in docs/mcp.md"


# -- the authorisation matrix ------------------------------------------------------------------

AGENTS = 5
NAMESPACES = 10
RIGHTS = [set(), {"read"}, {"write"}, {"read", "write"}, {"read", "admin"},
          {"read", "write", "admin"}]


def rights(agent: int, ns: int) -> set[str]:
    return RIGHTS[(agent * 7 + ns * 3 + agent * ns) % len(RIGHTS)]


@dataclass
class Tally:
    attempts: int = 0
    unauthorised: list[str] = field(default_factory=list)
    wrongly_denied: list[str] = field(default_factory=list)
    per_tool: dict[str, int] = field(default_factory=dict)

    def check(self, tool: str, where: str, allowed: bool, succeeded: bool) -> None:
        self.attempts += 1
        self.per_tool[tool] = self.per_tool.get(tool, 0) + 1
        if succeeded and not allowed:
            self.unauthorised.append(f"{tool} {where}")
        if allowed and not succeeded:
            self.wrongly_denied.append(f"{tool} {where}")

    def merge(self, other: Tally) -> None:
        self.attempts += other.attempts
        self.unauthorised += other.unauthorised
        self.wrongly_denied += other.wrongly_denied
        for tool, n in other.per_tool.items():
            self.per_tool[tool] = self.per_tool.get(tool, 0) + n


@dataclass
class Matrix:
    names: list[str]
    spaces: list[str]
    token: dict[str, str]         # namespace -> its canary token (in texts and values)
    target: dict[str, Any]        # namespace -> the canary memory
    victim: dict[tuple[str, str], str]    # (agent, namespace) -> memory to update and retract
    conflict: dict[tuple[str, str], Any]  # (agent, namespace) -> conflict for it to resolve
    decision: dict[str, str]      # namespace -> a decision filed there by the admin


def seed_matrix(db: engramdb.Database) -> tuple[Matrix, dict[str, str]]:
    names = [f"agent{i}" for i in range(AGENTS)]
    spaces = [f"mx/ns{j}" for j in range(NAMESPACES)]
    keys = {n: db.admin.create_agent(n) for n in names}
    for i, n in enumerate(names):
        for j, ns in enumerate(spaces):
            if rights(i, j):
                db.admin.grant(n, ns, sorted(rights(i, j)))
    token = {ns: f"canary{j}z{new_id()[-8:]}" for j, ns in enumerate(spaces)}
    # Every namespace asserts a different value for one shared subject: a detector or
    # explanation that crossed namespaces would carry a forbidden token to the reader.
    target = {ns: db.remember(f"{token[ns]} pelican ledger entry {j}", namespace=ns,
                              subject="ledger:shared", predicate="code", value=token[ns])
              for j, ns in enumerate(spaces)}
    victim = {(n, ns): db.remember(f"victim of {n} in {ns}", namespace=ns).id
              for n in names for ns in spaces}
    conflict = {}
    for n in names:
        for ns in spaces:
            db.remember(f"{n} rota in {ns}: Monday", namespace=ns, subject=f"rota:{n}",
                        predicate="day", value="monday")
            later = db.remember(f"{n} rota in {ns}: Tuesday", namespace=ns,
                                subject=f"rota:{n}", predicate="day", value="tuesday")
            conflict[(n, ns)] = later.conflicts[0]
    decision = {ns: db.decide(f"audit {ns}", basis=[target[ns]], namespace=ns).id
                for ns in spaces}
    return Matrix(names, spaces, token, target, victim, conflict, decision), keys


def probe_agent(s: McpSession, i: int, m: Matrix) -> Tally:
    """Every tool on every namespace as agent ``i``; what succeeded against its grants."""
    n = m.names[i]
    tally = Tally()
    unreadable = [m.token[ns] for j, ns in enumerate(m.spaces) if "read" not in rights(i, j)]

    def seen(value: Any) -> str:
        """The whole response as text; it must not carry a token the agent may not read."""
        text = json.dumps(value.model_dump() if hasattr(value, "model_dump") else value,
                          default=str)
        for secret in unreadable:
            if secret in text:
                tally.unauthorised.append(f"{n} saw {secret}")
        return text

    tools = set(s.tools())
    listed = set(s.ok("namespaces")["namespaces"])
    resources = set(s.resources())
    for j, ns in enumerate(m.spaces):
        r = rights(i, j)
        can_read, can_write, can_admin = "read" in r, "write" in r, "admin" in r
        where = f"{n} {ns}"
        token = m.token[ns]

        def ok(result: CallToolResult, token: str = token) -> tuple[bool, str]:
            return not result.is_error, seen(result)

        for glob in (ns, "mx/**", "**"):
            _, text = ok(s.call("recall", query=f"{token} pelican ledger", namespace=glob, k=50))
            tally.check("recall", f"{where} {glob}", can_read, token in text)
        done, text = ok(s.call("context", task=f"{token} pelican ledger", namespace=ns))
        tally.check("context", where, can_read, done and token in text)
        done, text = ok(s.call("get", id=m.target[ns].id))
        tally.check("get", where, can_read, done and token in text)
        done, text = ok(s.call("history", id=m.target[ns].id))
        tally.check("history", where, can_read, done and token in text)
        done, _ = ok(s.call("remember", text=f"note by {n}", namespace=ns))
        tally.check("remember", where, can_write, done)
        done, _ = ok(s.call("update", id=m.victim[(n, ns)], text=f"changed by {n}"))
        tally.check("update", where, can_read and can_write, done)
        done, _ = ok(s.call("retract", id=m.victim[(n, ns)], reason="matrix"))
        tally.check("retract", where, can_read and can_write, done)
        # No matrix grant includes 'erase': forget is refused everywhere, and changes nothing.
        done, _ = ok(s.call("forget", id=m.victim[(n, ns)], reason="matrix"))
        tally.check("forget", where, False, done)
        done, _ = ok(s.call("decide", description=f"act on {ns}",
                            basis=[{"id": m.target[ns].id, "version": 1}]))
        tally.check("decide", where, can_read, done)
        done, text = ok(s.call("explain", decision_id=m.decision[ns]))
        tally.check("explain", where, can_read, done and token in text)
        c = m.conflict[(n, ns)]
        _, text = ok(s.call("conflicts", namespace=ns, status=None))
        tally.check("conflicts", where, can_read, c.id in text)
        done, _ = ok(s.call("resolve", conflict_id=c.id, winner=c.memories[0].id,
                            reason="matrix"))
        tally.check("resolve", where, can_read and can_admin, done)
        tally.check("namespaces", where, can_read, ns in listed)
        tally.check("resources/list", where, can_read, f"engram://namespace/{ns}" in resources)
        text = seen(s.read(f"engram://namespace/{ns}"))
        tally.check("resources/read", where, can_read, token in text)
    assert tools == TOOLS  # every tool was exercised above
    return tally


@pytest.mark.slow
def test_authorisation_matrix_over_mcp(tmp_path, embedder):
    db = engramdb.open(tmp_path / "matrix.db", embedder=embedder)
    m, keys = seed_matrix(db)
    started = time.monotonic()
    sessions = {n: McpSession(stdio(tmp_path / "matrix.db", keys[n], tmp_path / f"{n}.log"))
                for n in m.names}
    tally = Tally()
    try:
        with concurrent.futures.ThreadPoolExecutor(len(sessions)) as pool:
            for part in pool.map(lambda i: probe_agent(sessions[m.names[i]], i, m),
                                 range(AGENTS)):
                tally.merge(part)
    finally:
        for s in sessions.values():
            s.close()
    elapsed = time.monotonic() - started

    for j, ns in enumerate(m.spaces):  # the engine's state agrees with what the door said
        for i, n in enumerate(m.names):
            r = rights(i, j)
            assert (db.get(m.victim[(n, ns)]).status == "retracted") == ({"read", "write"} <= r)
            resolved = db.conflicts(ns, status="resolved")
            assert (m.conflict[(n, ns)].id in {c.id for c in resolved}) == (
                {"read", "admin"} <= r)
    db.close()
    print(f"\nMCP authorisation matrix: {AGENTS} agents x {NAMESPACES} namespaces x "
          f"{len(tally.per_tool)} operations, {tally.attempts} attempts "
          f"{dict(sorted(tally.per_tool.items()))}: {len(tally.unauthorised)} unauthorised "
          f"successes, {len(tally.wrongly_denied)} wrongful denials, {elapsed:.1f}s")
    assert tally.unauthorised == []
    assert tally.wrongly_denied == []
    for n in m.names:
        assert "Traceback" not in (tmp_path / f"{n}.log").read_text()
