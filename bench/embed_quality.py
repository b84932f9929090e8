"""LoCoMo dev recall with each build of the embedder, dense only and through the engine.

    PYTHONPATH=.:src python bench/embed_quality.py [--previous DIR] [--fp32 DIR]

``make bench-embed-quality`` builds the comparison graphs with the conversion
script. For each embedder, in one process: sentence-transformers (torch, the
reference, when the ``local-torch`` extra is installed), the float32 ONNX graph
(``--fp32``), the graph shipped before (``--previous``: a folder holding its
``model.onnx`` and ``tokenizer.json``) and the shipped default, the whole
LoCoMo dev split goes through ``engramdb.evaluation.locomo.measure``, the
measurement ``engram bench locomo`` reports: every turn one episodic memory,
questions of categories 1-4, recall@k = share of evidence turns in the top k.
Reported: ``dense`` (the storage's exact vector search alone, i.e. the
embedder's own retrieval quality), ``rrf`` (BM25 and dense fused) and
``engramdb`` (the engine's default hybrid ``recall``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from engramdb.evaluation.locomo import measure
from engramdb.retrieval.embed import LocalEmbedder

KS = (5, 10, 25)


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def _recall(measured: Any, method: str, k: int) -> float:
    found = measured.found[method]["all"]
    total = measured.total["all"]
    return sum(found[c][k - 1] for c in total) / sum(total.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/locomo-dev"))
    parser.add_argument("--previous", type=Path, help="folder of the previously shipped graph")
    parser.add_argument("--fp32", type=Path, help="folder of the float32 graph")
    args = parser.parse_args()
    embedders: dict[str, Any] = {}
    if all(importlib.util.find_spec(m) for m in ("torch", "sentence_transformers")):
        from engramdb.retrieval.embed import TorchEmbedder

        embedders["sentence-transformers (torch, fp32)"] = TorchEmbedder()
    if args.fp32:
        embedders["ONNX fp32 graph"] = LocalEmbedder(model_dir=args.fp32)
    if args.previous:
        embedders["previous int8 graph (six float32 projections)"] = LocalEmbedder(
            model_dir=args.previous)
    embedders["shipped int8 graph (default)"] = LocalEmbedder()
    print(f"# embedder quality on LoCoMo dev, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
          f"; load at start {_load()}", flush=True)
    rows = []
    for label, embedder in embedders.items():
        with tempfile.TemporaryDirectory() as scratch:
            measured = measure(Path(scratch), embedder, args.data, log=lambda _m: None)
        cells = [f"{_recall(measured, method, k):.3f}"
                 for method in ("dense", "rrf", "engramdb") for k in KS]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
        print(f"{label} done; load {_load()}", flush=True)
    head = " | ".join(f"{m} @{k}" for m in ("dense", "rrf", "engramdb") for k in KS)
    print(f"\n| embedder | {head} |")
    print("|---|" + "---|" * (3 * len(KS)))
    print("\n".join(rows))
    print(f"\nload at end {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
