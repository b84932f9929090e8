"""Ingest with the default embedder: this checkout beside a baseline checkout, alternating.

    PYTHONPATH=.:src python bench/embed_ingest.py --baseline-src /tmp/main/src

``make bench-embed-ingest`` extracts main into a temporary folder for the
baseline. Every measurement runs in a fresh process whose ``engramdb`` comes
from one checkout's ``src`` (so the two embedders never share a process), new
and baseline alternating for ``--rounds`` rounds; the report gives each
figure's median and the new/baseline ratio, and the load average before and
after, since the machine is shared.

Per corpus (the first ``--n`` LoCoMo dev turns; ``--n`` natural sentences from
the docstrings of the installed Python modules, ``bench/scale.py``'s corpus):

- embed: the default embedder's ``embed`` (without its cache) on all texts in
  one call, texts/s of wall clock and per CPU-second of the process (all its
  threads);
- remember_many: memories/s into a fresh SQLite database opened with the
  default embedder (``synchronous=NORMAL``), batches of 500 drafts, embedding
  included (measured first, so the default embedder's cache is cold);
- query: one LoCoMo question at a time through ``embed`` (the recall path),
  median milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def _rate(count: int, wall: float, cpu: float) -> dict[str, float]:
    return {"per_s": count / wall, "per_cpu_s": count / cpu}


def _worker(corpus_file: Path) -> dict[str, Any]:
    import numpy as np

    import engramdb
    from engramdb.retrieval.embed import LocalEmbedder

    data = json.loads(corpus_file.read_text(encoding="utf-8"))
    texts, questions = data["texts"], data["questions"]
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:  # first: the shared cache is cold
        db = engramdb.open(Path(scratch) / "ingest.db", synchronous="NORMAL")
        try:
            db.remember_many([{"text": "warm up", "namespace": "bench/warm"}])
            wall, cpu = time.perf_counter(), time.process_time()
            for i in range(0, len(texts), 500):
                db.remember_many([{"text": t, "namespace": "bench/ingest", "layer": "episodic"}
                                  for t in texts[i:i + 500]])
            result["remember_many"] = _rate(len(texts), time.perf_counter() - wall,
                                            time.process_time() - cpu)
        finally:
            db.close()
    embedder = LocalEmbedder()  # the default embedder without its cache
    embedder.embed(texts[:32])  # load the model outside the timing
    embedder.embed(questions[:1])
    wall, cpu = time.perf_counter(), time.process_time()
    embedder.embed(texts)
    result["embed"] = _rate(len(texts), time.perf_counter() - wall, time.process_time() - cpu)
    latencies = []
    for question in questions:
        start = time.perf_counter()
        embedder.embed([question])
        latencies.append((time.perf_counter() - start) * 1000)
    result["query_ms"] = float(np.median(latencies))
    return result


def _corpora(data: Path, n: int) -> dict[str, dict[str, list[str]]]:
    sys.path.insert(0, str(ROOT))
    from bench.scale import corpus
    from engramdb.cli.benchmarks import load_locomo

    convs = load_locomo(data)
    turns = [t["text"] for c in convs for t in c.turns]
    questions = [q["question"] for c in convs for q in c.questions][:200]
    return {"LoCoMo dev turns": {"texts": turns[:n], "questions": questions},
            "natural sentences": {"texts": corpus(n, seed=5), "questions": questions}}


def _run(src: Path, corpus_file: Path) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{ROOT}")
    out = subprocess.run([sys.executable, __file__, "--worker", str(corpus_file)], env=env,
                         capture_output=True, text=True, check=True, timeout=3600)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-src", type=Path, help="the baseline checkout's src folder")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/locomo-dev"))
    parser.add_argument("--n", type=int, default=1000, help="texts per corpus")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker)))
        return 0
    if args.baseline_src is None:
        parser.error("--baseline-src is required")
    sides = {"new": ROOT / "src", "baseline": args.baseline_src.resolve()}
    print(f"# embed ingest, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} cores; load at start {_load()}", flush=True)
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        for label, corpus_data in _corpora(args.data, args.n).items():
            corpus_file = Path(scratch) / "corpus.json"
            corpus_data_json = json.dumps(corpus_data)
            corpus_file.write_text(corpus_data_json, encoding="utf-8")
            runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
            for r in range(args.rounds):
                for side, src in sides.items():
                    runs[side].append(_run(src, corpus_file))
                    print(f"{label} round {r + 1} {side}: {json.dumps(runs[side][-1])}; "
                          f"load {_load()}", flush=True)
            rows.extend(_rows(label, runs))
    print("\n| corpus | figure | new | baseline | new / baseline |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n{args.n} texts per corpus, median of {args.rounds} alternating rounds; "
          f"load at end {_load()}")
    return 0


def _rows(label: str, runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    figures = {
        "embed, texts/s wall": lambda r: r["embed"]["per_s"],
        "embed, texts per CPU-second": lambda r: r["embed"]["per_cpu_s"],
        "remember_many, memories/s wall": lambda r: r["remember_many"]["per_s"],
        "remember_many, memories per CPU-second": lambda r: r["remember_many"]["per_cpu_s"],
        "one query embedded, median ms": lambda r: r["query_ms"],
    }
    out = []
    for name, get in figures.items():
        new = statistics.median(get(r) for r in runs["new"])
        old = statistics.median(get(r) for r in runs["baseline"])
        out.append(f"| {label} | {name} | {new:,.1f} | {old:,.1f} | {new / old:.2f}x |")
    return out


if __name__ == "__main__":
    sys.exit(main())
