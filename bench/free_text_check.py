"""The free-text contradiction check of a LangGraph ``put`` on SQLite: its cost and what it finds.

Puts ``--items`` LangGraph items (``bench/langgraph_store.py``'s items, one
``EngramStore.put`` each, ``embedder=None``: candidates by full text) and measures
the last ``--measured`` of them: CPU per put, and the conflicts opened. Texts:

* ``natural``: docstring sentences (``bench/scale.py``), as the LangGraph benchmark.
* ``planted``: the same, with one in three of the measured items rewritten as a
  contradiction of an earlier item in its namespace (a negation, a changed number,
  a swapped antonym, or an appended "is enabled"), each pair one the heuristic judge
  calls contradicting when shown the two texts: how many does the check find?
* ``templated``: near-duplicate notes whose owners differ (detection's worst case).

Run it with another checkout's code (e.g. main's, from ``git archive``) to compare:
``--src /tmp/main/src``. ``--pairs FILE`` writes the conflicts found (pairs of
texts) as JSON, to compare two runs pair by pair. ``--without-detection`` turns
the check off (what the rest of the put costs).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_ANTONYMS = [("enabled", "disabled"), ("open", "closed"), ("true", "false"),
             ("public", "private"), ("required", "optional"), ("high", "low"), ("up", "down"),
             ("allowed", "forbidden"), ("passed", "failed"), ("present", "absent")]


def _variants(text: str, rnd: random.Random) -> list[str]:
    out = []
    m = re.search(r"\b(is|are|was|were|will|can|should|must|does|do)\b", text)
    if m:
        out.append(text[:m.end()] + " not" + text[m.end():])
    m = re.search(r"\b\d+\b", text)
    if m:
        out.append(text[:m.start()] + str(int(m.group()) + 7) + text[m.end():])
    for a, b in _ANTONYMS:
        for x, y in ((a, b), (b, a)):
            if re.search(rf"\b{x}\b", text):
                out.append(re.sub(rf"\b{x}\b", y, text, count=1))
    out.append(text.rstrip(".") + " is enabled")
    rnd.shuffle(out)
    return out


def planted(texts: list[str], measured: int, seed: int = 3) -> list[tuple[int, int]]:
    """Rewrite one in three of the last ``measured`` texts (in place) as a contradiction
    of an earlier text ten items back (the same namespace); the (earlier, new) pairs."""
    from engramdb.policy.heuristic_judge import HeuristicJudge
    from engramdb.policy.judgment import Statement

    judge, rnd, pairs = HeuristicJudge(), random.Random(seed), []
    n = len(texts)
    for i in range(n - measured, n, 3):
        for _ in range(20):
            j = rnd.randrange(0, i)
            j -= (j - i) % 10
            if j < 0:
                continue
            v = next((v for v in _variants(texts[j], rnd) if v != texts[j] and judge.judge(
                Statement(v), Statement(texts[j])).verdict == "contradiction"), None)
            if v is not None:
                texts[i] = v
                pairs.append((j, i))
                break
    return pairs


def _conflicts(path: Path) -> set[frozenset[str]]:
    """Every conflict in the database file, as the texts of its two memories."""
    conn = sqlite3.connect(path)
    try:
        text = dict(conn.execute("SELECT id, text FROM memories"))
        return {frozenset(text[m["id"]] for m in json.loads(mems))
                for (mems,) in conn.execute("SELECT memories FROM conflicts")}
    finally:
        conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--measured", type=int, default=2_000)
    ap.add_argument("--text", choices=("natural", "planted", "templated"), default="natural")
    ap.add_argument("--src", default=str(ROOT / "src"), help="the engramdb source tree to run")
    ap.add_argument("--pairs", help="write the conflicts found (text pairs) to this JSON file")
    ap.add_argument("--without-detection", action="store_true")
    args = ap.parse_args()
    sys.path[:0] = [args.src, str(ROOT / "bench"), str(ROOT)]
    import langgraph_store as lg

    import engramdb
    from bench.scale import corpus
    from engramdb.integrations.langgraph import EngramStore
    from engramdb.policy import heuristic_judge

    pairs: list[tuple[int, int]] = []
    if args.text != "templated":
        lg.TEXTS[:] = corpus(args.items)
        if args.text == "planted":
            pairs = planted(lg.TEXTS, args.measured)
    items = [lg.item(i) for i in range(args.items)]
    first = args.items - args.measured
    with tempfile.TemporaryDirectory() as tmp:
        db = engramdb.open(Path(tmp) / "e.db", embedder=None)
        try:
            if args.without_detection:
                db.admin.configure_namespace("langgraph/**", detect_free_text=False)
            store = EngramStore(db)
            for ns, key, value in items[:first]:
                store.put(ns, key, value)
            load = os.getloadavg()[0]
            cpu, wall = time.process_time(), time.perf_counter()
            for ns, key, value in items[first:]:
                store.put(ns, key, value)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        finally:
            db.close()
        found = _conflicts(Path(tmp) / "e.db")
    heuristic_judge._parse.cache_clear()
    texts = lg.TEXTS or [v["text"] for _, _, v in items]
    out = {"src": args.src, "text": args.text, "items": args.items, "measured": args.measured,
           "detection": not args.without_detection,
           "cpu_ms_per_put": round(cpu / args.measured * 1000, 3),
           "wall_ms_per_put": round(wall / args.measured * 1000, 3),
           "conflicts": len(found), "load_before": load, "load_after": os.getloadavg()[0]}
    if pairs:
        out["planted"] = len(pairs)
        out["planted_found"] = sum(frozenset((texts[a], texts[b])) in found for a, b in pairs)
    if args.pairs:
        Path(args.pairs).write_text(json.dumps(sorted(sorted(p) for p in found)))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
