"""EngramSession: an OpenAI Agents SDK ``Session`` whose items are EngramDB episodes.

Each conversation item (a user message, an assistant message, a tool call or
its output) is one episodic memory in the session's own namespace
(``<root>/<session id>``), tagged with the session id, written by the
session's agent: so history is searchable with ``recall``, attributed, audited
and erasable like any memory. ``pop_item`` and ``clear_session`` retract
(history keeps the versions). ``get_items`` reads the newest items with
``recent``, so it returns at most the engine's ``max_k`` (1000) latest items.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from agents.memory.session import SessionABC
from agents.memory.session_settings import SessionSettings

from engramdb.integrations import _names
from engramdb.model import Memory

META = "openai_agents"
_MAX_K = 1000


class EngramSession(SessionABC):
    """Conversation history for the Agents SDK ``Runner``, kept in EngramDB.

    Args:
        session_id: the conversation's id.
        db: ``engramdb.open(...)``, ``db.as_agent(...)`` or ``engramdb.connect(...)``.
        agent: write as this EngramDB agent (``db.as_agent(agent)``).
        root: the namespace segment sessions live under.
        session_settings: the SDK's session settings (e.g. a default ``limit``).
    """

    def __init__(self, session_id: str, db: Any, *, agent: str | None = None,
                 root: str = "openai-agents", session_settings: SessionSettings | None = None
                 ) -> None:
        self.session_id = session_id
        self.session_settings = session_settings
        self.session = db.as_agent(agent) if agent is not None else db
        self.namespace = _names.encode(_names.check_root(root), ("sessions", session_id))

    def _newest(self, k: int) -> list[Memory]:
        """The ``k`` newest items, oldest first."""
        found = [m for m in self.session.recent(namespace=self.namespace, k=k,
                                                 layers=["episodic"])
                 if isinstance((m.metadata or {}).get(META), dict)]
        return sorted(found, key=lambda m: m.metadata[META]["seq"])

    async def get_items(self, limit: int | None = None) -> list[Any]:
        if limit is None and self.session_settings is not None:
            limit = self.session_settings.limit
        k = _MAX_K if limit is None else max(0, min(int(limit), _MAX_K))
        if k == 0:
            return []
        found = await asyncio.to_thread(self._newest, k)
        return [m.metadata[META]["item"] for m in found]

    async def add_items(self, items: list[Any]) -> None:
        if not items:
            return
        base = time.time_ns()
        drafts = [{"text": _text(item), "layer": "episodic", "namespace": self.namespace,
                   "session": self.session_id,
                   "metadata": {META: {"item": item, "seq": base + i}}}
                  for i, item in enumerate(items)]
        await asyncio.to_thread(self.session.remember_many, drafts)

    async def pop_item(self) -> Any | None:
        def pop() -> Any | None:
            newest = self._newest(1)
            if not newest:
                return None
            m = newest[-1]
            self.session.retract(m.id, reason="popped from the agent session",
                                 expected_version=m.version)
            return m.metadata[META]["item"]
        return await asyncio.to_thread(pop)

    async def clear_session(self) -> None:
        def clear() -> None:
            while batch := self._newest(_MAX_K):
                for m in batch:
                    self.session.retract(m.id, reason="agent session cleared")
        await asyncio.to_thread(clear)


def _text(item: Any) -> str:
    """What EngramDB indexes for an item: its text parts, else the item as JSON."""
    content = item.get("content") if isinstance(item, dict) else None
    if isinstance(content, str) and content.strip():
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        text = " ".join(p for p in parts if isinstance(p, str) and p.strip())
        if text:
            return text
    if isinstance(item, dict) and isinstance(item.get("output"), str) and item["output"].strip():
        return item["output"]
    return json.dumps(item, ensure_ascii=False, sort_keys=True, default=str)
