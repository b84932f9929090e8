"""The HTTP door and the remote clients, against a live uvicorn server on loopback.

What the conformance suite cannot see from the client's side: status codes and
bodies on the wire, authentication, limits, the SSE feed, metrics, the spec
(its documentation is checked in ``test_docs.py``), and the admin-only trust
policy, read-audit and checkpoint routes.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
from pathlib import Path

import httpx
import pytest

import engramdb
from engramdb.errors import PayloadTooLarge, RateLimited
from engramdb.server import ServerSettings
from tests.support.http_server import TEST_SETTINGS, LiveServer, ServerProcess


@pytest.fixture
def make_server(tmp_path, embedder):
    """Start live servers over fresh SQLite files; all stopped at the end of the test."""
    started: list[LiveServer] = []

    def make(settings: ServerSettings = TEST_SETTINGS) -> LiveServer:
        db = engramdb.open(tmp_path / f"engram{len(started)}.db", embedder=embedder)
        server = LiveServer(db, settings).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
        server.db.close()


@pytest.fixture
def server(make_server) -> LiveServer:
    return make_server()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def remembered(events) -> list[engramdb.Event]:
    """The memory events of a feed (an admin also sees namespace-less admin events)."""
    return [e for e in events if e.kind == "memory.remembered"]


def agent_with_grant(admin: engramdb.client.Client, name: str, pattern: str,
                     actions=("read", "write")) -> str:
    key = admin.admin.create_agent(name)
    admin.admin.grant(name, pattern, list(actions))
    return key


# -- authentication --------------------------------------------------------------------


def test_no_key_is_401_with_bearer_challenge(server):
    r = httpx.get(server.url + "/v1/me")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert r.json()["error"]["code"] == "unauthenticated"
    assert "Authorization: Bearer" in r.json()["error"]["message"]


@pytest.mark.parametrize("header", [
    "Bearer ek_000000000000_not-a-real-secret",  # well-formed, unknown
    "Bearer garbage",                             # malformed
    "Basic dXNlcjpwYXNz",                         # another scheme
    "Bearer",                                     # no key after the scheme
])
def test_bad_keys_are_401(server, header):
    r = httpx.post(server.url + "/v1/memories", json={"text": "x"},
                   headers={"Authorization": header})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthenticated"


def test_unauthenticated_caller_learns_nothing_about_the_request(server):
    # Invalid JSON without a key is still a 401, not a validation answer.
    r = httpx.post(server.url + "/v1/memories", content=b"{not json",
                   headers={"content-type": "application/json"})
    assert r.status_code == 401


def test_revoked_key_stops_working_at_once(server):
    admin = engramdb.connect(server.url, server.admin_key())
    key = agent_with_grant(admin, "scout", "acme/**")
    scout = engramdb.connect(server.url, key)
    scout.remember("the market opens at nine", namespace="acme/notes")
    admin.admin.revoke_key(key)
    with pytest.raises(engramdb.Unauthenticated):
        scout.remember("after revocation", namespace="acme/notes")
    r = httpx.get(server.url + "/v1/me", headers=bearer(key))
    assert r.status_code == 401
    # Only the first write exists.
    assert [h.memory.text for h in admin.recall("market", namespace="acme/**")] == [
        "the market opens at nine"]


def test_me_names_the_keys_principal(server):
    admin = engramdb.connect(server.url, server.admin_key())
    key = admin.admin.create_agent("planner", roles=["analyst"])
    me = engramdb.connect(server.url, key).principal
    assert (me.name, me.roles, me.is_admin) == ("planner", ("analyst",), False)
    assert admin.principal.is_admin
    assert admin.admin.authenticate(key) == "planner"


# -- authorisation ----------------------------------------------------------------------


def test_forbidden_memory_looks_exactly_like_a_missing_one(server):
    admin = engramdb.connect(server.url, server.admin_key())
    alice = engramdb.connect(server.url, agent_with_grant(admin, "alice", "team-a/**"))
    bob_key = agent_with_grant(admin, "bob", "team-b/**")
    secret = alice.remember("the launch date is March 3", namespace="team-a/plans")
    missing_id = secret.id[:-4] + ("0000" if not secret.id.endswith("0000") else "1111")

    for suffix in ("", "/history"):
        forbidden = httpx.get(f"{server.url}/v1/memories/{secret.id}{suffix}",
                              headers=bearer(bob_key))
        missing = httpx.get(f"{server.url}/v1/memories/{missing_id}{suffix}",
                            headers=bearer(bob_key))
        assert forbidden.status_code == missing.status_code == 404
        assert forbidden.headers["content-type"] == missing.headers["content-type"]
        same = json.loads(forbidden.text.replace(secret.id, "ID"))
        assert same == json.loads(missing.text.replace(missing_id, "ID"))
        assert forbidden.json()["error"]["code"] == "not_found"

    bob = engramdb.connect(server.url, bob_key)
    with pytest.raises(engramdb.NotFound):
        bob.get(secret.id)
    with pytest.raises(engramdb.NotFound):
        bob.update(secret.id, text="moved to April")
    assert alice.get(secret.id).text == "the launch date is March 3"
    assert bob.recall("launch date", namespace="**").hits == ()


def test_writing_without_a_grant_is_permission_denied_as_embedded(server):
    admin = engramdb.connect(server.url, server.admin_key())
    reader = engramdb.connect(server.url, agent_with_grant(admin, "reader", "acme/**",
                                                            actions=("read",)))
    with pytest.raises(engramdb.PermissionDenied) as err:
        reader.remember("not allowed", namespace="acme/notes")
    assert err.value.details["namespace"] == "acme/notes"
    assert admin.recall("allowed", namespace="**").hits == ()


def test_admin_routes_refuse_agent_keys(server):
    admin = engramdb.connect(server.url, server.admin_key())
    key = admin.admin.create_agent("worker")
    for method, path, body in [("GET", "/v1/admin/agents", None),
                               ("POST", "/v1/admin/agents", {"name": "sneaky"}),
                               ("POST", "/v1/admin/grants",
                                {"grantee": "worker", "pattern": "**", "actions": ["read"]}),
                               ("POST", "/v1/verify", None)]:
        r = httpx.request(method, server.url + path, json=body, headers=bearer(key))
        assert r.status_code == 403, path
        assert r.json()["error"]["code"] == "permission_denied"
    assert [a.name for a in admin.admin.agents()] == ["admin", "worker"]
    assert admin.admin.grants("worker") == []


def test_a_second_admin_principal_acts_as_itself(server):
    root = engramdb.connect(server.url, server.admin_key())
    ops = engramdb.connect(server.url, root.admin.create_agent("ops", kind="admin"))
    grant = ops.admin.grant("ops", "ops/**", ["read", "write"])
    assert grant.granted_by == "ops"
    events = [e for e in root.changes(0) if e.kind == "grant.created"]
    assert events[-1].actor == "ops"


# -- errors ---------------------------------------------------------------------------------


def test_version_conflict_crosses_the_wire_intact(server):
    db = engramdb.connect(server.url, server.admin_key())
    m = db.remember("draft one", namespace="docs/a")
    db.update(m.id, text="draft two", expected_version=1)
    r = httpx.patch(f"{server.url}/v1/memories/{m.id}", headers=bearer(db._key),
                    json={"text": "draft three", "expected_version": 1})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "version_conflict"
    assert r.json()["error"]["details"]["current_version"] == 2
    with pytest.raises(engramdb.VersionConflict) as err:
        db.update(m.id, text="draft three", expected_version=1)
    assert err.value.current_version == 2
    assert db.get(m.id).text == "draft two"


@pytest.mark.parametrize(("body", "content_type", "needle"), [
    (b"{not json", "application/json", "not valid JSON"),
    (b'{"text": 42}', "application/json", "body.text"),
    # An unknown field is named as such, never echoed (issue 17: no input in messages).
    (b'{"text": "x", "colour": "red"}', "application/json", "unknown field"),
    (b'{"text": "x", "importance": NaN}', "application/json", "body.importance"),
    (b'{"text": "x", "valid_from": 1700000000}', "application/json", "body.valid_from"),
    (b'{"text": "x", "valid_from": "next tuesday"}', "application/json", "body.valid_from"),
    (b"[" * 50_000 + b"]" * 50_000, "application/json", ""),
    (b'{"text": "\xff\xfe"}', "application/json", "UTF-8"),
    (b'{"text": "a\\ud800b"}', "application/json", "surrogate"),
    (b"text=hello", "application/x-www-form-urlencoded", "body"),
    (b"", "application/json", "body"),
])
def test_malformed_requests_get_400_never_422_or_5xx(server, body, content_type, needle):
    r = httpx.post(server.url + "/v1/memories", content=body,
                   headers={**bearer(server.admin_key()), "content-type": content_type})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_input"
    assert needle in error["message"]
    assert "colour" not in error["message"]
    assert "Traceback" not in r.text and "pydantic" not in r.text


def test_engine_validation_errors_keep_their_codes(server):
    key = server.admin_key()
    cases = [
        ({"text": "x", "namespace": "Not/Valid"}, "invalid_namespace"),
        ({"text": "x", "layer": "dreams"}, "invalid_layer"),
        ({"text": "x" * 40_000}, "text_too_long"),
        ({"text": "   "}, "invalid_input"),
    ]
    for body, code in cases:
        r = httpx.post(server.url + "/v1/memories", json=body, headers=bearer(key))
        assert (r.status_code, r.json()["error"]["code"]) == (400, code), body


def test_unknown_route_and_wrong_method_answer_in_the_error_shape(server):
    key = bearer(server.admin_key())
    r = httpx.get(server.url + "/v1/nothing-here", headers=key)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.delete(server.url + "/v1/recall", headers=key)
    assert r.status_code == 405
    assert r.json()["error"]["code"] == "method_not_allowed"
    assert r.headers["Allow"] == "POST"
    r = httpx.put(server.url + "/v1/admin/agents", headers=key)
    assert r.headers["Allow"] == "GET, POST"


# -- limits ----------------------------------------------------------------------------------


def test_body_over_the_limit_is_413_declared_or_streamed(make_server):
    server = make_server(ServerSettings(rate_limit_per_s=None, max_body_bytes=2_000))
    headers = {**bearer(server.admin_key()), "content-type": "application/json"}
    big = json.dumps({"text": "y" * 5_000}).encode()
    r = httpx.post(server.url + "/v1/memories", content=big, headers=headers)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"
    assert "2000 bytes" in r.json()["error"]["message"]

    def chunks():  # no Content-Length: the server counts as it reads
        for i in range(0, len(big), 500):
            yield big[i:i + 500]

    r = httpx.post(server.url + "/v1/memories", content=chunks(), headers=headers)
    assert r.status_code == 413
    small = httpx.post(server.url + "/v1/memories", json={"text": "fits"},
                       headers=bearer(server.admin_key()))
    assert small.status_code == 201


def test_batch_and_transaction_over_the_limit_are_413(make_server):
    server = make_server(ServerSettings(rate_limit_per_s=None, max_batch=3))
    db = engramdb.connect(server.url, server.admin_key())
    with pytest.raises(PayloadTooLarge) as err:
        db.remember_many([{"text": f"note {i}", "namespace": "n"} for i in range(4)])
    assert err.value.details["limit"] == 3
    with pytest.raises(PayloadTooLarge):
        with db.transaction() as tx:
            for i in range(4):
                tx.remember(f"note {i}", namespace="n")
    assert len(db.remember_many([{"text": f"note {i}", "namespace": "n"} for i in range(3)])) == 3
    assert len(remembered(db.changes(0, namespace="n"))) == 3
    with pytest.raises(PayloadTooLarge) as err:
        db.tool_outcomes([{"tool": "fetch", "ok": True}] * 4)
    assert err.value.details["limit"] == 3 and db.tool_stats("fetch") == []
    assert db.tool_outcomes([{"tool": "fetch", "ok": True}] * 3) == 3


def test_page_size_over_the_limit_is_400(make_server):
    server = make_server(ServerSettings(rate_limit_per_s=None, max_page_size=5,
                                        default_page_size=5))
    db = engramdb.connect(server.url, server.admin_key())
    db.remember_many([{"text": f"event {i}", "namespace": "feed"} for i in range(12)])
    r = httpx.get(server.url + "/v1/changes", params={"limit": 6},
                  headers=bearer(server.admin_key()))
    assert r.status_code == 400 and "page size of 5" in r.json()["error"]["message"]
    page = httpx.get(server.url + "/v1/changes", params={"namespace": "feed"},
                     headers=bearer(server.admin_key())).json()
    assert len(page["events"]) == 5 and page["more"] is True
    # The client pages through all of them.
    assert len(remembered(db.changes(0, namespace="feed"))) == 12


def test_rate_limit_is_per_key_with_retry_after(make_server):
    # One token every 4 s: slow enough that no token comes back while a loaded
    # machine runs the few requests below.
    server = make_server(ServerSettings(rate_limit_per_s=0.25, rate_limit_burst=3))
    key, other = server.admin_key(), server.admin_key()
    codes = [httpx.get(server.url + "/v1/me", headers=bearer(key)).status_code
             for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = httpx.get(server.url + "/v1/me", headers=bearer(key))
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limited"
    retry_after = int(r.headers["Retry-After"])
    assert 1 <= retry_after <= 4
    assert httpx.get(server.url + "/v1/me", headers=bearer(other)).status_code == 200
    with pytest.raises(RateLimited):
        engramdb.connect(server.url, key).recall("anything")
    time.sleep(retry_after + 0.1)
    assert httpx.get(server.url + "/v1/me", headers=bearer(key)).status_code == 200
    # Unauthenticated probes are refused before the bucket is charged.
    assert httpx.get(server.url + "/healthz").status_code == 200


# -- transactions -----------------------------------------------------------------------------


def test_remote_transaction_is_all_or_nothing(server):
    db = engramdb.connect(server.url, server.admin_key())
    m = db.remember("budget is 10k", namespace="ops")
    with pytest.raises(engramdb.VersionConflict) as err:
        with db.transaction() as tx:
            tx.remember("hiring freeze", namespace="ops")
            tx.update(m.id, text="budget is 12k", expected_version=7)
    assert err.value.details["op"] == 1
    assert [h.memory.text for h in db.recall("hiring freeze budget", namespace="ops")] == [
        "budget is 10k"]
    assert db.get(m.id).version == 1

    with pytest.raises(RuntimeError):
        with db.transaction() as tx:
            tx.remember("never sent", namespace="ops")
            raise RuntimeError("the caller changed its mind")
    assert len(remembered(db.changes(0, namespace="ops"))) == 1


def test_remote_transaction_can_update_what_it_just_remembered(server):
    db = engramdb.connect(server.url, server.admin_key())
    with db.transaction() as tx:
        first = tx.remember("meeting at 10", namespace="cal")
        second = tx.update(first.id, text="meeting at 11")
        with pytest.raises(engramdb.InvalidInput):
            _ = first.version  # not known before the commit
    assert first.id == second.id and (first.version, second.version) == (1, 2)
    assert [v.text for v in db.history(first.id)] == ["meeting at 10", "meeting at 11"]


# -- context, decisions, conflicts, knowledge ---------------------------------------------------


def test_decision_lifecycle_and_conflicts_over_http(server):
    admin = engramdb.connect(server.url, server.admin_key())
    key = agent_with_grant(admin, "analyst", "acme/**", actions=("read", "write", "admin"))
    me = engramdb.connect(server.url, key)
    positive = me.remember("Company X outlook is positive", namespace="acme/research",
                           subject="company:x", predicate="outlook", value="positive")
    negative = me.remember("Company X outlook is negative", namespace="acme/research",
                           subject="company:x", predicate="outlook", value="negative")
    assert [c.kind for c in negative.conflicts] == ["contradiction"]

    ctx = me.context("what is the outlook for company X", 200, namespace="acme/**")
    assert isinstance(ctx, engramdb.model.Context) and ctx.tokens <= 200
    assert "[contested]" in ctx.text and "Company X outlook" in ctx.text
    assert {i.id for i in ctx.receipt} == {positive.id, negative.id}

    d = me.decide("hold the position", basis=ctx.receipt, outcome={"action": "hold"},
                  namespace="acme/decisions")
    assert d.basis == tuple(sorted(ctx.receipt.items)) and not d.stale
    assert me.decision(d.id) == d
    assert me.stale_decisions("acme/**") == []

    [conflict] = me.conflicts("acme/**")
    resolved = me.resolve(conflict.id, winner=positive.id, reason="analyst call confirmed")
    assert (resolved.status, resolved.winner) == ("resolved", positive.id)
    assert me.conflicts("acme/**") == [] and len(me.conflicts("acme/**", status=None)) == 1

    why = me.explain(d.id)
    assert why.stale and [d2.id for d2 in me.stale_decisions("acme/**")] == [d.id]
    by_id = {b.item.id: b for b in why.basis}
    assert by_id[negative.id].superseded and by_id[negative.id].later[-1].status == "rejected"
    assert by_id[positive.id].then.text == "Company X outlook is positive"

    assert me.namespaces() == ["acme/research"]  # namespaces that hold memories
    # The rejected version is not active: the winner is the newest memory left.
    assert [m.id for m in me.recent(namespace="acme/**", k=5)] == [positive.id]
    reads = me.who_read(positive.id)
    assert reads and all(r.principal == "analyst" for r in reads)

    then = admin.knowledge("analyst", at=positive.tx_from, query="company outlook")
    assert [h.memory.id for h in then.hits] == [positive.id]
    with pytest.raises(engramdb.PermissionDenied):
        me.knowledge("analyst", at=positive.tx_from)


def test_decision_on_an_unreadable_basis_is_not_found(server):
    admin = engramdb.connect(server.url, server.admin_key())
    secret = admin.remember("the merger closes in May", namespace="board/private")
    spy = engramdb.connect(server.url, agent_with_grant(admin, "spy", "spy/**"))
    with pytest.raises(engramdb.NotFound):
        spy.decide("sell early", basis=[secret], namespace="spy/notes")
    with pytest.raises(engramdb.InvalidInput):
        spy.decide("sell early", basis="not a receipt", namespace="spy/notes")
    assert admin.stale_decisions() == []


# -- several server processes over one PostgreSQL database -----------------------------------


@pytest.mark.postgres
def test_server_processes_over_one_postgres_database_act_as_one_service(pg):
    name = f"http_two_{os.getpid()}"
    url = pg.fresh_database(name)
    setup = engramdb.open(url, embedder=None)
    key = setup.admin.create_key("admin")
    setup.close()
    servers = [ServerProcess(url), ServerProcess(url)]
    try:
        for s in servers:
            s.wait()
        a, b = (engramdb.connect(s.url, key) for s in servers)
        agent_key = a.admin.create_agent("shared-agent")
        b.admin.grant("shared-agent", "team/**", ["read", "write"])
        agent_on_b = engramdb.connect(servers[1].url, agent_key)
        m = agent_on_b.remember("the release is on Thursday", namespace="team/plans")
        assert a.get(m.id) == m
        a.update(m.id, text="the release is on Friday", expected_version=1)
        with pytest.raises(engramdb.VersionConflict) as err:
            agent_on_b.update(m.id, text="the release is on Monday", expected_version=1)
        assert err.value.current_version == 2
        assert [e.kind for e in b.changes(0, namespace="team/**")
                if e.namespace == "team/plans"] == ["memory.remembered", "memory.updated"]
        b.admin.revoke_key(agent_key)  # revoked through one server, refused by the other
        with pytest.raises(engramdb.Unauthenticated):
            engramdb.connect(servers[0].url, agent_key).get(m.id)
        assert a.verify().ok and b.verify().ok
    finally:
        for s in servers:
            s.stop()
        import psycopg

        with psycopg.connect(pg.url_for("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- change feed (SSE) -------------------------------------------------------------------------


def read_sse(response: httpx.Response, want: int, timeout: float = 10.0) -> list[dict]:
    """The first ``want`` memory events of an open stream, as {'id', 'data'}."""
    events: list[dict] = []
    current: dict = {}
    deadline = time.monotonic() + timeout
    for line in response.iter_lines():
        if time.monotonic() > deadline:
            break
        if line.startswith("id:"):
            current["id"] = line[3:].strip()
        elif line.startswith("data:"):
            current["data"] = json.loads(line[5:].strip())
        elif line == "":
            if current.get("data", {}).get("kind") == "memory.remembered":
                events.append(current)
                if len(events) == want:
                    break
            current = {}
    return events


def test_sse_feed_resumes_from_last_event_id(make_server):
    server = make_server(ServerSettings(rate_limit_per_s=None, sse_poll_s=0.05))
    db = engramdb.connect(server.url, server.admin_key())
    for i in range(3):
        db.remember(f"fact {i}", namespace="feed")
    headers = {**bearer(server.admin_key()), "Accept": "text/event-stream"}
    params = {"namespace": "feed"}
    with httpx.stream("GET", server.url + "/v1/changes/stream", params=params,
                      headers=headers, timeout=10) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        first = read_sse(r, 3)
    assert [e["data"]["payload"]["effects"][0]["row"]["text"] for e in first] == [
        "fact 0", "fact 1", "fact 2"]
    assert [int(e["id"]) for e in first] == [e["data"]["seq"] for e in first]

    db.remember("fact 3", namespace="feed")
    db.remember("fact 4", namespace="feed")
    with httpx.stream("GET", server.url + "/v1/changes/stream", params=params,
                      headers={**headers, "Last-Event-ID": first[-1]["id"]}, timeout=10) as r:
        resumed = read_sse(r, 2)
    assert [e["data"]["payload"]["effects"][0]["row"]["text"] for e in resumed] == [
        "fact 3", "fact 4"]


def test_sse_delivers_live_writes_and_client_watch_follows(make_server):
    server = make_server(ServerSettings(rate_limit_per_s=None, sse_poll_s=0.05))
    db = engramdb.connect(server.url, server.admin_key())
    db.remember("before", namespace="live")

    def write_later():
        time.sleep(0.3)
        writer = engramdb.connect(server.url, server.admin_key())
        writer.remember("during one", namespace="live")
        writer.remember("during two", namespace="live")

    threading.Thread(target=write_later, daemon=True).start()
    seen = []
    for event in db.watch(0, namespace="live", idle_timeout=10):
        if event.kind != "memory.remembered":
            continue
        seen.append(event.payload["effects"][0]["row"]["text"])
        if len(seen) == 3:
            break
    assert seen == ["before", "during one", "during two"]
    assert all(isinstance(e, engramdb.Event) for e in remembered(db.changes(0)))


def test_sse_stream_ends_with_an_error_event_when_the_key_is_revoked(make_server):
    server = make_server(ServerSettings(rate_limit_per_s=None, sse_poll_s=0.05))
    admin = engramdb.connect(server.url, server.admin_key())
    key = agent_with_grant(admin, "follower", "news/**")
    with httpx.stream("GET", server.url + "/v1/changes/stream",
                      headers=bearer(key), timeout=10) as r:
        assert r.status_code == 200
        admin.admin.revoke_key(key)
        text = "".join(r.iter_text())
    assert "event: error" in text and '"unauthenticated"' in text


def test_sse_rejects_a_bad_cursor_before_streaming(server):
    r = httpx.get(server.url + "/v1/changes/stream",
                  headers={**bearer(server.admin_key()), "Last-Event-ID": "yesterday"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input"


# -- trust policy, read audit, checkpoints (admin) --------------------------------------------


def test_predicate_declarations_over_http_govern_writes(server):
    admin = engramdb.connect(server.url, server.admin_key())
    declared = admin.admin.declare_predicate("acme/**", "outlook", policy="supersede")
    assert (declared.pattern, declared.policy, declared.declared) == ("acme/**", "supersede",
                                                                      True)
    assert admin.admin.predicates("acme/research") == [declared]
    assert admin.admin.predicates("other/x") == []
    assert admin.admin.schema_for("acme/research", "outlook") == declared
    assert server.db.admin.schema_for("acme/research", "outlook") == declared  # the engine's

    # The declaration is in force: a later value supersedes the earlier one.
    old = admin.remember("X outlook is positive", namespace="acme/research",
                         subject="company:x", predicate="outlook", value="positive")
    admin.remember("X outlook is negative", namespace="acme/research",
                   subject="company:x", predicate="outlook", value="negative")
    assert admin.get(old.id).status == "superseded"

    admin.admin.undeclare_predicate("acme/**", "outlook")
    assert admin.admin.predicates() == []
    assert admin.admin.schema_for("acme/research", "outlook").declared is False
    with pytest.raises(engramdb.NotFound):
        admin.admin.undeclare_predicate("acme/**", "outlook")
    with pytest.raises(engramdb.errors.InvalidPolicy):
        admin.admin.declare_predicate("acme/**", "outlook", policy="democracy")
    with pytest.raises(engramdb.errors.InvalidPolicy):
        admin.admin.declare_predicate("acme/**", "tally", merge="median")
    with pytest.raises(engramdb.errors.InvalidNamespace):
        admin.admin.declare_predicate("Acme/**", "outlook")
    assert admin.admin.predicates() == []


def test_trust_floor_quarantine_and_approval_over_http(server):
    admin = engramdb.connect(server.url, server.admin_key())
    stored = admin.admin.configure_namespace("acme/**", trust_floor=0.6,
                                             authority=["role:lead"])
    assert stored == {"trust_floor": 0.6, "authority": ["role:lead"]}
    settings = admin.admin.settings_for("acme/research")
    assert (settings.trust_floor, settings.authority) == (0.6, ("role:lead",))
    assert settings == server.db.admin.settings_for("acme/research")
    assert admin.admin.settings_for("elsewhere").trust_floor is None
    assert admin.admin.configure_namespace("acme/**", authority=None) == {"trust_floor": 0.6}

    key = admin.admin.create_agent("intern", trust=0.2)
    admin.admin.grant("intern", "acme/**", ["read", "write"])
    intern = engramdb.connect(server.url, key)
    m = intern.remember("the merger closes Friday", namespace="acme/research")
    assert m.status == "quarantined"
    assert [q.id for q in admin.admin.quarantined("acme/**")] == [m.id]
    assert admin.admin.quarantined("other/**") == []
    approved = admin.admin.approve(m.id, reason="confirmed by legal")
    assert (approved.id, approved.version, approved.status) == (m.id, 2, "active")
    assert admin.admin.quarantined() == []
    with pytest.raises(engramdb.InvalidInput):
        admin.admin.approve(m.id)  # no longer quarantined
    with pytest.raises(engramdb.InvalidInput):
        admin.admin.configure_namespace("acme/**", trust_floor=2)
    r = httpx.post(server.url + "/v1/admin/settings", headers=bearer(admin._key),
                   json={"pattern": "acme/**", "colour": "red"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input"

    # Trust raised over HTTP: the intern's next write is no longer held back.
    updated = admin.admin.update_agent("intern", trust=0.9, roles=["lead"])
    assert (updated.trust, updated.roles) == (0.9, ("lead",))
    assert intern.remember("the merger closes Monday", namespace="acme/research").status \
        != "quarantined"


def test_agent_lifecycle_over_http(server):
    admin = engramdb.connect(server.url, server.admin_key())
    key = agent_with_grant(admin, "temp", "proj/**")
    temp = engramdb.connect(server.url, key)
    before = admin.changes(0)
    cursor = list(before)[-1].seq
    first = temp.remember("plan A", namespace="proj/x")
    kept = admin.remember("admin's own note", namespace="proj/x")
    temp.update(kept.id, text="admin's own note, edited by temp")

    frozen = admin.admin.retire_agent("temp")
    assert frozen.status == "frozen"
    with pytest.raises(engramdb.Unauthenticated):
        temp.remember("still here?", namespace="proj/x")
    with pytest.raises(engramdb.InvalidInput):
        admin.admin.retire_agent("admin")
    with pytest.raises(engramdb.errors.InvalidPolicy):
        admin.admin.retire_agent("temp", policy="vanish")
    assert admin.admin.reactivate_agent("temp").status == "active"
    with pytest.raises(engramdb.InvalidInput):
        admin.admin.reactivate_agent("temp")  # not frozen any more

    undone = admin.admin.rollback_author("temp", first.tx_from)
    assert {m.id for m in undone} == {first.id, kept.id}
    assert admin.get(first.id).status == "retracted"
    assert admin.get(kept.id).text == "admin's own note"
    actors = {e.actor for e in admin.changes(cursor) if e.kind == "author.rolled_back"}
    assert actors == {"admin"}
    with pytest.raises(engramdb.NotFound):
        admin.admin.rollback_author("nobody", 0)

    retired = admin.admin.retire_agent("temp", "transfer", successor="admin")
    assert retired.status == "retired"
    with pytest.raises(engramdb.NotFound):
        admin.admin.update_agent("ghost", trust=0.1)


def test_read_audit_settings_over_http(server):
    admin = engramdb.connect(server.url, server.admin_key())
    key = agent_with_grant(admin, "reader", "kb/**", actions=("read",))
    m = admin.remember("the office opens at nine", namespace="kb/office")
    assert admin.read_audit_mode("kb/office") == ("all", 1.0)
    admin.set_read_audit("kb/**", "off")
    assert admin.read_audit_mode("kb/office")[0] == "off"
    engramdb.connect(server.url, key).recall("office hours", namespace="kb/**")
    assert admin.who_read(m.id) == []
    admin.set_read_audit("kb/**", "all")
    engramdb.connect(server.url, key).recall("office hours", namespace="kb/**")
    assert [r.principal for r in admin.who_read(m.id)] == ["reader"]
    admin.set_read_audit("kb/**", "sampled", rate=0.25)
    assert admin.read_audit_mode("kb/office") == ("sampled", 0.25)
    with pytest.raises(engramdb.InvalidInput):
        admin.set_read_audit("kb/**", "sampled")  # no rate
    with pytest.raises(engramdb.InvalidInput):
        admin.set_read_audit("kb/**", "loud")


def test_checkpoint_verify_and_prove_over_http(server, tmp_path):
    from engramdb.audit import verify_event_proof
    from engramdb.audit.checkpoint import Checkpoint, generate_key, load_public_key

    admin = engramdb.connect(server.url, server.admin_key())
    admin.remember("the audit starts here", namespace="audit/a")
    cp = admin.checkpoint()
    # Signed with the key next to the database file, created on first use.
    public = load_public_key(str(server.db.storage.path) + ".audit-key.pub.pem")
    report = admin.verify_checkpoint(cp, public)
    assert report.ok and report.signature.trusted and report.log.ok
    assert cp.tree_size == report.current_size == server.db.storage.head().seq

    admin.remember("written after the checkpoint", namespace="audit/a")
    later = admin.verify_checkpoint(cp.to_dict(), public, full=False)
    assert later.ok and later.current_size == cp.tree_size + 1 and later.log is None
    assert later.consistency.old_size == cp.tree_size

    proof = admin.prove(2, tree_size=cp.tree_size)
    assert proof.seq == 2 and verify_event_proof(proof, cp, public).ok
    assert admin.prove(2).proof.tree_size == cp.tree_size + 1

    # The same checks embedded agree with the door.
    assert report.to_dict()["signature"] == server.db.verify_checkpoint(cp, public) \
        .to_dict()["signature"]

    # A checkpoint that is not the one the server signed does not verify.
    forged = Checkpoint.from_dict({**cp.to_dict(), "tree_size": cp.tree_size + 1,
                                   "head_seq": cp.tree_size + 1})
    bad = admin.verify_checkpoint(forged, public)
    assert not bad.ok and "signature" in bad.problem
    other = generate_key(tmp_path / "other.pem")
    assert not admin.verify_checkpoint(cp, other).signature.ok
    with pytest.raises(engramdb.InvalidInput):
        admin.prove(10_000)

    # Over the wire only values are accepted: a path is never read on the server.
    r = httpx.post(server.url + "/v1/audit/checkpoints/verify", headers=bearer(admin._key),
                   json={"checkpoint": cp.to_dict(),
                         "public_key": str(server.db.storage.path) + ".audit-key.pub.pem"})
    assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "public_key"
    r = httpx.post(server.url + "/v1/audit/checkpoints/verify", headers=bearer(admin._key),
                   json={"checkpoint": {"format": "engramdb.checkpoint.v1"}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input"


def test_checkpoints_use_the_configured_key(make_server, tmp_path):
    from engramdb.audit.checkpoint import generate_key, key_id

    public = generate_key(tmp_path / "server-signing.pem")
    server = make_server(ServerSettings(rate_limit_per_s=None,
                                        checkpoint_key=str(tmp_path / "server-signing.pem")))
    admin = engramdb.connect(server.url, server.admin_key())
    cp = admin.checkpoint()
    assert cp.key_id == key_id(public)
    assert admin.verify_checkpoint(cp, public).ok
    assert not Path(str(server.db.storage.path) + ".audit-key.pem").exists()
    with pytest.raises(engramdb.errors.ConfigurationError):
        ServerSettings(checkpoint_key=str(tmp_path / "missing.pem"))


POLICY_ROUTES = [
    ("GET", "/v1/admin/predicates", None),
    ("POST", "/v1/admin/predicates", {"pattern": "**", "predicate": "p"}),
    ("POST", "/v1/admin/predicates/undeclare", {"pattern": "**", "predicate": "p"}),
    ("GET", "/v1/admin/predicates/effective?namespace=a&predicate=p", None),
    ("POST", "/v1/admin/settings", {"pattern": "**", "trust_floor": 0.1}),
    ("GET", "/v1/admin/settings?namespace=a", None),
    ("POST", "/v1/admin/read-audit", {"pattern": "**", "mode": "off"}),
    ("GET", "/v1/admin/read-audit?namespace=a", None),
    ("GET", "/v1/admin/quarantine", None),
    ("POST", "/v1/admin/quarantine/{id}/approve", None),
    ("PATCH", "/v1/admin/agents/worker", {"trust": 1.0}),
    ("POST", "/v1/admin/agents/worker/retire", None),
    ("POST", "/v1/admin/agents/worker/reactivate", None),
    ("POST", "/v1/admin/agents/worker/rollback", {"since": 0}),
    ("POST", "/v1/audit/checkpoints", None),
    ("POST", "/v1/audit/checkpoints/verify", {"checkpoint": {}}),
    ("GET", "/v1/audit/proofs/1", None),
    ("POST", "/v1/knowledge", {"agent": "worker", "at": 1}),
]


def test_policy_and_audit_routes_refuse_agent_keys_and_change_nothing(server):
    admin = engramdb.connect(server.url, server.admin_key())
    key = agent_with_grant(admin, "worker", "**", actions=("read", "write", "admin"))
    m = admin.remember("a memory to approve", namespace="w")
    head = server.db.storage.head()
    for method, path, body in POLICY_ROUTES:
        r = httpx.request(method, server.url + path.replace("{id}", m.id), json=body,
                          headers=bearer(key))
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["error"]["code"] == "permission_denied"
    assert server.db.storage.head() == head
    worker = engramdb.connect(server.url, key)
    with pytest.raises(engramdb.PermissionDenied):
        worker.admin.declare_predicate("**", "p")
    with pytest.raises(engramdb.PermissionDenied):
        worker.checkpoint()
    # Every route of the table exists: an admin key gets past the check.
    for method, path, body in POLICY_ROUTES:
        r = httpx.request(method, server.url + path.replace("{id}", m.id), json=body,
                          headers=bearer(admin._key))
        assert r.status_code != 403 and r.status_code < 500, (method, path, r.text)


def test_a_second_admin_is_named_in_policy_events(server):
    root = engramdb.connect(server.url, server.admin_key())
    ops = engramdb.connect(server.url, root.admin.create_agent("ops", kind="admin"))
    cursor = server.db.storage.head().seq
    ops.admin.declare_predicate("ops/**", "owner")
    ops.admin.configure_namespace("ops/**", detect_free_text=False)
    ops.set_read_audit("ops/**", "off")
    actors = {e.kind: e.actor for e in root.changes(cursor)}
    assert actors == {"predicate.declared": "ops", "namespace.configured": "ops",
                      "settings.changed": "ops"}


def test_async_client_admin_policy_and_audit(server):
    admin_key = server.admin_key()

    async def scenario() -> None:
        async with engramdb.connect_async(server.url, admin_key) as db:
            schema = await db.admin.declare_predicate("team/**", "lead", policy="reject")
            assert await db.admin.predicates() == [schema]
            assert (await db.admin.schema_for("team/a", "lead")).policy == "reject"
            assert (await db.admin.configure_namespace("team/**", trust_floor=0.5)) == {
                "trust_floor": 0.5}
            assert (await db.admin.settings_for("team/a")).trust_floor == 0.5
            await db.admin.create_agent("newbie", trust=0.1)
            await db.admin.grant("newbie", "team/**", ["write"])
            newbie = await db.as_agent("newbie")
            m = await newbie.remember("I lead now", namespace="team/a")
            assert [q.id for q in await db.admin.quarantined()] == [m.id]
            assert (await db.admin.approve(m.id)).status == "active"
            assert (await db.admin.update_agent("newbie", trust=0.7)).trust == 0.7
            assert (await db.admin.retire_agent("newbie")).status == "frozen"
            assert (await db.admin.reactivate_agent("newbie")).status == "active"
            assert [x.id for x in await db.admin.rollback_author("newbie", 0)] == [m.id]
            await db.admin.undeclare_predicate("team/**", "lead")
            await db.set_read_audit("team/**", "off")
            assert (await db.read_audit_mode("team/a")) == ("off", 1.0)
            cp = await db.checkpoint()
            assert (await db.verify_checkpoint(cp)).ok  # embedded key: untrusted but ok
            assert (await db.prove(1, tree_size=cp.tree_size)).seq == 1

    asyncio.run(scenario())


# -- async client ---------------------------------------------------------------------------------


def test_async_client_has_the_same_api(server):
    admin_key = server.admin_key()

    async def scenario() -> None:
        async with engramdb.connect_async(server.url, admin_key) as db:
            key = await db.admin.create_agent("async-agent")
            await db.admin.grant("async-agent", "shared/**", ["read", "write"])
            me = await db.as_agent("async-agent")
            assert (await me.principal()).name == "async-agent"
            m = await me.remember("the API rate limit is 100 per minute",
                                  namespace="shared/api", subject="api", predicate="limit",
                                  value=100)
            assert isinstance(m, engramdb.Memory) and m.author == "async-agent"
            r = await me.recall("what is the rate limit", namespace="shared/**")
            assert r.hits[0].memory.id == m.id and r.receipt.items[0].version == 1
            async with me.transaction() as tx:
                tx.update(m.id, value=120, expected_version=1)
            assert (await me.get(m.id)).value == 120
            assert (await me.get(m.id, as_of=m.tx_from)).value == 100
            with pytest.raises(engramdb.VersionConflict):
                await me.update(m.id, value=1, expected_version=1)
            with pytest.raises(engramdb.NotFound):
                await me.get("no-such-memory")
            kinds = [e.kind async for e in me.changes(0, namespace="shared/**")]
            assert kinds == ["memory.remembered", "memory.updated"]
            assert (await db.verify()).ok
            assert key.startswith("ek_")

    asyncio.run(scenario())


# -- metrics and health ---------------------------------------------------------------------------


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        found = dict(re.findall(r'(\w+)="([^"]*)"', head))
        if head.split("{")[0] == name and all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    raise AssertionError(f"no sample {name} {labels} in metrics")


def test_metrics_report_routes_layers_log_and_verify(server):
    db = engramdb.connect(server.url, server.admin_key())
    # /metrics needs an admin key by default (issue 17); issued before the log is counted.
    metrics_key = bearer(server.admin_key())
    db.remember("step one: open the valve", namespace="ops", layer="procedural")
    db.remember_many([{"text": f"observation {i}", "namespace": "ops", "layer": "episodic"}
                      for i in range(3)])
    gone = db.remember("temporary", namespace="ops", layer="episodic")
    db.retract(gone.id)
    for _ in range(4):
        db.recall("valve", namespace="ops")

    text = httpx.get(server.url + "/metrics", headers=metrics_key).text
    assert metric(text, "engram_http_request_duration_seconds_count", route="/v1/recall",
                  method="POST") == 4
    assert metric(text, "engram_http_request_duration_seconds_bucket", route="/v1/recall",
                  method="POST", le="+Inf") == 4
    assert metric(text, "engram_http_requests_total", route="/v1/memories/{memory_id}/retract",
                  method="POST", status="200") == 1
    assert metric(text, "engram_memories", layer="episodic") == 3
    assert metric(text, "engram_memories", layer="procedural") == 1
    assert metric(text, "engram_memories", layer="semantic") == 0
    assert metric(text, "engram_memories_by_status", status="retracted") == 1
    assert metric(text, "engram_open_conflicts") == 0
    assert metric(text, "engram_last_verify_ok") == -1

    report = db.verify()
    text = httpx.get(server.url + "/metrics", headers=metrics_key).text
    assert metric(text, "engram_last_verify_ok") == 1
    assert metric(text, "engram_log_events") == report.events_checked
    assert metric(text, "engram_last_verify_events_checked") == report.events_checked


def test_metrics_can_require_an_admin_key(make_server):
    server = make_server(ServerSettings(rate_limit_per_s=None, metrics_public=False))
    assert httpx.get(server.url + "/metrics").status_code == 401
    ok = httpx.get(server.url + "/metrics", headers=bearer(server.admin_key()))
    assert ok.status_code == 200 and "engram_database_up 1" in ok.text


def test_healthz_needs_no_key(server):
    r = httpx.get(server.url + "/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


# -- the spec and its documentation ------------------------------------------------------------


def operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, op in item.items():
            yield path, method, op


def test_openapi_documents_every_route_and_its_errors(server):
    spec = httpx.get(server.url + "/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    seen = set()
    for path, method, op in operations(spec):
        seen.add((method.upper(), path))
        where = f"{method.upper()} {path}"
        assert op.get("summary") and op.get("description"), where
        codes = set(op["responses"])
        assert "422" not in codes, where
        assert any(c.startswith("2") for c in codes), where
        for code in codes - {"200", "201", "204"}:
            ref = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
            assert ref == "#/components/schemas/ErrorResponse", (where, code)
        if path.startswith("/v1/"):
            assert {"401", "429"} <= codes, where
            assert op.get("security"), where
        if method in ("post", "patch", "delete"):
            assert "413" in codes, where
        if "requestBody" in op or any(p["in"] in ("query", "header")
                                      for p in op.get("parameters", ())):
            assert "400" in codes, where
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body:
            refs = [o["$ref"] for o in body["schema"].get("anyOf", [body["schema"]])
                    if "$ref" in o]
            assert refs, where
            model = schemas[refs[0].rsplit("/", 1)[1]]
            assert model.get("additionalProperties") is False, where
    # Every route the app serves is in the spec.
    served = {(m, r.path) for r in server.app.routes for m in getattr(r, "methods", ())
              if r.path not in ("/openapi.json", "/docs", "/docs/oauth2-redirect",
                                # the web inspector's static files (tests/test_inspector_http.py)
                                "/ui", "/ui/", "/ui/assets/{asset}")
              and m != "HEAD"}
    assert served <= seen
    assert len(seen) >= 22


def test_openapi_states_the_servers_limits(make_server):
    server = make_server(ServerSettings(rate_limit_per_s=None, max_batch=7, max_page_size=9,
                                        default_page_size=9))
    spec = httpx.get(server.url + "/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert schemas["BatchRequest"]["properties"]["memories"]["maxItems"] == 7
    assert schemas["TransactionRequest"]["properties"]["ops"]["maxItems"] == 7
    limit = next(p for p in spec["paths"]["/v1/changes"]["get"]["parameters"]
                 if p["name"] == "limit")
    assert any(o.get("maximum") == 9 for o in limit["schema"]["anyOf"])
    info = httpx.get(server.url + "/v1/info", headers=bearer(server.admin_key())).json()
    assert info["limits"]["max_batch"] == 7 and info["dimension"] == 384
