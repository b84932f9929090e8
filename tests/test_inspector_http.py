"""The inspector's page and assets over real HTTP, without a browser.

What a browser test cannot see directly: the security headers on every ``/ui``
answer, that the page and its script carry no secret and no inline script,
that the script never parses data as HTML, that nothing sets a cookie (the
inspector authenticates with a header, which is what makes its state changes
CSRF-safe), and that every API call the inspector makes is refused without a
key.
"""

from __future__ import annotations

import asyncio
import re
from importlib import resources

import httpx
import pytest

import engramdb
from tests.support.http_server import LiveServer

SCRIPTS = ("app.js", "core.js", "memories.js", "review.js", "operations.js")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    db = engramdb.open(tmp_path_factory.mktemp("ui") / "engram.db", embedder=None)
    live = LiveServer(db).start()
    try:
        yield live
    finally:
        live.stop()
        db.close()


def _ui_file(name: str) -> str:
    return resources.files("engramdb.server").joinpath("ui", name).read_text(encoding="utf-8")


@pytest.mark.parametrize("path", ["/ui", "/ui/assets/app.css",
                                  *[f"/ui/assets/{name}" for name in SCRIPTS]])
def test_every_ui_answer_carries_a_strict_content_security_policy(server, path):
    response = httpx.get(server.url + path)
    assert response.status_code == 200
    csp = {d.strip().split(" ", 1)[0]: d.strip() for d in
           response.headers["content-security-policy"].split(";")}
    assert csp["default-src"] == "default-src 'self'"
    assert csp["script-src"] == "script-src 'self'"  # no inline script, no eval, no CDN
    assert csp["frame-ancestors"] == "frame-ancestors 'none'"
    assert csp["object-src"] == "object-src 'none'"
    assert "unsafe" not in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "set-cookie" not in response.headers


def test_the_page_is_served_with_its_types_and_unknown_assets_are_404(server):
    page = httpx.get(server.url + "/ui")
    assert page.headers["content-type"].startswith("text/html")
    assert httpx.get(server.url + "/ui/assets/app.js").headers["content-type"].startswith(
        "text/javascript")
    missing = httpx.get(server.url + "/ui/assets/../../v1/me")
    assert missing.status_code in (401, 404)  # never a file outside the assets
    unknown = httpx.get(server.url + "/ui/assets/secret.py")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


def test_the_page_holds_nothing_secret_and_no_inline_script(server):
    html = httpx.get(server.url + "/ui").text
    key = server.admin_key()
    assert key not in html and key.split("_")[1] not in html
    assert "ek_" not in html
    # Scripts only by src from this server; no inline handlers; nothing from elsewhere.
    assert re.findall(r"<script\b[^>]*>", html) == [
        '<script type="module" src="/ui/assets/app.js">']
    assert not re.search(r"<script\b[^>]*>\s*[^<\s]", html)  # empty bodies only
    assert not re.search(r"\son[a-z]+\s*=", html)
    assert all(url.startswith("/ui/") for url in re.findall(r'(?:src|href)="([^"#]+)"', html))


def test_the_scripts_build_the_page_without_parsing_data_as_html():
    folder = resources.files("engramdb.server").joinpath("ui")
    assert sorted(f.name for f in folder.iterdir() if f.name.endswith(".js")) == sorted(SCRIPTS)
    script = "\n".join(_ui_file(name) for name in SCRIPTS)
    # Modules import only each other, from this server.
    assert set(re.findall(r'from "([^"]+)"', script)) <= {f"./{name}" for name in SCRIPTS}
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "localStorage", "document.cookie"):
        assert sink not in script, sink
    assert "sessionStorage" in script and "Authorization" in script


