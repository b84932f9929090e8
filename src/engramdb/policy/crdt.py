"""Merge kinds for predicates whose writers combine rather than contradict.

A predicate declared with ``policy="merge"`` keeps one merged memory per
``(namespace, subject, predicate)``; every write is a *contribution* (an
operation) folded into that memory's state. Each kind here is a state-based
CRDT: applying the same contributions in any order yields the same state, so
concurrent writers converge whatever order the database serialises them in.

Kinds and what a contribution's ``value`` means:

* ``counter``: an integer increment (negative to decrement). Value: the sum.
* ``max`` / ``min``: a number. Value: the largest / smallest seen.
* ``lww``: any JSON value. The contribution with the latest valid time wins;
  ties break on the author's name, then on the value's canonical JSON, so the
  winner never depends on arrival order.
* ``set`` (add-wins observed-remove set): a JSON value or a list of values to
  add, or ``{"add": [...], "remove": [...], "observed": tx}``. A remove
  removes the additions its writer had seen: those made at or before
  transaction ``observed`` (a receipt's ``as_of``), or, without
  ``observed``, everything present when the write applies. An addition the
  remover had not seen survives: add wins.

Every function is pure; states are plain JSON values the engine stores in the
merged memory's ``metadata["_crdt"]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engramdb.codec import canonical
from engramdb.errors import InvalidPolicy, ValueTypeError

__all__ = [
    "MERGE_KINDS",
    "Contribution",
    "apply",
    "check_op",
    "initial_state",
    "value_of",
]

MERGE_KINDS: tuple[str, ...] = ("lww", "counter", "set", "max", "min")
# A remove that names an observed transaction covers every addition made in it.
_WHOLE_TX = 2**31


@dataclass(frozen=True, slots=True)
class Contribution:
    """One write folded into a merged value.

    Attributes:
        op: The normalised operation (see :func:`check_op`).
        tx: Transaction of the write; with ``seq`` it tags set additions.
        seq: Order of the write inside its transaction (the merged memory's
            new version number), so several writes in one transaction differ.
        time: Valid time of the write in microseconds (the lww clock).
        author: Principal who wrote it (the lww tie-break).
    """

    op: Any
    tx: int
    seq: int
    time: int
    author: str


def _key(value: Any) -> str:
    return canonical(value).decode("utf-8")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
        value)


def check_kind(kind: str) -> str:
    """Validate a merge kind name.

    Raises:
        InvalidPolicy: not one of :data:`MERGE_KINDS`.
    """
    if kind not in MERGE_KINDS:
        raise InvalidPolicy(f"unknown merge kind {kind!r}; use one of {', '.join(MERGE_KINDS)}",
                            merge=str(kind))
    return kind


def check_op(kind: str, op: Any, element_check: Any = None) -> Any:
    """Validate and normalise a contribution's value for ``kind``.

    Args:
        kind: The merge kind.
        op: The ``value`` the writer sent.
        element_check: Optional callable validating one value (or set element)
            against the predicate's declared value type.

    Returns:
        The normalised operation: an int, a number, any value, or for sets
        ``{"add": [...], "remove": [...], "observed": int | None}``.

    Raises:
        ValueTypeError: the value does not fit the kind.
    """
    check_kind(kind)
    if op is None:
        raise ValueTypeError(f"a {kind} contribution needs a value", merge=kind)
    if kind == "counter":
        if isinstance(op, bool) or not isinstance(op, int):
            raise ValueTypeError(
                f"a counter contribution is an integer increment, not {op!r}; use max, min "
                "or lww for real numbers", merge=kind)
        return op
    if kind in ("max", "min"):
        if not _is_number(op):
            raise ValueTypeError(f"a {kind} contribution must be a finite number, not {op!r}",
                                 merge=kind)
        if element_check is not None:
            element_check(op)
        return op
    if kind == "lww":
        if element_check is not None:
            element_check(op)
        return op
    return _check_set_op(op, element_check)


def _check_set_op(op: Any, element_check: Any) -> dict[str, Any]:
    if isinstance(op, Mapping):
        unknown = set(op) - {"add", "remove", "observed"}
        if unknown:
            raise ValueTypeError(
                f"a set contribution takes 'add', 'remove' and 'observed', not {sorted(unknown)}",
                merge="set")
        add, remove, observed = op.get("add", []), op.get("remove", []), op.get("observed")
        if not isinstance(add, list) or not isinstance(remove, list):
            raise ValueTypeError("'add' and 'remove' of a set contribution must be lists",
                                 merge="set")
        if observed is not None and (isinstance(observed, bool) or not isinstance(observed, int)
                                     or observed < 0):
            raise ValueTypeError("'observed' must be a transaction number (a receipt's as_of)",
                                 merge="set")
        if not add and not remove:
            raise ValueTypeError("a set contribution must add or remove something", merge="set")
    else:
        add, remove, observed = (list(op) if isinstance(op, list) else [op]), [], None
        if not add:
            raise ValueTypeError("a set contribution must add or remove something", merge="set")
    for element in (*add, *remove):
        if element is None:
            raise ValueTypeError("a set element cannot be null", merge="set")
        if element_check is not None:
            element_check(element)
    return {"add": add, "remove": remove, "observed": observed}


def initial_state(kind: str) -> dict[str, Any]:
    """The state before any contribution."""
    check_kind(kind)
    if kind == "counter":
        return {"total": 0}
    if kind in ("max", "min"):
        return {"value": None}
    if kind == "lww":
        return {"value": None, "time": None, "author": None}
    return {"elements": []}


def apply(kind: str, state: Mapping[str, Any], c: Contribution) -> dict[str, Any]:
    """Fold one contribution into a state; commutative, associative and pure."""
    if kind == "counter":
        return {"total": int(state["total"]) + int(c.op)}
    if kind in ("max", "min"):
        return {"value": _extreme(kind, state.get("value"), c.op)}
    if kind == "lww":
        return _lww(state, c)
    if kind == "set":
        return _set_apply(state, c)
    raise InvalidPolicy(f"unknown merge kind {kind!r}")


def _extreme(kind: str, current: Any, new: Any) -> Any:
    if current is None:
        return new
    if float(new) == float(current):  # 1 and 1.0: keep one form whatever the order
        return min(current, new, key=_key)
    pick = max if kind == "max" else min
    return pick(current, new, key=float)


def _lww(state: Mapping[str, Any], c: Contribution) -> dict[str, Any]:
    mine = {"value": c.op, "time": c.time, "author": c.author}
    if state.get("time") is None:
        return mine
    theirs = (int(state["time"]), str(state["author"]), _key(state["value"]))
    if (c.time, c.author, _key(c.op)) > theirs:
        return mine
    return dict(state)


def _set_apply(state: Mapping[str, Any], c: Contribution) -> dict[str, Any]:
    elements: dict[str, dict[str, Any]] = {
        _key(e["value"]): {"value": e["value"], "tags": [tuple(t) for t in e["tags"]],
                           "removed": tuple(e["removed"]) if e.get("removed") else None}
        for e in state.get("elements", [])
    }
    op = c.op
    if op["remove"]:
        # Without an observed point the remover saw everything applied before it.
        mark = (op["observed"], _WHOLE_TX) if op["observed"] is not None else (c.tx, c.seq)
        for value in op["remove"]:
            e = elements.setdefault(_key(value), {"value": value, "tags": [], "removed": None})
            if e["removed"] is None or mark > e["removed"]:
                e["removed"] = mark
    for value in op["add"]:
        e = elements.setdefault(_key(value), {"value": value, "tags": [], "removed": None})
        e["tags"].append((c.tx, c.seq))
    out = []
    for key in sorted(elements):
        e = elements[key]
        removed = e["removed"]
        # A tag below the removal mark was seen by the remover: it is gone for good.
        tags = sorted({t for t in e["tags"] if removed is None or t >= removed})
        out.append({"value": e["value"], "tags": [list(t) for t in tags],
                    "removed": list(removed) if removed is not None else None})
    return {"elements": out}


def value_of(kind: str, state: Mapping[str, Any]) -> Any:
    """The merged value readers see."""
    if kind == "counter":
        return int(state["total"])
    if kind in ("max", "min", "lww"):
        return state.get("value")
    return [e["value"] for e in state.get("elements", []) if e["tags"]]
