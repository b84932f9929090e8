"""Recall: hybrid search over the namespaces a filter allows, fused and marked.

The one place a query becomes hits: full-text and vector candidates from
storage (filtered inside the backend's query), ranked together with session
context, recency and importance (:mod:`engramdb.retrieval.hybrid`), marked ``contested`` where an
open conflict involves them, with a receipt naming the exact versions
returned. ``recall``, ``context`` and ``knowledge`` all come through here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from engramdb import telemetry
from engramdb.codec import check_chars, sha256_hex
from engramdb.engine.inbox import ConflictInbox
from engramdb.engine.resources import Resources
from engramdb.engine.rows import check_embedding, memory_from_row
from engramdb.errors import InvalidInput
from engramdb.model import Hit, RecallFilter, RecallResult, Receipt, ReceiptItem
from engramdb.retrieval.first_person import first_person, speakers
from engramdb.retrieval.hybrid import rank_hybrid
from engramdb.retrieval.rank import ScoredRow
from engramdb.storage.base import SearchAhead

if TYPE_CHECKING:
    from engramdb.engine.access import Caller
    from engramdb.engine.lifecycle import Lifecycle

__all__ = ["Recall", "hits_from", "receipt_for"]


class Recall:
    """Hybrid recall for any principal (the caller has already built the filter)."""

    def __init__(self, res: Resources, inbox: ConflictInbox) -> None:
        self._res = res
        self._inbox = inbox
        # Speakers seen among each principal's full-text candidates (name words), only to
        # guess which first-person query to embed together with the query itself: a guess
        # that proves wrong costs an embedding, never a different result. Per principal,
        # so what one reader's candidates held never changes another reader's work (not
        # even its timing).
        self._speakers: dict[str, set[frozenset[str]]] = {}

    def answer(self, caller: Caller, lifecycle: Lifecycle, query: Any, *, namespace: str,
               k: Any, layers: Sequence[str] | None, as_of: int | datetime | str | None,
               valid_at: datetime | str | None, filters: Mapping[str, Any] | None,
               query_embedding: Sequence[float] | None) -> RecallResult:
        """``Session.recall`` for ``caller``: checked, searched, decayed, audited.

        Current reads are reranked by the decay policies and reinforce what they
        return; the readable namespaces and the policies are read in the recall's
        snapshot, with its searches (PostgreSQL: in its first round trip).
        """
        res = self._res
        if not isinstance(query, str) or not query.strip():
            raise InvalidInput("query must be a non-empty string")
        check_chars(query, "query")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= res.config.max_k:
            raise InvalidInput(f"k must be an integer from 1 to {res.config.max_k}")
        qv = check_embedding(query_embedding, res.dimension)
        t = caller.as_of(as_of)
        flt = caller.filter(namespace, layers, t, valid_at, filters, resolve=False)
        decaying: list[bool] = []

        def settle(result: RecallResult) -> RecallResult:
            decaying.append(lifecycle.decaying())
            return lifecycle.rerank(result) if decaying[0] else result

        result = self.run(caller.name, query, flt, k, t, query_embedding=qv,
                          scope=lambda f: caller.scope(f, namespace),
                          settle=settle if t is None else None)
        res.read_audit.record(caller.name, result.receipt, result.memories)
        if decaying and decaying[0]:
            lifecycle.reinforce([m.id for m in result.memories])
        return result

    def run(self, principal: str, query: str, flt: RecallFilter, k: int, as_of: int | None,
            *, query_embedding: np.ndarray | None = None,
            scope: Callable[[RecallFilter], RecallFilter] | None = None,
            settle: Callable[[RecallResult], RecallResult] | None = None) -> RecallResult:
        """The ``k`` best hits for ``query`` under ``flt``, read as ``principal``.

        ``scope`` and ``settle`` run inside the recall's snapshot: ``scope`` completes
        the filter (e.g. the namespaces the reader may read) before the searches,
        ``settle`` reorders the result after them. Reads they make see the same
        state as the searches, and the backend may answer them from that
        snapshot's first round trip (PostgreSQL: the namespaces and the
        configuration) instead of a round trip each.
        """
        res = self._res
        if scope is None and flt.namespaces is not None and not flt.namespaces:
            head = res.storage.head()
            read_tx = head.tx if as_of is None else min(as_of, head.tx)
            return RecallResult((), receipt_for((), read_tx, flt.valid_at, principal, query))
        n = max(res.config.recall_candidates, k * 3)
        # A caller's query embedding is searched as given: the model does not run.
        first_person_search = (res.config.recall_first_person and query_embedding is None
                               and res.embedder is not None)
        with telemetry.span("engram.search", {"engram.k": k, "engram.candidates.limit": n}) as sp:
            if res.embedder is not None and query_embedding is None:
                with sp.stage("embed"):  # before the snapshot: no read waits on the model
                    guess = (first_person(query, tuple(self._speakers.get(principal, ())))
                             if res.config.recall_first_person else None)
                    qv = res.embed([query] if guess is None else [query, guess])
                assert qv is not None
                query_embedding = qv[0]
            both = (query_embedding is not None and res.embedder is not None
                    and not first_person_search)
            asked = flt

            def searched() -> tuple[int, RecallFilter]:
                """The read point and the filter the searches use, from the storage's
                head, namespaces and configuration (an empty namespace list: none)."""
                head = res.storage.head()
                read_tx = head.tx if as_of is None else min(as_of, head.tx)
                f = asked if scope is None else scope(asked)
                if f.as_of is None:
                    # Pin the read to the head we saw, so the receipt names a real snapshot.
                    f = replace(f, as_of=read_tx)
                return read_tx, f

            def ahead() -> SearchAhead | None:
                """The searches as planned on the values the storage predicts."""
                f = searched()[1]
                if (f.namespaces is not None and not f.namespaces) or query_embedding is None:
                    return None
                return SearchAhead(query, query_embedding, f, n)

            # One snapshot for the head, both candidate queries, their rows and the
            # contested marks: a write committed meanwhile is in none or all of them.
            with res.storage.snapshot(ahead=ahead if both else None):
                head = res.storage.head()
                read_tx, flt = searched()
                if scope is not None and flt.namespaces is not None and not flt.namespaces:
                    return RecallResult((), receipt_for((), read_tx, flt.valid_at,
                                                        principal, query))
                vector_hits: list[Any] = []
                now = head.recorded_at if as_of is None else res.tx_time(read_tx)
                if both and query_embedding is not None:
                    # Neither search depends on the other: asked together (PostgreSQL:
                    # one round trip). Brief rows: what ranking reads; the k chosen are
                    # read whole below.
                    with sp.stage("text_vector"):
                        text_hits, vector_hits = res.storage.search_text_and_vector(
                            query, query_embedding, flt, n, brief=True)
                        vector_hits = self._with_sessions(query, text_hits, vector_hits,
                                                          query_embedding, flt, n, now)
                else:
                    with sp.stage("text"):
                        text_hits = res.storage.search_text(query, flt, n, brief=True)
                    if query_embedding is not None and res.embedder is not None:
                        # The vector searched may depend on the full-text candidates.
                        query_embedding = self._first_person(principal, query, text_hits,
                                                             query_embedding, sp)
                        with sp.stage("vector"):
                            vector_hits = res.storage.search_vector(query_embedding, flt, n,
                                                                    brief=True)
                            vector_hits = self._with_sessions(query, text_hits, vector_hits,
                                                              query_embedding, flt, n, now)
                with sp.stage("rank"):
                    scored = rank_hybrid(query, text_hits, vector_hits, now_micros=now, k=k,
                                         weights=res.weights)
                    scored = _whole(res, scored)
                with sp.stage("contested"):
                    hits = self._inbox.mark_contested(hits_from(scored, flt.as_of), as_of)
                result = RecallResult(hits, receipt_for(hits, read_tx, flt.valid_at, principal,
                                                        query))
                if settle is not None:
                    result = settle(result)
            sp.set("engram.candidates.text", len(text_hits))
            sp.set("engram.candidates.vector", len(vector_hits))
            sp.set("engram.hits", len(hits))
            telemetry.candidates(len(text_hits), len(vector_hits))
        return result

    def _first_person(self, principal: str, query: str, text_hits: list[Any],
                      query_embedding: np.ndarray, sp: Any) -> np.ndarray:
        """The vector to search with: ``query`` asked in the first person when it names a
        speaker of the full-text candidates (:mod:`engramdb.retrieval.first_person`),
        else ``query_embedding`` as it is."""
        named = speakers(row for row, _ in text_hits)
        known = self._speakers.setdefault(principal, set()) \
            if len(self._speakers) < 1024 else self._speakers.get(principal)
        if known is not None and len(known) < 4096:
            known |= named
        asked = first_person(query, named)
        if asked is None:
            return query_embedding
        with sp.stage("embed_first_person"):  # the embedder's cache holds a right guess
            vectors = self._res.embed([asked])
        return query_embedding if vectors is None else vectors[0]

    def _with_sessions(self, query: str, text_hits: list[Any], vector_hits: list[Any],
                       query_embedding: np.ndarray, flt: RecallFilter, n: int, now: int
                       ) -> list[Any]:
        """``vector_hits`` and, for the sessions of the best few candidates, each session's
        memories nearest the query (under the same filter, narrowed to that session).

        A hit's neighbours in its conversation (the question it answers, the follow-up)
        often share no word with the query and sit below the vector cut-off; drawn in,
        the ranking's context cues can weigh them (:mod:`engramdb.retrieval.hybrid`).
        """
        res = self._res
        if len(vector_hits) < n or res.config.recall_session_seeds <= 0:
            return vector_hits  # not a cut-off pool: nothing beyond it
        if not any(row.get("session") for row, _ in (*text_hits, *vector_hits)):
            return vector_hits  # no candidate was said in a session: nothing to draw
        seeds = rank_hybrid(query, text_hits, vector_hits, now_micros=now,
                            k=res.config.recall_session_seeds, weights=res.weights)
        seen = {(str(r["id"]), int(r["version"])) for r, _ in (*text_hits, *vector_hits)}
        extra = []
        for namespace, session in dict.fromkeys(
                (str(s.row["namespace"]), str(s.row["session"]))
                for s in seeds if s.row.get("session")):
            narrowed = replace(flt, namespaces=(namespace,), session=session)
            for row, sim in res.storage.search_vector(query_embedding, narrowed,
                                                      res.config.recall_session_depth,
                                                      brief=True):
                key = (str(row["id"]), int(row["version"]))
                if key not in seen:
                    seen.add(key)
                    extra.append((row, sim))
        if not extra:
            return vector_hits
        return sorted([*vector_hits, *extra], key=lambda hit: -float(hit[1]))


def _whole(res: Resources, scored: list[ScoredRow]) -> list[ScoredRow]:
    """``scored`` with each row read whole (the searches returned brief rows)."""
    rows = res.storage.whole_rows([s.row for s in scored])
    return [ScoredRow(row, s.score, s.why) for s, row in zip(scored, rows, strict=True)
            if row is not None]


def hits_from(scored: Sequence[Any], as_of: int | None) -> tuple[Hit, ...]:
    return tuple(
        Hit(memory=memory_from_row(s.row, as_of=as_of), score=s.score, why=s.why)
        for s in scored
    )


def receipt_for(hits: Sequence[Hit], as_of: int, valid_at: datetime | None, principal: str,
                query: str) -> Receipt:
    return Receipt(
        items=tuple(ReceiptItem(h.memory.id, h.memory.version) for h in hits),
        as_of=as_of,
        valid_at=valid_at,
        principal=principal,
        query_digest=sha256_hex(query.encode("utf-8")),
    )
