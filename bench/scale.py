"""``engram bench scale``: recall latency, cold start and memory against database size.

The corpus is natural English generated at run time, never downloaded: the
sentences of the docstrings of the Python modules installed beside EngramDB
(6 to 40 words each, deduplicated, in a seeded order; reused with a numbered
tail if there are too few). Embeddings are seeded, clustered unit vectors of
the database's dimension (latency depends on their number and spread, not on
their meaning), so the figures exclude query embedding. Memories are spread
over 20 namespaces; a scoped query reads one of them (5% of the rows).

Each size is loaded into a fresh SQLite database (and PostgreSQL when a URL is
given), the vector index is built, and then, in the same process, recall is
timed unscoped and scoped beside NumPy exact brute-force top-10 over the same
vectors, the baseline. The report gives p50/p95, their ratio to the baseline,
the first recall after reopening, resident memory and the read audit's bytes
on disk per recall.
"""

from __future__ import annotations

import ast
import hashlib
import os
import random
import re
import resource
import sysconfig
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["corpus", "run_scale", "write_plot"]

NAMESPACES = 20
_SKIP = re.compile(r"[{}<>=|\\]|::|>>>")


def _sentences(limit: int) -> list[str]:
    paths = sysconfig.get_paths()
    seen: set[bytes] = set()
    out: list[str] = []
    for root in (paths["stdlib"], paths["purelib"]):
        for dirpath, dirs, files in sorted(os.walk(root)):
            dirs.sort()
            parts = Path(dirpath).parts
            if "test" in parts or "tests" in parts:
                continue
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                try:
                    tree = ast.parse(Path(dirpath, name).read_text(encoding="utf-8"))
                except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
                    continue
                for node in ast.walk(tree):
                    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                             ast.ClassDef, ast.Module)):
                        continue
                    doc = ast.get_docstring(node)
                    if not doc:
                        continue
                    for s in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())):
                        if 6 <= len(s.split()) <= 40 and s.isprintable() and not _SKIP.search(s):
                            h = hashlib.sha1(s.lower().encode()).digest()
                            if h not in seen:
                                seen.add(h)
                                out.append(s)
                                if len(out) >= limit:
                                    return out
    return out


def corpus(n: int, seed: int = 7) -> list[str]:
    """``n`` natural sentences (docstrings of installed modules), in a seeded order."""
    base = _sentences(n)
    random.Random(seed).shuffle(base)
    out = list(base)
    i = 0
    while len(out) < n and base:
        out.append(f"{base[i % len(base)]} (note {i})")
        i += 1
    return out[:n]


def vectors(n: int, dim: int, seed: int = 7, centers: int = 2000) -> np.ndarray:
    """Seeded clustered unit vectors standing in for embeddings."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centers, dim)).astype(np.float32)
    v = c[rng.integers(0, centers, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def _rss_mb() -> tuple[float, float]:
    """(current resident MB, peak resident MB) of this process."""
    current = 0.0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    except OSError:
        pass
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _timed(fn: Callable[[int], Any], reps: int) -> list[float]:
    out = []
    for i in range(reps):
        t = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t) * 1000)
    return out


def _db_bytes(db: Any) -> int:
    """The SQLite file's size once its WAL is checkpointed into it."""
    import sqlite3

    path = str(db.storage.path)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages, size, free = (conn.execute(f"PRAGMA {p}").fetchone()[0]
                             for p in ("page_count", "page_size", "freelist_count"))
    return int((pages - free) * size)


def _measure(db: Any, texts: list[str], vec: np.ndarray, qv: np.ndarray, queries: list[str],
             reps: int) -> dict[str, Any]:
    me = db
    me.recall(queries[0], k=10, query_embedding=qv[0].tolist())  # warm-up
    rounds: dict[str, list[float]] = {"engram": [], "engram_ns": [], "numpy": []}
    for _ in range(3):
        rounds["numpy"] += _timed(lambda i: np.argpartition(-(vec @ qv[i]), 10)[:10], reps)
        rounds["engram"] += _timed(lambda i: me.recall(
            queries[i], k=10, query_embedding=qv[i].tolist()), reps)
        rounds["engram_ns"] += _timed(lambda i: me.recall(
            queries[i], namespace=f"scale/ns{i % NAMESPACES}", k=10,
            query_embedding=qv[i].tolist()), reps)
    return {k: (_pct(v, 50), _pct(v, 95)) for k, v in rounds.items()}


