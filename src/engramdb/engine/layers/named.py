"""Named, versioned memories: working blocks and procedures share this.

A block or procedure is one memory (layer ``working`` or ``procedural``) whose
metadata names it (``{"block": name}`` / ``{"procedure": name}``); each change
is a new version of that memory, so history, as-of reads, receipts, erasure
and compare-and-swap are the memory model's own. Found by name inside the
write transaction (the ``(namespace, layer)`` index of current rows), so the
version check and the write are one atomic step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from engramdb.engine.access import Caller
from engramdb.engine.resources import Resources
from engramdb.engine.rows import _short
from engramdb.engine.trust import TrustEngine
from engramdb.engine.writes import Writer, make_draft
from engramdb.errors import InvalidInput, VersionConflict
from engramdb.model import Memory

if TYPE_CHECKING:
    import numpy as np

    from engramdb.storage.base import WriteTx

__all__ = ["LayerService", "check_name", "find_named", "upsert_named"]

T = TypeVar("T")


class LayerService:
    """What every layer service holds: the shared resources and the trust engine."""

    def __init__(self, res: Resources, trust: TrustEngine) -> None:
        self._res = res
        self._trust = trust

    def _write(self, c: Caller, fn: Callable[[Writer], T], *, durable: bool = True) -> T:
        """Run ``fn`` with a writer for ``c`` inside one write transaction."""
        with self._res.storage.write(c.name, durable=durable) as w:
            return fn(Writer(c, self._trust, w))

_LIVE = ("active", "quarantined")


def check_name(name: Any, what: str) -> str:
    """A block or procedure name: a non-empty string of at most 200 characters."""
    checked = _short(name, what, 200)
    if checked is None:
        raise InvalidInput(f"{what} must be a non-empty string of at most 200 characters",
                           field=what)
    return checked


def find_named(w: WriteTx, namespace: str, layer: str, key: str, name: str,
               session: str | None) -> dict[str, Any] | None:
    """The current, live row named ``name`` (under metadata ``key``) in ``namespace``."""
    for row in w.fetch("memories", {"namespace": namespace, "layer": layer, "tx_to": None}):
        meta = row.get("metadata") or {}
        if (meta.get(key) == name and row.get("session") == session
                and row["status"] in _LIVE):
            return row
    return None


def upsert_named(c: Caller, wr: Writer, *, namespace: str, layer: str, key: str, name: str,
                 text: str, session: str | None, metadata: Mapping[str, Any],
                 expected_version: int | None, vector: np.ndarray | None,
                 check: Any = None) -> Memory:
    """Create version 1, or add a version, of a named memory (compare-and-swap).

    ``expected_version``: ``None`` writes whatever is current; ``0`` only
    creates (the name must be free); ``n`` only updates version ``n``.
    ``check(current_row_or_None)`` runs before anything is written.

    Raises:
        VersionConflict: ``expected_version`` is not what is current.
    """
    cur = find_named(wr.w, namespace, layer, key, name, session)
    current = 0 if cur is None else int(cur["version"])
    if expected_version is not None and expected_version != current:
        raise VersionConflict(
            f"{key} {name!r} in {namespace} is at version {current}, not {expected_version}; "
            "re-read it, reapply your change and retry",
            id=None if cur is None else cur["id"], current_version=current,
            expected_version=expected_version)
    if check is not None:
        check(cur)
    meta = {**metadata, key: name}
    if cur is None:
        draft = make_draft(c, text=text, namespace=namespace, layer=layer, session=session,
                         metadata=meta)
        return wr.remember(draft, vector)
    return wr.update(cur["id"], {"text": text, "metadata": meta}, current, vector, None)
