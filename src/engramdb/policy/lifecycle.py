"""Lifecycle rules: how memories expire, decay, get archived and are selected for erasure.

Pure functions over values: parsing and checking a policy, choosing the
policy in force for a namespace and layer, the decayed relevance of a memory
and when it falls due. The engine (``engine/lifecycle.py``,
``engine/erasure.py``) applies them inside its write transactions.

Decay: a memory's relevance is ``0.5 ** (age / half_life)``, where ``age`` is
the time since it was written or last *reinforced* (recalled, or cited by a
decision). With ``archive_below`` set, a memory whose relevance drops below
it is archived; that happens exactly at
``last_used + half_life * log2(1 / archive_below)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from engramdb.errors import InvalidInput, InvalidPolicy
from engramdb.model import LAYERS, check_glob, namespace_matches

__all__ = [
    "ALL_LAYERS",
    "POLICY_FIELDS",
    "RETIRE_ERASE",
    "LifecyclePolicy",
    "archive_due_at",
    "check_selector",
    "hold_for",
    "parse_duration",
    "pattern_rank",
    "policy_for",
    "relevance",
]

ALL_LAYERS = "*"
POLICY_FIELDS = ("ttl", "half_life", "archive_below", "capacity", "on_retire")
ON_RETIRE = ("keep", "archive", "erase")
RETIRE_ERASE = "erase"
SELECTOR_FIELDS = ("id", "subject", "author", "namespace")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_MAX_SECONDS = 100 * 365 * 86400


def parse_duration(value: Any, what: str) -> int | None:
    """A duration as whole microseconds: seconds (int/float), a ``timedelta`` or
    ``"30d"``-style text (``s``, ``m``, ``h``, ``d``, ``w``). ``None`` stays ``None``.

    Raises:
        InvalidPolicy: negative, zero, unparseable or over 100 years.
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise InvalidPolicy(f"{what} must be a duration such as '30d', not a boolean",
                            field=what)
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if m is None:
            raise InvalidPolicy(f"{what} {value!r} is not a duration; write e.g. '90s', '12h', "
                                "'30d' or '2w'", field=what)
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise InvalidPolicy(f"{what} must be a duration such as '30d'", field=what)
    if not math.isfinite(seconds) or seconds <= 0 or seconds > _MAX_SECONDS:
        raise InvalidPolicy(f"{what} must be a positive duration of at most 100 years",
                            field=what)
    return int(seconds * 1_000_000)


@dataclass(frozen=True, slots=True)
class LifecyclePolicy:
    """A lifecycle policy for the namespaces matching ``pattern`` (and one layer, or all).

    Durations are microseconds. ``capacity`` caps live memories per namespace;
    ``on_retire`` is what ``retire_agent`` does to the agent's private
    memories by default (``keep``, ``archive`` or ``erase``).
    """

    pattern: str
    layer: str = ALL_LAYERS
    ttl: int | None = None
    half_life: int | None = None
    archive_below: float | None = None
    capacity: int | None = None
    on_retire: str | None = None

    @classmethod
    def build(cls, pattern: Any, layer: Any, fields: Mapping[str, Any]) -> LifecyclePolicy:
        """Check every field and build the policy.

        Raises:
            InvalidPolicy: an unknown field, or a value out of range.
            InvalidNamespace: a malformed glob.
        """
        unknown = sorted(set(fields) - set(POLICY_FIELDS))
        if unknown:
            raise InvalidPolicy(f"unknown lifecycle fields {unknown}; use "
                                f"{', '.join(POLICY_FIELDS)}", fields=unknown)
        check_glob(pattern)
        if layer is None:
            layer = ALL_LAYERS
        if layer != ALL_LAYERS and layer not in LAYERS:
            raise InvalidPolicy(f"layer must be one of {', '.join(LAYERS)} (or None for all)",
                                field="layer")
        below = fields.get("archive_below")
        if below is not None:
            if isinstance(below, bool) or not isinstance(below, (int, float)) \
                    or not 0 < float(below) < 1:
                raise InvalidPolicy("archive_below must be a number between 0 and 1 "
                                    "(exclusive)", field="archive_below")
            below = float(below)
        half_life = parse_duration(fields.get("half_life"), "half_life")
        if below is not None and half_life is None:
            raise InvalidPolicy("archive_below needs half_life: relevance only falls "
                                "when it decays", field="archive_below")
        capacity = fields.get("capacity")
        if capacity is not None and (isinstance(capacity, bool) or not isinstance(capacity, int)
                                     or not 1 <= capacity <= 10**9):
            raise InvalidPolicy("capacity must be an integer from 1 to 1000000000",
                                field="capacity")
        on_retire = fields.get("on_retire")
        if on_retire is not None and on_retire not in ON_RETIRE:
            raise InvalidPolicy(f"on_retire must be one of {', '.join(ON_RETIRE)}",
                                field="on_retire")
        return cls(pattern, layer, parse_duration(fields.get("ttl"), "ttl"), half_life, below,
                   capacity, on_retire)

    def settings(self) -> dict[str, Any]:
        """The stored (and logged) form: every field, ``None`` where unset."""
        return {"ttl": self.ttl, "half_life": self.half_life,
                "archive_below": self.archive_below, "capacity": self.capacity,
                "on_retire": self.on_retire}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> LifecyclePolicy:
        s = row["settings"] or {}
        return cls(row["pattern"], row["layer"], s.get("ttl"), s.get("half_life"),
                   s.get("archive_below"), s.get("capacity"), s.get("on_retire"))

    @property
    def empty(self) -> bool:
        return all(v is None for v in self.settings().values())

    def to_dict(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "layer": None if self.layer == ALL_LAYERS else self.layer,
                **self.settings()}

    def horizon(self) -> int | None:
        """How long after its last use a memory falls below ``archive_below``, in micros."""
        if self.half_life is None or self.archive_below is None:
            return None
        return int(self.half_life * math.log2(1.0 / self.archive_below))


