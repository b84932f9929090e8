"""Contradictions as data: predicate schemas, namespace settings, detection, policies.

Pure logic over plain rows (the ``memories`` columns of
:mod:`engramdb.storage.schema`): nothing here reads or writes storage. The
engine glue (:mod:`engramdb.engine.trust`) fetches rows inside the write
transaction, asks this module what to do, and turns the answer into effects.

Defaults when nothing is declared (see docs/trust.md):

* a predicate is ``cardinality="one"``, ``value_type="any"``, no merge, and
  its policy is the namespace's ``default_policy``, itself ``"flag"``: a
  contradiction never refuses or hides a write unless an admin said so;
* free-text detection is on, judging the 3 most similar current memories of
  the same namespace (and subject, if the new memory names one);
* there is no trust floor, so nothing is quarantined.

A conflict is always between memories of one namespace: a namespace is the
unit of access, so a conflict record, its event and the ``contested`` mark
are visible exactly to those who may read both sides.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engramdb.errors import InvalidInput, InvalidPolicy, ValueTypeError
from engramdb.model import check_glob, namespace_matches
from engramdb.policy.crdt import MERGE_KINDS, check_kind

__all__ = [
    "CARDINALITIES",
    "POLICIES",
    "VALUE_TYPES",
    "NamespaceSettings",
    "Outcome",
    "Party",
    "PredicateSchema",
    "Rival",
    "RivalChange",
    "authority_rank",
    "check_policy",
    "check_value",
    "decide",
    "exact_rivals",
    "make_schema",
    "resolve_schema",
    "resolve_settings",
    "same_value",
    "specificity",
    "valid_overlap",
]

POLICIES: tuple[str, ...] = ("supersede", "authority", "flag", "reject", "merge")
CARDINALITIES: tuple[str, ...] = ("one", "many")
VALUE_TYPES: tuple[str, ...] = (
    "any", "string", "number", "integer", "boolean", "object", "array", "datetime",
)
Row = Mapping[str, Any]


def check_policy(policy: Any) -> str:
    """Validate a policy name.

    Raises:
        InvalidPolicy: not one of :data:`POLICIES`.
    """
    if policy not in POLICIES:
        raise InvalidPolicy(
            f"unknown conflict policy {policy!r}; use one of {', '.join(POLICIES)}",
            policy=str(policy),
        )
    return str(policy)


# --------------------------------------------------------------------------- schemas


@dataclass(frozen=True, slots=True)
class PredicateSchema:
    """How one predicate behaves in the namespaces matching ``pattern``.

    ``declared`` is False for the defaults applied when no schema matches.
    """

    pattern: str
    predicate: str
    cardinality: str = "one"
    value_type: str = "any"
    merge: str | None = None
    policy: str = "flag"
    declared: bool = False
    id: str | None = None
    tx_from: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern, "predicate": self.predicate,
            "cardinality": self.cardinality, "value_type": self.value_type,
            "merge": self.merge, "policy": self.policy, "declared": self.declared,
            "id": self.id, "tx_from": self.tx_from,
        }


def make_schema(pattern: str, predicate: str, *, cardinality: str = "one",
                value_type: str | None = None, merge: str | None = None,
                policy: str | None = None) -> PredicateSchema:
    """Validate a declaration and return it as a value.

    ``policy`` defaults to ``"merge"`` when a merge kind is given, else ``"flag"``.

    Raises:
        InvalidNamespace: malformed glob.
        InvalidPolicy: unknown policy or merge kind, or a combination that
            cannot work (merge without a kind, a kind without merge, merge on
            a cardinality-many predicate).
        InvalidInput: malformed predicate, cardinality or value type.
    """
    check_glob(pattern)
    if not isinstance(predicate, str) or not predicate or len(predicate) > 500:
        raise InvalidInput("predicate must be a non-empty string of at most 500 characters",
                           field="predicate")
    if cardinality not in CARDINALITIES:
        raise InvalidInput(f"cardinality must be 'one' or 'many', not {cardinality!r}",
                           field="cardinality")
    value_type = "any" if value_type is None else value_type
    if value_type not in VALUE_TYPES:
        raise InvalidInput(
            f"unknown value_type {value_type!r}; use one of {', '.join(VALUE_TYPES)}",
            field="value_type")
    if merge is not None:
        check_kind(merge)
    policy = check_policy(policy if policy is not None else ("merge" if merge else "flag"))
    if policy == "merge" and merge is None:
        raise InvalidPolicy(f"policy 'merge' needs a merge kind: one of {', '.join(MERGE_KINDS)}",
                            policy=policy)
    if merge is not None and policy != "merge":
        raise InvalidPolicy(f"merge={merge!r} only works with policy='merge', not {policy!r}",
                            policy=policy)
    if policy == "merge" and cardinality != "one":
        raise InvalidPolicy("a merged predicate holds one value: use cardinality='one'",
                            policy=policy)
    if merge == "counter" and value_type not in ("any", "integer"):
        raise InvalidPolicy("a counter holds an integer: use value_type='integer' or omit it",
                            policy=policy)
    if merge in ("max", "min") and value_type not in ("any", "number", "integer"):
        raise InvalidPolicy(f"{merge} compares numbers: use value_type 'number' or 'integer'",
                            policy=policy)
    return PredicateSchema(pattern, predicate, cardinality, value_type, merge, policy,
                           declared=True)


def specificity(pattern: str) -> tuple[int, int, int, int]:
    """Sort key: the more literal segments and the fewer wildcards, the more specific."""
    parts = pattern.split("/")
    literal = sum(1 for p in parts if p not in ("*", "**"))
    return (literal, -parts.count("**"), -parts.count("*"), len(parts))


def resolve_schema(rows: Iterable[Row], namespace: str, predicate: str,
                   default_policy: str = "flag") -> PredicateSchema:
    """The schema that governs ``predicate`` in ``namespace``.

    Among current declarations whose pattern matches, the most specific wins
    (ties: the later declaration). With none, the defaults apply.
    """
    matching = [r for r in rows
                if r["predicate"] == predicate and r.get("tx_to") is None
                and namespace_matches(str(r["pattern"]), namespace)]
    if not matching:
        return PredicateSchema(namespace, predicate, policy=default_policy)
    best = max(matching, key=lambda r: (specificity(str(r["pattern"])), int(r["tx_from"])))
    return PredicateSchema(
        pattern=best["pattern"], predicate=best["predicate"], cardinality=best["cardinality"],
        value_type=best.get("value_type") or "any", merge=best.get("merge"),
        policy=best["policy"], declared=True, id=best["id"], tx_from=int(best["tx_from"]),
    )


def check_value(schema: PredicateSchema, value: Any) -> None:
    """Check one value against the schema's declared type (``None`` always passes).

    Raises:
        ValueTypeError: naming the predicate, the expected type and the value.
    """
    if value is None or schema.value_type == "any":
        return
    t = schema.value_type
    ok = {
        "string": lambda v: isinstance(v, str),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
        and math.isfinite(v),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "object": lambda v: isinstance(v, Mapping),
        "array": lambda v: isinstance(v, list),
        "datetime": _is_iso_time,
    }[t](value)
    if not ok:
        raise ValueTypeError(
            f"predicate {schema.predicate!r} in {schema.pattern!r} takes a {t} value, not "
            f"{value!r}; send a {t} or ask an admin to change the declaration",
            predicate=schema.predicate, expected=t, pattern=schema.pattern,
        )


def _is_iso_time(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- settings

_SETTING_KEYS = ("trust_floor", "detect_free_text", "default_policy", "authority",
                 "free_text_candidates", "judge_min_confidence")


@dataclass(frozen=True, slots=True)
class NamespaceSettings:
    """Trust settings in force for one namespace.

    Attributes:
        trust_floor: Writes from principals whose trust is below this land
            ``quarantined``; ``None`` means no floor.
        detect_free_text: Whether memories without a predicate are checked
            against similar ones by the judge.
        default_policy: Policy for undeclared predicates and free-text conflicts.
        authority: Ranking for the ``authority`` policy, highest first:
            principal names or ``role:<name>``; ranked parties beat unranked
            ones, and trust levels decide the rest.
        free_text_candidates: How many similar memories the judge looks at.
        judge_min_confidence: A contradiction verdict below this is ignored.
    """

    trust_floor: float | None = None
    detect_free_text: bool = True
    default_policy: str = "flag"
    authority: tuple[str, ...] = ()
    free_text_candidates: int = 3
    judge_min_confidence: float = 0.6

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in ((k, getattr(self, k)) for k in _SETTING_KEYS)}


def check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Validate namespace settings; ``None`` for a key means "remove it here".

    Raises:
        InvalidInput: unknown key or bad value.
        InvalidPolicy: ``default_policy`` unknown, or ``merge`` (which needs a
            declared predicate).
    """
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if key not in _SETTING_KEYS:
            raise InvalidInput(f"unknown namespace setting {key!r}; use {list(_SETTING_KEYS)}",
                               field=key)
        if value is None:
            out[key] = None
        elif key == "trust_floor" or key == "judge_min_confidence":
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0.0 <= value <= 1.0:
                raise InvalidInput(f"{key} must be a number between 0 and 1", field=key)
            out[key] = float(value)
        elif key == "detect_free_text":
            if not isinstance(value, bool):
                raise InvalidInput("detect_free_text must be True or False", field=key)
            out[key] = value
        elif key == "default_policy":
            check_policy(value)
            if value == "merge":
                raise InvalidPolicy("merge needs a merge kind per predicate, not a namespace "
                                    "default", policy=value, fix={"action": "declare_predicate"})
            out[key] = value
        elif key == "authority":
            if isinstance(value, str) or not isinstance(value, Sequence) or not all(
                    isinstance(v, str) and v for v in value):
                raise InvalidInput("authority must be a list of principal names or "
                                   "'role:<name>', highest first", field=key)
            out[key] = list(value)
        else:  # free_text_candidates
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 20:
                raise InvalidInput("free_text_candidates must be an integer from 1 to 20",
                                   field=key)
            out[key] = value
    return out


