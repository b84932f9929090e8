"""A Server-Sent Events parser (the WHATWG event-stream rules), fed line by line."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEMessage", "SSEParser"]


@dataclass(frozen=True, slots=True)
class SSEMessage:
    """One dispatched message; ``data`` is empty for an ``id``-only cursor move."""

    event: str
    data: str
    id: str | None


class SSEParser:
    """Turns lines of a ``text/event-stream`` into :class:`SSEMessage` values."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._seen_id = False

    def feed(self, line: str) -> SSEMessage | None:
        """Consume one line (without its newline); return a message when one completes."""
        if line == "":
            if not self._data and not self._seen_id:
                self._event = ""
                return None
            msg = SSEMessage(self._event or "message", "\n".join(self._data), self._id)
            self._data, self._event, self._seen_id = [], "", False
            return msg
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
            self._seen_id = True
        return None
