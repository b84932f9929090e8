"""AutoGen (autogen-core): EngramDB as an agent ``Memory``.

::

    from autogen_agentchat.agents import AssistantAgent
    from engramdb.integrations.autogen import EngramMemory

    agent = AssistantAgent("helper", model_client=..., memory=[EngramMemory(db, agent="helper")])

Needs ``pip install 'engramdb[autogen]'`` (autogen-core pins protobuf 5, so it lives
in its own environment: ``make test-autogen``). AutoGen is in maintenance mode; its
successor is the Agent Framework (``engramdb.integrations.agent_framework``).
"""

try:
    import autogen_core.memory  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("engramdb.integrations.autogen needs autogen-core: "
                      "pip install 'engramdb[autogen]'") from exc

from engramdb.integrations.autogen._memory import HEADER, EngramMemory

__all__ = ["HEADER", "EngramMemory"]