def run_scale(work: Path, sizes: Sequence[int], *, pg_url: str | None = None,
              reps: int = 100, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Load, index and time each size; one result dict per (backend, size)."""
    import engramdb

    results: list[dict[str, Any]] = []
    biggest = max(sizes)
    texts_all = corpus(biggest + reps)
    log(f"corpus: {len(texts_all)} sentences")
    for n in sizes:
        texts, queries = texts_all[:n], [" ".join(t.split()[:6]) for t in texts_all[-reps:]]
        backends = [("sqlite", str(work / f"scale-{n}.db"))]
        if pg_url:
            backends.append(("postgresql", pg_url))
        for backend, target in backends:
            db = engramdb.open(target, synchronous="NORMAL") if backend == "sqlite" \
                else engramdb.open(target)
            dim = db.dimension or 384
            vec_all = vectors(n + reps, dim)
            vec, qv = vec_all[:n], vec_all[n:]
            t0 = time.perf_counter()
            for i in range(0, n, 2000):
                db.remember_many([{"text": texts[j], "namespace": f"scale/ns{j % NAMESPACES}",
                                   "layer": "episodic", "embedding": vec[j].tolist()}
                                  for j in range(i, min(n, i + 2000))])
            load_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            if backend == "sqlite":
                db.storage.rebuild_vector_index()
            else:
                db.storage.wait_for_vector_index(timeout=3600)
            index_s = time.perf_counter() - t0
            log(f"{backend} {n}: loaded in {load_s:.0f} s, indexed in {index_s:.0f} s")
            db.close()
            t0 = time.perf_counter()
            db = engramdb.open(target, synchronous="NORMAL") if backend == "sqlite" \
                else engramdb.open(target)
            opened = time.perf_counter() - t0
            t0 = time.perf_counter()
            db.recall(queries[0], k=10, query_embedding=qv[0].tolist())
            first = time.perf_counter() - t0
            db.read_audit.flush()
            before = _db_bytes(db) if backend == "sqlite" else 0
            p = _measure(db, texts, vec, qv, queries, reps)
            db.read_audit.flush()
            audit = ((_db_bytes(db) - before) / (3 * 2 * reps + 1) if backend == "sqlite"
                     else None)
            rss, peak = _rss_mb()
            results.append({"backend": backend, "n": n, "load_s": load_s, "index_s": index_s,
                            "open_s": opened, "first_recall_s": first, "rss_mb": rss,
                            "peak_rss_mb": peak, "audit_bytes_per_recall": audit, **{
                                f"{k}_p{q}": v[i] for k, v in p.items()
                                for i, q in ((0, 50), (1, 95))}})
            log(f"{backend} {n}: {results[-1]}")
            db.close()
    return results


def write_plot(results: Sequence[dict[str, Any]], path: Path) -> None:
    """A log-log PNG of recall p95 against size, per backend, beside NumPy brute force."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for backend in sorted({r["backend"] for r in results}):
        rows = sorted((r for r in results if r["backend"] == backend), key=lambda r: r["n"])
        ns = [r["n"] for r in rows]
        ax.plot(ns, [r["engram_p95"] for r in rows], "o-", label=f"{backend} recall, unscoped")
        ax.plot(ns, [r["engram_ns_p95"] for r in rows], "s--",
                label=f"{backend} recall, one namespace (5%)")
        if backend == "sqlite":
            ax.plot(ns, [r["numpy_p95"] for r in rows], "k:", label="NumPy exact top-10")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("memories")
    ax.set_ylabel("p95 latency (ms), query embedding excluded")
    ax.set_title("EngramDB recall latency against size (same process, same run)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: Sequence[dict[str, Any]], machine: str, plot: str | None) -> str:
    """The report section: a table per backend and size, and the plot."""
    lines = [
        "## Recall at scale (`engram bench scale`)", "",
        machine, "",
        "Corpus: docstring sentences of the installed Python modules (natural English, "
        "6-40 words, generated at run time), seeded clustered unit vectors as embeddings "
        "(query embedding excluded), 20 namespaces; scoped = one namespace (5%). Baseline: "
        "NumPy exact top-10 over the same vectors in the same process.", "",
        "| backend | memories | unscoped p50 / p95 ms | scoped p50 / p95 ms | NumPy p50 / p95 ms "
        "| p95 ratio to NumPy | open + first recall s | RSS MB (peak) | read audit B/recall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = max(r["engram_p95"], r["engram_ns_p95"]) / r["numpy_p95"]
        audit = r["audit_bytes_per_recall"]
        lines.append(
            f"| {r['backend']} | {r['n']:,} | {r['engram_p50']:.1f} / {r['engram_p95']:.1f} "
            f"| {r['engram_ns_p50']:.1f} / {r['engram_ns_p95']:.1f} "
            f"| {r['numpy_p50']:.1f} / {r['numpy_p95']:.1f} | {ratio:.2f}x "
            f"| {r['open_s']:.2f} + {r['first_recall_s']:.2f} "
            f"| {r['rss_mb']:.0f} ({r['peak_rss_mb']:.0f}) "
            f"| {'n/a' if audit is None else f'{audit:.0f}'} |")
    if plot:
        lines += ["", f"![recall latency against size]({plot})"]
    return "\n".join(lines) + "\n"
