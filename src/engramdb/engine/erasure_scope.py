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
* The ``tool_stats`` aggregate (and ``tool_stats_hourly``, the same per hour)
  keys its error rows by an error's first
  :data:`~engramdb.audit.tool_stats.ERROR_CHARS` characters, so that key is
  agent-written text too. :func:`outcome_plan` decides what each redacted
  outcome's ``error`` becomes and which error rows are renamed: a row whose
  label reaches the erased text gets a fresh opaque label (``[erased 1a2b...]``)
  and so do its outcomes' errors (and every hour's row of that label), so the
  aggregates still count exactly the outcomes they counted, under a key that
  says nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from engramdb.audit.tool_stats import ERROR_CHARS, Key
from engramdb.model import namespace_matches

__all__ = ["ERASED_JSON", "REDACTED", "SIDE_TEXT", "STATS_TABLES", "OutcomePlan", "hidden_selector",
           "memory_matches", "mentions", "outcome_plan", "redacted_changes", "restated",
           "side_matches", "touches"]

REDACTED = "[erased]"
ERASED_JSON: dict[str, Any] = {"erased": True}

# Side tables whose free text an erasure redacts in place, and who wrote a row.
SIDE_TEXT: dict[str, tuple[str, ...]] = {
    "tool_outcomes": ("error", "metadata"),
    "decisions": ("description", "outcome", "metadata"),
    "conflicts": ("subject", "reason", "resolution"),
}
# The aggregates keyed by an error's first ERROR_CHARS characters (a label).
STATS_TABLES = ("tool_stats", "tool_stats_hourly")
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
        return _first_mention(value, needle) >= 0
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
    if value is None or value in ({}, "", ERASED_JSON) or (
            isinstance(value, str) and value.startswith("[erased")):
        return value
    return json.loads(json.dumps(ERASED_JSON)) if col in _JSON_COLUMNS else REDACTED


def redacted_changes(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """The update that removes a side row's text (empty if nothing is left to remove)."""
    return {c: _redacted(c, row.get(c)) for c in SIDE_TEXT[table]
            if row.get(c) != _redacted(c, row.get(c))}


def _ref(effect: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = effect.get("row") if effect.get("op") == "insert" else effect.get("key")
    return ref or {}


def _stats_key(effect: Mapping[str, Any]) -> Key:
    ref = _ref(effect)
    return (ref.get("namespace"), ref.get("principal"), ref.get("tool"), ref.get("kind"),
            ref.get("label"))  # type: ignore[return-value]


def touches(effect: Mapping[str, Any], ids: set[str], side: Mapping[str, set[str]],
            plan: OutcomePlan | None = None) -> bool:
    """Whether a logged effect wrote an erased memory, a redacted side row, or a
    ``tool_stats`` row the erasure renames."""
    table = effect.get("table")
    if table == "memories":
        return _ref(effect).get("id") in ids
    if table in STATS_TABLES:
        return plan is not None and _stats_key(effect) in plan.relabel
    return table in side and _ref(effect).get("id") in side[str(table)]


def restated(effect: Mapping[str, Any], ids: set[str], side: Mapping[str, set[str]],
             plan: OutcomePlan | None = None) -> dict[str, Any] | None:
    """A logged effect as it is kept for replay: dropped if it wrote an erased memory
    version, its text redacted if it wrote a redacted side row (a tool outcome's
    error as ``plan`` says), its key renamed if it wrote a renamed ``tool_stats``
    row, else unchanged."""
    if effect.get("table") == "memories":
        return None if _ref(effect).get("id") in ids else dict(effect)
    if not touches(effect, ids, side, plan):
        return dict(effect)
    out: dict[str, Any] = json.loads(json.dumps(effect))
    if out["table"] in STATS_TABLES:
        assert plan is not None
        (out["row"] if out["op"] == "insert" else out["key"])["label"] = (
            plan.relabel[_stats_key(effect)])
        return out
    body = out["row"] if out["op"] == "insert" else out.get("changes") or {}
    for col in SIDE_TEXT[str(out["table"])]:
        if col in body:
            body[col] = _redacted(col, body[col])
    if out["table"] == "tool_outcomes" and plan is not None and "error" in body:
        body["error"] = plan.errors.get(str(_ref(effect).get("id")), body["error"])
    return out


class OutcomePlan:
    """What an erasure does to tool outcomes' errors and the aggregate rows keyed by them.

    ``errors``: outcome id -> the ``error`` it keeps; ``relabel``: ``tool_stats``
    error-row key -> its new opaque label.
    """

    __slots__ = ("errors", "relabel")

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}
        self.relabel: dict[Key, str] = {}


def _group(row: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(row["namespace"]), str(row["principal"]), str(row["tool"]))


def outcome_plan(rows: Sequence[Mapping[str, Any]], chosen: Mapping[str, str]) -> OutcomePlan:
    """How the redacted tool outcomes ``rows`` keep counting in ``tool_stats``.

    A failed outcome's error is its aggregate row's label (first ERROR_CHARS
    characters). If the erased text reaches into the label (always, for an
    ``author`` or ``namespace`` selector; for a ``subject``, when it occurs
    there), the row is renamed to a fresh opaque label and the outcome's error
    becomes that label; otherwise (the subject occurs only further on) the
    error keeps its label and loses the rest. Other outcomes' errors become
    ``[erased]``.
    """
    plan = OutcomePlan()
    subject = chosen.get("subject")
    for r in rows:
        error = r.get("error")
        if not isinstance(error, str) or not error or error.startswith("[erased"):
            continue
        rid = str(r["id"])
        at = 0 if subject is None else _first_mention(error, subject)
        if at < 0:
            plan.errors[rid] = error  # the subject is in its metadata, not its error
        elif r.get("ok"):
            plan.errors[rid] = REDACTED  # not counted by error
        elif at < ERROR_CHARS:
            key: Key = (*_group(r), "error", error[:ERROR_CHARS])
            plan.errors[rid] = plan.relabel.setdefault(
                key, f"[erased {secrets.token_hex(6)}]")
        else:
            plan.errors[rid] = f"{error[:ERROR_CHARS]} {REDACTED}"
    return plan


def _first_mention(text: str, needle: str) -> int:
    """Where ``needle`` first occurs in ``text`` as a whole token (as :func:`mentions`
    matches it), or -1."""
    found = re.search(rf"(?<!{_WORD}){re.escape(needle)}(?!{_WORD})", text)
    return found.start() if found else -1
