"""Framework namespaces (tuples of free-text labels) <-> EngramDB namespaces (slash paths).

An EngramDB segment is lowercase ``[a-z0-9_:@-]``; a LangGraph label is any
string without ``.``. A label that is already a valid segment (and has no
``.``) is kept as it is, so ``("acme", "users")`` lives at ``<root>/acme/users``;
any other label is written ``x.<hex of its UTF-8>``. LangGraph labels never
contain ``.``, so the two forms cannot collide, and characters such as ``%``,
``_`` and ``*`` stay literal: no label is ever read as a pattern.
"""

from __future__ import annotations

import re

from engramdb.errors import InvalidInput

_PLAIN = re.compile(r"^[a-z0-9][a-z0-9_:@-]{0,127}$")
MAX_DEPTH = 15  # EngramDB allows 16 segments; the root takes one
MAX_LABEL_BYTES = 63  # hex doubles it; "x." takes two of a segment's 128 characters


def check_root(root: str) -> str:
    if not isinstance(root, str) or not _PLAIN.match(root):
        raise InvalidInput(f"root {root!r} must be one lowercase EngramDB segment "
                           "([a-z0-9_:@-], e.g. 'langgraph-store')", field="root")
    return root


def encode(root: str, namespace: tuple[str, ...]) -> str:
    """The EngramDB namespace that holds the items of LangGraph ``namespace``.

    Raises:
        InvalidInput: too deep, or a label too long to fit one segment.
    """
    if len(namespace) > MAX_DEPTH:
        raise InvalidInput(f"namespace {namespace!r} has {len(namespace)} labels; EngramStore "
                           f"keeps at most {MAX_DEPTH}", field="namespace")
    parts = [root]
    for label in namespace:
        if _PLAIN.match(label):
            parts.append(label)
            continue
        raw = label.encode()
        if len(raw) > MAX_LABEL_BYTES:
            raise InvalidInput(
                f"namespace label {label[:40]!r}... is {len(raw)} bytes; EngramStore keeps "
                f"labels that are plain lowercase segments, or at most {MAX_LABEL_BYTES} "
                "bytes otherwise", field="namespace")
        parts.append("x." + raw.hex())
    return "/".join(parts)


def decode(root: str, namespace: str) -> tuple[str, ...] | None:
    """The labels of an EngramDB namespace under ``root`` (``()`` for the root itself),
    or None if it is not under ``root``."""
    parts = namespace.split("/")
    if parts[0] != root:
        return None
    out = []
    for seg in parts[1:]:
        if seg.startswith("x."):
            try:
                out.append(bytes.fromhex(seg[2:]).decode())
            except ValueError:
                return None
        elif "." in seg:
            return None  # not written by EngramStore
        else:
            out.append(seg)
    return tuple(out)