def pattern_rank(pattern: str) -> tuple[int, int, int]:
    """How specific a glob is: more literal segments first, fewer ``**``, longer."""
    parts = pattern.split("/")
    return (sum(p not in ("*", "**") for p in parts), -parts.count("**"), len(parts))


def policy_for(policies: Iterable[LifecyclePolicy], namespace: str, layer: str
               ) -> LifecyclePolicy | None:
    """The policy in force: per field, the most specific matching pattern that sets it,
    a layer-specific policy before an all-layers one at the same pattern."""
    matching = [p for p in policies
                if (p.layer in (ALL_LAYERS, layer)) and namespace_matches(p.pattern, namespace)]
    if not matching:
        return None
    matching.sort(key=lambda p: (pattern_rank(p.pattern), p.layer != ALL_LAYERS), reverse=True)
    merged: dict[str, Any] = {}
    for p in matching:
        for name, value in p.settings().items():
            if merged.get(name) is None and value is not None:
                merged[name] = value
    return LifecyclePolicy(matching[0].pattern, layer, **merged)


def relevance(last_used: int, now: int, half_life: int | None) -> float:
    """Decayed relevance in (0, 1]: 1 when just used, halving every ``half_life``."""
    if half_life is None:
        return 1.0
    return float(0.5 ** (max(0, now - last_used) / half_life))


def archive_due_at(last_used: int, policy: LifecyclePolicy) -> int | None:
    """When a memory last used at ``last_used`` falls below ``archive_below`` (micros)."""
    horizon = policy.horizon()
    return None if horizon is None else last_used + horizon


def hold_for(holds: Iterable[Mapping[str, Any]], namespace: str) -> Mapping[str, Any] | None:
    """The active legal hold covering ``namespace``, if any."""
    for h in holds:
        if h["active"] and namespace_matches(h["pattern"], namespace):
            return h
    return None


def check_selector(selector: Mapping[str, Any]) -> dict[str, str]:
    """An erasure selector: at least one of id, subject, author, namespace (a glob).

    Raises:
        InvalidInput: nothing selected, or a value that is not a non-empty string.
    """
    chosen = {k: v for k, v in selector.items() if v is not None}
    if not chosen:
        raise InvalidInput("forget needs a selector: id=, subject=, author= or namespace= "
                           "(nothing was erased)", field="selector")
    for name, value in chosen.items():
        if name not in SELECTOR_FIELDS:
            raise InvalidInput(f"unknown selector {name!r}; use {', '.join(SELECTOR_FIELDS)}",
                               field=name)
        if not isinstance(value, str) or not value or len(value) > 500:
            raise InvalidInput(f"{name} must be a non-empty string of at most 500 characters",
                               field=name)
    if "namespace" in chosen:
        check_glob(chosen["namespace"])
    return chosen
