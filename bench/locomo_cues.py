"""LoCoMo ranking experiments in seconds: every candidate's cues, re-weighted offline.

``engram bench locomo`` takes a minute per idea. This script builds the same databases
once (conversation i asked on a database holding conversations 1..i, as the bench does,
so the full-text statistics match), asks ``recall(k=25)`` of every question as a user
would, and keeps each candidate of the final ranking with its cues (lexical, semantic,
fulltext, speaker, length, when, dates, neighbour, session), captured around the
engine's own ``rank_hybrid``. Any set of cue weights is then scored offline by
re-ranking the same candidates: with the default weights it reads exactly what the
bench reads (recall@10 / @25 per half and category). Candidates a different ranking
would draw (the session candidates follow the first ranking) are not re-drawn.

    PYTHONPATH=src python bench/locomo_cues.py [--data DIR] [--cache DIR] [--work DIR]
        [--weights lexical=0.045 ...] [--ascent]

--weights: score these cue weights beside the defaults, with a paired bootstrap of the
difference per half (95% interval over questions). --ascent: coordinate ascent of the
weights on the tuning half only ((@10 + @25) / 2; steps x0.5 / x0.7 / x1.4 / x2; a step
must gain 0.002), then the held-out half read once.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
from contextlib import closing
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

import engramdb
from engramdb.engine import recall as recall_module
from engramdb.evaluation.locomo import _EmbeddingCache, load_locomo
from engramdb.retrieval.embed import default_embedder
from engramdb.retrieval.hybrid import ContextWeights

CUES = ("lexical", "semantic", "fulltext", "speaker", "length", "when", "dates", "neighbour",
        "session")
WHY = {"when": "states_time", "dates": "date"}
K = 25


def build_snapshots(work: Path, convs: list[Any], vectors: Any) -> None:
    """``work/<i>.db`` holding conversations 0..i, each built once (as the bench asks them)."""
    if (work / f"{len(convs) - 1}.db").exists():
        return
    work.mkdir(parents=True, exist_ok=True)
    building = work / "building.db"
    for i, conv in enumerate(convs):
        db = engramdb.open(building, embedder=vectors, synchronous="NORMAL")
        turn_vectors = vectors.embed([t["text"] for t in conv.turns])
        db.remember_many([
            {"text": t["text"], "namespace": f"locomo/{conv.sample_id.lower()}",
             "layer": "episodic", "valid_from": t["valid_from"], "session": t["session"],
             "metadata": {"dia_id": t["dia_id"]}, "embedding": v}
            for t, v in zip(conv.turns, turn_vectors, strict=True)])
        db.close()
        shutil.copy(building, work / f"{i}.db")
    for p in work.glob("building.db*"):
        p.unlink()


def capture(folder: Path, cache: Path | None, work: Path) -> list[dict[str, Any]]:
    """Every question's final candidates (memory id, cue values) and its evidence."""
    convs = load_locomo(folder)
    vectors = _EmbeddingCache(default_embedder(), cache)
    build_snapshots(work, convs, vectors)
    tuning = {c.sample_id for c in convs[:(len(convs) + 1) // 2]}
    original = recall_module.rank_hybrid
    seen: dict[str, Any] = {}

    def ranked(query: str, text_hits: Any, vector_hits: Any, *, now_micros: int, k: int,
               weights: Any = None, context: Any = None) -> Any:
        if k == K:  # the final ranking (the session seeds ask for fewer)
            def run(cw: ContextWeights | None) -> Any:
                return original(query, text_hits, vector_hits, now_micros=now_micros,
                                k=10**9, weights=weights, context=cw)
            full = run(context)
            near = {str(s.row["id"]): s.why["context"]
                    for s in run(ContextWeights(neighbour=1.0, session=0.0))}
            wide = {str(s.row["id"]): s.why["context"]
                    for s in run(ContextWeights(neighbour=0.0, session=1.0))}
            seen["rows"] = [
                (str(s.row["id"]), [float(s.why.get(WHY.get(c, c), 0.0)) for c in CUES[:7]]
                 + [near[str(s.row["id"])], wide[str(s.row["id"])]]) for s in full]
        return original(query, text_hits, vector_hits, now_micros=now_micros, k=k,
                        weights=weights, context=context)

    recall_module.rank_hybrid = ranked  # type: ignore[assignment]
    out = []
    try:
        for i, conv in enumerate(convs):
            target = work / "asking.db"
            shutil.copy(work / f"{i}.db", target)  # recall writes its read audit
            db = engramdb.open(target, embedder=vectors, synchronous="NORMAL")
            ns = f"locomo/{conv.sample_id.lower()}"
            with closing(sqlite3.connect(work / f"{i}.db")) as conn:  # read-only look-up
                dia = {str(m): str(json.loads(meta)["dia_id"]) for m, meta in conn.execute(
                    "SELECT id, metadata FROM memories WHERE namespace = ?", (ns,))}
            for qa in conv.questions:
                hits = db.recall(qa["question"], namespace=ns, k=K, layers=["episodic"]).hits
                ids = [r for r, _ in seen["rows"]]
                assert ids[:K] == [str(h.memory.id) for h in hits]
                out.append({"tuning": conv.sample_id in tuning, "category": qa["category"],
                            "evidence": qa["evidence"], "ids": ids,
                            "dia": [dia[r] for r in ids], "cues": [c for _, c in seen["rows"]]})
            db.close()
            for p in work.glob("asking.db*"):
                p.unlink()
    finally:
        recall_module.rank_hybrid = original  # type: ignore[assignment]
        vectors.save()
    return out


def found(questions: list[dict[str, Any]], weights: dict[str, float]) -> np.ndarray:
    """Per question: tuning (1/0), category, evidence found at 10 and at 25, evidence."""
    w = np.array([weights[c] for c in CUES])
    rows = []
    for q in questions:
        score = np.array(q["cues"]) @ w
        order = np.lexsort((np.array(q["ids"]), -score))  # the engine's tie-break: id
        evidence = set(q["evidence"])
        hit = np.array([d in evidence for d in q["dia"]])
        rows.append((q["tuning"], q["category"], hit[order[:10]].sum(), hit[order[:25]].sum(),
                     len(q["evidence"])))
    return np.array(rows, dtype=float)


def report(per: np.ndarray, label: str) -> None:
    for half, mask in (("tuning", per[:, 0] == 1), ("held-out", per[:, 0] == 0),
                       ("all", per[:, 0] >= 0)):
        cells = []
        for col in (2, 3):
            part = per[mask]
            by = [part[part[:, 1] == c] for c in (1, 2, 3, 4)]
            cells.append(f"{part[:, col].sum() / part[:, 4].sum():.3f} (" + " / ".join(
                f"{b[:, col].sum() / b[:, 4].sum():.2f}" for b in by) + ")")
        print(f"{label:10s} {half:8s} @10 {cells[0]}  @25 {cells[1]}")


def bootstrap(base: np.ndarray, other: np.ndarray, label: str) -> None:
    rng = np.random.default_rng(0)
    for half, mask in (("tuning", base[:, 0] == 1), ("held-out", base[:, 0] == 0)):
        b, o = base[mask], other[mask]
        for k, col in ((10, 2), (25, 3)):
            draw = rng.integers(0, len(b), (2000, len(b)))
            diffs = (o[draw, col].sum(1) - b[draw, col].sum(1)) / b[draw, 4].sum(1)
            gain = (o[:, col].sum() - b[:, col].sum()) / b[:, 4].sum()
            low, high = np.percentile(diffs, 2.5), np.percentile(diffs, 97.5)
            print(f"{label:10s} {half:8s} @{k} {gain:+.4f}  95% [{low:+.4f}, {high:+.4f}]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/locomo-dev")
    ap.add_argument("--cache", default=None, help="embedding cache folder (as the bench's)")
    ap.add_argument("--work", default="/tmp/locomo-cues", help="databases and the cue dump")
    ap.add_argument("--weights", nargs="*", default=[])
    ap.add_argument("--ascent", action="store_true")
    a = ap.parse_args()
    work = Path(a.work)
    dump = work / "cues.json"
    if not dump.exists():
        work.mkdir(parents=True, exist_ok=True)
        dump.write_text(json.dumps(capture(Path(a.data), a.cache and Path(a.cache), work)))
    questions = json.loads(dump.read_text())
    defaults = {f.name: float(getattr(ContextWeights(), f.name)) for f in fields(ContextWeights)
                if f.name in CUES}
    base = found(questions, defaults)
    report(base, "defaults")
    if a.weights:
        chosen = dict(defaults)
        chosen.update({k: float(v) for k, v in (s.split("=", 1) for s in a.weights)})
        other = found(questions, chosen)
        report(other, "given")
        bootstrap(base, other, "given")
    if a.ascent:
        def objective(w: dict[str, float]) -> float:
            t = found(questions, w)
            t = t[t[:, 0] == 1]
            return float((t[:, 2].sum() + t[:, 3].sum()) / (2 * t[:, 4].sum()))
        w, best = dict(defaults), objective(defaults)
        for _ in range(3):
            moved = False
            for cue in CUES:
                for factor in (0.5, 0.7, 1.4, 2.0):
                    trial = {**w, cue: w[cue] * factor}
                    score = objective(trial)
                    if score > best + 0.002:
                        w, best, moved = trial, score, True
                        print(f"ascent: {cue} x{factor} -> {w[cue]:.3f}, tuning {score:.4f}")
            if not moved:
                break
        other = found(questions, w)
        report(other, "ascent")
        bootstrap(base, other, "ascent")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
