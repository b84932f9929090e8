"""Working memory: named blocks an agent pins into every context it builds.

``pin`` creates or updates a block (persona, goal, plan, scratchpad), per
agent and optionally per session; ``unpin`` retracts it; ``blocks`` lists
them. Each block is a versioned ``working`` memory (see :mod:`.named`), so two
agents editing a shared block with ``expected_version`` never overwrite each
other silently: one wins, the other gets ``VersionConflict``. A block over its
``limit_tokens`` is refused with ``BlockTooLarge``, never cut.
"""

from __future__ import annotations

from typing import Any

from engramdb.engine.access import Caller
from engramdb.engine.layers.named import LayerService, check_name, find_named, upsert_named
from engramdb.engine.rows import _short, check_count, check_text, memory_from_row
from engramdb.errors import BlockTooLarge, InvalidInput, NotFound, VersionConflict
from engramdb.model import Memory, RecallFilter, check_namespace
from engramdb.retrieval.tokens import count_tokens

__all__ = ["Blocks", "block_name"]

KEY = "block"
MAX_LIMIT = 1_000_000


def block_name(m: Memory) -> str | None:
    """The block name of a working memory, or ``None`` if it is not a block."""
    name = (m.metadata or {}).get(KEY) if m.layer == "working" else None
    return name if isinstance(name, str) else None


def _limit(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise InvalidInput(f"limit_tokens must be an integer from 1 to {MAX_LIMIT}",
                           field="limit_tokens")
    return value


class Blocks(LayerService):
    """Pinned working blocks."""

    def pin(self, s: Caller, name: str, text: str, *, session: str | None,
            namespace: str | None, limit_tokens: int | None,
            expected_version: int | None) -> Memory:
        name = check_name(name, "name")
        text = check_text(text, self._res.config)
        session = _short(session, "session")
        ns = check_namespace(namespace if namespace is not None
                             else f"agents/{s.name}")
        limit = _limit(limit_tokens)
        if expected_version is not None:
            check_count(expected_version, "expected_version")
        tokens = count_tokens(text)

        def within_limit(cur: dict[str, Any] | None) -> None:
            lim = limit if limit is not None else (
                None if cur is None else (cur["metadata"] or {}).get("limit_tokens"))
            if lim is not None and tokens > lim:
                raise BlockTooLarge(
                    f"block {name!r} is {tokens} tokens, over its limit of {lim}; shorten "
                    "it, or raise limit_tokens", tokens=tokens, limit_tokens=lim)

        within_limit(None)  # a given limit is checked before any work
        vector = self._res.vectors_for([text])[0]

        def write(wr: Any) -> Memory:
            cur = find_named(wr.w, ns, "working", KEY, name, session)
            lim = limit if limit is not None else (
                None if cur is None else (cur["metadata"] or {}).get("limit_tokens"))
            return upsert_named(s, wr, namespace=ns, layer="working", key=KEY, name=name,
                                text=text, session=session,
                                metadata={"limit_tokens": lim, "tokens": tokens},
                                expected_version=expected_version, vector=vector,
                                check=within_limit)

        return self._write(s, write)

    def unpin(self, s: Caller, name: str, *, session: str | None, namespace: str | None,
              expected_version: int | None) -> Memory:
        name = check_name(name, "name")
        session = _short(session, "session")
        ns = check_namespace(namespace if namespace is not None
                             else f"agents/{s.name}")
        if expected_version is not None:
            check_count(expected_version, "expected_version")

        def write(wr: Any) -> Memory:
            cur = find_named(wr.w, ns, "working", KEY, name, session)
            if cur is None or not s.acl().check("read", ns).allow:
                raise NotFound(f"no pinned block {name!r} in {ns}"
                               + (f" for session {session!r}" if session else ""), name=name)
            if expected_version is not None and expected_version != cur["version"]:
                raise VersionConflict(
                    f"block {name!r} is at version {cur['version']}, not {expected_version}",
                    id=cur["id"], current_version=int(cur["version"]),
                    expected_version=expected_version)
            return wr.retract(cur["id"], "unpinned", None, None)

        return self._write(s, write)

    def blocks(self, s: Caller, *, session: str | None, namespace: str | None,
               as_of: int | None = None) -> list[Memory]:
        """Blocks in force: agent-wide ones, plus ``session``'s own when one is given."""
        session = _short(session, "session")
        pattern = namespace if namespace is not None else f"agents/{s.name}"
        spaces = s.readable(pattern, as_of)
        if not spaces:
            return []
        flt = RecallFilter(namespaces=spaces, layers=("working",), as_of=as_of)
        rows = self._res.storage.list_memories(flt, order="oldest")
        out = [memory_from_row(r, as_of=as_of) for r in rows
               if isinstance((r.get("metadata") or {}).get(KEY), str)
               and r.get("session") in (None, session)]
        return sorted(out, key=lambda m: (m.namespace, m.session is not None,
                                          str(m.metadata[KEY])))