def resolve_settings(rows: Iterable[Row], namespace: str) -> NamespaceSettings:
    """Settings for ``namespace``: every matching pattern, the most specific winning per key."""
    merged: dict[str, Any] = {}
    matching = [r for r in rows if namespace_matches(str(r["pattern"]), namespace)]
    for r in sorted(matching, key=lambda r: (specificity(str(r["pattern"])), int(r["tx"]))):
        merged.update({k: v for k, v in (r.get("settings") or {}).items() if v is not None})
    if "authority" in merged:
        merged["authority"] = tuple(merged["authority"])
    return NamespaceSettings(**{k: v for k, v in merged.items() if k in _SETTING_KEYS})


# --------------------------------------------------------------------------- detection


def same_value(a: Any, b: Any) -> bool:
    """Whether two assertion values say the same thing (case and 1 vs 1.0 ignored)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().casefold() == b.strip().casefold()
    return bool(a == b)


def valid_overlap(a: Row, b: Row) -> bool:
    """Whether the valid-time intervals ``[valid_from, valid_to)`` of two rows overlap."""
    a_to = a.get("valid_to")
    b_to = b.get("valid_to")
    return (a_to is None or int(b["valid_from"]) < int(a_to)) and (
        b_to is None or int(a["valid_from"]) < int(b_to))


@dataclass(frozen=True, slots=True)
class Rival:
    """A current memory that contradicts the one being written, and why."""

    row: Row
    detector: str
    reason: str


def exact_rivals(new: Row, candidates: Iterable[Row]) -> list[Rival]:
    """Cardinality-one contradictions: same namespace, subject and predicate,
    a different value, overlapping valid time, among current active rows."""
    out: list[Rival] = []
    if new.get("predicate") is None or new.get("value") is None:
        return out
    for row in candidates:
        if (row["id"] == new["id"] or row.get("tx_to") is not None
                or row["status"] != "active" or row["namespace"] != new["namespace"]
                or row.get("subject") != new.get("subject")
                or row.get("predicate") != new.get("predicate") or row.get("value") is None):
            continue
        if same_value(row["value"], new["value"]) or not valid_overlap(row, new):
            continue
        out.append(Rival(row, "exact", (
            f"exact: {new['subject']} {new['predicate']} is {new['value']!r} here but "
            f"{row['value']!r} in memory {row['id']} (by {row['author']}), and their valid "
            "times overlap")))
    return out


# --------------------------------------------------------------------------- policies


@dataclass(frozen=True, slots=True)
class Party:
    """A principal as the authority policy sees it."""

    name: str
    trust: float
    roles: tuple[str, ...] = ()


def authority_rank(party: Party, ranking: Sequence[str]) -> tuple[int, float]:
    """``(place in the ranking, trust)``: higher beats lower, compared in that order."""
    names = {party.name, *(f"role:{r}" for r in party.roles)}
    for i, entry in enumerate(ranking):
        if entry in names:
            return (len(ranking) - i, party.trust)
    return (0, party.trust)


def _describe(party: Party, ranking: Sequence[str]) -> str:
    place, trust = authority_rank(party, ranking)
    ranked = f", ranked {len(ranking) - place + 1} of {len(ranking)}" if place else ""
    return f"{party.name} (trust {trust:g}{ranked})"


@dataclass(frozen=True, slots=True)
class RivalChange:
    """A new version of a rival memory the policy calls for."""

    id: str
    version: int
    changes: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ConflictOutcome:
    """What becomes of one (new memory, rival) pair: the conflict record's fields."""

    rival: Rival
    status: str  # "open" | "resolved"
    outcome: str  # "flagged" | "superseded" | "rejected"
    winner: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """A policy's decision about one write, with a reason per conflict.

    ``refuse`` means the write must fail (``reject``) and nothing is written.
    """

    policy: str
    new_status: str
    new_valid_to: int | None
    rival_changes: tuple[RivalChange, ...] = ()
    conflicts: tuple[ConflictOutcome, ...] = ()
    refuse: bool = False
    reason: str = ""
    rivals: tuple[Rival, ...] = field(default_factory=tuple)


