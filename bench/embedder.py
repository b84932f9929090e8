"""The default ONNX embedder beside the torch one, in one process: quality and speed.

    PYTHONPATH=src python bench/embedder.py --data ../shared/data/locomo-dev

Quality: dense-only retrieval on LoCoMo (every turn embedded; each question of
categories 1-4 ranks the turns of its own conversation by cosine; recall@k is
the share of evidence turns in the top k), for torch, ONNX, and torch-built
turn vectors queried with ONNX (what opening an old database does). Cosine
between the two embedders' vectors of every turn.

Speed: texts/s embedding every LoCoMo turn (wall clock, and per CPU-second of
this process, since the machine is shared), and ``remember_many`` end to end
into a fresh SQLite database. Needs the ``local-torch`` extra for the baseline.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

import engramdb
from engramdb.cli.benchmarks import CATEGORIES, load_locomo
from engramdb.retrieval.embed import LocalEmbedder, TorchEmbedder

KS = (5, 10, 20)


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def _timed_embed(embedder: Any, texts: list[str]) -> tuple[np.ndarray, float, float]:
    embedder.embed(texts[:32])  # load the model outside the timing
    wall, cpu = time.perf_counter(), time.process_time()
    vectors = embedder.embed(texts)
    return vectors, time.perf_counter() - wall, time.process_time() - cpu


def _recall(convs: list[Any], turns: dict[str, np.ndarray], questions: dict[str, np.ndarray]
            ) -> dict[Any, float]:
    found: dict[int, dict[int, int]] = {k: defaultdict(int) for k in KS}
    total: dict[int, int] = defaultdict(int)
    for conv in convs:
        ids = [t["dia_id"] for t in conv.turns]
        scores = questions[conv.sample_id] @ turns[conv.sample_id].T
        for qa, row in zip(conv.questions, scores, strict=True):
            ranked = [ids[i] for i in np.argsort(-row, kind="stable")[: max(KS)]]
            total[qa["category"]] += len(qa["evidence"])
            for k in KS:
                found[k][qa["category"]] += sum(1 for e in qa["evidence"] if e in ranked[:k])
    out: dict[Any, float] = {k: sum(found[k].values()) / sum(total.values()) for k in KS}
    for cat in CATEGORIES:
        out[("cat", cat)] = found[10][cat] / total[cat] if total[cat] else 0.0
    return out


def _remember_many(embedder: Any, texts: list[str], work: Path, label: str) -> float:
    db = engramdb.open(work / f"{label}.db", embedder=embedder, synchronous="NORMAL")
    try:
        db.remember_many([{"text": "warm up", "namespace": "bench/warm"}])
        start = time.perf_counter()
        for i in range(0, len(texts), 500):
            db.remember_many([{"text": t, "namespace": "bench/locomo", "layer": "episodic"}
                              for t in texts[i:i + 500]])
        return len(texts) / (time.perf_counter() - start)
    finally:
        db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/locomo-dev"))
    parser.add_argument("--ingest", type=int, default=1000, help="turns for remember_many")
    args = parser.parse_args()
    convs = load_locomo(args.data)
    turn_texts = [t["text"] for c in convs for t in c.turns]
    load_start = _load()
    print(f"# embedder bench, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {sys.version.split()[0]}; load at start {load_start}", flush=True)
    embedders = {"onnx": LocalEmbedder(), "torch": TorchEmbedder()}
    vectors: dict[str, dict[str, np.ndarray]] = {}
    questions: dict[str, dict[str, np.ndarray]] = {}
    speed: dict[str, tuple[float, float]] = {}
    for label, embedder in embedders.items():
        turns, wall, cpu = _timed_embed(embedder, turn_texts)
        speed[label] = (len(turn_texts) / wall, len(turn_texts) / cpu)
        print(f"{label}: {len(turn_texts)} turns in {wall:.1f} s wall, {cpu:.1f} s CPU; "
              f"load {_load()}", flush=True)
        offset, vectors[label], questions[label] = 0, {}, {}
        for conv in convs:
            vectors[label][conv.sample_id] = turns[offset:offset + len(conv.turns)]
            offset += len(conv.turns)
            questions[label][conv.sample_id] = embedder.embed(
                [q["question"] for q in conv.questions])
    cos = np.concatenate([np.sum(vectors["onnx"][c] * vectors["torch"][c], axis=1)
                          for c in vectors["onnx"]])
    rows = {
        "torch (sentence-transformers)": _recall(convs, vectors["torch"], questions["torch"]),
        "onnx int8 (default)": _recall(convs, vectors["onnx"], questions["onnx"]),
        "torch turns, onnx questions": _recall(convs, vectors["torch"], questions["onnx"]),
    }
    with tempfile.TemporaryDirectory() as scratch:
        ingest = {label: _remember_many(e, turn_texts[: args.ingest], Path(scratch), label)
                  for label, e in embedders.items()}
    n_q = sum(len(c.questions) for c in convs)
    print(f"\nLoCoMo dev, {len(convs)} conversations, {len(turn_texts)} turns, {n_q} questions"
          " of categories 1-4; dense only (cosine within the conversation)\n")
    print("| vectors | recall@5 | recall@10 | recall@20 | @10 per category 1 / 2 / 3 / 4 |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        cats = " / ".join(f"{r[('cat', c)]:.3f}" for c in CATEGORIES)
        print(f"| {name} | {r[5]:.3f} | {r[10]:.3f} | {r[20]:.3f} | {cats} |")
    print(f"\ncosine onnx vs torch over {len(cos)} turns: mean {cos.mean():.4f}, "
          f"p1 {np.percentile(cos, 1):.4f}, min {cos.min():.4f}, "
          f"share >= 0.99 {np.mean(cos >= 0.99):.3f}\n")
    print("| embedder | texts/s (wall) | texts per CPU-second | remember_many memories/s |")
    print("|---|---|---|---|")
    for label in embedders:
        print(f"| {label} | {speed[label][0]:,.0f} | {speed[label][1]:,.0f} | "
              f"{ingest[label]:,.0f} |")
    ratio = speed["onnx"][0] / speed["torch"][0]
    print(f"\nonnx / torch texts/s (wall): {ratio:.2f}x; load at end {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
