"""The ``engram`` command line, as a person at a terminal uses it.

Most tests drive the real click app in-process on a real SQLite file (the
embedder stays loaded between calls); the ones that care about what the
shell sees (exit codes, no traceback, the demo, following the change feed,
the benchmark) run the installed ``engram`` console script as a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from engramdb.cli import cli

ROOT = Path(__file__).resolve().parent.parent
ENGRAM = [sys.executable, "-c", "from engramdb.cli import main; main()"]
WIDE = {"COLUMNS": "200", "NO_COLOR": "1"}


@pytest.fixture
def run(tmp_path, embedder):
    """Invoke ``engram --db <tmp>/engram.db ARGS`` in-process; returns the click Result."""
    db_path = tmp_path / "engram.db"

    def invoke(*args: str, input: str | None = None, db: Path | None = None):
        return CliRunner(env=WIDE).invoke(cli, ["--db", str(db or db_path), *args],
                                          input=input, catch_exceptions=False)

    invoke.path = db_path  # type: ignore[attr-defined]
    return invoke


def shell(*args: str, cwd: Path, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, **WIDE, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([*ENGRAM, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, **kw)


def remember_json(run, *args: str) -> dict:
    result = run("--json", "remember", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --------------------------------------------------------------------------- init


def test_init_creates_the_database_once(run, tmp_path):
    first = run("init")
    assert first.exit_code == 0, first.output
    assert "Created" in first.stdout and "local:all-MiniLM-L6-v2" in first.stdout
    assert "384 dimensions" in first.stdout
    assert run.path.exists()
    again = run("init")
    assert again.exit_code == 0
    assert "Already initialised" in again.stdout
    other = tmp_path / "other.db"
    named = run("--json", "init", str(other), "--embedder", "none")
    assert named.exit_code == 0
    info = json.loads(named.stdout)
    assert info["created"] is True and info["embedder"] == "none" and info["dimension"] == 0
    assert other.exists()


def test_init_with_another_embedder_is_one_red_line(run):
    assert run("init").exit_code == 0
    result = run("init", "--embedder", "none")
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error [embedder_mismatch]")
    assert "local:all-MiniLM-L6-v2" in lines[0]


# --------------------------------------------------------------------------- writes and reads


def test_remember_and_recall_show_hits_with_score_parts(run):
    office = remember_json(run, "The office moves to Marseille in June", "-n", "acme/ops",
                           "--subject", "office:hq", "--predicate", "city", "--value",
                           "Marseille", "--metadata", '{"source": "memo [red]"}')
    remember_json(run, "Quarterly revenue grew twelve percent", "-n", "acme/finance")
    remember_json(run, "The cafeteria serves pasta on Fridays", "-n", "acme/ops",
                  "-l", "episodic")
    assert office["author"] == "admin" and office["version"] == 1
    assert office["value"] == "Marseille"
    assert office["metadata"] == {"source": "memo [red]"}

    human = run("recall", "where is the office relocating?", "-k", "2")
    assert human.exit_code == 0, human.output
    out = human.stdout
    assert "The office moves to Marseille in June" in out
    assert f"{office['id']} v1" in out
    assert re.search(r"text #\d", out) and re.search(r"vector #1 \(0\.\d\d\)", out)
    assert "recency" in out and "importance" in out
    assert "receipt: 2 memory versions as of tx" in out

    data = json.loads(run("recall", "where is the office relocating?", "--json").stdout)
    assert data["hits"][0]["memory"]["id"] == office["id"]
    assert set(data["hits"][0]["why"]) >= {"vector_rank", "recency", "importance"}
    assert data["receipt"]["items"][0] == {"id": office["id"], "version": 1}

    only_episodic = json.loads(run("--json", "recall", "food", "-l", "episodic").stdout)
    assert [h["memory"]["layer"] for h in only_episodic["hits"]] == ["episodic"]
    by_meta = json.loads(run("--json", "recall", "office", "--meta", "source=memo [red]").stdout)
    assert [h["memory"]["id"] for h in by_meta["hits"]] == [office["id"]]
    nothing = run("recall", "office", "-n", "nowhere/**")
    assert nothing.exit_code == 0 and "no memories match" in nothing.stdout


def test_update_get_history_and_as_of(run):
    m = remember_json(run, "The sky over Lyon is blue", "-n", "weather/fr")
    updated = run("update", m["id"], "--text", "The sky over Lyon is grey",
                  "--expected-version", "1")
    assert updated.exit_code == 0, updated.output
    assert "updated to version 2" in updated.stdout

    stale = run("update", m["id"], "--text", "The sky is green", "--expected-version", "1")
    assert stale.exit_code == 2
    assert stale.stderr.startswith("error [version_conflict]")
    assert "is at version 2, not 1" in stale.stderr
    assert "Traceback" not in stale.output

    history = run("history", m["id"])
    assert history.exit_code == 0
    out = history.stdout
    assert "The sky over Lyon is blue" in out and "The sky over Lyon is grey" in out
    assert "The sky is green" not in out  # the refused update wrote nothing
    assert out.index("superseded") < out.index("active")
    assert f"tx {m['tx_from']} to " in out

    now = run("get", m["id"])
    assert "The sky over Lyon is grey" in now.stdout and "(version 2)" in now.stdout
    then = run("get", m["id"], "--as-of", str(m["tx_from"]))
    assert "The sky over Lyon is blue" in then.stdout and "(version 1)" in then.stdout
    versions = json.loads(run("--json", "history", m["id"]).stdout)
    assert [v["version"] for v in versions] == [1, 2]

    retracted = run("retract", m["id"], "--reason", "forecast was wrong")
    assert retracted.exit_code == 0 and "retracted (version 3)" in retracted.stdout
    gone = json.loads(run("--json", "recall", "sky over Lyon").stdout)
    assert all(h["memory"]["id"] != m["id"] for h in gone["hits"])


@pytest.mark.parametrize(("args", "code", "says"), [
    (["remember", "", "-n", "a/b"], "invalid_input", "text must be a non-empty string"),
    (["remember", "x", "-n", "Bad/NS"], "invalid_namespace", "is malformed"),
    (["remember", "x", "-n", "a", "--importance", "7"], "invalid_input", "between 0 and 1"),
    (["get", "01a2e0e0-0000-7000-8000-000000000000"], "not_found", "no memory"),
    (["recall", "x", "-k", "0"], "invalid_input", "k must be an integer"),
    (["recall", "x", "--as-of", "yesterday"], "invalid_input", "not an ISO-8601 time"),
])
def test_engine_errors_are_one_red_line_with_exit_2(run, args, code, says):
    assert run("init").exit_code == 0  # read commands need a database (they never make one)
    head = sqlite3.connect(run.path).execute("SELECT seq FROM chain_head").fetchone()
    result = run(*args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error [{code}]") and says in lines[0]
    with sqlite3.connect(run.path) as conn:
        after = conn.execute("SELECT seq FROM chain_head").fetchone()
    assert head is None or after == head


def test_json_errors_are_json(run):
    assert run("init").exit_code == 0
    result = run("--json", "get", "no-such-id")
    assert result.exit_code == 2
    body = json.loads(result.stdout)
    assert body["error"]["code"] == "not_found"


def test_the_shell_sees_exit_codes_and_no_tracebacks(tmp_path):
    db = str(tmp_path / "e.db")
    bad = shell("--db", db, "remember", "", "-n", "a/b", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error [invalid_input]")
    assert "Traceback" not in bad.stderr
    usage = shell("--db", db, "recall", cwd=tmp_path)
    assert usage.returncode == 2
    assert "Missing argument 'QUERY'" in usage.stderr and "Traceback" not in usage.stderr
    unknown = shell("--db", db, "frobnicate", cwd=tmp_path)
    assert unknown.returncode == 2 and "No such command" in unknown.stderr
    ok = shell("--db", db, "--json", "remember", "hello from the shell", "-n", "a/b",
               cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["text"] == "hello from the shell"


def test_env_var_names_the_database(tmp_path, embedder):
    target = tmp_path / "from-env.db"
    result = CliRunner(env={**WIDE, "ENGRAM_DB": str(target)}).invoke(
        cli, ["remember", "set by env", "-n", "a"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert target.exists()


# --------------------------------------------------------------------------- agents


def test_acting_as_an_agent_applies_its_grants(run):
    created = run("--json", "agent", "create", "bob", "--role", "analyst")
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["api_key"].startswith("ek_")
    assert run("agent", "grant", "bob", "acme/**", "read").exit_code == 0
    secret = remember_json(run, "The board meets on Monday", "-n", "board/private")
    public = remember_json(run, "The office opens at nine", "-n", "acme/ops")

    denied = run("--as", "bob", "remember", "bob writes", "-n", "acme/ops")
    assert denied.exit_code == 2 and "[permission_denied]" in denied.stderr
    seen = json.loads(run("--as", "bob", "--json", "recall", "when do we meet or open").stdout)
    assert [h["memory"]["id"] for h in seen["hits"]] == [public["id"]]
    hidden = run("--as", "bob", "get", secret["id"])
    assert hidden.exit_code == 2 and "[not_found]" in hidden.stderr

    assert run("agent", "grant", "bob", "acme/**", "write").exit_code == 0
    mine = json.loads(run("--as", "bob", "--json", "remember", "bob writes",
                          "-n", "acme/ops").stdout)
    assert mine["author"] == "bob"
    listing = run("agent", "list")
    assert "bob" in listing.stdout and "acme/** read" in listing.stdout
    assert run("agent", "create", "carol").exit_code == 0
    assert run("agent", "grant", "carol", "board/**", "read").exit_code == 0
    assert run("agent", "grant", "role:analyst", "reports/**", "read").exit_code == 0
    mine = json.loads(run("--as", "bob", "--json", "agent", "my-grants").stdout)
    assert sorted((g["grantee"], g["pattern"], tuple(g["actions"])) for g in mine) == [
        ("bob", "acme/**", ("read",)), ("bob", "acme/**", ("write",)),
        ("role:analyst", "reports/**", ("read",))]
    table = run("--as", "bob", "agent", "my-grants").stdout
    assert "reports/**" in table and "board/**" not in table
    ghost = run("--as", "ghost", "recall", "x")
    assert ghost.exit_code == 2 and "[not_found]" in ghost.stderr
    owner_only = run("--as", "bob", "verify")
    assert owner_only.exit_code == 2 and "drop --as" in owner_only.stderr


# --------------------------------------------------------------------------- verify


def test_verify_passes_then_names_the_first_bad_event(run):
    m = remember_json(run, "Original text", "-n", "a/b")
    remember_json(run, "Second memory", "-n", "a/b")
    ok = run("verify")
    assert ok.exit_code == 0
    assert "verify: OK" in ok.stdout and "3 checked" in ok.stdout

    with sqlite3.connect(run.path) as conn:
        conn.execute("UPDATE events SET actor = 'mallory' WHERE seq = 2")
    bad = run("verify")
    assert bad.exit_code == 1
    assert "verify: NOT OK" in bad.stdout
    assert "event 2 was changed" in bad.stdout
    assert "first bad event  2" in bad.stdout and "memory.remembered" in bad.stdout
    report = json.loads(run("--json", "verify").stdout)
    assert report["ok"] is False and report["first_bad_seq"] == 2
    assert report["first_bad_event"]["actor"] == "mallory"

    with sqlite3.connect(run.path) as conn:
        conn.execute("UPDATE events SET actor = 'admin' WHERE seq = 2")
        conn.execute("UPDATE memories SET text = 'Forged' WHERE id = ?", (m["id"],))
    forged = run("verify")
    assert forged.exit_code == 1
    assert "does not match the log" in forged.stdout


# --------------------------------------------------------------------------- changes


def test_changes_lists_events_after_a_cursor(run):
    remember_json(run, "First", "-n", "a/b")
    remember_json(run, "Second", "-n", "c/d")
    out = run("changes").stdout
    assert "principal.created" in out and out.count("memory.remembered") == 2
    # Reading the feed is itself audited (a reads.recorded event may follow): writes only.
    events = [e for e in (json.loads(line) for line in run("--json", "changes", "--since", "2")
                          .stdout.splitlines()) if e["kind"] != "reads.recorded"]
    assert [e["seq"] for e in events] == [3]
    assert events[0]["payload"]["effects"][0]["row"]["text"] == "Second"
    scoped = run("--json", "changes", "-n", "a/**").stdout.splitlines()
    # Events outside any namespace (principals, grants) are the admin's to see.
    assert [ns for ns in (json.loads(line)["namespace"] for line in scoped) if ns] == ["a/b"]


def test_changes_follow_shows_writes_from_another_process(tmp_path, embedder):
    db = tmp_path / "f.db"
    runner = CliRunner(env=WIDE)
    assert runner.invoke(cli, ["--db", str(db), "init"]).exit_code == 0
    follower = subprocess.Popen(
        [*ENGRAM, "--db", str(db), "--json", "changes", "--follow", "--since", "1",
         "--interval", "0.2", "--for", "20"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **WIDE})
    try:
        time.sleep(2.0)
        written = runner.invoke(cli, ["--db", str(db), "--json", "remember", "late news",
                                      "-n", "a/b"], catch_exceptions=False)
        memory_id = json.loads(written.stdout)["id"]
        line = follower.stdout.readline()  # type: ignore[union-attr]
        event = json.loads(line)
        assert event["seq"] == 2 and event["subject_ref"] == memory_id
        assert event["kind"] == "memory.remembered"
    finally:
        follower.terminate()
        follower.wait(timeout=10)


# --------------------------------------------------------------------------- export / import


def test_export_then_import_into_a_new_database(run, tmp_path):
    m = remember_json(run, "Backups matter", "-n", "ops/backup")
    run("update", m["id"], "--text", "Backups matter, restores matter more")
    dump = tmp_path / "dump.jsonl"
    exported = run("export", str(dump))
    assert exported.exit_code == 0, exported.output
    assert "exported 3 events" in exported.stderr
    head = json.loads(dump.read_text().splitlines()[0])["head"]

    copy = tmp_path / "copy.db"
    imported = run("import", str(dump), db=copy)
    assert imported.exit_code == 0, imported.output
    assert "imported 3 events" in imported.stdout and "verify: OK" in imported.stdout
    assert head["hash"][:12] in imported.stdout
    got = json.loads(run("--json", "get", m["id"], db=copy).stdout)
    assert got["text"] == "Backups matter, restores matter more" and got["version"] == 2

    to_stdout = run("export")
    assert to_stdout.stdout.splitlines()[1:] == dump.read_text().splitlines()[1:]

    again = run("import", str(dump), db=copy)
    assert again.exit_code == 2
    # 3 imported events, plus the read audit of the `get` above.
    held = sqlite3.connect(copy).execute("SELECT seq FROM chain_head").fetchone()[0]
    assert held > 3
    assert "[invalid_input]" in again.stderr and f"already holds {held} events" in again.stderr

    lines = dump.read_text().splitlines()
    lines[2] = lines[2].replace("Backups matter", "Backups are optional")
    edited = tmp_path / "edited.jsonl"
    edited.write_text("\n".join(lines) + "\n")
    refused = run("import", str(edited), db=tmp_path / "fresh.db")
    assert refused.exit_code == 2
    assert "export line 3: event 2 payload was changed" in refused.stderr


def test_import_memories_in_batches(run, tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"text": f"Customer {i} renewed the contract",
                                        "namespace": "sales/renewals",
                                        "metadata": {"row": i}}) + "\n" for i in range(25)))
    loaded = run("import", "--memories", str(good), "--batch-size", "10")
    assert loaded.exit_code == 0, loaded.output
    assert "imported 25 memories from 25 lines" in loaded.stdout
    hits = json.loads(run("--json", "recall", "contract renewal", "-k", "30").stdout)["hits"]
    assert sorted(h["memory"]["metadata"]["row"] for h in hits) == list(range(25))

    bad = tmp_path / "bad.jsonl"
    rows = [json.dumps({"text": f"Lead {i}", "namespace": "sales/leads"}) for i in range(7)]
    rows[5] = json.dumps({"text": "", "namespace": "sales/leads"})
    bad.write_text("\n".join(rows) + "\n")
    failed = run("import", "--memories", str(bad), "--batch-size", "3")
    assert failed.exit_code == 2
    assert "line 6:" in failed.stderr and "[invalid_input]" in failed.stderr
    assert "3 memories from earlier lines are stored" in failed.stderr
    leads = json.loads(run("--json", "recall", "Lead", "-n", "sales/leads", "-k", "20").stdout)
    assert sorted(h["memory"]["text"] for h in leads["hits"]) == ["Lead 0", "Lead 1", "Lead 2"]

    as_agent = tmp_path / "agent.jsonl"
    as_agent.write_text(json.dumps({"text": "Bob's own note"}) + "\n")
    run("agent", "create", "bob")
    mine = run("--as", "bob", "import", "--memories", str(as_agent))
    assert mine.exit_code == 0, mine.output
    note = json.loads(run("--json", "recall", "Bob's own note", "-k", "1").stdout)["hits"][0]
    assert note["memory"]["namespace"] == "agents/bob" and note["memory"]["author"] == "bob"


# --------------------------------------------------------------------------- serve


def test_serve_answers_http_or_names_the_extra(tmp_path):
    port = 18000 + os.getpid() % 1000
    proc = subprocess.Popen([*ENGRAM, "--db", str(tmp_path / "s.db"), "serve", "--port",
                             str(port)], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **WIDE})
    try:
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = proc.stderr.read()  # type: ignore[union-attr]
                assert proc.returncode == 2 and "engramdb[server]" in err
                return
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        pytest.fail("engram serve neither answered nor exited")
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.parametrize("door", [["serve", "--port", "0"], ["mcp", "--api-key", "ek_x_y"]])
def test_combine_on_a_sqlite_database_exits_2_and_writes_nothing(tmp_path, door):
    """``--combine`` is PostgreSQL's write combiner: on SQLite the door refuses it before it
    opens anything (the serve database is not created, the mcp one not touched)."""
    if door[0] == "mcp":
        run_init = CliRunner(env=WIDE).invoke(cli, ["--db", str(tmp_path / "c.db"), "init"])
        assert run_init.exit_code == 0, run_init.output
    before = (tmp_path / "c.db").read_bytes() if door[0] == "mcp" else None
    result = shell("--db", str(tmp_path / "c.db"), *door, "--combine", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "[invalid_input]" in result.stderr and "PostgreSQL" in result.stderr
    assert "Traceback" not in result.stderr
    if before is None:
        assert not (tmp_path / "c.db").exists()
    else:
        assert (tmp_path / "c.db").read_bytes() == before


# --------------------------------------------------------------------------- demo, bench, docs


def test_demo_runs_end_to_end(tmp_path):
    started = time.monotonic()
    result = shell("demo", cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for step in ("1. A fresh embedded database", "2. Two agents, one shared namespace",
                 "3. Both agents write", "4. A version conflict, caught by expected_version",
                 "5. A fact that changed: recall before and after", "6. verify"):
        assert step in out
    assert "VersionConflict [version_conflict]" in out and "is at version 2, not 1" in out
    assert "-> version 3" in out
    before = out[out.index("(before the change)"):out.index("now (tx")]
    after = out[out.index("now (tx"):out.index("history of")]
    assert "Company X outlook is positive" in before.split("\n  2 ")[0]
    assert "Company X outlook is negative" in after.split("\n  2 ")[0]
    assert "verify: OK" in out
    assert elapsed < 120
    assert not (tmp_path / "engram.db").exists()  # the demo never touches --db


@pytest.mark.slow
def test_bench_quick_runs_and_writes_its_report(tmp_path):
    # The engine's own parts; the other helpers' scripts (PostgreSQL, HTTP) take minutes
    # even in quick mode, so their hook is tested below on the fast judge script.
    report = tmp_path / "BENCH.md"
    result = shell("bench", "--quick", "--out", str(report), "--only", "writes", "--only",
                   "single", "--only", "recall", "--only", "locomo", cwd=ROOT, timeout=280)
    assert result.returncode == 0, result.stderr
    text = report.read_text()
    needles = ["## Machine", "| CPU |", "| cores |", "| SQLite |", "| Python |", "| RAM |",
               "Batch writes", "memories/s", "Single writes", "writes/s",
               "Recall latency", "2,000 memories: p50 / p95", "LoCoMo", "quick mode"]
    from engramdb.cli.bench import find_locomo

    # The LoCoMo data lives in shared/ beside the checkout, never in the repo: a
    # checkout without it must say the section was skipped rather than invent figures.
    if find_locomo(None) is not None:
        needles += ["recall@5", "recall@20", "| category "]
    else:
        needles += ["skipped"]
    for needle in needles:
        assert needle in text, needle
    for mode in ("default settings", "free-text detection off"):
        assert re.search(rf"\| {mode}: throughput \| [\d,]+ memories/s \([\d,]+ in [\d.]+ s\) "
                         r"\| >= 5,000/s \| (met|MISSED) \|", text), mode
    assert "Batch writes" in result.stdout


def test_bench_takes_rows_from_other_bench_scripts():
    from engramdb.cli.bench import run_external

    judged = run_external("judge_quality.py", "Contradiction judge quality", quick=True)
    values = {r.metric: r.value for r in judged.rows}
    assert 0.0 <= float(values["precision"]) <= 1.0 and int(values["pairs"]) > 0
    assert judged.notes[-1].startswith("from bench/judge_quality.py run()")
    absent = run_external("bench_nothing.py", "Nothing", quick=True)
    assert absent.rows == [] and absent.notes == [
        "skipped: bench/bench_nothing.py is not in this checkout"]


def test_readme_example_prints_what_the_readme_shows(tmp_path):
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, flags=re.S).group(1)
    shown = re.search(r"```python\n.*?```\n\n```\n(.*?)```", readme, flags=re.S).group(1)
    assert len(code.strip().splitlines()) == 5
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == shown


def _all_commands(group, prefix="engram"):
    import click

    from engramdb.cli.app import _load_extensions

    _load_extensions(cli)
    for name, command in sorted(group.commands.items()):
        yield f"{prefix} {name}"
        if isinstance(command, click.Group):
            yield from _all_commands(command, f"{prefix} {name}")


def test_every_command_is_documented():
    docs = (ROOT / "docs" / "cli.md").read_text()
    headings = set(re.findall(r"^#+ `([^`]+)`", docs, flags=re.M))
    missing = [c for c in _all_commands(cli)
               if not any(h == c or h.startswith(c + " ") for h in headings)]
    assert not missing, f"undocumented in docs/cli.md: {missing}"


# --------------------------------------------------------------------------- memory layers


def test_layer_commands_pin_episodes_tools_procedures_and_context(run, tmp_path):
    assert run("init", "--embedder", "none").exit_code == 0
    assert run("agent", "create", "ann").exit_code == 0

    def ok(*args: str) -> dict:
        result = run("--as", "ann", "--json", *args)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    assert ok("pin", "goal", "Ship v1 by Friday")["version"] == 1
    stale = run("--as", "ann", "pin", "goal", "x", "--expected-version", "0")
    assert stale.exit_code == 2 and "version_conflict" in stale.output
    ok("episode", "s1", "user", "Book a flight to Oslo. Window seat please.")
    assert [e["metadata"]["role"] for e in ok("episodes", "--session", "s1")["memories"]] == [
        "user"]
    assert ok("summarize", "s1")["metadata"]["summary_of"] == "s1"
    needs = run("--as", "ann", "extract", "s1")
    assert needs.exit_code == 2 and "ENGRAM_LLM_URL" in needs.output
    for outcome in ("ok", "fail", "fail"):
        ok("tool-outcome", "web_search", outcome, "--error", "429")
    (st,) = ok("tool-stats")["tools"]
    assert (st["tool"], st["calls"], st["successes"]) == ("web_search", 3, 1)
    lines = tmp_path / "outcomes.jsonl"
    lines.write_text('{"tool": "calculator", "ok": true, "latency_ms": 3}\n'
                     '{"tool": "calculator", "ok": false, "error": "overflow"}\n')
    assert ok("tool-outcomes", str(lines)) == {"recorded": 2}
    bad = run("--as", "ann", "tool-outcomes", "-", input='[{"tool": "calculator", "ok": 1}]')
    assert bad.exit_code == 2 and "outcome 0" in bad.output
    assert {(s["tool"], s["calls"], s["successes"]) for s in ok("tool-stats")["tools"]} == {
        ("web_search", 3, 1), ("calculator", 2, 1)}
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert {(s["tool"], s["calls"]) for s in ok("tool-stats", "--since", hour_ago)["tools"]} == {
        ("web_search", 3), ("calculator", 2)}
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert ok("tool-stats", "calculator", "--since", later)["tools"] == []
    ok("procedure", "triage", "Read, reproduce, ask for logs")
    ok("procedure-outcome", "triage", "1", "ok")
    (proc,) = ok("procedures")["procedures"]
    assert proc["versions"][0]["successes"] == 1
    assert ok("recommend", "triage the ticket")["recommendations"][0]["name"] == "triage"
    ctx = ok("context", "flight to Oslo with web_search", "-b", "300", "--session", "s1",
             "--quota", "episodic=100")
    assert ctx["tokens"] <= 300 and ctx["parts"][0]["kind"] == "block"
    assert "web_search: 2 of the last 3 calls failed" in ctx["text"]
    assert [b["metadata"]["block"] for b in ok("blocks")["memories"]] == ["goal"]
    assert ok("unpin", "goal")["status"] == "retracted"
    bad = run("--as", "ann", "context", "x", "--quota", "episodic")
    assert bad.exit_code == 2
