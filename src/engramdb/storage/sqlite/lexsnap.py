"""The on-disk full-text projection of a SQLite database: built once, mapped by every process.

A lexical snapshot holds, as of one transaction ``tx``, what :mod:`.lexical`
ranks with: for each stem of FTS5's ``text`` column the rows holding it and how
often (postings as flat ``int32`` arrays in CSR form), each row's size in tokens
and the columns a recall filter tests. Rows are in row-id order. The stems are
one UTF-8 blob, sorted bytewise, with an offsets array: a stem is found by
binary search over the mapped bytes, so opening a snapshot makes no Python
object per stem. Processes open the files read-only with ``mmap``: the
operating system keeps one copy in its page cache for all of them, and opening
a database of a million memories costs milliseconds, not a rebuild.

The files live beside the vector snapshots (:mod:`.snapshot`) in
``<database>-vindex/``, in ``lex-<tx>-<id>/`` directories; ``lex-current``
names the published one. A builder writes a new snapshot in a private
temporary directory (0700, files 0600: the stems are the memories' words) and
swaps ``lex-current`` with an atomic rename, under its own exclusive file lock.
A snapshot is derived data: missing, damaged, of another database (its chain
hash at ``tx`` does not match) or older than the latest erasure, it is not
used and is rebuilt. An erasure's ``purge`` removes the whole directory; a
snapshot older than the latest erasure that is found later (published by a
builder that read before the erasure) is deleted by whoever finds it, and a
builder deletes its own snapshot if an erasure committed while it built.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import mmap
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from engramdb.private_file import private_file
from engramdb.storage.sqlite.snapshot import build_lock, index_dir

__all__ = ["CODED", "FORMAT", "LOCK", "NONE", "TIMES", "LexBase", "build_base", "directory_of",
           "lock", "open_current", "pointer_path", "pointer_stamp", "read_base",
           "remove_snapshot"]

FORMAT = 1
NONE = np.iinfo(np.int64).max
CODED = ("namespace", "layer", "author", "status")
TIMES = ("tx_from", "tx_to", "valid_from", "valid_to", "recorded_at")
POINTER = "lex-current"
LOCK = "lex-build.lock"
_ROW_SQL = ("SELECT row_id, namespace, layer, author, status, tx_from, tx_to, valid_from, "
            "valid_to, recorded_at FROM memories ORDER BY row_id")
_VOCAB = "temp.engram_fts_instance"


class LexBase:
    """One lexical snapshot: its arrays (memory-mapped, read-only) and its stems."""

    def __init__(self, path: Path) -> None:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"lexical snapshot format {meta.get('format')} is not {FORMAT}")
        self.path = path
        self.tx: int = int(meta["tx"])
        self.hash: str = str(meta["hash"])
        self.n: int = int(meta["n"])
        self.n_terms: int = int(meta["terms"])
        self.last_row_id: int = int(meta["last_row_id"])
        self.codes: dict[str, dict[str, int]] = {
            col: {v: i for i, v in enumerate(meta["codes"][col])} for col in CODED}
        self.row_ids = _load(path, "row_id", self.n)
        self.size = _load(path, "size", self.n)
        self.cols = {c: _load(path, c, self.n) for c in (*CODED, *TIMES)}
        self.starts = _load(path, "starts", self.n_terms + 1)
        self.post = _load(path, "post", int(meta["postings"]))
        self.freq = _load(path, "freq", int(meta["postings"]))
        offsets = _load(path, "term_off", self.n_terms + 1)
        # memoryview items are Python ints: the binary search reads ~20 of them per stem.
        self._off: Any = memoryview(offsets.data) if len(offsets) else [0]
        self._offsets = offsets  # keeps the mapping alive
        with (path / "terms.bin").open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            self._blob: Any = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        # stems asked before (queries repeat words): a few microseconds each otherwise
        self._ids: dict[str, int | None] = {}
        if size != self._off[self.n_terms]:
            raise ValueError("the lexical snapshot's stems do not match their offsets")

    def term_id(self, term: str) -> int | None:
        """The stem's id (its rank in bytewise order), or None if no row holds it."""
        try:
            return self._ids[term]
        except KeyError:
            pass
        if len(self._ids) >= 100_000:
            self._ids = {}
        found = self._ids[term] = self._search(term)
        return found

    def _search(self, term: str) -> int | None:
        key = term.encode("utf-8", "surrogatepass")
        off, blob = self._off, self._blob
        lo, hi = 0, self.n_terms
        while lo < hi:
            mid = (lo + hi) >> 1
            if blob[off[mid]:off[mid + 1]] < key:
                lo = mid + 1
            else:
                hi = mid
        if lo < self.n_terms and blob[off[lo]:off[lo + 1]] == key:
            return lo
        return None


