"""OpenAI Agents SDK: conversation history in EngramDB, and remember/recall tools.

::

    from agents import Agent, Runner
    from engramdb.integrations.openai_agents import EngramSession, memory_tools

    agent = Agent(name="helper", tools=memory_tools(db, agent="helper"))
    await Runner.run(agent, "hi", session=EngramSession("user-42", db, agent="helper"))

Needs ``pip install 'engramdb[openai-agents]'``.
"""

try:
    import agents  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("engramdb.integrations.openai_agents needs the OpenAI Agents SDK: "
                      "pip install 'engramdb[openai-agents]'") from exc

from engramdb.integrations.openai_agents._session import EngramSession
from engramdb.integrations.openai_agents._tools import memory_tools

__all__ = ["EngramSession", "memory_tools"]
