"""An OpenAI-compatible chat-completions client for the optional LLM features.

Summaries (``summarize(..., method="llm")``) and fact extraction
(``extract``) ask a model through any server speaking the OpenAI chat API
(OpenAI, Ollama, vLLM, llama.cpp). Everything else works without one.

Configure it on the database handle (``db.llm = ChatLLM(base_url, model)``)
or, for servers and CLIs, through the environment: ``ENGRAM_LLM_URL`` (the API
root, e.g. ``http://localhost:11434/v1``), ``ENGRAM_LLM_MODEL`` and optionally
``ENGRAM_LLM_API_KEY``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from engramdb.errors import UpstreamError
from engramdb.llm import chat_completion

__all__ = ["ChatLLM", "llm_from_env", "parse_json_object"]


class ChatLLM:
    """A model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    Args:
        base_url: API root; ``/chat/completions`` is appended.
        model: the model name as the server knows it.
        api_key: sent as a bearer token when given.
        timeout: seconds to wait for the whole request.
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None,
                 timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.name = f"llm:{model}"

    def __repr__(self) -> str:  # never show the key
        return f"ChatLLM(base_url={self.base_url!r}, model={self.model!r})"

    def complete(self, system: str, user: str) -> str:
        """The assistant's reply to one system and one user message.

        Raises:
            UpstreamError: unreachable, an HTTP error, or not a chat-completions answer.
        """
        return chat_completion(
            self.base_url, self.model,
            [{"role": "system", "content": system}, {"role": "user", "content": user}],
            api_key=self.api_key, timeout=self.timeout, who="LLM",
            unreachable_hint="check that it runs and that ENGRAM_LLM_URL is its "
            "OpenAI-compatible root")


def parse_json_object(content: str, what: str) -> dict[str, Any]:
    """The JSON object in a model's answer (code fences allowed around it).

    Raises:
        UpstreamError: no JSON object could be read.
    """
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`")
        text = text.split("\n", 1)[1] if "\n" in text else text
    start, end = text.find("{"), text.rfind("}")
    try:
        obj = json.loads(text[start:end + 1]) if start >= 0 < end else None
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        raise UpstreamError(f"the LLM did not answer with a JSON object for {what} "
                            f"(got {content[:120]!r}); use a model that follows instructions")
    return obj


def llm_from_env(env: Mapping[str, str] | None = None) -> ChatLLM | None:
    """The LLM the environment configures (``ENGRAM_LLM_URL``, ``ENGRAM_LLM_MODEL``), if any."""
    env = os.environ if env is None else env
    url, model = env.get("ENGRAM_LLM_URL"), env.get("ENGRAM_LLM_MODEL")
    if not url or not model:
        return None
    return ChatLLM(url, model, env.get("ENGRAM_LLM_API_KEY") or None)