def _load(path: Path, name: str, n: int) -> np.ndarray:
    # A plain array over the mapped file (np.asarray drops the np.memmap subclass);
    # an empty one is read (an empty mapping cannot be made).
    if n == 0:
        return np.asarray(np.load(path / f"{name}.npy"))
    arr = np.asarray(np.load(path / f"{name}.npy", mmap_mode="r"))
    if len(arr) != n:
        raise ValueError(f"the lexical snapshot's {name} holds {len(arr)} entries, not {n}")
    return arr


def open_current(directory: Path) -> LexBase | None:
    """The published snapshot in ``directory``, or None if there is none (or it is unreadable)."""
    for _ in range(3):  # a builder may swap it while we read
        try:
            name = (directory / POINTER).read_text(encoding="utf-8").strip()
            return LexBase(directory / name)
        except FileNotFoundError:
            if not (directory / POINTER).exists():
                return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return None


def pointer_path(directory: Path) -> str:
    return str(directory / POINTER)


def pointer_stamp(pointer: str) -> tuple[int, int] | None:
    """(inode, mtime) of ``lex-current`` (at ``pointer``, a string: asked before every
    search, a Path's ``/`` and ``stat`` cost ten times more): changes when a snapshot is
    published."""
    try:
        st = os.stat(pointer)  # noqa: PTH116 - a string, not a Path (see above)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def remove_snapshot(base: LexBase) -> None:
    """Delete a snapshot's files (open mappings of them stay valid)."""
    shutil.rmtree(base.path, ignore_errors=True)


# -- building ---------------------------------------------------------------------------------


def read_base(conn: sqlite3.Connection) -> dict[str, Any]:
    """Every row's filter columns and FTS5's postings of the ``text`` column, in one read
    transaction: the arrays of a snapshot, its ``tx`` and chain hash."""
    conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {_VOCAB} "
                 "USING fts5vocab('main', 'memories_fts', 'instance')")
    codes: dict[str, dict[str, int]] = {c: {} for c in CODED}
    parts: dict[str, list[np.ndarray]] = {c: [] for c in ("row_id", *CODED, *TIMES)}
    conn.execute("BEGIN")
    try:
        head = conn.execute("SELECT tx, hash FROM chain_head WHERE id = 1").fetchone()
        cur = conn.execute(_ROW_SQL)
        while batch := cur.fetchmany(20_000):
            parts["row_id"].append(np.array([r[0] for r in batch], dtype=np.int64))
            for i, col in enumerate(CODED, start=1):
                table = codes[col]
                parts[col].append(np.array([table.setdefault(r[i], len(table)) for r in batch],
                                           dtype=np.int32))
            for i, col in enumerate(TIMES, start=5):
                parts[col].append(np.array([NONE if r[i] is None else r[i] for r in batch],
                                           dtype=np.int64))
        # One row per term: its rows, repeated once per occurrence, parsed at once
        # (one array, not one per term: most terms occur once or twice).
        terms, lists = [], []
        for term, docs in conn.execute(
                f"SELECT term, group_concat(doc) FROM {_VOCAB} WHERE col = 'text' "
                "GROUP BY term"):
            terms.append(term)
            lists.append(docs)
    finally:
        conn.execute("COMMIT")
    out: dict[str, Any] = {
        c: (np.concatenate(p) if p else np.zeros(0, dtype=np.int32 if c in CODED else np.int64))
        for c, p in parts.items()}
    row_ids = out["row_id"]
    n = len(row_ids)
    if n > 1 and not bool(np.all(row_ids[1:] > row_ids[:-1])):
        raise ValueError("memory rows did not come in row-id order")
    keys = [t.encode("utf-8", "surrogatepass") for t in terms]
    if any(a >= b for a, b in itertools.pairwise(keys)):  # bytewise, as searched
        order = sorted(range(len(keys)), key=keys.__getitem__)
        keys = [keys[i] for i in order]
        lists = [lists[i] for i in order]
    del terms
    lengths = [s.count(",") + 1 for s in lists]
    docs = (np.fromstring(",".join(lists), dtype=np.int64, sep=",") if lists
            else np.zeros(0, dtype=np.int64))
    del lists
    term_of = np.repeat(np.arange(len(keys), dtype=np.int32), lengths)
    if len(docs) != sum(lengths):
        raise ValueError("the full-text index's postings did not parse")
    order_docs = np.lexsort((docs, term_of))  # rows in order within each term
    if not bool(np.all(order_docs[1:] > order_docs[:-1])):
        docs, term_of = docs[order_docs], term_of[order_docs]
    del order_docs
    # runs of one (term, row): the row's count of the term
    new_run = np.r_[True, (docs[1:] != docs[:-1]) | (term_of[1:] != term_of[:-1])] \
        if len(docs) else np.zeros(0, dtype=bool)
    starts = np.flatnonzero(new_run)
    counts = np.diff(np.r_[starts, len(docs)])
    positions = np.searchsorted(row_ids, docs[starts])
    if len(positions) and (positions.max() >= n or bool(np.any(row_ids[positions]
                                                               != docs[starts]))):
        raise ValueError("the full-text index holds a row the memories table does not")
    per_term = np.bincount(term_of[starts], minlength=len(keys))
    text_tokens = np.bincount(positions, weights=counts, minlength=n)
    lens = np.fromiter((len(k) for k in keys), dtype=np.int64, count=len(keys))
    out.update(
        tx=int(head[0]) if head else 0, hash=str(head[1]) if head else "",
        size=(text_tokens + 1.0).astype(np.float64),  # and the one `scope` token
        post=positions.astype(np.int32), freq=counts.astype(np.int32),
        starts=np.r_[0, np.cumsum(per_term)].astype(np.int64),
        term_off=np.r_[0, np.cumsum(lens)].astype(np.int64), blob=b"".join(keys),
        codes={c: list(codes[c]) for c in CODED},
        last_row_id=int(row_ids[-1]) if n else 0)
    return out


