"""One request to an OpenAI-compatible ``/chat/completions`` endpoint.

The contradiction judge (``policy``) and the episode summariser (``retrieval``)
both ask a chat model one question; this module is the transport they share,
below both layers, so a fix to timeouts, status hints or answer parsing lands
once. It knows nothing of what is asked: the caller builds the messages and
reads the answer.
"""

from __future__ import annotations

import httpx

from engramdb.errors import UpstreamError

_STATUS_HINTS = {
    401: "check api_key",
    403: "check api_key",
    404: "check base_url and that the model {model!r} exists on the server",
}


def chat_completion(
    base_url: str,
    model: str,
    messages: list[dict[str, str]],
    *,
    api_key: str | None,
    timeout: float,
    who: str,
    unreachable_hint: str,
) -> str:
    """The assistant's reply text, or an ``UpstreamError`` that says what to check.

    Args:
        base_url: API root without a trailing slash; ``/chat/completions`` is appended.
        model: the model name as the server knows it.
        messages: the chat messages, in order.
        api_key: sent as a bearer token when given.
        timeout: seconds to wait for the whole request.
        who: how errors name the endpoint's user, e.g. ``"LLM judge"``.
        unreachable_hint: what to check when nothing answers (which setting
            names the URL differs between callers).

    Raises:
        UpstreamError: unreachable, an HTTP error, not a chat-completions
            answer, or an empty reply; ``details`` carry the url and model.
    """
    url = f"{base_url}/chat/completions"
    payload = {"model": model, "temperature": 0, "messages": messages}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    where = {"url": url, "model": model}
    try:
        response = httpx.post(url, json=payload, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise UpstreamError(
            f"the {who} at {url} could not be reached ({type(exc).__name__}); {unreachable_hint}",
            **where,
        ) from exc
    if response.status_code >= 400:
        hint = _STATUS_HINTS.get(response.status_code, "check the server log and the model name")
        raise UpstreamError(
            f"the {who} at {url} answered HTTP {response.status_code}; {hint.format(model=model)}",
            upstream_status=response.status_code,
            **where,
        )
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise UpstreamError(
            f"the {who} at {url} did not answer in chat-completions format; check that "
            "base_url points at an OpenAI-compatible API",
            **where,
        ) from exc
    if not isinstance(content, str) or not content.strip():
        raise UpstreamError(
            f"the {who} at {url} sent an empty answer; check the model name ({model!r}), or "
            "use a model that follows instructions",
            **where,
        )
    return content
