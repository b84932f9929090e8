"""``engram demo``: two agents share a namespace on a fresh embedded database.

A scripted scenario, every step a real engine call on a real SQLite file
with the real embedder: agents are created and granted a shared namespace,
both write, a stale update is refused by ``expected_version`` and retried
after a re-read, a fact changes and ``recall(as_of=...)`` answers
differently before and after the change, and ``verify`` passes.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import time
from pathlib import Path

import click
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from engramdb.cli.app import Env, cli, pass_env
from engramdb.cli.render import history_table, hits_table, memory_panel, verify_panel
from engramdb.errors import VersionConflict

__all__ = ["run_demo"]

SHARED = "acme/research"
QUESTION = "What is the outlook for Company X?"


def _step(env: Env, n: int, title: str, *body: RenderableType) -> None:
    env.out.print(Panel(Group(*body), title=f"[bold]{n}. {title}[/]", title_align="left",
                        border_style="cyan"))


def _say(text: str, style: str = "") -> Text:
    return Text(text, style=style)


def run_demo(env: Env, folder: Path) -> dict[str, object]:
    """Run the scenario in ``folder``; return the facts a test can check."""
    import engramdb

    path = folder / "demo.db"
    started = time.perf_counter()
    db = engramdb.open(path)
    try:
        if db.embedder is not None:
            db.embedder.embed(["warm up"])
        loaded = time.perf_counter() - started
        _step(env, 1, "A fresh embedded database",
              _say(f"SQLite file {path}"),
              _say(f"embedder {db.embedder_name} ({db.dimension} dimensions), "
                   f"loaded in {loaded:.1f} s; WAL, synchronous=FULL"))

        db.admin.create_agent("researcher", roles=["analyst"])
        db.admin.create_agent("reviewer", roles=["analyst"])
        db.admin.grant("researcher", f"{SHARED}/**", ["read", "write"])
        db.admin.grant("reviewer", f"{SHARED}/**", ["read", "write"])
        researcher = db.as_agent("researcher")
        reviewer = db.as_agent("reviewer")
        _step(env, 2, "Two agents, one shared namespace",
              _say(f"researcher: read, write on {SHARED}/**"),
              _say(f"reviewer:   read, write on {SHARED}/**"),
              _say("Each call below is made as one of them; the engine sets the author.",
                   "dim"))

        outlook = researcher.remember(
            "Company X outlook is positive: revenue grew 20% in Q2.",
            namespace=SHARED, subject="company:x", predicate="outlook", value="positive",
            confidence=0.8)
        cfo = reviewer.remember(
            "Company X's CFO resigned in July, citing accounting disagreements.",
            namespace=SHARED, layer="episodic", subject="company:x", predicate="event")
        before_change = db.head().tx
        _step(env, 3, "Both agents write",
              memory_panel(outlook, title="researcher remembers"),
              memory_panel(cfo, title="reviewer remembers"))

        seen_by_researcher = researcher.get(outlook.id)
        seen_by_reviewer = reviewer.get(outlook.id)
        changed = reviewer.update(
            outlook.id, text="Company X outlook is negative after the CFO resigned.",
            value="negative", expected_version=seen_by_reviewer.version)
        conflict: VersionConflict | None = None
        try:
            researcher.update(outlook.id, text="Company X outlook is strongly positive.",
                              value="strongly positive",
                              expected_version=seen_by_researcher.version)
        except VersionConflict as exc:
            conflict = exc
        assert conflict is not None, "the stale update must be refused"
        current = researcher.get(outlook.id)
        retried = researcher.update(
            outlook.id,
            text="Company X outlook is negative: the CFO resigned and Q3 guidance was cut.",
            value="negative", expected_version=current.version)
        _step(env, 4, "A version conflict, caught by expected_version",
              _say(f"Both agents read version {seen_by_researcher.version}. The reviewer "
                   f"updates first (expected_version={seen_by_reviewer.version}) -> version "
                   f"{changed.version}."),
              _say(f"The researcher's update, still based on version "
                   f"{seen_by_researcher.version}, is refused; nothing is written:"),
              _say(f"  VersionConflict [{conflict.code}]: {conflict.message}", "yellow"),
              _say(f"It re-reads (version {current.version}: \"{current.text}\"), reapplies "
                   f"its change with expected_version={current.version} -> version "
                   f"{retried.version}.", "green"))

        then = researcher.recall(QUESTION, namespace=f"{SHARED}/**", k=2, as_of=before_change)
        now = researcher.recall(QUESTION, namespace=f"{SHARED}/**", k=2)
        _step(env, 5, "A fact that changed: recall before and after",
              _say(f"researcher asks: {QUESTION!r}"),
              hits_table(then, title=f"as_of tx {before_change} (before the change)"),
              hits_table(now, title=f"now (tx {now.receipt.as_of})"),
              history_table(researcher.history(outlook.id)))

        report = db.verify()
        _step(env, 6, "verify", verify_panel(report),
              _say(f"scenario ran in {time.perf_counter() - started:.1f} s", "dim"))
        return {
            "conflict_current_version": conflict.details.get("current_version"),
            "retried_version": retried.version,
            "answer_before": then.hits[0].memory.text if then.hits else None,
            "answer_now": now.hits[0].memory.text if now.hits else None,
            "verify_ok": report.ok,
            "path": str(path),
        }
    finally:
        db.close()


@cli.command()
@click.option("--keep", "keep", type=click.Path(file_okay=False), default=None,
              help="Keep the demo database in this folder instead of a temporary one.")
@pass_env
def demo(env: Env, keep: str | None) -> None:
    """A two-agent walk-through on a fresh temporary database (ignores --db)."""
    env.admin_only("demo")
    if env.json:
        env.out = Console(file=io.StringIO())
    if keep is not None:
        folder = Path(keep)
        folder.mkdir(parents=True, exist_ok=True)
        if (folder / "demo.db").exists():
            raise click.UsageError(f"{folder / 'demo.db'} exists already; choose a new folder")
        facts = run_demo(env, folder)
        env.say(Text(f"kept the database: engram --db {facts['path']} changes",
                           style="dim"))
    else:
        tmp = Path(tempfile.mkdtemp(prefix="engram-demo-"))
        try:
            facts = run_demo(env, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if env.json:
        env.emit_json(facts)
    if not facts["verify_ok"]:
        raise click.exceptions.Exit(1)