def decide(policy: str, new: Row, rivals: Sequence[Rival], parties: Mapping[str, Party],
           ranking: Sequence[str] = ()) -> Outcome:
    """Apply ``policy`` to a new memory row and the rivals detected for it.

    Args:
        policy: ``supersede``, ``authority``, ``flag`` or ``reject`` (``merge``
            never reaches here; free-text conflicts under a merge default flag).
        new: The row about to be written (``status`` as planned).
        rivals: Current active rows it contradicts.
        parties: The authors involved, by name.
        ranking: The namespace's authority ranking.
    """
    new_valid_to = new.get("valid_to")
    if not rivals:
        return Outcome(policy, str(new["status"]), new_valid_to)
    if policy == "reject":
        listed = ", ".join(f"{r.row['id']} by {r.row['author']}" for r in rivals)
        return Outcome(policy, str(new["status"]), new_valid_to, refuse=True, rivals=tuple(rivals),
                       reason=f"rejected: contradicts {listed}")
    if policy == "supersede":
        return _supersede(new, rivals)
    if policy == "authority":
        return _authority(new, rivals, parties, ranking)
    return Outcome("flag", str(new["status"]), new_valid_to, conflicts=tuple(
        ConflictOutcome(r, "open", "flagged", None,
                        f"{r.reason}; both kept, flagged for review") for r in rivals))


