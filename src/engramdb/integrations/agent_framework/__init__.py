"""Microsoft Agent Framework: EngramDB as a context provider.

::

    from agent_framework import Agent
    from engramdb.integrations.agent_framework import EngramContextProvider

    agent = Agent(client=..., context_providers=[EngramContextProvider(db, agent="helper")])

Needs ``pip install 'engramdb[agent-framework]'``.
"""

try:
    import agent_framework  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("engramdb.integrations.agent_framework needs the Agent Framework: "
                      "pip install 'engramdb[agent-framework]'") from exc

from engramdb.integrations.agent_framework._provider import HEADER, EngramContextProvider

__all__ = ["HEADER", "EngramContextProvider"]
