"""The on-disk vector projection of a SQLite database: built once, memory-mapped by every process.

A snapshot holds, as of one transaction ``tx``, every memory version that has
a vector: its filter columns and its float32 embedding as ``.npy`` files, rows
sorted by namespace (so one namespace is one contiguous slice), plus an HNSW
graph (usearch, int8) over the versions that were current at ``tx``, and one
per large namespace. Processes open the files read-only with ``mmap``, so the
operating system keeps one copy in its page cache for all of them (server
workers share it) and opening a database costs no rebuild.

The files live in the directory ``<database>-vindex/``; ``current`` names the
published snapshot. A builder writes a new snapshot beside it and swaps
``current`` with an atomic rename, under an exclusive file lock (one builder per
machine). A snapshot is derived data: if it is missing, damaged or belongs to
another database (its chain hash at ``tx`` does not match), it is rebuilt, and
correctness never depends on it (the caller searches rows newer than ``tx``
exactly and lets them override the snapshot's copies).

A large database's first snapshot is published in two steps: its rows and
vectors first (``graphs=False``: a streamed copy, tens of seconds at 1M rows,
searched exactly meanwhile), then :func:`add_graphs` builds the graphs (minutes
at 1M) into a new snapshot whose arrays are hard links to the first one's files,
so no process ever reads every vector into its own memory while it waits.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import mmap
import os
import shutil
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("engramdb.index")

__all__ = ["FORMAT", "NONE", "Snapshot", "add_graphs", "build_snapshot", "index_dir",
           "open_current"]

FORMAT = 1
NONE = np.iinfo(np.int64).max
CODED = ("namespace", "layer", "author", "status")
TIMES = ("tx_from", "tx_to", "valid_from", "valid_to", "recorded_at")
# A namespace gets its own HNSW graph when it holds this many current rows and
# at most this share of all of them (a larger one is served by the global graph).
PART_MIN = 30_000
PART_MAX_SHARE = 0.5
_SELECT = (
    "SELECT m.row_id, m.namespace, m.layer, m.author, m.status, m.tx_from, m.tx_to, "
    "m.valid_from, m.valid_to, m.recorded_at, v.vec FROM memories m "
    "JOIN memory_vectors v ON v.id = m.id AND v.version = m.version "
    "ORDER BY m.namespace, m.row_id"
)


def index_dir(db_path: str) -> Path:
    """The directory holding the snapshots of the database at ``db_path``."""
    return Path(db_path + "-vindex")


class Snapshot:
    """One published snapshot, memory-mapped read-only."""

    def __init__(self, path: Path) -> None:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"snapshot format {meta.get('format')} is not {FORMAT}")
        self.path = path
        self.tx: int = int(meta["tx"])
        self.hash: str = str(meta["hash"])
        self.dimension: int = int(meta["dimension"])
        self.n: int = int(meta["n"])
        self.codes: dict[str, dict[str, int]] = {
            col: {v: i for i, v in enumerate(meta["codes"][col])} for col in CODED}

        self._maps: list[Any] = []
        self._settled = False

        def mapped(name: str) -> np.ndarray:
            arr = _mapped(path / f"{name}.npy")
            self._maps.append(getattr(arr, "_mmap", None))
            return arr

        def load(name: str) -> np.ndarray:
            # A plain array over the mapped file (np.asarray drops the np.memmap
            # subclass, whose Python-level indexing costs more than a search's filter).
            return np.asarray(mapped(name)) if self.n else np.zeros(0)

        self.row_ids = load("row_id")
        self.cols: dict[str, np.ndarray] = {c: load(c) for c in (*CODED, *TIMES)}
        self.vecs = (np.asarray(mapped("vecs")) if self.n
                     else np.zeros((0, self.dimension), dtype=np.float32))
        self.by_row = load("by_row")  # positions in row_id order
        # namespace code -> (start, end) slice and number of current rows
        self.slices: dict[int, tuple[int, int]] = {
            int(c): (int(a), int(b)) for c, a, b in meta["slices"]}
        self.live: dict[int, int] = {int(c): int(n) for c, n in meta["live"]}
        self.live_total = sum(self.live.values())
        # Published before its graphs (searched exactly until add_graphs publishes them).
        self.graphs_pending: bool = bool(meta.get("graphs_pending", False))
        self.graphs = _Graphs({None if key is None else int(key): path / (
            "hnsw.usearch" if key is None else f"hnsw-{key}.usearch") for key in meta["graphs"]})

    def settle(self) -> None:
        """After the first search: the default read-around again (see :func:`_mapped`),
        and the graphs not opened yet opened in the background."""
        if self._settled:
            return
        self._settled = True
        maps, self._maps = self._maps, []
        for m in maps:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                m.madvise(mmap.MADV_NORMAL)
        if len(self.graphs) > 1:
            opener = threading.Thread(target=self.graphs.open_all, name="engramdb-vindex-open",
                                      daemon=True)
            _openers.add(opener)
            opener.start()

    def positions_of(self, row_ids: np.ndarray) -> np.ndarray:
        """Snapshot positions of ``row_ids`` (those it does not hold are left out)."""
        if self.n == 0 or len(row_ids) == 0:
            return np.zeros(0, dtype=np.int64)
        sorted_ids = self.row_ids[self.by_row]
        at = np.searchsorted(sorted_ids, row_ids)
        at = np.minimum(at, self.n - 1)
        found = sorted_ids[at] == row_ids
        return np.asarray(self.by_row[at[found]], dtype=np.int64)


def _mapped(path: Path) -> np.memmap:
    """``path``'s array mapped read-only, read page by page where touched until
    :meth:`Snapshot.settle`.

    A search touches scattered rows (a graph's candidates, their filter columns); the
    kernel's default read-around reads 128 KB for each page missing from the page cache,
    which made the first search after a cold open read ~100 MB it never used (~0.4 s at
    1M rows). Later searches gain from it (the cache warms in fewer, larger reads), so
    the default comes back after the first search.
    """
    arr = np.load(path, mmap_mode="r")
    with contextlib.suppress(AttributeError, OSError, ValueError):
        arr._mmap.madvise(mmap.MADV_RANDOM)
    return arr


# Background graph openers: waited for at exit (a thread still inside usearch's C++
# while the interpreter shuts down can abort the process).
_openers: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


@atexit.register
def _join_openers() -> None:
    for opener in list(_openers):
        opener.join(timeout=5)


class _Graphs(dict[int | None, Any]):
    """The snapshot's HNSW graphs by namespace code (None: all), each opened when a search
    first asks for it, the rest in the background after the first search
    (:meth:`Snapshot.settle`): opening one walks its nodes (at 1M rows ~90 ms for the
    global graph and ~5 ms for each of 20 namespaces' warm, ~430 ms for all cold), which
    the first recall after opening paid whole; opened only when asked, a namespace's
    first scoped recall paid its graph's."""

    def __init__(self, paths: dict[int | None, Path]) -> None:
        super().__init__()
        self._paths = paths
        self._lock = threading.Lock()
        self._first = True
        self.damaged = False  # a graph could not be opened: the snapshot wants replacing

    def __bool__(self) -> bool:
        return bool(self._paths)

    def __contains__(self, key: object) -> bool:
        return key in self._paths

    def __len__(self) -> int:
        return len(self._paths)

    def __iter__(self) -> Iterator[int | None]:
        return iter(self._paths)

    def get(self, key: int | None, default: Any = None) -> Any:
        return self[key] if key in self._paths else default

    def __missing__(self, key: int | None) -> Any:
        """The graph, opened now; None if it cannot be (the search then scans exactly)."""
        with self._lock:
            if not dict.__contains__(self, key):
                try:
                    graph = _open_graph(self._paths[key], first=self._first)
                except (OSError, ValueError, RuntimeError) as exc:
                    log.warning("HNSW graph %s not opened (searched exactly until the "
                                "snapshot is rebuilt): %s", self._paths[key], exc)
                    graph = None
                    self.damaged = True
                dict.__setitem__(self, key, graph)
            return dict.__getitem__(self, key)

    def open_all(self) -> None:
        self._first = False  # after the first search: the default read-around
        for key in self._paths:
            self.get(key)


def _usearch_index() -> Any:
    """usearch's ``Index``, loaded only after onnxruntime.

    usearch's compiled module links its own C++ runtime; once it is loaded, importing
    onnxruntime (the default embedder) kills the process with a segmentation fault in
    libstdc++'s locale code (usearch 2.26, onnxruntime 1.28-1.32). Loaded the other way
    round, both work. A process whose first act is a search over the vector index and
    whose next is embedding a text (a server answering a recall with a given vector, a
    bulk import followed by a ``remember``) would otherwise die, so onnxruntime is loaded
    first whenever it is installed.
    """
    with contextlib.suppress(ImportError):
        import onnxruntime  # noqa: F401  (load order only: see above)
    from usearch.index import Index

    return Index


def _open_graph(path: Path, *, first: bool = True) -> Any:
    """The graph at ``path``, mapped; ``first``: for the first search (random access
    until it is done, see :class:`_Graph`)."""
    Index = _usearch_index()
    graph = Index.restore(str(path), view=True)
    if graph is None:
        raise ValueError(f"cannot open the HNSW graph {path}")
    if not first:
        return graph
    _advise(path, mmap.MADV_RANDOM)
    return _Graph(graph, path)


class _Graph:
    """A mapped usearch graph whose first search reads only the nodes it visits.

    The first search after a cold open visits scattered nodes, and the default
    read-around read 128 KB from disk for each one missing from the page cache (~0.3 s
    at 1M rows); later searches gain from it (neighbouring nodes come along, the cache
    warms in fewer reads), so the default comes back after the first search."""

    def __init__(self, graph: Any, path: Path) -> None:
        self._graph = graph
        self._path: Path | None = path

    @property
    def expansion_search(self) -> int:
        return int(self._graph.expansion_search)

    @expansion_search.setter
    def expansion_search(self, value: int) -> None:
        self._graph.expansion_search = value

    def search(self, *args: Any, **kwargs: Any) -> Any:
        found = self._graph.search(*args, **kwargs)
        if self._path is not None:
            path, self._path = self._path, None
            _advise(path, mmap.MADV_NORMAL)
        return found


def _advise(path: Path, advice: int) -> None:
    """``madvise`` on this process's mappings of ``path`` (usearch maps the graph file
    itself; Linux only, else a no-op)."""
    with contextlib.suppress(OSError, AttributeError, ValueError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        target = str(path.resolve())
        with Path("/proc/self/maps").open(encoding="utf-8") as fh:
            for line in fh:
                if line.rstrip("\n").endswith(target):
                    start, end = (int(x, 16) for x in line.split()[0].split("-"))
                    libc.madvise(start, end - start, advice)


def open_current(directory: Path) -> Snapshot | None:
    """The published snapshot in ``directory``, or None if there is none (or it is unreadable)."""
    for _ in range(3):  # a builder may swap it while we read
        try:
            name = (directory / "current").read_text(encoding="utf-8").strip()
            return Snapshot(directory / name)
        except FileNotFoundError:
            if not (directory / "current").exists():
                return None
        except (OSError, ValueError, KeyError, RuntimeError):
            return None
    return None


@contextlib.contextmanager
def build_lock(directory: Path, *, wait: bool, name: str = "build.lock") -> Iterator[bool]:
    """The machine-wide builder lock (``name``: the lexical builder has its own); yields
    whether it was taken."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / name).open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_snapshot(conn: Any, directory: Path, dimension: int, *, threads: int = 0,
                   graphs: bool = True) -> Path:
    """Write a snapshot of the committed state seen by ``conn`` and publish it.

    Call with :func:`build_lock` held. Reads one consistent SQLite snapshot
    (a deferred read transaction), streams vectors to disk (the builder never
    holds them all in memory) and builds the HNSW graphs from the file
    (``graphs=False``: published without them, marked for :func:`add_graphs`).
    """
    directory.mkdir(parents=True, exist_ok=True)
    with _staging(directory) as tmp:
        tx, digest, meta = _write_rows(conn, tmp, dimension)
        meta["graphs"] = _build_graphs(tmp, meta, threads) if graphs else []
        meta.update(format=FORMAT, tx=tx, hash=digest, dimension=dimension,
                    built_at=time.time(), graphs_pending=not graphs and meta["n"] > 0)
        final = _publish(directory, tmp, meta)
    _remove_old(directory, keep=final.name)
    return final


def add_graphs(snap: Snapshot, directory: Path, *, threads: int = 0,
               still_wanted: Any = None) -> Path | None:
    """Publish ``snap`` (published with ``graphs=False``) again with its HNSW graphs.

    Call with :func:`build_lock` held. The new snapshot's arrays are hard links to
    ``snap``'s files (nothing copied); it is published only if ``current`` still names
    ``snap`` and ``still_wanted()`` (if given: e.g. no erasure since) says so, else
    dropped (None).
    """
    with _staging(directory) as tmp:
        for f in snap.path.iterdir():
            if f.name != "meta.json":
                os.link(f, tmp / f.name)
        meta = json.loads((snap.path / "meta.json").read_text(encoding="utf-8"))
        meta["graphs"] = _build_graphs(tmp, meta, threads)
        meta["graphs_pending"] = False
        named = (directory / "current").read_text(encoding="utf-8").strip()
        if named != snap.path.name or (still_wanted is not None and not still_wanted()):
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        final = _publish(directory, tmp, meta)
    _remove_old(directory, keep=final.name)
    return final


@contextlib.contextmanager
def _staging(directory: Path) -> Iterator[Path]:
    """A new temporary directory for a snapshot, removed if anything fails."""
    tmp = directory / f"tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    # Private, as the database's lexical snapshot: the files hold every memory's vector.
    tmp.mkdir(mode=0o700)
    tmp.chmod(0o700)  # mkdir's mode is masked by the umask
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish(directory: Path, tmp: Path, meta: dict[str, Any]) -> Path:
    """Write ``meta``, move ``tmp`` to its final name and point ``current`` at it."""
    (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    final = directory / f"snap-{meta['tx']}-{uuid.uuid4().hex[:8]}"
    tmp.rename(final)
    pointer = directory / f"current.{os.getpid()}.tmp"
    pointer.write_text(final.name, encoding="utf-8")
    pointer.replace(directory / "current")
    return final


def _write_rows(conn: Any, out: Path, dimension: int) -> tuple[int, str, dict[str, Any]]:
    codes: dict[str, dict[str, int]] = {c: {} for c in CODED}
    parts: dict[str, list[np.ndarray]] = {c: [] for c in ("row_id", *CODED, *TIMES)}
    n = 0
    conn.execute("BEGIN")  # one snapshot for the head and every row
    try:
        tx, digest = conn.execute("SELECT tx, hash FROM chain_head WHERE id = 1").fetchone()
        with (out / "vecs.raw").open("wb") as raw:
            cur = conn.execute(_SELECT)
            while batch := cur.fetchmany(20_000):
                rows = [r for r in batch if r[10] is not None and len(r[10]) == 4 * dimension]
                if not rows:
                    continue
                raw.write(b"".join(r[10] for r in rows))
                parts["row_id"].append(np.array([r[0] for r in rows], dtype=np.int64))
                for i, col in enumerate(CODED, start=1):
                    table = codes[col]
                    parts[col].append(np.array(
                        [table.setdefault(r[i], len(table)) for r in rows], dtype=np.int32))
                for i, col in enumerate(TIMES, start=5):
                    parts[col].append(np.array(
                        [NONE if r[i] is None else r[i] for r in rows], dtype=np.int64))
                n += len(rows)
    finally:
        conn.execute("COMMIT")
    arrays = {c: (np.concatenate(p) if p else np.zeros(0, dtype=np.int64))
              for c, p in parts.items()}
    for col, arr in arrays.items():
        np.save(out / f"{col}.npy", arr)
    np.save(out / "by_row.npy", np.argsort(arrays["row_id"], kind="stable"))
    # The vectors as a .npy (header + the raw float32 rows), without loading them.
    header = out / "vecs.npy"
    with header.open("wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {
            "descr": "<f4", "fortran_order": False, "shape": (n, dimension)})
        with (out / "vecs.raw").open("rb") as raw:
            shutil.copyfileobj(raw, fh, 1 << 22)
    (out / "vecs.raw").unlink()
    ns = arrays["namespace"]
    live = arrays["tx_to"] == NONE
    slices, counts = [], []
    if n:
        starts = np.flatnonzero(np.r_[True, ns[1:] != ns[:-1]])
        ends = np.r_[starts[1:], n]
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            slices.append((int(ns[a]), a, b))
            counts.append((int(ns[a]), int(live[a:b].sum())))
    meta = {"n": n, "slices": slices, "live": counts,
            "codes": {c: list(codes[c]) for c in CODED}}
    return int(tx), str(digest), meta


def _build_graphs(out: Path, meta: dict[str, Any], threads: int) -> list[int | None]:
    n = meta["n"]
    if n == 0:
        return []
    Index = _usearch_index()
    vecs = np.load(out / "vecs.npy", mmap_mode="r")
    live = np.flatnonzero(np.load(out / "tx_to.npy") == NONE)
    total = len(live)
    graphs: list[int | None] = []
    jobs: list[tuple[int | None, np.ndarray]] = [(None, live)] if total else []
    for code, a, b in meta["slices"]:
        part = live[(live >= a) & (live < b)]
        if len(part) >= PART_MIN and len(part) <= PART_MAX_SHARE * total:
            jobs.append((code, part))
    for key, positions in jobs:
        graph = Index(ndim=vecs.shape[1], metric="ip", dtype="i8", connectivity=16,
                      expansion_add=64, expansion_search=64)
        for i in range(0, len(positions), 50_000):
            chunk = positions[i:i + 50_000]
            graph.add(chunk.astype(np.uint64), np.asarray(vecs[chunk]), threads=threads)
        graph.save(str(out / ("hnsw.usearch" if key is None else f"hnsw-{key}.usearch")))
        graphs.append(key)
    return graphs


def _remove_old(directory: Path, keep: str) -> None:
    """Delete superseded snapshots (open mappings of them stay valid) and stale temp dirs."""
    for entry in directory.iterdir():
        if entry.name == keep or not entry.is_dir():
            continue
        old = entry.name.startswith("snap-")
        stale_tmp = entry.name.startswith("tmp-") and time.time() - entry.stat().st_mtime > 3600
        if old or stale_tmp:
            shutil.rmtree(entry, ignore_errors=True)