def build_base(conn: sqlite3.Connection, directory: Path | None,
               erased_tx: Any = None) -> LexBase:
    """Read a base on ``conn`` and write it as a snapshot.

    ``directory``: publish it there (call with :func:`build_lock` held), or None for a
    process-private snapshot (a database with no file): written to a temporary
    directory, mapped, and its files deleted at once. ``erased_tx()``: the latest
    erasure now, read after publishing; a snapshot older than it is deleted again
    (its rows may hold the erased words) and ValueError raised.
    """
    parts = read_base(conn)
    if directory is None:
        tmp = Path(tempfile.mkdtemp(prefix="engramdb-lex-"))
        try:
            _write(tmp, parts)
            return LexBase(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"lextmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(mode=0o700)
        tmp.chmod(0o700)  # mkdir's mode is masked by umask
        _write(tmp, parts)
        final = directory / f"lex-{parts['tx']}-{uuid.uuid4().hex[:8]}"
        tmp.rename(final)
        pointer = directory / f"{POINTER}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        with private_file(pointer, what="lexical snapshot pointer") as fh:
            assert fh is not None
            fh.write(final.name.encode("utf-8"))
        pointer.replace(directory / POINTER)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    base = LexBase(final)
    if erased_tx is not None and int(erased_tx()) > base.tx:
        # An erasure committed while this was read: its purge may have run before the
        # rename, so the erased words would stay on disk. They must not.
        remove_snapshot(base)
        raise ValueError("an erasure committed while the lexical snapshot was built")
    _remove_old(directory, keep=final.name)
    return base


def _write(out: Path, parts: dict[str, Any]) -> None:
    def save(name: str, arr: np.ndarray) -> None:
        with private_file(out / f"{name}.npy", what="lexical snapshot file") as fh:
            assert fh is not None
            np.save(fh, arr)
            fh.flush()
            os.fsync(fh.fileno())

    for name in ("row_id", *CODED, *TIMES, "size", "post", "freq", "starts", "term_off"):
        save(name, parts[name])
    with private_file(out / "terms.bin", what="lexical snapshot file") as fh:
        assert fh is not None
        fh.write(parts["blob"])
        fh.flush()
        os.fsync(fh.fileno())
    meta = {"format": FORMAT, "tx": parts["tx"], "hash": parts["hash"],
            "n": len(parts["row_id"]), "terms": len(parts["term_off"]) - 1,
            "postings": len(parts["post"]), "last_row_id": parts["last_row_id"],
            "codes": parts["codes"], "built_at": time.time()}
    with private_file(out / "meta.json", what="lexical snapshot file") as fh:
        assert fh is not None
        fh.write(json.dumps(meta).encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def _remove_old(directory: Path, keep: str) -> None:
    """Delete superseded lexical snapshots and stale temporary directories."""
    for entry in directory.iterdir():
        if entry.name == keep or not entry.is_dir():
            continue
        old = entry.name.startswith("lex-")
        with contextlib.suppress(OSError):
            stale_tmp = (entry.name.startswith("lextmp-")
                         and time.time() - entry.stat().st_mtime > 3600)
            if old or stale_tmp:
                shutil.rmtree(entry, ignore_errors=True)


def lock(directory: Path, *, wait: bool) -> Any:
    """The machine-wide lexical builder lock (not the vector builder's)."""
    return build_lock(directory, wait=wait, name=LOCK)


def directory_of(db_path: str | None) -> Path | None:
    """Where the snapshots of the database at ``db_path`` live (None: no file)."""
    if db_path is None or db_path == ":memory:" or db_path.startswith("file:"):
        return None
    return index_dir(db_path)
