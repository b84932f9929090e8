"""``remember`` and ``recall`` as Agents SDK function tools bound to one EngramDB agent.

The model decides what to keep and what to look up; every call is made as the
bound agent (its grants apply, its name is the author), and ``recall`` tells
the model who wrote each memory and whether it is contested.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agents import FunctionTool, function_tool


def memory_tools(db: Any, *, agent: str | None = None, namespace: str | None = None,
                 recall_namespace: str = "**") -> list[FunctionTool]:
    """The ``remember`` and ``recall`` tools for an Agents SDK ``Agent``.

    Args:
        db: ``engramdb.open(...)``, ``db.as_agent(...)`` or ``engramdb.connect(...)``.
        agent: act as this EngramDB agent (``db.as_agent(agent)``).
        namespace: where ``remember`` writes (default the agent's own namespace).
        recall_namespace: the glob ``recall`` searches.
    """
    me = db.as_agent(agent) if agent is not None else db

    @function_tool
    async def remember(fact: str) -> str:
        """Store a fact in long-term memory so it can be recalled in later conversations.

        Args:
            fact: the fact, as one self-contained sentence.
        """
        m = await asyncio.to_thread(me.remember, fact, namespace=namespace)
        note = f"; it conflicts with {len(m.conflicts)} earlier memory(ies)" \
            if m.conflicts else ""
        return f"remembered (memory {m.id}){note}"

    @function_tool
    async def recall(query: str, k: int = 5) -> str:
        """Search long-term memory; returns the best matches with who wrote them.

        Args:
            query: what to look for.
            k: how many memories at most.
        """
        result = await asyncio.to_thread(me.recall, query, namespace=recall_namespace,
                                         k=max(1, min(int(k), 50)))
        if not result.hits:
            return "nothing found"
        return "\n".join(
            f"{i}. {h.memory.text} (by {h.memory.author}"
            + (", contested" if h.contested else "") + ")"
            for i, h in enumerate(result.hits, 1))

    return [remember, recall]
