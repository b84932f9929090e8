"""EngramContextProvider: packed EngramDB context before each run, the turn remembered after.

``before_run`` asks EngramDB for ``context(<the new input>, budget_tokens)``
(recall packed under a token budget, with provenance) and adds it to the run's
instructions; the receipt of what was injected goes into the provider's session
state (``state["receipt"]``), so a decision can later name exactly what the
model was shown. ``after_run`` remembers the turn (the input and the
response) as episodic memories of the run's session, written by the
provider's agent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from agent_framework import AgentSession, ContextProvider, Message, SessionContext

HEADER = "Relevant memories from EngramDB (numbered, with provenance):"


class EngramContextProvider(ContextProvider):
    """Inject ``context()`` under a token budget before a run; remember the turn after.

    Args:
        db: ``engramdb.open(...)``, ``db.as_agent(...)`` or ``engramdb.connect(...)``.
        agent: act as this EngramDB agent (``db.as_agent(agent)``).
        namespace: the glob to recall from (default everything the agent may read).
        budget_tokens: the most tokens of memory to inject.
        remember_turns: write each run's input and response as episodic memories.
        turns_namespace: where turns are written (default the agent's own namespace).
        source_id: the provider's id in the Agent Framework pipeline.
    """

    def __init__(self, db: Any, *, agent: str | None = None, namespace: str = "**",
                 budget_tokens: int = 1000, remember_turns: bool = True,
                 turns_namespace: str | None = None, source_id: str = "engramdb") -> None:
        super().__init__(source_id)
        self.session = db.as_agent(agent) if agent is not None else db
        self.namespace = namespace
        self.budget_tokens = budget_tokens
        self.remember_turns = remember_turns
        self.turns_namespace = turns_namespace

    async def before_run(self, *, agent: Any, session: AgentSession, context: SessionContext,
                         state: dict[str, Any]) -> None:
        query = _text(context.input_messages)
        if not query:
            return
        packed = await asyncio.to_thread(self.session.context, query, self.budget_tokens,
                                         namespace=self.namespace)
        state["receipt"] = packed.receipt.to_dict()
        if packed.text.strip():
            context.extend_instructions(self.source_id, f"{HEADER}\n{packed.text}")

    async def after_run(self, *, agent: Any, session: AgentSession, context: SessionContext,
                        state: dict[str, Any]) -> None:
        if not self.remember_turns:
            return
        said = list(context.input_messages)
        if context.response is not None:
            said += list(context.response.messages)
        drafts = [{"text": m.text, "layer": "episodic", "namespace": self.turns_namespace,
                   "session": session.session_id, "metadata": {"role": str(m.role)}}
                  for m in said if m.text.strip()]
        if drafts:
            await asyncio.to_thread(self.session.remember_many, drafts)


def _text(messages: Sequence[Message]) -> str:
    return "\n".join(m.text for m in messages if m.text.strip()).strip()
