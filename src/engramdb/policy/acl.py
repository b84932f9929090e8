"""Access control: who may do what where. Deny by default.

A principal acts on a namespace only through a grant, made to the principal
itself or to one of its roles, on a namespace glob. Every agent may also read
and write its private namespace ``agents/<name>/**``. Decisions are values
with a reason, so a denial can be logged and explained.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engramdb.model import namespace_matches

__all__ = ["AccessControl", "AccessDecision", "grantees_of", "private_namespace"]


@dataclass(frozen=True, slots=True)
class AccessDecision:
    allow: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allow


def private_namespace(name: str) -> str:
    return f"agents/{name}"


def grantees_of(name: str, roles: Iterable[str]) -> list[str]:
    """The grantee strings whose grants apply to a principal."""
    return [name, *(f"role:{r}" for r in roles)]


class AccessControl:
    """The grants one principal holds at one read point.

    Args:
        principal: the principal's name.
        grants: grant rows (``pattern``, ``actions``, ``id``) in force for it.
        is_admin: the embedded opener and admin principals bypass grants.
    """

    def __init__(self, principal: str, grants: Sequence[Mapping[str, Any]], *,
                 is_admin: bool = False) -> None:
        self.principal = principal
        self.is_admin = is_admin
        own = private_namespace(principal)
        self._rules: list[tuple[str, frozenset[str], str]] = [
            (f"{own}/**", frozenset({"read", "write"}), "own private namespace"),
        ]
        for g in grants:
            self._rules.append(
                (str(g["pattern"]), frozenset(g["actions"]), f"grant {g['id']} on {g['pattern']}")
            )

    def check(self, action: str, namespace: str) -> AccessDecision:
        if self.is_admin:
            return AccessDecision(True, "admin")
        for pattern, actions, why in self._rules:
            if action in actions and namespace_matches(pattern, namespace):
                return AccessDecision(True, why)
        return AccessDecision(False, f"no grant gives {self.principal!r} {action} on {namespace!r}")

    def readable(self, pattern: str, namespaces: Sequence[str]) -> tuple[str, ...]:
        """The ``namespaces`` matching ``pattern`` that ``read`` is allowed on, in order.

        What :meth:`check` decides for each, remembered per pattern, read rules and
        namespace list: every recall resolves its scope so, against every namespace.
        """
        reads = None if self.is_admin else tuple(
            rule for rule, actions, _ in self._rules if "read" in actions)
        return _readable(pattern, reads, tuple(namespaces))

    def permitted(self, action: str, namespaces: Iterable[str]) -> list[str]:
        """The subset of ``namespaces`` on which ``action`` is allowed."""
        return [ns for ns in namespaces if self.check(action, ns).allow]


@functools.lru_cache(maxsize=1024)
def _readable(pattern: str, reads: tuple[str, ...] | None, namespaces: tuple[str, ...]
              ) -> tuple[str, ...]:
    """:meth:`AccessControl.readable`: ``reads`` are the patterns of the rules that give
    ``read`` (None: an admin, who reads everywhere)."""
    return tuple(ns for ns in namespaces if namespace_matches(pattern, ns) and (
        reads is None or any(namespace_matches(p, ns) for p in reads)))
