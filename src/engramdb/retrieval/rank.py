"""Fusion of ranked candidate lists into one scored, explained ranking.

Each retriever (full text, vectors) yields its own ranked list. They are
fused by reciprocal rank (RRF, Cormack et al. 2009), which needs no score
calibration between retrievers, and then blended with recency (exponential
decay by age at the read point), importance and confidence. Every hit keeps
the parts of its score in ``why``, so a reader can see why it ranked there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FusionWeights", "ScoredRow", "blend", "blended", "fuse", "gather", "top"]

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class FusionWeights:
    """How the fused score is built; tuned by the retrieval benchmark."""

    rrf_k: float = 60.0
    text: float = 1.0
    vector: float = 1.0
    relevance: float = 0.8
    recency: float = 0.1
    importance: float = 0.1
    half_life_days: float = 30.0


@dataclass(frozen=True, slots=True)
class ScoredRow:
    row: Row
    score: float
    why: dict[str, float]


def fuse(
    text_hits: Sequence[tuple[Row, float]],
    vector_hits: Sequence[tuple[Row, float]],
    *,
    now_micros: int,
    k: int,
    weights: FusionWeights | None = None,
) -> list[ScoredRow]:
    """Fuse two ranked lists into the top ``k`` rows.

    Args:
        text_hits: full-text hits, best first, with their relevance score.
        vector_hits: vector hits, best first, with their cosine similarity.
        now_micros: the read point's time, for recency.
        k: how many rows to return.
        weights: fusion weights; defaults to :class:`FusionWeights()`.

    Returns:
        Rows sorted by descending score (ties broken by newer, then id).
    """
    w = weights or FusionWeights()
    rows, parts = gather(text_hits, vector_hits)
    for p in parts.values():
        p["rrf"] = (w.text / (w.rrf_k + p["text_rank"]) if "text_rank" in p else 0.0) + (
            w.vector / (w.rrf_k + p["vector_rank"]) if "vector_rank" in p else 0.0)
    best_possible = (w.text + w.vector) / (w.rrf_k + 1)
    out = [blend(rows[key], p["rrf"] / best_possible, p, now_micros, w)
           for key, p in parts.items()]
    return top(out, k)


def gather(text_hits: Sequence[tuple[Row, float]], vector_hits: Sequence[tuple[Row, float]]
           ) -> tuple[dict[tuple[str, int], Row], dict[tuple[str, int], dict[str, float]]]:
    """The union of both lists by (id, version), each with its ranks and raw scores."""
    rows: dict[tuple[str, int], Row] = {}
    parts: dict[tuple[str, int], dict[str, float]] = {}
    for rank_name, raw_name, hits in (("text_rank", "text_score", text_hits),
                                      ("vector_rank", "vector_similarity", vector_hits)):
        for rank, (row, raw) in enumerate(hits, start=1):
            key = (str(row["id"]), int(row["version"]))
            p = parts.get(key)
            if p is None:
                rows[key] = row
                p = parts[key] = {}
            p[rank_name] = float(rank)
            p[raw_name] = float(raw)
    return rows, parts


def blend(row: Row, relevance: float, why: dict[str, float], now_micros: int,
          w: FusionWeights) -> ScoredRow:
    """A row's final score: relevance in [0, 1] blended with recency and importance."""
    score, recency, importance = blended(row, relevance, now_micros, w)
    parts = dict(why)
    parts.update(relevance=relevance, recency=recency, importance=importance)
    return ScoredRow(row, score, parts)


def blended(row: Row, relevance: float, now_micros: int, w: FusionWeights
            ) -> tuple[float, float, float]:
    """(score, recency, importance) of a row whose relevance is ``relevance``."""
    half_life = w.half_life_days * 86_400 * 1_000_000
    age = max(0, now_micros - int(row["recorded_at"]))
    recency = math.exp(-math.log(2) * age / half_life) if half_life > 0 else 0.0
    importance = float(row.get("importance") or 0.0)
    return w.relevance * relevance + w.recency * recency + w.importance * importance, \
        recency, importance


def top(scored: list[ScoredRow], k: int) -> list[ScoredRow]:
    """The best ``k`` by descending score (ties broken by newer, then id)."""
    scored.sort(key=lambda s: (-s.score, -int(s.row["recorded_at"]), str(s.row["id"])))
    return scored[:k]
