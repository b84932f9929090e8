"""Commands on the log: verify, changes, export, import."""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import IO, TYPE_CHECKING

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from engramdb.cli.app import Env, cli, pass_env
from engramdb.cli.render import event_cells, short_hash, verify_panel

if TYPE_CHECKING:
    from engramdb.engine import Session

__all__: list[str] = []


@cli.command()
@pass_env
def verify(env: Env) -> None:
    """Check the hash chain, replay the log and compare every state row.

    Exit status 0 when the database is intact, 1 when it is not (the first bad
    event is shown), 2 when it cannot be opened.
    """
    env.admin_only("verify")
    db = env.open()
    report = db.verify()
    bad = None
    if not report.ok and report.first_bad_seq is not None:
        bad = db.event(report.first_bad_seq)
    if env.json:
        env.emit_json({**report.to_dict(), "first_bad_event": None if bad is None else {
            k: v for k, v in bad.to_dict().items() if k != "payload"}})
    else:
        env.out.print(verify_panel(report, bad))
    if not report.ok:
        raise click.exceptions.Exit(1)


@cli.command()
@click.option("--since", type=int, default=0, show_default=True,
              help="Cursor: show events after this sequence number.")
@click.option("-n", "--namespace", default="**", show_default=True, help="Namespace glob.")
@click.option("--limit", type=int, default=None, help="Stop after this many events.")
@click.option("--follow", "-f", is_flag=True, help="Keep waiting for new events (Ctrl-C stops).")
@click.option("--interval", type=float, default=0.5, show_default=True,
              help="Seconds between polls with --follow.")
@click.option("--for", "for_seconds", type=float, default=None, metavar="SECONDS",
              help="With --follow: stop after this many seconds.")
@pass_env
def changes(env: Env, since: int, namespace: str, limit: int | None, follow: bool,
            interval: float, for_seconds: float | None) -> None:
    """The change feed: log events after --since that you may read, oldest first.

    Each line is one event (JSON lines with --json); the last seq printed is the
    cursor to pass as --since next time.
    """
    session = env.session()
    deadline = None if for_seconds is None else time.monotonic() + for_seconds
    if not env.json:
        env.say(Text(f"{'seq':>6}  {'tx':>5}  {'recorded (UTC)':19}  kind / actor / "
                     "namespace / subject", style="bold"))
    cursor = [since]  # the last seq shown, kept across Ctrl-C
    # Ctrl-C is how --follow ends; the cursor printed below is where to resume.
    with suppress(KeyboardInterrupt):
        _print_changes(env, session, cursor, namespace, limit, follow, interval, deadline)
    if not env.json:
        env.note(f"cursor: {cursor[0]}")


def _print_changes(env: Env, session: Session, cursor: list[int], namespace: str,
                   limit: int | None, follow: bool, interval: float,
                   deadline: float | None) -> None:
    shown = 0
    while True:
        for event in session.changes(since=cursor[0], namespace=namespace):
            cursor[0] = event.seq
            if env.json:
                click.echo(json.dumps(event.to_dict(), ensure_ascii=False, default=str))
            else:
                seq, tx, when, kind, actor, ns, subject = event_cells(event)
                line = Text(f"{seq.plain:>6}  {tx.plain:>5}  {when.plain:19}  ")
                line.append(kind.plain, style="bold")
                line.append(f"  {actor.plain}  {ns.plain}  {subject.plain}")
                env.say(line)
            shown += 1
            if limit is not None and shown >= limit:
                return
        sys.stdout.flush()
        if not follow or (deadline is not None and time.monotonic() >= deadline):
            return
        time.sleep(interval)


