"""Episodic memory: what happened, in order, and what it amounts to.

* ``episode`` appends one interaction record (a message, a tool call, an
  observation) as an ``episodic`` memory: ``session`` column, ``role`` in its
  metadata, ``valid_from`` = when it happened. ``episodes`` answers "what
  happened in session S" and "what did agent A do between T1 and T2" from the
  ``(session, valid_from)`` and ``(author, layer, valid_from)`` indexes.
* ``summarize`` writes one episodic summary memory (metadata
  ``summary_of``), by the built-in extractive summariser or an LLM, and one
  ``derivations`` row per episode it covers, in the same transaction.
* ``extract`` (LLM only) turns a session's episodes into assertions written
  through the normal conflict detection, each linked to its source episodes.

An LLM is asked before the write lock is taken: a failing or malformed answer
is an ``UpstreamError`` and nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from engramdb.codec import check_json
from engramdb.engine.access import Caller
from engramdb.engine.layers.named import LayerService
from engramdb.engine.rows import _short, check_metadata, check_text, memory_from_row
from engramdb.engine.writes import Writer, make_draft
from engramdb.errors import (
    EngramError,
    InvalidInput,
    InvalidMetadata,
    LLMNotConfigured,
    NotFound,
    UpstreamError,
)
from engramdb.model import Memory, RecallFilter, check_namespace, to_utc
from engramdb.retrieval.chat import parse_json_object
from engramdb.retrieval.summarize import extractive_summary
from engramdb.storage.base import Insert

__all__ = ["Episodes"]

MAX_EPISODES = 10_000
SUMMARY_METHODS = ("auto", "extractive", "llm")
_NO_LLM = ("{what} needs an LLM and none is configured: set ENGRAM_LLM_URL and "
           "ENGRAM_LLM_MODEL (an OpenAI-compatible endpoint, e.g. http://localhost:11434/v1 "
           "and llama3.1) where the database is opened, or assign db.llm = "
           "engramdb.ChatLLM(base_url, model)")

_SUMMARY_PROMPT = (
    "You summarise an agent's session for its long-term memory. Reply with a JSON object "
    '{"summary": "..."}: a few sentences with the decisions, facts learned and open '
    "questions. Use only what the episodes say.")
_EXTRACT_PROMPT = (
    "You extract durable facts from an agent's session. Reply with a JSON object "
    '{"facts": [{"subject": "type:id", "predicate": "snake_case", "value": <JSON>, '
    '"text": "the fact as a sentence", "sources": [episode numbers]}]}. Only facts the '
    "episodes state; an empty list when there are none.")


def _session(value: Any) -> str:
    checked = _short(value, "session")
    if checked is None:
        raise InvalidInput("session must be a non-empty string naming the session",
                           field="session")
    return checked


def _transcript(episodes: Sequence[Memory]) -> str:
    return "\n".join(f"[{n}] {m.metadata.get('role', '?')} ({m.author}, "
                     f"{m.valid_from:%Y-%m-%d %H:%M}Z): {m.text}"
                     for n, m in enumerate(episodes, start=1))


def _derive(wr: Writer, derived: Memory, sources: Sequence[Memory], kind: str) -> None:
    effects: list[Any] = [Insert("derivations", {
        "derived_id": derived.id, "derived_version": derived.version, "source_id": m.id,
        "source_version": m.version, "kind": kind, "tx": wr.w.tx}) for m in sources]
    wr._commit("memory.derived", derived.namespace, derived.id, effects, {"kind": kind})


class Episodes(LayerService):
    """Episodes, summaries and extraction."""

    def episode(self, s: Caller, session: str, role: str, content: str, *,
                at: datetime | str | None, metadata: Mapping[str, Any] | None,
                namespace: str | None) -> Memory:
        session = _session(session)
        role_checked = _short(role, "role", 100)
        if role_checked is None:
            raise InvalidInput("role must be a non-empty string (user, assistant, tool, ...)",
                               field="role")
        meta = check_metadata(metadata, self._res.config)
        if "role" in meta:
            raise InvalidMetadata("metadata key 'role' is the episode's role; pass it as "
                                  "role= and rename the key", field="metadata")
        draft = make_draft(s, text=content, namespace=namespace, layer="episodic", session=session,
                         metadata={**meta, "role": role_checked},
                         valid_from=to_utc(at, what="at"))
        vector = self._res.vectors_for([draft])[0]
        return self._write(s, lambda wr: wr.remember(draft, vector))

    def episodes(self, s: Caller, session: str | None, *, agent: str | None,
                 since: datetime | str | None, until: datetime | str | None, limit: int,
                 namespace: str) -> list[Memory]:
        """Episodes in the order they happened: the newest ``limit`` of those matching."""
        if session is not None:
            session = _session(session)
        agent = _short(agent, "agent")
        if isinstance(limit, bool) or not isinstance(limit, int) \
                or not 1 <= limit <= MAX_EPISODES:
            raise InvalidInput(f"limit must be an integer from 1 to {MAX_EPISODES}",
                               field="limit")
        spaces = s.readable(namespace, None)
        if not spaces:
            return []
        flt = RecallFilter(namespaces=spaces, layers=("episodic",),
                           authors=None if agent is None else (agent,), session=session,
                           valid_after=to_utc(since, what="since"),
                           valid_before=to_utc(until, what="until"))
        rows = self._res.storage.list_memories(flt, limit=limit, order="valid_desc")
        return [memory_from_row(r) for r in reversed(rows)]

    def _sources(self, s: Caller, session: str) -> list[Memory]:
        found = self.episodes(s, session, agent=None, since=None, until=None,
                              limit=MAX_EPISODES, namespace="**")
        found = [m for m in found if "role" in m.metadata]
        if not found:
            raise NotFound(f"no episodes of session {session!r} that you may read; record "
                           "some with episode()", session=session)
        return found

    def summarize(self, s: Caller, session: str, *, namespace: str | None,
                  method: str) -> Memory:
        session = _session(session)
        if method not in SUMMARY_METHODS:
            raise InvalidInput(f"method must be one of {', '.join(SUMMARY_METHODS)}",
                               field="method")
        ns = check_namespace(namespace if namespace is not None
                             else f"agents/{s.name}")
        s.require("write", ns)
        llm = self._res.llm
        if method == "llm" and llm is None:
            raise LLMNotConfigured(_NO_LLM.format(what="summarize(method='llm')"))
        sources = self._sources(s, session)
        if method == "extractive" or llm is None:
            used = "extractive"
            body = extractive_summary([(str(m.metadata["role"]), m.text) for m in sources])
        else:
            used = llm.name
            answer = parse_json_object(llm.complete(_SUMMARY_PROMPT, _transcript(sources)),
                                       "a summary")
            said = answer.get("summary")
            if not isinstance(said, str) or not said.strip():
                raise UpstreamError("the LLM's answer has no 'summary' text; use a model that "
                                    "follows instructions")
            body = said
        first, last = sources[0].valid_from, sources[-1].valid_from
        text = check_text(f"Summary of session {session} ({len(sources)} episodes, "
                          f"{first:%Y-%m-%d %H:%M}Z to {last:%Y-%m-%d %H:%M}Z):\n{body}",
                          self._res.config)
        draft = make_draft(s, text=text, namespace=ns, layer="episodic", source=f"summary:{used}",
                         metadata={"summary_of": session, "episodes": len(sources),
                                   "method": used})
        vector = self._res.vectors_for([draft])[0]

        def write(wr: Writer) -> Memory:
            m = wr.remember(draft, vector)
            _derive(wr, m, sources, "summary")
            return m

        return self._write(s, write)

    def extract(self, s: Caller, session: str, *, namespace: str | None) -> list[Memory]:
        session = _session(session)
        llm = self._res.llm
        if llm is None:
            raise LLMNotConfigured(_NO_LLM.format(what="extract"))
        ns = check_namespace(namespace if namespace is not None
                             else f"agents/{s.name}")
        s.require("write", ns)
        sources = self._sources(s, session)
        answer = parse_json_object(llm.complete(_EXTRACT_PROMPT, _transcript(sources)),
                                   "extracted facts")
        facts = answer.get("facts")
        if not isinstance(facts, list):
            raise UpstreamError("the LLM's answer has no 'facts' list; use a model that "
                                "follows instructions")
        plans = []
        for fact in facts:
            plans.append(self._fact(s, fact, sources, ns, session))
        vectors = self._res.vectors_for([d for d, _ in plans])

        def write(wr: Writer) -> list[Memory]:
            out = []
            for (draft, cited), vector in zip(plans, vectors, strict=True):
                m = wr.remember(draft, vector)
                _derive(wr, m, cited, "extraction")
                out.append(m)
            return out

        return self._write(s, write) if plans else []

    @staticmethod
    def _fact(s: Caller, fact: Any, sources: Sequence[Memory], ns: str,
              session: str) -> tuple[Any, list[Memory]]:
        try:
            if not isinstance(fact, Mapping):
                raise InvalidInput("a fact is not an object")
            cited_n = fact.get("sources") or list(range(1, len(sources) + 1))
            if not isinstance(cited_n, list) or not all(
                    isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= len(sources)
                    for n in cited_n):
                raise InvalidInput("sources must be episode numbers")
            draft = make_draft(s, text=fact.get("text"), namespace=ns, layer="semantic",
                             subject=fact.get("subject"), predicate=fact.get("predicate"),
                             value=check_json(fact.get("value"), what="value"),
                             session=session, source="extraction")
        except EngramError as exc:
            raise UpstreamError(f"the LLM proposed a fact that is not valid ({exc.message}); "
                                "nothing was written") from exc
        return draft, [sources[n - 1] for n in sorted(set(cited_n))]
