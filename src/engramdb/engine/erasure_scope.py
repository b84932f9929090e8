"""What an erasure reaches besides the selected memory rows, and how logged effects lose it.

Pure functions, used by :mod:`engramdb.engine.erasure`.

* A ``subject`` selector names a person or thing; its identifier is personal
  data wherever it was written. So ``forget(subject=S)`` selects the memories
  whose assertion subject is ``S`` *and* the memories whose text, value or
  metadata mention ``S`` as a whole token (a working block, an episode, a
  summary, a procedure: the layers write memories without a subject).
* Side rows that are not memories keep their numbers and links but lose their
  free text in place (``[erased]``): a tool outcome's ``error`` and
  ``metadata``, a decision's ``description``, ``outcome`` and ``metadata``,
  and a conflict's ``subject``, ``reason`` and ``resolution`` (see
  :data:`SIDE_TEXT`). They are chosen by the same selector: mentioning the
  subject, written by the author, in the namespace glob.
* Every logged effect that wrote such text is restated without it
  (:func:`restated`), and the restated effects replace the event's payload in
  ``erased_events``, so ``verify`` and ``import`` replay the redacted rows.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

from engramdb.model import namespace_matches

__all__ = ["ERASED_JSON", "REDACTED", "SIDE_TEXT", "hidden_selector", "memory_matches",
           "mentions", "redacted_changes", "restated", "side_matches", "touches"]

REDACTED = "[erased]"
ERASED_JSON: dict[str, Any] = {"erased": True}

# Side tables whose free text an erasure redacts in place, and who wrote a row.
SIDE_TEXT: dict[str, tuple[str, ...]] = {
    "tool_outcomes": ("error", "metadata"),
    "decisions": ("description", "outcome", "metadata"),
    "conflicts": ("subject", "reason", "resolution"),
}
_JSON_COLUMNS = frozenset({"metadata", "outcome"})
_WORD = r"[0-9A-Za-z_]"

# Selector fields that are personal data themselves: logged as a keyed hash.
_HIDDEN = ("subject",)


def hidden_selector(chosen: Mapping[str, str], key: bytes) -> dict[str, str]:
    """The selector as the log keeps it: ``subject`` as ``hmac-sha256:<hex>`` under the
    database's erasure key (whoever holds the key can confirm a given subject was
    erased; the log, exports and checkpoints alone do not reveal it)."""
    return {k: (f"hmac-sha256:{hmac.new(key, v.encode('utf-8'), hashlib.sha256).hexdigest()}"
                if k in _HIDDEN else v) for k, v in chosen.items()}


def mentions(value: Any, needle: str) -> bool:
    """Whether ``needle`` occurs, case and all, as a whole token (not inside a longer
    word: ``user:4`` is not in ``user:42``) in a string, or in any key or string of
    a JSON value."""
    if isinstance(value, str):
        pattern = rf"(?<!{_WORD}){re.escape(needle)}(?!{_WORD})"
        return re.search(pattern, value) is not None
    if isinstance(value, Mapping):
        return any(mentions(k, needle) or mentions(v, needle) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(mentions(v, needle) for v in value)
    return False


def memory_matches(row: Mapping[str, Any], chosen: Mapping[str, str]) -> bool:
    """Whether a memory version is selected (every given selector must match)."""
    subject = chosen.get("subject")
    if subject is not None and row.get("subject") != subject and not any(
            mentions(row.get(c), subject) for c in ("text", "value", "metadata")):
        return False
    if "id" in chosen and row["id"] != chosen["id"]:
        return False
    if "author" in chosen and row["author"] != chosen["author"]:
        return False
    return "namespace" not in chosen or namespace_matches(chosen["namespace"], row["namespace"])


def side_matches(table: str, row: Mapping[str, Any], chosen: Mapping[str, str]) -> bool:
    """Whether a side row's text is selected: an ``id`` selector names one memory only;
    ``subject`` must be mentioned in the row's text; ``author`` wrote it; the
    ``namespace`` glob holds it."""
    if "id" in chosen:
        return False
    subject = chosen.get("subject")
    if subject is not None and not any(mentions(row.get(c), subject) for c in SIDE_TEXT[table]):
        return False
    if "author" in chosen and row.get("principal") != chosen["author"]:
        return False
    return "namespace" not in chosen or namespace_matches(chosen["namespace"], row["namespace"])


def _redacted(col: str, value: Any) -> Any:
    if value is None or value in ({}, "", REDACTED, ERASED_JSON):
        return value
    return json.loads(json.dumps(ERASED_JSON)) if col in _JSON_COLUMNS else REDACTED


def redacted_changes(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """The update that removes a side row's text (empty if nothing is left to remove)."""
    return {c: _redacted(c, row.get(c)) for c in SIDE_TEXT[table]
            if row.get(c) != _redacted(c, row.get(c))}


def _ref(effect: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = effect.get("row") if effect.get("op") == "insert" else effect.get("key")
    return ref or {}


def touches(effect: Mapping[str, Any], ids: set[str], side: Mapping[str, set[str]]) -> bool:
    """Whether a logged effect wrote an erased memory or a redacted side row."""
    table = effect.get("table")
    if table == "memories":
        return _ref(effect).get("id") in ids
    return table in side and _ref(effect).get("id") in side[str(table)]


def restated(effect: Mapping[str, Any], ids: set[str], side: Mapping[str, set[str]]
             ) -> dict[str, Any] | None:
    """A logged effect as it is kept for replay: dropped if it wrote an erased memory
    version, its text redacted if it wrote a redacted side row, else unchanged."""
    if effect.get("table") == "memories":
        return None if _ref(effect).get("id") in ids else dict(effect)
    if not touches(effect, ids, side):
        return dict(effect)
    out: dict[str, Any] = json.loads(json.dumps(effect))
    body = out["row"] if out["op"] == "insert" else out.get("changes") or {}
    for col in SIDE_TEXT[str(out["table"])]:
        if col in body:
            body[col] = _redacted(col, body[col])
    return out
