"""The context builder: one working context assembled from the four layers.

Gathers the candidates and hands them to :func:`engramdb.retrieval.assemble.assemble`:

* **working**: the caller's pinned blocks in force (agent-wide, plus the
  session's), always first, never cut;
* **procedural**: relevant procedures (recall over the procedural layer) and
  reliability notes for the tools the task names;
* **semantic**: recalled facts, contested ones marked with their rival;
* **episodic**: the session's recent episodes plus relevant ones.

One recall serves every layer (the task is embedded once). The receipt names
exactly the memory versions in the text, in text order, for ``decide``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from engramdb.codec import check_chars
from engramdb.engine.access import Caller
from engramdb.engine.layers.blocks import Blocks, block_name
from engramdb.engine.layers.episodes import Episodes
from engramdb.engine.layers.procedures import Procedures
from engramdb.engine.recall import Recall
from engramdb.engine.resources import Resources
from engramdb.engine.rows import _short, check_embedding
from engramdb.errors import InvalidInput
from engramdb.model import LAYERS, Context, Hit, RecallResult, ReceiptItem
from engramdb.retrieval.assemble import Candidate, assemble
from engramdb.retrieval.pack import MAX_BUDGET
from engramdb.retrieval.tokens import check_tokenizer

if TYPE_CHECKING:
    from engramdb.model import Memory

__all__ = ["ContextBuilder", "Decay"]

RECENT_EPISODES = 8
LINE_TOKENS = 60


def _prefix(m: Memory, flags: Sequence[str] = ()) -> str:
    marks = "".join(f" [{f}]" for f in flags)
    return f"{m.namespace} | {m.author} | {m.recorded_at:%Y-%m-%d %H:%M}Z{marks}: "


def _check_quotas(quotas: Any) -> dict[str, int]:
    if quotas is None:
        return {}
    if not isinstance(quotas, Mapping):
        raise InvalidInput("quotas must be a dict of layer -> tokens", field="quotas")
    out = {}
    for layer, n in quotas.items():
        if layer not in LAYERS:
            raise InvalidInput(f"quotas names unknown layer {layer!r}; use {', '.join(LAYERS)}",
                               field="quotas")
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_BUDGET:
            raise InvalidInput(f"quota of {layer} must be an integer from 0 to {MAX_BUDGET}",
                               field="quotas")
        out[layer] = n
    return out


@dataclass(frozen=True, slots=True)
class Decay:
    """The lifecycle's hooks: weigh recalled hits by decayed relevance (``why['decay']``),
    and count a use of the memories a context shows (buffered reinforcement)."""

    rerank: Callable[[RecallResult], RecallResult]
    reinforce: Callable[[Sequence[str]], None]


class ContextBuilder:
    """``context``: candidates from every layer, assembled under the budget."""

    def __init__(self, res: Resources, recall: Recall, blocks: Blocks, episodes: Episodes,
                 procedures: Procedures, decay: Decay | None = None) -> None:
        self._res = res
        self._decay = decay
        self._recall = recall
        self.blocks = blocks
        self.episodes = episodes
        self.procedures = procedures

    @staticmethod
    def _recalled(found: Sequence[Hit], session: str | None,
                  add: Callable[..., None]) -> dict[str, Hit]:
        """Candidates from the recall's hits (all but blocks and other sessions' episodes)."""
        hits: dict[str, Hit] = {}
        # Fused recall scores are small and relative: scale each layer's to (0, 1]
        # (its best hit 1.0) so every layer's best items compete for the budget
        # with each other and with pinned blocks, recent episodes and tool notes.
        top: dict[str, float] = {}
        for h in found:
            top[h.memory.layer] = max(top.get(h.memory.layer, 0.0), h.score)
        for h in found:
            m = h.memory
            if block_name(m) is not None:
                continue  # pinned blocks are in (or out) already
            if m.layer == "episodic" and session is not None and m.session not in (None, session):
                continue  # another session's episode
            hits[m.id] = h
            kind = {"procedural": "procedure", "episodic": "episode"}.get(m.layer, "fact")
            flags = [m.status] if m.status != "active" else []
            if h.contested:
                flags.append("contested")
                # one rival by id (the hit carries them all): ids are long
                more = len(h.rivals) - 1
                flags += [f"rival {r}" + (f" +{more}" if more > 0 else "") for r in h.rivals[:1]]
            add(m, kind, h.score / (top[m.layer] or 1.0), str(m.metadata.get("procedure") or m.id),
                flags=flags)
        return hits

    def context(self, s: Caller, task: str, budget_tokens: int, *, namespace: str,
                layers: Sequence[str] | None, as_of: Any, valid_at: Any,
                filters: Mapping[str, Any] | None, quotas: Mapping[str, int] | None,
                session: str | None, tokenizer: str,
                query_embedding: Sequence[float] | None) -> Context:
        """Public docs: :meth:`engramdb.Session.context`."""
        if not isinstance(task, str) or not task.strip():
            raise InvalidInput("task must be a non-empty string: say what the context is for")
        check_chars(task, "task")
        if (isinstance(budget_tokens, bool) or not isinstance(budget_tokens, int)
                or not 1 <= budget_tokens <= MAX_BUDGET):
            raise InvalidInput(f"budget_tokens must be an integer from 1 to {MAX_BUDGET}, not "
                               f"{budget_tokens!r}", field="budget_tokens")
        quota = _check_quotas(quotas)
        encoding = check_tokenizer(tokenizer)
        session = _short(session, "session")
        qv = check_embedding(query_embedding, self._res.dimension)
        t = s.as_of(as_of)
        flt = s.filter(namespace, layers, t, valid_at, filters)
        wanted = set(flt.layers or LAYERS)
        cands: list[Candidate] = []

        def add(m: Memory, kind: str, score: float, label: str, *, flags: Sequence[str] = (),
                pinned: bool = False) -> None:
            cands.append(Candidate(m.layer, kind, label, _prefix(m, flags), m.text, score,
                                   pinned, m.id, m.version, float(m.valid_from.timestamp())))

        pinned: dict[str, Memory] = {}
        if "working" in wanted:
            for m in self.blocks.blocks(s, session=session, namespace=None, as_of=t):
                pinned[m.id] = m
                add(m, "block", 1.0, str(block_name(m)), flags=("pinned", str(block_name(m))),
                    pinned=True)
        if "procedural" in wanted and t is None:
            # The task names these tools: how they have been doing matters, failing more.
            for st in self.procedures.tool_notes(s, task, namespace):
                cands.append(Candidate("procedural", "tool", st.tool, "[tool] ", st.note(),
                                       0.5 + 0.5 * (1.0 - st.recent_rate)))
        recent: list[Memory] = []
        if session is not None and "episodic" in wanted:
            recent = [m for m in self.episodes.episodes(
                s, session, agent=None, since=None, until=None, limit=RECENT_EPISODES,
                namespace=namespace) if t is None or m.tx_from <= t]
        fixed = list(cands)
        # A context line is rarely under LINE_TOKENS tokens, so about budget / LINE_TOKENS
        # recalled candidates can fill it; more only cost recall time. When the lines
        # turn out shorter (everything fit, a quarter of the budget is still empty, and
        # recall had more to give), recall again for four times as many.
        k = min(self._res.config.max_k, max(10, budget_tokens // LINE_TOKENS))
        while True:
            del cands[len(fixed):]
            result = self._recall.run(s.name, task, flt, k, t, query_embedding=qv)
            if t is None and self._decay is not None:
                # What agents read decays as recall does: a stale memory competes for the
                # budget with its relevance-weighted score (an as-of read is the past as it was).
                result = self._decay.rerank(result)
            hits = self._recalled(result.hits, session, add)
            for n, m in enumerate(reversed(recent)):  # newest first
                if m.id not in hits:
                    hits[m.id] = Hit(m, 0.9 * 0.85 ** n, {"recent_episode": float(n)})
                    add(m, "episode", hits[m.id].score, m.id)
            built = assemble(cands, budget_tokens, task=task, quotas=quota, encoding=encoding)
            if (built.left_out or len(result.hits) < k or k >= self._res.config.max_k
                    or built.tokens * 4 >= budget_tokens * 3):
                break
            k = min(self._res.config.max_k, k * 4)
        items: list[Hit] = []
        for c in built.chosen:
            if c.memory_id is None:
                continue
            h = hits.get(c.memory_id) or Hit(pinned[c.memory_id], 1.0, {"pinned": 1.0})
            items.append(h)
        receipt = replace(result.receipt,
                          items=tuple(ReceiptItem(h.memory.id, h.memory.version) for h in items))
        self._res.read_audit.record(s.name, receipt, [h.memory for h in items])
        if t is None and self._decay is not None:
            self._decay.reinforce([h.memory.id for h in items if h.memory.id not in pinned])
        return Context(text=built.text, items=tuple(items), tokens=built.tokens,
                       budget=budget_tokens, truncated=any(p.shortened for p in built.parts),
                       receipt=receipt, parts=built.parts, left_out=built.left_out)