@contextmanager
def _progress(env: Env, label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr; silent with --json or when stderr is not a terminal."""
    if env.json:
        yield lambda n: None
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TaskProgressColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=env.err, transient=False) as bar:
        task = bar.add_task(label, total=total)

        def advance(done: int) -> None:
            bar.update(task, completed=done)

        yield advance
        if total is None:
            bar.update(task, total=bar.tasks[0].completed)


@cli.command("export")
@click.argument("file", type=click.File("w", encoding="utf-8", lazy=True), default="-")
@pass_env
def export_cmd(env: Env, file: IO[str]) -> None:
    """Write the whole log to FILE (default: stdout) as JSONL.

    A header line (format, embedder, schema, head) then every event exactly as
    stored. `engram import FILE` restores it into a new database with the same
    head hash.
    """
    env.admin_only("export")
    db = env.open()
    to_stdout = getattr(file, "name", "-") in ("-", "<stdout>")
    total = db.head().seq
    if to_stdout:
        summary = db.export(file)
    else:
        with _progress(env, "exporting events", total) as advance:
            summary = db.export(file, progress=advance)
    file.flush()
    if env.json and not to_stdout:
        env.emit_json({"events": summary.events, "head_seq": summary.head_seq,
                       "head_hash": summary.head_hash, "file": file.name})
    elif not env.json:
        where = "stdout" if to_stdout else file.name
        env.note(f"exported {summary.events} events to {where}; head event {summary.head_seq} "
                 f"{short_hash(summary.head_hash)}", style="green")


def _count_lines(file: IO[str]) -> int | None:
    try:
        pos = file.tell()
        n = sum(1 for _ in file)
        file.seek(pos)
        return n
    except (OSError, ValueError):
        return None


@cli.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--memories", is_flag=True,
              help='FILE holds plain memories, one {"text": ..., "namespace": ...} per line.')
@click.option("--batch-size", type=int, default=500, show_default=True,
              help="With --memories: memories per transaction.")
@click.option("--embedder", "spec", default=None, metavar="SPEC",
              help="Re-embed with this embedder instead of the one the export names.")
@pass_env
def import_cmd(env: Env, file: IO[str], memories: bool, batch_size: int,
               spec: str | None) -> None:
    """Load FILE: an `engram export` into a new database, or --memories into any.

    \b
    engram --db copy.db import backup.jsonl        restore: same head hash, verified
    engram import --memories notes.jsonl           bulk-load memories in batches
    """
    if memories:
        _import_memories(env, file, batch_size)
    else:
        _import_log(env, file, spec)


def _import_log(env: Env, file: IO[str], spec: str | None) -> None:
    from engramdb.engine import import_database

    env.admin_only("import")
    first = file.readline()
    total: int | None = None
    try:
        total = int(json.loads(first).get("events"))
    except (ValueError, TypeError, AttributeError):
        total = None  # import_database reports what is wrong with the header
    lines = itertools.chain([first], file)
    with _progress(env, "importing events", total) as advance:
        summary = import_database(env.target, lines,
                                  embedder="default" if spec is None else spec,
                                  progress=advance)
    report = env.open().verify()
    if env.json:
        env.emit_json({"events": summary.events, "transactions": summary.transactions,
                       "vectors": summary.vectors, "head_seq": summary.head_seq,
                       "head_hash": summary.head_hash, "verify": report.to_dict()})
    else:
        env.say(Text.assemble(
            ("imported ", "bold green"),
            f"{summary.events} events ({summary.transactions} transactions) into {env.target}; "
            f"{summary.vectors} memory versions embedded; head event {summary.head_seq} "
            f"{short_hash(summary.head_hash)}"))
        env.out.print(verify_panel(report))
    if not report.ok:
        raise click.exceptions.Exit(1)


def _import_memories(env: Env, file: IO[str], batch_size: int) -> None:
    from engramdb.engine.portability import load_memories

    session = env.session()
    total = _count_lines(file)
    with _progress(env, "importing memories", total) as advance:
        summary = load_memories(session, file, batch_size=batch_size, progress=advance)
    if env.json:
        env.emit_json({"memories": summary.memories, "lines": summary.lines})
        return
    env.say(Text.assemble(("imported ", "bold green"),
                                f"{summary.memories} memories from {summary.lines} lines"))
