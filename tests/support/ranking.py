"""The candidates ``recall()`` would rank, ranked again with chosen ranking weights.

Ranking tests show a behaviour matters by switching it off over the very same candidates.
"""

from __future__ import annotations

from typing import Any

from engramdb.model import RecallFilter
from engramdb.retrieval.hybrid import ContextWeights, rank_hybrid


def rank_candidates(db: Any, namespace: str, query: str,
                    context: ContextWeights | None = None) -> list[str]:
    """The texts of ``query``'s candidates in ``namespace``, ranked with ``context``."""
    flt = RecallFilter(namespaces=(namespace,))
    n = db.config.recall_candidates
    text = db.storage.search_text(query, flt, n)
    vectors = db.storage.search_vector(db.embedder.embed([query])[0], flt, n)
    now = db.storage.head().recorded_at
    return [str(s.row["text"]) for s in rank_hybrid(query, text, vectors, now_micros=now,
                                                    k=50, context=context)]
