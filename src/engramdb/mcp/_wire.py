"""What crosses the MCP wire: engine values as JSON, engine errors as tool errors.

Tool results carry the same JSON twice, as the SDK recommends: as
``structuredContent`` for programs and as one text block for the model.
An :class:`~engramdb.errors.EngramError` becomes an ``isError`` result whose
text starts with the stable error code and whose structured content is the
error's wire form (the body the HTTP door sends), so an agent sees the code,
the message that says what to do, and the details; never a stack trace.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from mcp.types import CallToolResult, TextContent

from engramdb.errors import EngramError

__all__ = ["error_result", "error_text", "plain", "tool_result"]


def plain(value: Any) -> Any:
    """A JSON-ready copy of an engine value (memories, receipts, conflicts, ...).

    Values with a ``to_dict`` method use it (that is the engine's own wire
    form); other dataclasses are taken field by field; times become ISO-8601.
    """
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return plain(to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    return str(value)


def _dumps(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def error_text(exc: EngramError) -> str:
    """``<code>: <message>`` plus the details as JSON when there are any."""
    text = f"{exc.code}: {exc.message}"
    hint = exc.hint("mcp")
    if hint is not None:
        text += f"; {hint}"
    if exc.details:
        text += f"\ndetails: {_dumps(plain(exc.details))}"
    return text


def error_result(exc: EngramError) -> CallToolResult:
    """The ``isError`` tool result for an engine error."""
    return CallToolResult(
        content=[TextContent(type="text", text=error_text(exc))],
        structured_content={"error": plain(exc.to_wire())},
        is_error=True,
    )


def tool_result(produce: Callable[[], Any]) -> CallToolResult:
    """Run one engine call and shape its outcome as a tool result.

    Args:
        produce: calls the engine and returns what to send: an engine value
            whose JSON form is an object (a Memory, a Decision, ...) or a dict.

    Returns:
        The result with structured content and the same JSON as text, or an
        ``isError`` result when the engine raised an :class:`EngramError`.
        Anything else propagates: the SDK answers it with a generic
        "Error executing tool" and logs the traceback on the server only.
    """
    try:
        payload = plain(produce())
    except EngramError as exc:
        return error_result(exc)
    return CallToolResult(
        content=[TextContent(type="text", text=_dumps(payload))],
        structured_content=payload,
    )
