"""LangGraph store benchmark: EngramStore vs LangGraph's own SqliteStore, same run.

Both stores get the same ``items`` puts, one ``store.put`` call each (what a
graph node does), then the same searches, on files in one temporary directory.
Item texts are natural sentences by default (``--text templated``: the
near-duplicate notes earlier runs used, contradiction detection's worst case).
The two stores take turns (``--chunk`` puts, then a tenth as many searches, at
a time), so a load spike on a shared machine falls on both alike:

* ``kv``: no index. EngramStore over ``engramdb.open(path, embedder=None)``
  (full text only: no embedding model on the write path); searches are
  ``search(prefix, filter={...}, limit=10)``.
* ``vector``: both with the same caller embedding function (a cheap
  deterministic 64-dimension hash of words, so the embedder costs the same and
  little on both sides); searches are ``search(prefix, query=..., limit=10)``.
  SqliteStore ranks with sqlite-vec.

Durability: EngramDB's default (``synchronous=FULL``, WAL, every put a logged,
hash-chained transaction); SqliteStore's default (autocommit, rollback journal,
SQLite's default ``synchronous=FULL``). The figures that matter are the
ratios (EngramStore time / SqliteStore time), since the machine is shared.

Run from a checkout: ``python bench/langgraph_store.py [--items N] [--searches N]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import engramdb  # noqa: E402
from engramdb.integrations.langgraph import EngramStore  # noqa: E402

TOPICS = ["billing", "search", "onboarding", "mobile", "payments", "pipeline", "support",
          "gateway", "pricing", "security"]
DIMS = 64


def hash_embed(texts: list[str]) -> list[list[float]]:
    """Bag of hashed words: cheap, deterministic, the same cost for both stores."""
    out = []
    for t in texts:
        v = [0.0] * DIMS
        for w in t.lower().split():
            v[hashlib.blake2b(w.encode(), digest_size=2).digest()[0] % DIMS] += 1.0
        out.append(v)
    return out


# Item texts: natural sentences (docstrings of installed modules, bench/scale.py's
# corpus) by default; ``--text templated`` gives the old "note i about topic: step s is
# done by owner o" lines, near-duplicates whose owners differ: contradiction
# detection's worst case (about two open conflicts per put).
TEXTS: list[str] = []


def item(i: int) -> tuple[tuple[str, ...], str, dict[str, Any]]:
    topic = TOPICS[i % len(TOPICS)]
    text = TEXTS[i] if TEXTS else \
        f"note {i} about {topic}: step {i % 97} is done by owner {i % 13}"
    return (("team", topic), f"note-{i}", {"text": text, "owner": i % 13, "step": i % 97})


def _query(j: int) -> str:
    if TEXTS:
        return " ".join(TEXTS[(j * 7919) % len(TEXTS)].split()[:5])
    return f"{TOPICS[j % 10]} step {j % 97}"


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _search(store: Any, j: int, query: bool) -> None:
    if query:
        hits = store.search(("team",), query=_query(j), limit=10)
        assert len(hits) == 10
    else:
        hits = store.search(("team", TOPICS[j % 10]),
                            filter={"owner": j % 13, "step": {"$gte": j % 50}}, limit=10)
        assert hits


def measure(stores: dict[str, Any], items: int, searches: int, query: bool,
            batch: bool = False, chunk: int = 250) -> dict[str, dict[str, float]]:
    """Put ``items`` into every store, then search each ``searches`` times.

    The stores take turns, ``chunk`` puts (and ``chunk // 10`` searches) at a
    time, so a load spike on the shared machine falls on both sides alike.
    """
    from langgraph.store.base import PutOp

    data = [item(i) for i in range(items)]
    turns: dict[str, list[float]] = {name: [] for name in stores}  # seconds per turn
    search_s = dict.fromkeys(stores, 0.0)
    if batch:  # one store.batch of every put (EngramStore: one remember_many transaction)
        for name, store in stores.items():
            turns[name].append(
                timed(lambda s=store: s.batch([PutOp(ns, k, v) for ns, k, v in data])))
    else:
        for start in range(0, items, chunk):
            part = data[start:start + chunk]
            for name, store in stores.items():
                turns[name].append(
                    timed(lambda s=store, p=part: [s.put(ns, k, v) for ns, k, v in p]))
    step = max(1, chunk // 10)
    for start in range(0, searches, step):
        for name, store in stores.items():
            search_s[name] += timed(lambda s=store, a=start: [
                _search(s, j, query) for j in range(a, min(a + step, searches))])
    return {name: {"put_ms": 1000 * sum(turns[name]) / items,
                   "search_ms": 1000 * search_s[name] / searches,
                   "put_turns_s": turns[name]} for name in stores}


def _connect(path: str, *, vector: bool) -> Any:
    """A connection as ``SqliteStore.from_conn_string`` makes it (autocommit, any thread).

    sqlite-vec needs extension loading, which some Python builds leave out of
    ``sqlite3``; pysqlite3 (same DB-API) has it.
    """
    import sqlite3

    module: Any = sqlite3
    if vector and not hasattr(sqlite3.Connection, "enable_load_extension"):
        try:
            import pysqlite3.dbapi2 as module  # type: ignore[import-not-found,no-redef]
        except ImportError:
            return None
    return module.connect(path, check_same_thread=False, isolation_level=None)


def _durability(conn: Any, db: Any) -> dict[str, str]:
    """Each store's journal mode and ``synchronous``, read back from the connections
    the two stores wrote through (like must be compared with like)."""
    levels = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    writer = db.storage._conn("writer")  # the store's own writer: read, never changed

    def of(c: Any) -> str:
        return (f"journal={c.execute('PRAGMA journal_mode').fetchone()[0]} "
                f"synchronous={levels[c.execute('PRAGMA synchronous').fetchone()[0]]}")

    return {"sqlitestore": of(conn), "engramstore": of(writer)}


def run(items: int, searches: int, modes: tuple[str, ...] = ("kv", "vector"),
        report: Callable[[str, Any], None] = lambda _k, _v: None,
        batch: bool = False, chunk: int = 250, without_detection: bool = False
        ) -> dict[str, Any]:
    from langgraph.store.sqlite import SqliteStore

    out: dict[str, Any] = {"items": items, "searches": searches, "batch_load": batch,
                           "text": "natural" if TEXTS else "templated",
                           "chunk": chunk, "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            index = {"dims": DIMS, "embed": hash_embed, "fields": ["text"]} \
                if mode == "vector" else None
            conn = _connect(str(Path(tmp) / f"lg-{mode}.db"), vector=mode == "vector")
            if conn is None:
                out[mode] = {"skipped": "SqliteStore's vector index needs SQLite extension "
                             "loading: pip install pysqlite3-binary"}
                continue
            dbs = [engramdb.open(Path(tmp) / f"engram-{mode}.db", embedder=None)]
            try:
                ref = SqliteStore(conn, index=index)  # type: ignore[arg-type]
                ref.setup()
                stores = {"engramstore": EngramStore(dbs[0], index=index)}  # type: ignore[arg-type]
                if without_detection:  # what the free-text contradiction check costs
                    dbs.append(engramdb.open(Path(tmp) / f"engram-{mode}-nd.db", embedder=None))
                    dbs[1].admin.configure_namespace("langgraph/**", detect_free_text=False)
                    stores["engramstore_without_detection"] = EngramStore(
                        dbs[1], index=index)  # type: ignore[arg-type]
                got = measure({**stores, "sqlitestore": ref}, items, searches,
                              mode == "vector", batch, chunk)
                durability = _durability(conn, dbs[0])
                for name, db in zip(stores, dbs, strict=True):  # what detection did
                    got[name]["open_conflicts_per_put"] = (
                        db.storage.counts()["open_conflicts"] / items)
            finally:
                for d in dbs:
                    d.close()
                conn.close()
            theirs = got.pop("sqlitestore")
            out[mode] = {"sqlite_driver": type(conn).__module__, "sqlitestore": theirs,
                         "durability": durability, "load": os.getloadavg()}
            ref_turns = theirs.pop("put_turns_s")
            for name, mine in got.items():
                # Each turn's ratio to SqliteStore's turn on the same items, then the median: a
                # load spike during a few turns moves the mean ratio, not this one.
                turn_ratios = [a / b for a, b in zip(mine.pop("put_turns_s"), ref_turns,
                                                     strict=True)]
                out[mode][name] = mine
                suffix = name.removeprefix("engramstore")
                out[mode]["put_ratio" + suffix] = mine["put_ms"] / theirs["put_ms"]
                out[mode]["put_ratio_median_turn" + suffix] = statistics.median(turn_ratios)
                out[mode]["search_ratio" + suffix] = mine["search_ms"] / theirs["search_ms"]
            report(mode, out[mode])
    out["load_after"] = os.getloadavg()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--searches", type=int, default=200)
    ap.add_argument("--mode", choices=["kv", "vector", "both"], default="both")
    ap.add_argument("--batch", action="store_true",
                    help="load with one store.batch of all puts instead of one put per item")
    ap.add_argument("--without-detection", action="store_true",
                    help="a third store: EngramStore with free-text contradiction detection "
                    "off for its namespaces (what detection costs)")
    ap.add_argument("--chunk", type=int, default=250,
                    help="puts per turn: the two stores take turns, chunk puts at a time")
    ap.add_argument("--text", choices=["natural", "templated"], default="natural",
                    help="item texts: natural sentences, or templated near-duplicates "
                    "(contradiction detection's worst case)")
    args = ap.parse_args()
    if args.text == "natural":
        sys.path.insert(0, str(ROOT))
        from bench.scale import corpus

        TEXTS[:] = corpus(args.items)
    modes = ("kv", "vector") if args.mode == "both" else (args.mode,)

    def report(key: str, value: Any) -> None:  # partial figures survive a killed run
        print(f"# {key}: {json.dumps(value)} load={os.getloadavg()[0]:.1f}", flush=True)

    print(json.dumps(run(args.items, args.searches, modes, report, args.batch, args.chunk,
                         args.without_detection),
                     indent=2),
          flush=True)


if __name__ == "__main__":
    main()
