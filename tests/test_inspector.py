"""The web inspector at ``/ui`` in a real browser: Debian's Chromium driven by Playwright.

One ``engram serve`` process (``tests.support.http_server.ServerProcess``) serves
a real SQLite file seeded through the Python API: an agent ``alice`` with a grant
on ``acme/**``, an agent ``bob`` with one on ``ops/**``, a memory updated twice,
an open contradiction, a decision whose basis changed since (stale), and XSS
canaries. The tests sign in as ``alice`` and as the admin and check what a
person would see. Screenshots of each view go to ``$ENGRAM_ARTIFACTS`` (default
a temporary directory), never into the repository.

Skipped, with the reason, only when Chromium (or Playwright) is missing: ``make
test`` tries ``apt-get install -y chromium`` first.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

import engramdb
from tests.support.http_server import ServerProcess

CHROMIUM = os.environ.get("ENGRAM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                               "(pip install -e '.[dev]')")
if not Path(CHROMIUM).exists():
    pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium, or set "
                "ENGRAM_CHROMIUM): the inspector's browser tests cannot run",
                allow_module_level=True)

ARTIFACTS = Path(os.environ.get("ENGRAM_ARTIFACTS")
                 or Path(tempfile.gettempdir()) / "engram-inspector-screens")
VIEWER_ZONE = "Asia/Tokyo"  # UTC+9 all year: a shown time that is not UTC's
CANARY_IMG = '<img src=x onerror="window.__xss=1;alert(1)">'
CANARY_SCRIPT = "<script>window.__xss=2;alert(2)</script> [click me](javascript:alert(3))"


def _seed(path: Path) -> dict[str, Any]:
    db = engramdb.open(path, embedder=None)
    try:
        db.admin.create_agent("alice")
        db.admin.create_agent("bob")
        db.admin.grant("alice", "acme/**", ["read", "write"])
        db.admin.grant("bob", "ops/**", ["read", "write"])
        db.admin.set_lifecycle("acme/**", layer="episodic", ttl="30d", half_life="7d")
        alice, bob = db.as_agent("alice"), db.as_agent("bob")
        first = alice.remember("Launch window for Falcon is March", namespace="acme/launch",
                               subject="project:falcon", predicate="window", value="march")
        alice.remember("Budget for Falcon is approved", namespace="acme/launch")
        basis = alice.recall("Falcon launch window", namespace="acme/**")
        decision = alice.decide("book the launch venue for March", basis=basis.receipt)
        second = alice.update(first.id, text="Launch window for Falcon is June", value="june")
        rival = alice.remember("Launch window for Falcon is April", namespace="acme/launch",
                               subject="project:falcon", predicate="window", value="april")
        bob.remember("Pager rota: bob is on call this week", namespace="ops/oncall")
        canary = alice.remember(CANARY_IMG, namespace="acme/notes")
        alice.remember(CANARY_SCRIPT, namespace="acme/notes")
        busy = alice.remember("Standup notes, revision 1", namespace="acme/notes")
        for revision in range(2, 31):
            busy = alice.update(busy.id, text=f"Standup notes, revision {revision}")
        keys = {"alice": db.admin.create_key("alice"), "admin": db.admin.create_key("admin")}
        assert rival.conflicts, "the seed needs an open contradiction"
        return {"keys": keys, "first": first, "second": second, "decision": decision,
                "canary": canary, "busy": busy}
    finally:
        db.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    path = tmp_path_factory.mktemp("inspector") / "engram.db"
    seed = _seed(path)
    server = ServerProcess(str(path)).wait()
    try:
        yield {**seed, "url": server.url}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=["--no-sandbox", "--disable-gpu"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def sign_in(browser, served):
    """``sign_in("alice")`` -> a page signed in with that key (keyboard only)."""
    contexts = []
    errors: list[str] = []  # uncaught script errors in any view fail the test

    def open_as(who: str, key: str | None = None):
        context = browser.new_context(viewport={"width": 1280, "height": 800},
                                      timezone_id=VIEWER_ZONE, locale="en-US")
        contexts.append(context)
        page = context.new_page()
        page.dialogs = []  # type: ignore[attr-defined]
        page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda error: errors.append(f"{who}: {error}"))
        page.goto(served["url"] + "/ui")
        page.locator("#api-key").fill(key or served["keys"][who])
        page.keyboard.press("Enter")
        page.locator("#who").get_by_text("Sign out").wait_for()
        return page

    yield open_as
    for context in contexts:
        context.close()
    assert errors == []


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"inspector-{name}.png"))


def test_an_agent_sees_only_what_its_grants_allow(sign_in):
    page = sign_in("alice")
    table = page.locator("main table")
    table.get_by_text("Budget for Falcon is approved").wait_for()
    text = page.locator("main").inner_text()
    assert "Launch window for Falcon is June" in text
    assert "Pager rota" not in text and "ops/oncall" not in text
    assert page.locator(".side button", has_text="ops/oncall").count() == 0
    page.locator("#q").fill("Falcon launch")
    page.keyboard.press("Enter")
    page.get_by_text("Score (parts)").wait_for()
    assert "lexical" in page.locator("main table .parts").first.inner_text()
    assert "null" not in page.locator("main").inner_text()
    _shot(page, "memories-agent")


def test_the_admin_sees_every_namespace(sign_in):
    page = sign_in("admin")
    page.locator("main table").get_by_text("Pager rota: bob is on call this week").wait_for()
    assert page.locator(".side button", has_text="ops/oncall").count() == 1
    _shot(page, "memories-admin")


def test_the_as_of_slider_shows_the_older_version(sign_in, served):
    page = sign_in("alice")
    page.goto(f"{served['url']}/ui#/memory/{served['first'].id}")
    result = page.locator("#as-of-result")
    result.get_by_text("Launch window for Falcon is June").wait_for()
    slider = page.locator("#as-of")
    slider.focus()
    page.keyboard.press("Home")  # before the memory existed
    page.get_by_text("Not recorded yet").wait_for()
    page.keyboard.press("ArrowRight")  # the transaction that wrote version 1
    result.get_by_text("Launch window for Falcon is March").wait_for()
    assert "v1" in result.inner_text() and "June" not in result.inner_text()
    # Times are in the viewer's zone, with UTC on hover.
    stamp = page.locator(".version time").first
    utc = datetime.fromisoformat(stamp.get_attribute("datetime").replace("Z", "+00:00"))
    local = utc.astimezone(ZoneInfo(VIEWER_ZONE))
    assert stamp.get_attribute("title") == utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f"{local.month}/{local.day}/{local.year}" in stamp.inner_text()
    assert f"{local.hour % 12 or 12}:{local:%M:%S} {local:%p}" in stamp.inner_text()
    # The history shows the change between the versions as a word diff.
    assert page.locator(".version del", has_text="March").count() >= 1
    assert page.locator(".version ins", has_text="June").count() >= 1
    _shot(page, "memory-as-of")


def test_the_admin_resolves_a_conflict(sign_in, served):
    page = sign_in("admin")
    page.goto(served["url"] + "/ui#/conflicts")
    card = page.locator(".conflict").filter(has_text="Launch window for Falcon is April")
    card.wait_for()
    _shot(page, "conflicts")
    card.get_by_role("textbox").fill("June is the confirmed date")
    card.locator("li").filter(has_text="is June").get_by_role("button").click()
    page.get_by_text("No open conflicts you may read.").wait_for()
    key = served["keys"]["admin"]
    done = httpx.get(served["url"] + "/v1/conflicts", params={"status": "resolved"},
                     headers={"Authorization": f"Bearer {key}"}).json()["conflicts"]
    assert [(c["winner"], c["resolution"]) for c in done] == [
        (served["first"].id, "June is the confirmed date")]


def test_a_stale_decision_explains_what_changed(sign_in, served):
    page = sign_in("alice")
    page.goto(served["url"] + "/ui#/decisions")
    row = page.locator("main table tr").filter(has_text="book the launch venue for March")
    row.get_by_role("link", name="Explain").click()
    page.locator("h1 .badge", has_text="stale").wait_for()
    basis = page.locator(".basis").filter(has_text="Launch window for Falcon")
    assert basis.locator(".then-text").inner_text() == "Launch window for Falcon is March"
    assert basis.locator("ins", has_text="June").count() == 1
    assert basis.locator(".badge", has_text="superseded").count() == 1
    _shot(page, "decision-explain")


def test_memory_text_with_html_never_runs(sign_in, served):
    page = sign_in("alice")
    page.goto(served["url"] + "/ui#/memories")
    page.locator("main table").get_by_text(CANARY_IMG).wait_for()
    page.locator("main table").get_by_text("<script>window.__xss=2", exact=False).wait_for()
    page.goto(f"{served['url']}/ui#/memory/{served['canary'].id}")
    page.locator(".memory-text").get_by_text(CANARY_IMG).wait_for()
    page.locator("#q").count()  # the view settled
    # The markup is shown as text, never parsed: no element came from it and nothing ran.
    assert page.locator("main img, main script, main a[href^='javascript']").count() == 0
    assert page.evaluate("window.__xss") is None
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_the_live_feed_streams_new_changes_without_the_key_in_the_url(sign_in, served):
    page = sign_in("admin")
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    page.goto(served["url"] + "/ui#/feed")
    page.get_by_text("following").wait_for()
    key = served["keys"]["alice"]
    made = httpx.post(served["url"] + "/v1/memories", headers={"Authorization": f"Bearer {key}"},
                      json={"text": "Venue booked for June", "namespace": "acme/launch"})
    assert made.status_code == 201
    page.locator("#feed tr").filter(has_text="memory.").filter(
        has_text=made.json()["id"]).wait_for()
    _shot(page, "feed")
    page.locator("#feed-kind").fill("decision.")  # filters what was received, at once
    page.get_by_text("No matching events yet").wait_for()
    assert page.locator("#feed tbody tr").count() == 0
    stream = [u for u in urls if "/v1/changes/stream" in u]
    assert stream and not any(served["keys"]["admin"].split("_")[-1] in u for u in urls)


def test_the_admin_replays_what_an_agent_knew_then(sign_in, served):
    page = sign_in("admin")
    page.goto(served["url"] + "/ui#/timeline")
    page.locator("#tl-agent").fill("alice")
    page.locator("#tl-query").fill("Falcon launch window")
    page.keyboard.press("Enter")
    results = page.locator("#tl-results")
    results.get_by_text("Launch window for Falcon is June").wait_for()
    slider = page.locator("#tl-slider")
    slider.evaluate("(s, at) => { s.value = at; s.dispatchEvent(new Event('input')); }",
                    served["first"].tx_from)
    results.get_by_text("Launch window for Falcon is March").wait_for()
    assert "June" not in results.inner_text()
    _shot(page, "timeline")
    # A moment instead of a transaction: long before the database, then a minute ahead.
    page.locator("#tl-time").fill("2001-01-01T00:00:00")
    results.get_by_text("Nothing readable at this point.").wait_for()
    later = datetime.now(ZoneInfo(VIEWER_ZONE)) + timedelta(minutes=1)
    page.locator("#tl-time").fill(later.strftime("%Y-%m-%dT%H:%M:%S"))
    results.get_by_text("Launch window for Falcon is June").wait_for()


def test_admin_views_are_read_only_and_refused_to_agents(sign_in, served):
    agent = sign_in("alice")
    agent.locator("#nav").get_by_role("link", name="Agents & grants").click()
    agent.get_by_text("needs an admin key").wait_for()
    assert "bob" not in agent.locator("main").inner_text()
    # Its own grants, and only those (bob's ops/** is not among them).
    rows = agent.locator("#my-grants tbody tr")
    assert [r.split("\t")[:3] for r in rows.all_inner_texts()] == [
        ["alice", "acme/**", "read, write"]]
    assert "ops/**" not in agent.locator("main").inner_text()
    _shot(agent, "access-agent")
    admin = sign_in("admin")
    admin.locator("#nav").get_by_role("link", name="Agents & grants").click()
    grants = admin.locator("main table").nth(1)
    grants.get_by_text("ops/**").wait_for()
    _shot(admin, "access")
    assert admin.locator("main form button").all_inner_texts() == ["Show policy"]  # read-only
    admin.locator("#lc-ns").fill("acme/launch")
    admin.locator("#lc-layer").select_option("episodic")
    admin.locator("main form button").click()
    policy = admin.locator("#lc-policy")
    policy.get_by_text("30 days").wait_for()
    assert "7 days" in policy.inner_text() and "null" not in policy.inner_text()
    admin.locator("#lc-ns").fill("ops/oncall")
    admin.locator("main form button").click()
    policy.get_by_text("No lifecycle policy applies here").wait_for()
    admin.locator("#nav").get_by_role("link", name="Verify").click()
    admin.locator("#run-verify").click()
    admin.locator("#verify-report .badge", has_text="verified").wait_for()
    # Opened again, the view shows that last verify of the server (from its metrics).
    admin.locator("#nav").get_by_role("link", name="Memories").click()
    admin.locator("#nav").get_by_role("link", name="Verify").click()
    admin.locator("#verify-report").get_by_text("last run by this server").wait_for()
    assert admin.locator("#verify-report .badge").inner_text() == "verified"
    admin.locator("#sign-checkpoint").click()
    admin.locator("#checkpoint").get_by_text("events covered").wait_for()
    info = httpx.get(served["url"] + "/v1/info", headers={
        "Authorization": f"Bearer {served['keys']['admin']}"}).json()
    head = info["head"]
    assert f"{head['seq']} · " in admin.locator("#checkpoint").inner_text()
    _shot(admin, "verify")
    # The server remembers it: another browser (no tab state), even an agent's, shows it.
    signed = info["last_checkpoint"]
    assert signed["head_seq"] == head["seq"]
    later = sign_in("alice")
    later.locator("#nav").get_by_role("link", name="Verify").click()
    later.locator("#checkpoint").get_by_text("events covered").wait_for()
    shown = later.locator("#checkpoint").inner_text()
    assert signed["merkle_root"] in shown and signed["key_id"] in shown
    assert f"{signed['head_seq']} · {signed['head_hash']}" in shown


def test_a_revoked_key_is_refused_at_the_next_call(sign_in, served):
    admin = {"Authorization": f"Bearer {served['keys']['admin']}"}
    key = httpx.post(served["url"] + "/v1/admin/agents/alice/keys", headers=admin).json()["api_key"]
    page = sign_in("alice", key)
    page.locator("main table").get_by_text("Budget for Falcon is approved").wait_for()
    revoked = httpx.post(served["url"] + "/v1/admin/keys/revoke", headers=admin, json={"key": key})
    assert revoked.status_code == 204
    page.locator("#nav").get_by_role("link", name="Decisions").click()
    page.locator("#api-key").wait_for()
    assert "unknown or revoked" in page.locator("main [role=alert]").inner_text()
    assert page.evaluate("sessionStorage.length") == 0
    assert "Launch window" not in page.locator("main").inner_text()


def test_who_read_a_memory_is_shown_to_admins_only(sign_in, served):
    memory = f"{served['url']}/ui#/memory/{served['first'].id}"
    agent = sign_in("alice")
    agent.goto(memory)
    agent.locator("#load-readers").click()
    agent.get_by_text("Only a principal with admin on this namespace").wait_for()
    admin = sign_in("admin")
    admin.goto(memory)
    admin.locator("#load-readers").click()
    reads = admin.locator("main table").last
    reads.get_by_role("cell", name="alice").first.wait_for()  # alice's recall before deciding
    assert reads.locator("tbody tr").count() >= 1


def test_a_long_history_is_paginated_newest_first(sign_in, served):
    page = sign_in("alice")
    page.goto(f"{served['url']}/ui#/memory/{served['busy'].id}")
    versions = page.locator("#history .version")
    versions.first.get_by_text("v30").wait_for()
    assert versions.count() == 25
    assert versions.first.locator("ins").all_inner_texts() == ["30"]  # the diff against v29
    assert versions.first.locator("del").all_inner_texts() == ["29"]
    page.locator("#history").get_by_role("button", name="Next →").click()
    versions.first.get_by_text("v5", exact=True).wait_for()
    assert versions.count() == 5
    assert versions.last.locator(".text").inner_text() == "Standup notes, revision 1"
