"""Quality of the contradiction judge on the hand-labelled pairs.

Prints precision, recall and F1 for the label "contradiction" and a confusion
matrix (rows: gold label, columns: verdict) for :class:`HeuristicJudge`.
``run()`` returns the same numbers as a dict for ``engram bench``.

    python bench/judge_quality.py [--misses]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from engramdb.policy.judge import VERDICTS, HeuristicJudge, Judge, Statement

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "contradiction_pairs.jsonl"


def load_pairs(path: Path = DATA) -> list[dict[str, str]]:
    """The labelled pairs, one JSON object per line."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def run(judge: Judge | None = None, path: Path = DATA) -> dict[str, Any]:
    """Judge every labelled pair and score the verdicts.

    Args:
        judge: The judge to measure; ``HeuristicJudge()`` by default.
        path: JSONL file with ``a``, ``b``, ``label`` and ``note`` per line.

    Returns:
        ``precision``, ``recall``, ``f1`` (label "contradiction"), ``accuracy``
        (all three labels), ``confusion`` (gold -> verdict -> count), ``pairs``,
        ``detector`` and ``misses`` (the pairs judged wrongly, with reasons).
    """
    judge = judge or HeuristicJudge()
    pairs = load_pairs(path)
    confusion = {gold: dict.fromkeys(VERDICTS, 0) for gold in VERDICTS}
    misses = []
    for pair in pairs:
        got = judge.judge(Statement(pair["a"]), Statement(pair["b"]))
        confusion[pair["label"]][got.verdict] += 1
        if got.verdict != pair["label"]:
            misses.append({**pair, "verdict": got.verdict, "reason": got.reason})
    tp = confusion["contradiction"]["contradiction"]
    predicted = sum(row["contradiction"] for row in confusion.values())
    actual = sum(confusion["contradiction"].values())
    precision = tp / predicted if predicted else 0.0
    recall = tp / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    correct = sum(confusion[label][label] for label in VERDICTS)
    return {
        "detector": judge.name,
        "pairs": len(pairs),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "accuracy": round(correct / len(pairs), 4) if pairs else 0.0,
        "confusion": confusion,
        "misses": misses,
    }


def main(argv: list[str]) -> int:
    result = run()
    print(f"judge {result['detector']} on {result['pairs']} labelled pairs")
    print(
        f"contradiction  precision {result['precision']:.3f}  recall {result['recall']:.3f}"
        f"  F1 {result['f1']:.3f}   (3-way accuracy {result['accuracy']:.3f})"
    )
    print()
    print(f"{'gold/verdict':<16}" + "".join(f"{v:>15}" for v in VERDICTS))
    for gold in VERDICTS:
        print(f"{gold:<16}" + "".join(f"{result['confusion'][gold][v]:>15}" for v in VERDICTS))
    if "--misses" in argv:
        print()
        for miss in result["misses"]:
            print(
                f"[{miss['label']} -> {miss['verdict']}] {miss['a']} | {miss['b']}\n"
                f"    {miss['reason']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
