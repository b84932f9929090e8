"""The first hour with the ``engram`` CLI, as a new user meets it.

A missing database is an error naming the path and ``engram init`` (never a
new empty file); global options work after the command too; an admin key can
be had from the CLI at any time; errors name the fix in the caller's own door;
the headline features (conflicts, resolve, context, decide, explain, stale,
knowledge) are commands; and ``engram serve`` on a taken port exits 2.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

import engramdb
from engramdb.cli import cli
from engramdb.errors import NotFound, PermissionDenied

WIDE = {"COLUMNS": "200", "NO_COLOR": "1"}
ENGRAM = [sys.executable, "-c", "from engramdb.cli import main; main()"]


def invoke(*args: str):
    return CliRunner(env=WIDE).invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def db_path(tmp_path, embedder) -> Path:
    path = tmp_path / "team.db"
    engramdb.open(path, embedder=embedder).close()
    return path


# --------------------------------------------------------------------------- missing databases


READS = [
    ["recall", "x"], ["get", "01a2e0e0-0000-7000-8000-000000000000"],
    ["history", "01a2e0e0-0000-7000-8000-000000000000"], ["changes"], ["verify"], ["export"],
    ["conflicts"], ["context", "plan"], ["stale"], ["explain", "d1"], ["agent", "list"],
    ["knowledge", "bob", "--at", "1"], ["update", "m1", "--text", "x"],
    ["agent", "grant", "bob", "a/**", "read"], ["agent", "key", "admin"],
]


@pytest.mark.parametrize("args", READS, ids=lambda a: " ".join(a[:2]))
def test_a_command_on_a_missing_database_names_it_and_creates_nothing(tmp_path, args):
    typo = tmp_path / "typo.db"
    result = invoke("--db", str(typo), *args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error [not_found] no database at")
    assert str(typo) in lines[0] and f"engram init {typo}" in lines[0]
    assert not typo.exists() and list(tmp_path.iterdir()) == []


def test_mcp_on_a_missing_database_says_so_rather_than_blaming_the_key(tmp_path):
    wrong = tmp_path / "wrong.db"
    result = invoke("--db", str(wrong), "mcp", "--api-key", "ek_0123456789ab_secret")
    assert result.exit_code == 2
    assert "[not_found] no database at" in result.stderr
    assert "unauthenticated" not in result.stderr
    assert not wrong.exists()


def test_the_python_api_can_refuse_to_create_too(tmp_path):
    with pytest.raises(NotFound) as caught:
        engramdb.open(tmp_path / "nope.db", embedder=None, create=False)
    assert "engramdb.open" in str(caught.value)  # the fix, said for Python
    assert not (tmp_path / "nope.db").exists()


# --------------------------------------------------------------------------- options anywhere


def test_global_options_also_follow_the_command(tmp_path, embedder):
    path = str(tmp_path / "late.db")
    made = invoke("remember", "Options may come last", "-n", "a/b", "--db", path, "--json")
    assert made.exit_code == 0, made.output
    memory = json.loads(made.stdout)
    assert Path(path).exists()
    assert invoke("agent", "create", "bob", "--db", path).exit_code == 0
    assert invoke("agent", "grant", "bob", "a/**", "read", "--db", path).exit_code == 0
    seen = invoke("recall", "options", "--db", path, "--as", "bob", "--json")
    assert seen.exit_code == 0, seen.output
    assert [h["memory"]["id"] for h in json.loads(seen.stdout)["hits"]] == [memory["id"]]
    refused = invoke("remember", "bob may not write", "-n", "a/b", "--db", path, "--as", "bob")
    assert refused.exit_code == 2 and "may not write" in refused.stderr


# --------------------------------------------------------------------------- keys


def test_admin_keys_from_the_cli_shown_once_or_written_0600(db_path, tmp_path):
    printed = invoke("--db", str(db_path), "--json", "agent", "key", "admin")
    assert printed.exit_code == 0, printed.output
    key = json.loads(printed.stdout)["api_key"]
    key_file = tmp_path / "ops.key"
    made = invoke("--db", str(db_path), "agent", "create", "ops", "--admin",
                  "--key-file", str(key_file))
    assert made.exit_code == 0, made.output
    ops_key = key_file.read_text().strip()
    assert ops_key not in made.stdout  # written, not shown
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    with engramdb.open(db_path) as db:
        assert db.admin.authenticate(key) == "admin"
        assert db.admin.authenticate(ops_key) == "ops"
        assert db.admin.principal("ops").kind == "admin"
        head = db.verify().head_seq
    again = invoke("--db", str(db_path), "agent", "key", "ops", "--key-file", str(key_file))
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert key_file.read_text().strip() == ops_key
    with engramdb.open(db_path) as db:
        assert db.verify().head_seq == head  # the refused call issued no key


def test_reactivate_brings_a_frozen_agent_back(db_path):
    with engramdb.open(db_path) as db:
        db.admin.create_agent("temp")
        db.admin.retire_agent("temp", policy="freeze")
    frozen = invoke("--db", str(db_path), "--as", "temp", "recall", "x")
    assert frozen.exit_code == 2 and "engram agent reactivate temp" in frozen.stderr
    assert invoke("--db", str(db_path), "agent", "reactivate", "temp").exit_code == 0
    assert invoke("--db", str(db_path), "--as", "temp", "recall", "x").exit_code == 0


# --------------------------------------------------------------------------- errors in each door


def test_the_same_error_names_its_fix_in_each_door(db_path):
    cli_denied = invoke("--db", str(db_path), "--as", "ghost", "recall", "x")
    assert cli_denied.exit_code == 2
    assert "engram agent create ghost" in cli_denied.stderr
    assert "db.admin" not in cli_denied.stderr
    assert invoke("--db", str(db_path), "agent", "create", "bob").exit_code == 0
    cli_write = invoke("--db", str(db_path), "--as", "bob", "remember", "x", "-n", "acme/x")
    assert "engram agent grant bob acme/x write" in cli_write.stderr
    with engramdb.open(db_path) as db, pytest.raises(PermissionDenied) as caught:
        db.as_agent("bob").remember("x", namespace="acme/x")
    assert "db.admin.grant('bob', 'acme/x', ['write'])" in str(caught.value)
    assert caught.value.fix == {"action": "grant", "grantee": "bob", "pattern": "acme/x",
                                "actions": ["write"]}
    from engramdb.mcp._wire import error_text

    assert "(CLI: engram agent grant bob acme/x write)" in error_text(caught.value)


# --------------------------------------------------------------------------- headline commands


def test_conflicts_decisions_and_knowledge_from_the_shell(db_path):
    def run(*args: str):
        result = invoke("--db", str(db_path), *args)
        assert result.exit_code == 0, result.output
        return result

    for name in ("research", "risk", "planner"):
        run("agent", "create", name)
        run("agent", "grant", name, "acme/**", "read", "write")
    first = json.loads(run("--as", "research", "--json", "remember",
                           "Company X earnings outlook is positive", "-n", "acme/x",
                           "--subject", "company:x", "--predicate", "outlook",
                           "--value", "positive").stdout)
    second = json.loads(run("--as", "risk", "--json", "remember",
                            "Company X outlook is uncertain", "-n", "acme/x",
                            "--subject", "company:x", "--predicate", "outlook",
                            "--value", "uncertain").stdout)
    inbox = json.loads(run("--json", "conflicts", "-n", "acme/**").stdout)
    assert len(inbox) == 1 and inbox[0]["status"] == "open"
    assert {m["id"] for m in inbox[0]["memories"]} == {first["id"], second["id"]}
    assert inbox[0]["id"] in run("conflicts").stdout

    ctx = json.loads(run("--as", "planner", "--json", "context", "Company X outlook",
                         "-b", "200").stdout)
    assert {i["memory"]["id"] for i in ctx["items"]} == {first["id"], second["id"]}
    assert ctx["tokens"] <= 200

    decided = json.loads(run("--as", "planner", "--json", "decide", "hold Company X",
                             "--recall", "Company X outlook", "-n", "acme/**",
                             "--outcome", '{"hold": true}').stdout)
    assert {b["id"] for b in decided["basis"]} == {first["id"], second["id"]}
    assert "current: its basis is unchanged" in run("--as", "planner", "explain",
                                                    decided["id"]).stdout

    run("resolve", inbox[0]["id"], "--winner", second["id"], "--reason", "risk has the filing")
    assert json.loads(run("--json", "conflicts", "-n", "acme/**").stdout) == []
    assert "STALE" in run("--as", "planner", "explain", decided["id"]).stdout
    stale = json.loads(run("--as", "planner", "--json", "stale").stdout)
    assert [d["id"] for d in stale] == [decided["id"]]

    then = json.loads(run("--json", "knowledge", "planner", "Company X outlook",
                          "--at", str(decided["tx"])).stdout)
    assert {h["memory"]["id"] for h in then["hits"]} == {first["id"], second["id"]}
    assert all(h["memory"]["status"] == "active" for h in then["hits"])


def test_an_assertion_without_predicate_shows_no_none(db_path):
    made = invoke("--db", str(db_path), "--json", "remember", "Company X outlook is positive",
                  "-n", "acme/research", "--subject", "company:x")
    shown = invoke("--db", str(db_path), "get", json.loads(made.stdout)["id"])
    assert "company:x" in shown.stdout and "None" not in shown.stdout


# --------------------------------------------------------------------------- serve


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_on_a_taken_port_exits_2_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([*ENGRAM, "serve", "--db", str(tmp_path / "s.db"), "--port",
                                 str(port)], capture_output=True, text=True, timeout=120,
                                env={**os.environ, **WIDE}, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_writes_the_admin_key_0600_and_http_errors_carry_http_fixes(db_path, tmp_path):
    port = _free_port()
    key_file = tmp_path / "admin.key"
    proc = subprocess.Popen([*ENGRAM, "serve", "--db", str(db_path), "--port", str(port),
                             "--admin-key-file", str(key_file)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **WIDE})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "engram serve did not answer"
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        admin = {"Authorization": f"Bearer {key_file.read_text().strip()}"}
        made = httpx.post(f"{base}/v1/admin/agents", json={"name": "bob"}, headers=admin,
                          timeout=60)
        assert made.status_code == 201, made.text
        bob = {"Authorization": f"Bearer {made.json()['api_key']}"}
        denied = httpx.post(f"{base}/v1/memories", json={"text": "x", "namespace": "acme/x"},
                            headers=bob, timeout=60)
        assert denied.status_code == 403
        error = denied.json()["error"]
        assert error["details"]["fix"]["action"] == "grant"
        assert error["hint"].startswith("ask an admin for a grant: POST /v1/admin/grants")
        assert "db.admin" not in json.dumps(error)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert key_file.read_text().strip() not in out + err


def test_the_docs_page_needs_nothing_from_the_internet(db_path):
    import re
    from dataclasses import replace

    from tests.support.http_server import TEST_SETTINGS, LiveServer

    public_docs = replace(TEST_SETTINGS, docs="public")
    with engramdb.open(db_path) as db, LiveServer(db, public_docs) as server:
        page = httpx.get(f"{server.url}/docs", timeout=60)
        assert page.status_code == 200 and "swagger-ui" in page.text
        urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", page.text)
        assert urls, "the page references no assets"
        assert not [u for u in urls if "://" in u or u.startswith("//")], urls
        for url in urls:
            asset = httpx.get(f"{server.url}{url}", timeout=60)
            assert asset.status_code == 200, url
        assert httpx.get(f"{server.url}/docs/assets/../app.py", timeout=60).status_code == 404


def test_erasure_refusals_name_their_fix_per_door(db_path):
    from engramdb.errors import LegalHoldActive

    with engramdb.open(db_path) as db:
        db.remember("Client 42 prefers email", namespace="legal/crm", subject="user:42")
        db.admin.legal_hold("legal/**", on=True, reason="litigation")
        with pytest.raises(LegalHoldActive) as held:
            db.forget(subject="user:42", reason="GDPR request")
        assert "db.admin.legal_hold('legal/**', on=False" in str(held.value)
        assert held.value.hint("http").startswith(
            "an admin lifts it first: POST /v1/admin/legal-holds")
        db.admin.create_agent("clerk")
        db.admin.grant("clerk", "crm/**", ["read", "write"])
        clerk = db.as_agent("clerk")
        clerk.remember("Client 7 moved", namespace="crm/eu", subject="user:7")
        with pytest.raises(PermissionDenied) as denied:
            clerk.forget(subject="user:7", reason="GDPR request")
        assert denied.value.hint("cli") == (
            "an admin grants it with: engram agent grant clerk crm/eu erase")
        assert db.recall("Client 7 moved", k=1).hits  # nothing was erased
