"""LoCoMo recall@k of EngramDB's recall beside its baselines (``engram bench locomo``).

Every turn of every conversation is one episodic memory (``'<speaker>: <text>'``,
valid from its session's time, in its session, one namespace per conversation)
and every question of categories 1-4 is asked within its conversation. Four
rankings are measured in the same run over the same database:

- ``bm25``: the storage's full-text search alone (SQLite FTS5 BM25);
- ``dense``: the storage's exact vector search alone (the database's embedder);
- ``rrf``: both fused by reciprocal rank (:func:`engramdb.retrieval.rank.fuse`);
- ``engramdb``: ``recall()`` with the engine's defaults, the figure that counts.

Conversations are split by name: the first half (rounded up) is where the
ranking's few constants were chosen (the *tuning* half), the rest is reported
separately as the *evaluation* half, so a reader sees whether the method
generalises. Embeddings may be cached on disk between runs (``cache``).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from engramdb.model import RecallFilter
from engramdb.retrieval.rank import fuse

__all__ = ["CATEGORIES", "DIRECT", "METHODS", "Conversation", "Measured", "load_locomo", "measure"]

Log = Callable[[str], None]
METHODS = ("bm25", "dense", "rrf", "engramdb")
# recall() asked for exactly k hits: its candidate pool grows with k (3k per retriever).
DIRECT = {10: "engramdb_k10", 25: "engramdb_k25"}
SPLITS = ("tuning", "evaluation", "all")
MAX_K = 50


class _EmbeddingCache:
    """Vectors by (embedder, text) in one .npz file; nothing cached without a folder.

    It is the database's embedder too (same ``name`` and ``dimension`` as the one it
    wraps: the same vectors), so the texts recall embeds itself, the question and its
    first-person form, come from the cache on a second run.
    """

    def __init__(self, embedder: Any, folder: Path | None) -> None:
        self.embedder = embedder
        self.path = None if folder is None else (
            folder / f"locomo-{hashlib.sha256(str(embedder.name).encode()).hexdigest()[:12]}.npz")
        self.vectors: dict[str, np.ndarray] = {}
        if self.path is not None and self.path.exists():
            with np.load(self.path) as data:
                self.vectors = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))

    @property
    def name(self) -> str:
        return str(self.embedder.name)

    @property
    def dimension(self) -> int:
        return int(self.embedder.dimension)

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if self._key(t) not in self.vectors))
        for i in range(0, len(todo), 256):
            chunk = todo[i:i + 256]
            for text, v in zip(chunk, np.asarray(self.embedder.embed(chunk)), strict=True):
                self.vectors[self._key(text)] = np.asarray(v, dtype=np.float32)
        return np.stack([self.vectors[self._key(t)] for t in texts])

    def save(self) -> None:
        if self.path is not None and self.vectors:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            keys = list(self.vectors)
            np.savez(self.path, keys=np.array(keys),
                     vectors=np.stack([self.vectors[k] for k in keys]))


def _ranked_ids(hits: Sequence[tuple[dict[str, Any], float]]) -> list[str]:
    return [str((row.get("metadata") or {}).get("dia_id")) for row, _ in hits]


def _ask(db: Any, ns: str, question: str, qv: np.ndarray, now: int
         ) -> tuple[dict[str, list[str]], float]:
    flt = RecallFilter(namespaces=(ns,), layers=("episodic",))
    n = max(db.config.recall_candidates, MAX_K * 3)
    text = db.storage.search_text(question, flt, n)
    dense = db.storage.search_vector(qv, flt, n)
    rrf = fuse(text, dense, now_micros=now, k=MAX_K)
    # recall() embeds the question itself, as a user's call does (a given query_embedding
    # is searched as given: no first-person form); the embedder is the disk cache.
    t0 = time.perf_counter()
    result = db.recall(question, namespace=ns, k=MAX_K, layers=["episodic"])
    took = time.perf_counter() - t0
    direct = {name: [str(h.memory.metadata.get("dia_id")) for h in db.recall(
        question, namespace=ns, k=k, layers=["episodic"]).hits]
        for k, name in DIRECT.items()}
    return {**direct,
        "bm25": _ranked_ids(text)[:MAX_K],
        "dense": _ranked_ids(dense)[:MAX_K],
        "rrf": [str(s.row["metadata"].get("dia_id")) for s in rrf],
        "engramdb": [str(h.memory.metadata.get("dia_id")) for h in result.hits],
    }, took


def measure(work: Path, embedder: Any, folder: Path, *,
                       conversations: int | None = None, questions: int | None = None,
                       max_turns: int | None = None, cache: Path | None = None,
                       log: Log = print) -> Measured:
    """recall@k (k = 1..50) of each method, per split and category, in one run.

    ``conversations``, ``questions`` and ``max_turns`` cut the work for a smoke
    run; with ``max_turns`` only questions whose evidence was ingested are asked.
    Embeddings are kept in ``cache`` (a folder) between runs when given.
    """
    import engramdb

    convs: list[Conversation] = load_locomo(folder)[:conversations]
    if max_turns is not None:
        for conv in convs:
            conv.turns = conv.turns[:max_turns]
            kept = {t["dia_id"] for t in conv.turns}
            conv.questions = [q for q in conv.questions if set(q["evidence"]) <= kept]
    tuning = {c.sample_id for c in convs[:(len(convs) + 1) // 2]}
    vectors = _EmbeddingCache(embedder, cache)
    # found[method][split][category][k-1]: evidence turns found in the top k
    found: dict[str, dict[str, dict[int, list[int]]]] = {
        m: {s: defaultdict(lambda: [0] * MAX_K) for s in SPLITS}
        for m in (*METHODS, *DIRECT.values())}
    total: dict[str, dict[int, int]] = {s: defaultdict(int) for s in SPLITS}
    asked: dict[str, dict[int, int]] = {s: defaultdict(int) for s in SPLITS}
    latency: list[float] = []
    db = engramdb.open(work / "locomo-at-k.db", embedder=vectors, synchronous="NORMAL")
    try:
        for conv in convs:
            ns = f"locomo/{conv.sample_id.lower()}"
            log(f"locomo: {len(conv.turns)} turns, {len(conv.questions[:questions])} "
                f"questions of {conv.sample_id}")
            turn_vectors = vectors.embed([t["text"] for t in conv.turns])
            db.remember_many([
                {"text": t["text"], "namespace": ns, "layer": "episodic",
                 "valid_from": t["valid_from"], "session": t["session"],
                 "metadata": {"dia_id": t["dia_id"]}, "embedding": v}
                for t, v in zip(conv.turns, turn_vectors, strict=True)])
            qs = conv.questions[:questions]
            q_vectors = (vectors.embed([q["question"] for q in qs]) if qs
                         else np.zeros((0, 1), dtype=np.float32))
            now = db.storage.head().recorded_at
            split = "tuning" if conv.sample_id in tuning else "evaluation"
            for qa, qv in zip(qs, q_vectors, strict=True):
                ranked, took = _ask(db, ns, qa["question"], qv, now)
                latency.append(took)
                cat = qa["category"]
                for s in (split, "all"):
                    total[s][cat] += len(qa["evidence"])
                    asked[s][cat] += 1
                for method, ids in ranked.items():
                    position = {d: i for i, d in reversed(list(enumerate(ids)))}
                    for e in qa["evidence"]:
                        if e in position:
                            for s in (split, "all"):
                                cells = found[method][s][cat]
                                for k in range(position[e], MAX_K):
                                    cells[k] += 1
    finally:
        db.close()
        vectors.save()
    return Measured(convs, tuning, found, total, asked, latency)


_EVIDENCE = re.compile(r"^D:?(\d+):(\d+)$")
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}


@dataclass
class Conversation:
    sample_id: str
    turns: list[dict[str, Any]]  # text, dia_id, session, valid_from
    questions: list[dict[str, Any]]  # question, category, evidence (list of dia_ids)
    dropped_evidence: int = 0


def _session_time(text: str) -> datetime:
    return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)


def _evidence(raw: Sequence[str]) -> list[str]:
    out: list[str] = []
    for item in raw:
        for part in re.split(r"[;,\s]+", str(item)):
            m = _EVIDENCE.match(part.strip())
            if m:
                dia = f"D{int(m.group(1))}:{int(m.group(2))}"
                if dia not in out:
                    out.append(dia)
    return out


def load_locomo(folder: Path) -> list[Conversation]:
    """Every conversation in ``folder`` (the LoCoMo JSON files), read in place."""
    out = []
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        conv = data.get("conversation", data)
        turns: list[dict[str, Any]] = []
        for key in sorted((k for k in conv if re.fullmatch(r"session_\d+", k)),
                          key=lambda k: int(k.split("_")[1])):
            when = _session_time(conv[f"{key}_date_time"])
            for turn in conv[key]:
                text = f"{turn['speaker']}: {turn['text']}"
                if turn.get("blip_caption"):
                    text += f" [shares a photo: {turn['blip_caption']}]"
                turns.append({"text": text, "dia_id": turn["dia_id"], "session": key,
                              "valid_from": when})
        known = {t["dia_id"] for t in turns}
        questions, dropped = [], 0
        for qa in data["qa"]:
            if qa.get("category") not in CATEGORIES:
                continue
            ev = _evidence(qa.get("evidence", []))
            dropped += sum(1 for e in ev if e not in known)
            ev = [e for e in ev if e in known]
            if ev:
                questions.append({"question": qa["question"], "category": qa["category"],
                                  "evidence": ev})
        out.append(Conversation(data.get("sample_id", path.stem), turns, questions, dropped))
    return out


@dataclass
class Measured:
    """Counts behind every recall@k figure of one run."""

    conversations: list[Conversation]
    tuning: set[str]
    # found[method][split][category][k - 1]: evidence turns found in the top k
    found: dict[str, dict[str, dict[int, list[int]]]]
    total: dict[str, dict[int, int]]  # evidence turns per split and category
    asked: dict[str, dict[int, int]]  # questions per split and category
    latency: list[float] = field(default_factory=list)  # recall() seconds (query embedded)

    def recall_at(self, method: str, split: str, categories: Sequence[int], k: int
                  ) -> float | None:
        """Share of the evidence turns of ``categories`` found in the top ``k``."""
        n = sum(self.total[split].get(c, 0) for c in categories)
        found = self.found[method][split]
        return sum(found[c][k - 1] for c in categories if c in found) / n if n else None