@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/me"), ("GET", "/v1/info"), ("GET", "/v1/namespaces"),
    ("GET", "/v1/memories"), ("POST", "/v1/recall"), ("GET", "/v1/changes/stream"),
    ("GET", "/v1/conflicts"), ("POST", "/v1/conflicts/c1/resolve"),
    ("GET", "/v1/decisions/stale"), ("POST", "/v1/knowledge"), ("GET", "/v1/admin/agents"),
    ("POST", "/v1/verify"), ("POST", "/v1/audit/checkpoints"),
])
def test_every_api_call_the_inspector_makes_needs_a_key(server, method, path):
    """A cookie or a key in the query string does not authenticate: only the header does."""
    key = server.admin_key()
    response = httpx.request(method, server.url + path, params={"api_key": key},
                             cookies={"api_key": key}, json={} if method == "POST" else None)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_info_reports_the_log_head_the_sliders_end_at(server):
    admin = server.db
    admin.admin.create_agent("carol")
    admin.admin.grant("carol", "team/**", ["read", "write"])
    made = admin.as_agent("carol").remember("head check", namespace="team/a")
    carol_key = admin.admin.create_key("carol")
    info = httpx.get(server.url + "/v1/info",
                     headers={"Authorization": f"Bearer {carol_key}"}).json()
    assert info["head"]["tx"] >= made.tx_from
    again = admin.as_agent("carol").remember("later", namespace="team/a")
    later = httpx.get(server.url + "/v1/info",
                      headers={"Authorization": f"Bearer {carol_key}"}).json()["head"]
    assert later["tx"] == again.tx_from and later["seq"] > info["head"]["seq"]


def test_info_shows_the_last_checkpoint_signed_to_any_key(server):
    admin = server.db
    admin.admin.create_agent("dave")
    dave = {"Authorization": f"Bearer {admin.admin.create_key('dave')}"}
    admin.remember("before the checkpoint", namespace="audit/x")
    signed = httpx.post(server.url + "/v1/audit/checkpoints",
                        headers={"Authorization": f"Bearer {server.admin_key()}"}).json()
    info = httpx.get(server.url + "/v1/info", headers=dave).json()
    assert info["last_checkpoint"] == signed
    assert info["last_checkpoint"]["head_seq"] == info["head"]["seq"] == admin.storage.head().seq


def test_every_principal_reads_exactly_its_own_grants(server):
    db = server.db
    db.admin.create_agent("erin", roles=["analyst"])
    db.admin.create_agent("frank")
    own = db.admin.grant("erin", "erin/**", ["read", "write"])
    role = db.admin.grant("role:analyst", "reports/**", ["read"])
    gone = db.admin.grant("erin", "old/**", ["read"])
    db.admin.revoke(gone.id)
    db.admin.grant("frank", "frank/**", ["read"])
    db.admin.grant("role:auditor", "audit/**", ["read"])

    expected = [own, role]
    assert db.as_agent("erin").my_grants() == expected
    assert [g.pattern for g in db.as_agent("frank").my_grants()] == ["frank/**"]
    assert db.my_grants() == []  # the admin holds no grant: it needs none

    erin_key = db.admin.create_key("erin")
    wire = httpx.get(server.url + "/v1/me/grants",
                     headers={"Authorization": f"Bearer {erin_key}"})
    assert wire.status_code == 200
    assert [(g["id"], g["grantee"], g["pattern"], g["actions"]) for g in wire.json()["grants"]] \
        == [(own.id, "erin", "erin/**", ["read", "write"]),
            (role.id, "role:analyst", "reports/**", ["read"])]
    with engramdb.connect(server.url, erin_key) as client:
        assert client.my_grants() == expected

    async def remote() -> list:
        async with engramdb.connect_async(server.url, erin_key) as client:
            return await client.my_grants()

    assert asyncio.run(remote()) == expected
    # The admin list stays admin-only: erin cannot read frank's grants there.
    refused = httpx.get(server.url + "/v1/admin/grants",
                        headers={"Authorization": f"Bearer {erin_key}"})
    assert refused.status_code == 403
