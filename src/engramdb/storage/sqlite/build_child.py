"""Vector snapshot builds in a child process, so that no process ever exits inside usearch.

usearch builds the snapshot's HNSW graphs in C++ with the GIL released. A Python
process that exits while one of its threads is inside such a call (a background
graph build, or the first recall's build on a server's worker thread) aborts:
at shutdown the thread is unwound through usearch's C++ frames, which ends in
``std::terminate`` ("terminate called without an active exception", exit code
134). So every snapshot build (rows, vectors and graphs, or the graphs of a
snapshot published without them) runs in a child process,
(:func:`main`), that takes the machine-wide
build lock and publishes exactly as the in-process build did; the thread that
asked waits for it (a first search's synchronous build included). A process
that exits meanwhile exits cleanly and leaves the child to finish and publish
its snapshot, which the next process opens: at 1M rows the graphs take minutes,
longer than many scripts live, which would otherwise start them again each
time. Started from a terminal, the child shares the parent's process group, so
Ctrl-C stops it too. When no child can be started (no Python executable, a
frozen application, an executable not named like Python, or a program that exits
with success without our child's answer), the build runs in the calling thread
as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engramdb.storage.sqlite.dialect import changed_since
from engramdb.storage.sqlite.snapshot import (
    Snapshot,
    add_graphs,
    build_lock,
    build_snapshot,
    open_current,
)

__all__ = ["BUILT", "FAILED", "NOT_BUILT", "PRESENT", "build", "usable"]

# A build's outcome (the child's exit code; Python itself exits with 1 on an uncaught
# error and 2 on a bad command line, so the codes that mean success avoid those).
BUILT = 0  # built and published
FAILED = 1  # an error (logged by the caller, with the child's last line of stderr)
PRESENT = 10  # another process built a fresh enough one while we waited for the lock
NOT_BUILT = 11  # nothing to do, or another process holds the lock

_BUSY_TIMEOUT_S = 60.0
# Not ``-m``: the package imports this module first, and runpy warns about that.
_CHILD = ("import sys; from engramdb.storage.sqlite.build_child import main; "
          "sys.exit(main(sys.argv[1:]))")


# The child's answer on stdout: an exit code of 0 from a program that is not our
# child (an embedding server's binary as sys.executable) must not read as "built".
_ANSWER = "engramdb-build-child"


def _python() -> str | None:
    """The Python interpreter to start the child with, or None to build in this thread.

    The one ``multiprocessing`` starts its children with (so an application's
    ``multiprocessing.set_executable`` is honoured); None for a frozen application
    or an executable not named like a Python interpreter (an embedding server's own
    binary), whose command line may mean something else entirely."""
    from multiprocessing import spawn

    python = spawn.get_executable()
    if not python or getattr(sys, "frozen", False):
        return None
    python = os.fsdecode(python)
    return python if Path(python).name.lower().startswith(("python", "pypy")) else None


def build(db_path: str, directory: Path, dimension: int, *, graphs_only: bool = False,
          wait: bool = False, graphs: bool = True, rebuild_min: int = 0,
          connect: Callable[[], sqlite3.Connection] | None = None) -> tuple[int, str]:
    """Build a snapshot of ``db_path`` into ``directory`` in a child process, waiting for it.

    ``graphs_only``: add the graphs to the published graph-less snapshot; else build a
    whole snapshot (``graphs=False``: rows and vectors only). ``wait``: wait for the
    build lock (and skip the build if another process published a snapshot with fewer
    than ``rebuild_min`` rows changed since); else give up if it is taken. Returns the
    outcome and, when it failed, why. ``connect``: the caller's connection, for a build
    in this thread when no child can be started.
    """
    spec = {"db": db_path, "dir": str(directory), "dimension": dimension,
            "graphs_only": graphs_only, "wait": wait, "graphs": graphs,
            "rebuild_min": rebuild_min}
    root = str(Path(__file__).resolve().parents[3])  # the engramdb this process runs
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    python = _python()
    if python is None:
        return run(spec, connect)
    try:
        # -P: the working directory stays off sys.path (a module there must not shadow ours).
        done = subprocess.run([python, "-P", "-c", _CHILD, json.dumps(spec)],
                              stdin=subprocess.DEVNULL, capture_output=True, env=env,
                              check=False, text=True, errors="replace")
    except OSError:
        return run(spec, connect)
    if done.returncode in (BUILT, PRESENT, NOT_BUILT):
        if _ANSWER not in done.stdout:
            # A success code, but not from our child (a program that is not Python
            # after all): nothing was built, so build here.
            return run(spec, connect)
        return done.returncode, ""
    lines = done.stderr.strip().splitlines()
    return FAILED, lines[-1] if lines else f"exit code {done.returncode}"


def run(spec: dict[str, Any], connect: Callable[[], sqlite3.Connection] | None = None
        ) -> tuple[int, str]:
    """The build ``spec`` describes, in this process (the child's work)."""
    directory = Path(spec["dir"])
    try:
        with build_lock(directory, wait=spec["wait"]) as mine:
            if not mine:
                return NOT_BUILT, ""
            conn = connect() if connect is not None else _connect(spec["db"])
            try:
                if spec["graphs_only"]:
                    return _add_graphs(conn, directory), ""
                current = open_current(directory)
                head = conn.execute("SELECT tx FROM chain_head WHERE id = 1").fetchone()[0]
                # Rows, not transactions: one batched write adds thousands of rows.
                if spec["wait"] and current is not None \
                        and usable(conn, current, head, spec["dimension"], directory) \
                        and conn.execute(
                            "SELECT COUNT(*) FROM memories WHERE "
                            + changed_since(current.tx)[0],
                            changed_since(current.tx)[1]).fetchone()[0] < spec["rebuild_min"]:
                    return PRESENT, ""
                build_snapshot(conn, directory, spec["dimension"], threads=1,
                               graphs=spec["graphs"])
                return BUILT, ""
            finally:
                conn.close()
    except (OSError, sqlite3.Error, RuntimeError, ValueError) as exc:
        return FAILED, str(exc)


def _add_graphs(conn: sqlite3.Connection, directory: Path) -> int:
    current = open_current(directory)
    if current is None or not current.graphs_pending:
        return NOT_BUILT

    def no_erasure_since() -> bool:
        # A snapshot older than an erasure may hold the erased vectors: never
        # published again (its replacement is built from scratch).
        return bool(conn.execute("SELECT COALESCE(MAX(tx), 0) FROM erasures").fetchone()[0]
                    <= current.tx)

    published = add_graphs(current, directory, threads=1, still_wanted=no_erasure_since)
    return BUILT if published is not None else NOT_BUILT


def usable(conn: sqlite3.Connection, snap: Snapshot, head_tx: int, dimension: int,
           directory: Path | None) -> bool:
    """Whether ``snap`` is a snapshot of this database (its chain hash matches) and not
    older than the latest erasure (deleted if it is: a builder that read before an
    erasure and published after its purge left the erased vectors in its files)."""
    if snap.dimension != dimension or snap.tx > head_tx:
        return False
    row, erased = conn.execute(
        "SELECT (SELECT hash FROM events WHERE tx = ? ORDER BY seq DESC LIMIT 1), "
        "(SELECT COALESCE(MAX(tx), 0) FROM erasures)", (snap.tx,)).fetchone()
    if snap.tx < erased:
        if directory is not None and snap.path.parent == directory:
            shutil.rmtree(snap.path, ignore_errors=True)
        return False
    return row is not None and row == snap.hash


def _connect(db_path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(db_path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
    return conn


def main(argv: list[str]) -> int:
    outcome, why = run(json.loads(argv[0]))
    with contextlib.suppress(OSError):
        print(_ANSWER, flush=True)
    if outcome == FAILED:
        with contextlib.suppress(OSError):  # the parent has gone: nobody to tell
            print(why, file=sys.stderr, flush=True)
    return outcome
