"""Where the local embedder's time goes: runtime options, batching, quantisation.

    PYTHONPATH=src python bench/embedder_options.py --fp32 DIR [--int8-full DIR]
        [--int8-ffn32 DIR]

Build the comparison graphs first with the conversion script (needs torch):
``python tools/build_minilm_onnx.py --precision fp32 --out DIR --fixture /tmp/x.npz``
(and ``--precision int8-full``, ``--precision int8-ffn32``: the graph shipped
before branch ``embed2``, all six feed-forward output projections float32).
The shipped int8 graph and the shipped ``LocalEmbedder`` run in the same
process as the baseline.

For each graph and way of running it: texts/s over LoCoMo dev turns (wall
clock, and per CPU-second of this process: the machine is shared), cosine of
every turn's vector to the float32 graph run one text at a time, and dense-only
LoCoMo recall@10 (the same measure as ``bench/embedder.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.embedder import _load, _recall
from engramdb.cli.benchmarks import load_locomo
from engramdb.retrieval.embed import LocalEmbedder
from engramdb.retrieval.embed_onnx import MODELS_DIR

Runner = Callable[[list[str]], np.ndarray]


def _session(path: Path, threads: int, level: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path / "model.onnx"), sess_options=options,
                                providers=["CPUExecutionProvider"])


def _runner(model_dir: Path, threads: int, batch: int, max_tokens: int,
            level: str = "ORT_ENABLE_ALL") -> Runner:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(MODELS_DIR / "all-MiniLM-L6-v2" / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_tokens)
    session = _session(model_dir, threads, level)

    def run(texts: list[str]) -> np.ndarray:
        encoded = [tokenizer.encode(t).ids for t in texts]
        # Length-sorted batches: each batch pads only to its own longest text.
        order = np.argsort([len(e) for e in encoded], kind="stable")
        out = np.empty((len(texts), 384), dtype=np.float32)
        for start in range(0, len(texts), batch):
            rows = order[start:start + batch]
            width = max(len(encoded[i]) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for r, i in enumerate(rows):
                ids[r, :len(encoded[i])] = encoded[i]
                mask[r, :len(encoded[i])] = 1
            (hidden,) = session.run(["last_hidden_state"],
                                    {"input_ids": ids, "attention_mask": mask})
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            out[rows] = pooled / np.maximum(
                np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out

    return run


def _tokenizer_only(*, batched: bool) -> Runner:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(MODELS_DIR / "all-MiniLM-L6-v2" / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(256)

    def run(texts: list[str]) -> np.ndarray:
        if batched:
            tokenizer.encode_batch(texts)
        else:
            for text in texts:
                tokenizer.encode(text)
        return np.zeros((len(texts), 384), dtype=np.float32)

    return run


def _measure(run: Runner, texts: list[str]) -> tuple[np.ndarray, float, float]:
    run(texts[:16])  # warm-up outside the timing
    wall, cpu = time.perf_counter(), time.process_time()
    vectors = run(texts)
    return vectors, len(texts) / (time.perf_counter() - wall), len(texts) / (
        time.process_time() - cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/locomo-dev"))
    parser.add_argument("--fp32", type=Path, required=True, help="folder of the fp32 graph")
    parser.add_argument("--int8-full", type=Path, help="folder of the fully int8 graph")
    parser.add_argument("--int8-ffn32", type=Path, help="folder of the previous int8 graph")
    parser.add_argument("--turns", type=int, default=0, help="speed on the first N turns only")
    parser.add_argument("--speed-only", action="store_true",
                        help="skip cosine and recall; add the tokenizer alone as a variant")
    args = parser.parse_args()
    convs = load_locomo(args.data)
    texts = [t["text"] for c in convs for t in c.turns]
    timed = texts[: args.turns] if args.turns else texts
    shipped = MODELS_DIR / "all-MiniLM-L6-v2"
    print(f"# embedder options, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} cores; load at start {_load()}", flush=True)
    previous = LocalEmbedder()
    variants: dict[str, Runner] = {
        f"shipped LocalEmbedder (int8, {previous.num_threads} texts side by side)":
            previous.embed,
        "fp32, one text per run, 1 thread": _runner(args.fp32, 1, 1, 256),
        "fp32, length-sorted batches of 16, 1 thread": _runner(args.fp32, 1, 16, 256),
        "int8, one text per run, 1 thread": _runner(shipped, 1, 1, 256),
        "int8, one text per run, 1 thread, basic graph optimisation":
            _runner(shipped, 1, 1, 256, "ORT_ENABLE_BASIC"),
        "int8, length-sorted batches of 16, 1 thread": _runner(shipped, 1, 16, 256),
        "int8, length-sorted batches of 64, 2 threads": _runner(shipped, 2, 64, 256),
        "int8, one text per run, truncated at 128 word pieces": _runner(shipped, 1, 1, 128),
    }
    if args.int8_ffn32:
        variants["previous int8 graph (six float32 projections), one text per run, 1 thread"] = (
            _runner(args.int8_ffn32, 1, 1, 256))
    if args.int8_full:
        variants["int8-full, one text per run, 1 thread"] = _runner(args.int8_full, 1, 1, 256)
        variants["int8-full, length-sorted batches of 16, 1 thread"] = _runner(
            args.int8_full, 1, 16, 256)
    if args.speed_only:
        variants["tokenizer alone, one text at a time"] = _tokenizer_only(batched=False)
        variants["tokenizer alone, encode_batch"] = _tokenizer_only(batched=True)
    reference = None if args.speed_only else _runner(args.fp32, 1, 1, 256)(texts)
    print("\n| variant | texts/s wall | texts per CPU-second | vs shipped (CPU-s) | "
          "cosine to fp32 mean / min | dense recall@10 |")
    print("|---|---|---|---|---|---|")
    base = 0.0
    for label, run in variants.items():
        _, wall, per_cpu = _measure(run, timed)
        base = base or per_cpu
        if reference is None:
            print(f"| {label} | {wall:,.0f} | {per_cpu:,.0f} | {per_cpu / base:.2f}x | - | - |",
                  flush=True)
            continue
        vectors = run(texts)
        cos = np.sum(vectors * reference, axis=1)
        turns, questions, offset = {}, {}, 0
        for conv in convs:
            turns[conv.sample_id] = vectors[offset:offset + len(conv.turns)]
            offset += len(conv.turns)
            questions[conv.sample_id] = run([q["question"] for q in conv.questions])
        recall = _recall(convs, turns, questions)[10]
        print(f"| {label} | {wall:,.0f} | {per_cpu:,.0f} | {per_cpu / base:.2f}x | "
              f"{cos.mean():.4f} / {cos.min():.4f} | {recall:.3f} |", flush=True)
    print(f"\n{len(timed)} LoCoMo dev turns timed (mean "
          f"{np.mean([len(t.split()) for t in timed]):.0f} words); load at end {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
