"""EngramMemory: AutoGen's ``Memory`` protocol over EngramDB.

``add`` remembers (as the memory's agent), ``query`` recalls, and
``update_context`` puts ``context()`` (recall packed under a token budget, with
provenance) into the model context as a system message. Each returned
``MemoryContent`` names its EngramDB memory version, author and score in its
metadata under ``"engramdb"``, so what the model was shown can be cited in a
decision.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from autogen_core import CancellationToken
from autogen_core.memory import (
    Memory,
    MemoryContent,
    MemoryMimeType,
    MemoryQueryResult,
    UpdateContextResult,
)
from autogen_core.model_context import ChatCompletionContext
from autogen_core.models import SystemMessage

from engramdb.errors import InvalidInput
from engramdb.model import Hit

HEADER = "Relevant memories from EngramDB (numbered, with provenance):"
META = "autogen"
_TEXT_TYPES = {MemoryMimeType.TEXT.value, MemoryMimeType.MARKDOWN.value,
               MemoryMimeType.JSON.value}


class EngramMemory(Memory):
    """AutoGen memory kept in EngramDB.

    Args:
        db: ``engramdb.open(...)``, ``db.as_agent(...)`` or ``engramdb.connect(...)``.
        agent: act as this EngramDB agent (``db.as_agent(agent)``).
        namespace: where ``add`` writes (default the agent's own namespace).
        recall_namespace: the glob ``query`` and ``update_context`` read.
        k: how many memories ``query`` returns.
        budget_tokens: the most tokens ``update_context`` adds.
    """

    def __init__(self, db: Any, *, agent: str | None = None, namespace: str | None = None,
                 recall_namespace: str = "**", k: int = 5, budget_tokens: int = 1000) -> None:
        self.session = db.as_agent(agent) if agent is not None else db
        self.namespace = namespace
        self.recall_namespace = recall_namespace
        self.k = k
        self.budget_tokens = budget_tokens

    async def add(self, content: MemoryContent,
                  cancellation_token: CancellationToken | None = None) -> None:
        mime = content.mime_type.value if isinstance(content.mime_type, MemoryMimeType) \
            else str(content.mime_type)
        if mime not in _TEXT_TYPES:
            raise InvalidInput(f"EngramMemory keeps text, markdown and JSON, not {mime!r}; "
                               "describe the content in text instead", field="mime_type")
        text = content.content if isinstance(content.content, str) else json.dumps(
            content.content, ensure_ascii=False, sort_keys=True, default=str)
        meta = {META: {"mime_type": mime, "metadata": content.metadata or {}}}
        await asyncio.to_thread(self.session.remember, text, namespace=self.namespace,
                                metadata=meta)

    async def query(self, query: str | MemoryContent,
                    cancellation_token: CancellationToken | None = None,
                    **kwargs: Any) -> MemoryQueryResult:
        text = query if isinstance(query, str) else str(query.content)
        result = await asyncio.to_thread(self.session.recall, text,
                                         namespace=self.recall_namespace,
                                         k=int(kwargs.get("k", self.k)))
        return MemoryQueryResult(results=[_content(h) for h in result.hits])

    async def update_context(self, model_context: ChatCompletionContext
                             ) -> UpdateContextResult:
        messages = await model_context.get_messages()
        last = next((m for m in reversed(messages) if isinstance(getattr(m, "content", None),
                                                                   str)), None)
        if last is None or not str(last.content).strip():
            return UpdateContextResult(memories=MemoryQueryResult(results=[]))
        packed = await asyncio.to_thread(self.session.context, str(last.content),
                                         self.budget_tokens, namespace=self.recall_namespace)
        if packed.text.strip():
            await model_context.add_message(SystemMessage(content=f"{HEADER}\n{packed.text}"))
        return UpdateContextResult(
            memories=MemoryQueryResult(results=[_content(h) for h in packed.items]))

    async def clear(self) -> None:
        """Retract what this memory's agent wrote in its write namespace (history keeps it)."""
        def clear() -> None:
            me = self.session.principal.name
            ns = self.namespace or f"agents/{me}"
            while mine := [m for m in self.session.recent(namespace=ns, k=1000)
                           if m.author == me]:
                for m in mine:
                    self.session.retract(m.id, reason="AutoGen memory cleared")
        await asyncio.to_thread(clear)

    async def close(self) -> None:
        """Nothing to release: the database belongs to the caller."""


def _content(h: Hit) -> MemoryContent:
    m = h.memory
    mine = (m.metadata or {}).get(META) or {}
    meta = {**(mine.get("metadata") or {}), "engramdb": {
        "memory_id": m.id, "version": m.version, "author": m.author, "score": h.score,
        "contested": h.contested}}
    return MemoryContent(content=m.text, mime_type=mine.get("mime_type") or
                         MemoryMimeType.TEXT.value, metadata=meta)