def _supersede(new: Row, rivals: Sequence[Rival], policy: str = "supersede") -> Outcome:
    """Valid-time succession: whichever fact starts later closes the earlier one."""
    status = str(new["status"])
    valid_to = new.get("valid_to")
    changes: list[RivalChange] = []
    conflicts: list[ConflictOutcome] = []
    vf = int(new["valid_from"])
    for r in rivals:
        rv = int(r.row["valid_from"])
        if rv < vf:
            changes.append(RivalChange(r.row["id"], int(r.row["version"]),
                                       {"status": "superseded", "valid_to": vf}))
            why = f"{r.reason}; the later fact closes the earlier one's validity"
            winner = new["id"]
        elif rv > vf:
            valid_to = rv if valid_to is None else min(int(valid_to), rv)
            status = "superseded"
            why = f"{r.reason}; the new fact starts earlier, so it is valid only until the " \
                  "rival starts"
            winner = r.row["id"]
        else:
            changes.append(RivalChange(r.row["id"], int(r.row["version"]),
                                       {"status": "superseded"}))
            why = f"{r.reason}; same valid time, the later write replaces the earlier one"
            winner = new["id"]
        conflicts.append(ConflictOutcome(r, "resolved", "superseded", winner, why))
    return Outcome(policy, status, valid_to, tuple(changes), tuple(conflicts))


def _authority(new: Row, rivals: Sequence[Rival], parties: Mapping[str, Party],
               ranking: Sequence[str]) -> Outcome:
    author = parties[str(new["author"])]
    mine = authority_rank(author, ranking)
    own = [r for r in rivals if r.row["author"] == new["author"]]
    others = [r for r in rivals if r.row["author"] != new["author"]]
    if others:
        top = max(others, key=lambda r: authority_rank(parties[str(r.row["author"])], ranking))
        theirs = authority_rank(parties[str(top.row["author"])], ranking)
        if theirs > mine:
            why = (f"authority: {_describe(parties[str(top.row['author'])], ranking)} outranks "
                   f"{_describe(author, ranking)}; the new assertion is kept as rejected")
            return Outcome("authority", "rejected", new.get("valid_to"), conflicts=tuple(
                ConflictOutcome(r, "resolved", "rejected", top.row["id"],
                                f"{r.reason}; {why}") for r in others))
    outcome = _supersede(new, own, "authority") if own else Outcome(
        "authority", str(new["status"]), new.get("valid_to"))
    changes = list(outcome.rival_changes)
    conflicts = list(outcome.conflicts)
    for r in others:
        rival_party = parties[str(r.row["author"])]
        if authority_rank(rival_party, ranking) == mine:
            conflicts.append(ConflictOutcome(
                r, "open", "flagged", None,
                f"{r.reason}; authority tie between {_describe(author, ranking)} and "
                f"{_describe(rival_party, ranking)}: both kept, flagged for review"))
            continue
        changes.append(RivalChange(r.row["id"], int(r.row["version"]), {"status": "rejected"}))
        conflicts.append(ConflictOutcome(
            r, "resolved", "rejected", new["id"],
            f"{r.reason}; authority: {_describe(author, ranking)} outranks "
            f"{_describe(rival_party, ranking)}; the earlier assertion is kept as rejected"))
    return Outcome("authority", outcome.new_status, outcome.new_valid_to, tuple(changes),
                   tuple(conflicts))
