"""The shape limits of every JSON value a caller can store, and the clip that keeps reads safe.

A JSON value (``metadata``, an assertion ``value``, a decision ``outcome``,
namespace settings, filters) is checked here before anything else looks at
it, by every door alike: :func:`engramdb.codec.check_json` calls
:func:`check_shape` first. The walk is iterative, so a hostile value cannot
exhaust the interpreter's stack, and it stops at the first limit passed.

Values stored before these limits existed may still be deeper than any
encoder accepts; :func:`clip_json` is what the HTTP door serialises instead,
so that no stored value can make a read fail.
"""

from __future__ import annotations

from typing import Any

from engramdb.errors import InvalidMetadata

__all__ = ["MAX_DEPTH", "MAX_ITEMS", "MAX_NODES", "MAX_STRING_CHARS",
           "MAX_TOTAL_CHARS", "check_shape",
           "clip_json"]

# Deep enough for any real document (GeoJSON, tool traces), far below the
# 255 levels where JSON encoders (pydantic-core, orjson) give up.
MAX_DEPTH = 32
# Entries in one object or list.
MAX_ITEMS = 1_000
# Values (scalars and containers) in the whole document.
MAX_NODES = 10_000
# Characters in one string (a key or a value), and in all of them together.
MAX_STRING_CHARS = 64_000
MAX_TOTAL_CHARS = 256_000

# What a clipped subtree reads as: a string that says what happened.
CLIPPED = "[nested too deep to send; read it embedded or ask an admin to rewrite it]"


def check_shape(obj: Any, *, what: str = "metadata") -> None:
    """Refuse a JSON value too deep, too wide, too large or too long to store.

    Args:
        obj: The value as the caller gave it (dicts, lists, tuples, scalars).
        what: The field name used in the message (never the value itself).

    Raises:
        InvalidMetadata: a limit is passed; the message names the limit and the fix.
    """
    nodes = chars = 0
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise InvalidMetadata(
                f"{what} holds more than {MAX_NODES} values; store large documents "
                "elsewhere and keep a reference", field=what, limit=MAX_NODES)
        if isinstance(item, str):
            chars += len(item)
            if chars > MAX_TOTAL_CHARS:
                raise InvalidMetadata(
                    f"{what} holds more than {MAX_TOTAL_CHARS} characters of text; store "
                    "large documents elsewhere and keep a reference", field=what,
                    limit=MAX_TOTAL_CHARS)
            if len(item) > MAX_STRING_CHARS:
                raise InvalidMetadata(
                    f"{what} holds a string longer than {MAX_STRING_CHARS} characters; "
                    "store long text as the memory's text or elsewhere", field=what,
                    limit=MAX_STRING_CHARS)
            continue
        if isinstance(item, dict):
            children: Any = item.values()
            for key in item:
                chars += len(key) if isinstance(key, str) else 0
                if isinstance(key, str) and len(key) > MAX_STRING_CHARS:
                    raise InvalidMetadata(
                        f"{what} has a key longer than {MAX_STRING_CHARS} characters",
                        field=what, limit=MAX_STRING_CHARS)
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > MAX_DEPTH:
            raise InvalidMetadata(
                f"{what} nests deeper than {MAX_DEPTH} levels; flatten it (e.g. dotted "
                "keys) or store the document elsewhere and keep a reference",
                field=what, limit=MAX_DEPTH)
        if len(item) > MAX_ITEMS:
            raise InvalidMetadata(
                f"{what} has an object or list of more than {MAX_ITEMS} entries; split it "
                "or store it elsewhere and keep a reference", field=what, limit=MAX_ITEMS)
        stack.extend((child, depth + 1) for child in children)


def clip_json(obj: Any, max_depth: int = MAX_DEPTH * 2) -> Any:
    """``obj`` with every container deeper than ``max_depth`` replaced by :data:`CLIPPED`.

    Values within the limits (everything written since they exist) come back
    unchanged and uncopied; only a legacy value is rebuilt. Iterative, like
    :func:`check_shape`.
    """
    if not _deeper_than(obj, max_depth):
        return obj
    root: list[Any] = [None]
    # (source, depth, container the copy goes into, key or index there)
    stack: list[tuple[Any, int, Any, Any]] = [(obj, 1, root, 0)]
    while stack:
        item, depth, parent, slot = stack.pop()
        if isinstance(item, dict | list | tuple) and depth > max_depth:
            parent[slot] = CLIPPED
        elif isinstance(item, dict):
            copy: dict[Any, Any] = dict.fromkeys(item)
            parent[slot] = copy
            stack.extend((v, depth + 1, copy, k) for k, v in item.items())
        elif isinstance(item, list | tuple):
            seq: list[Any] = [None] * len(item)
            parent[slot] = seq
            stack.extend((v, depth + 1, seq, i) for i, v in enumerate(item))
        else:
            parent[slot] = item
    return root[0]


def _deeper_than(obj: Any, max_depth: int) -> bool:
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
