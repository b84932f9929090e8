"""Fork safety for PostgreSQL handles: a forked child opens its own connections.

A pooled connection is a socket to a server session its process is using. A
child forked from that process (``multiprocessing`` with fork, gunicorn
``--preload``, Celery prefork) must neither use it (two processes' protocol
messages would interleave on one session) nor close it (that ends the
parent's session). So, in the child, every live handle is handed to
:func:`keep_unused` what it inherited (pool, change listener, indexer) and
starts afresh: new locks, connections opened on first use. The threads of
those objects do not exist in the child anyway.
"""

from __future__ import annotations

import os
import weakref
from typing import Any, Protocol

__all__ = ["keep_unused", "watch"]


class _Forkable(Protocol):
    def _after_fork(self) -> None: ...


# What forked children inherited: referenced until the process ends, never used.
_INHERITED: list[Any] = []
_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()


def keep_unused(*objects: Any) -> None:
    """Keep ``objects`` referenced, so no finaliser closes the parent's sessions."""
    _INHERITED.extend(o for o in objects if o is not None)


def watch(handle: _Forkable) -> None:
    """Call ``handle._after_fork()`` in every child forked while it is alive."""
    _LIVE.add(handle)


def _reset_in_child() -> None:
    for handle in list(_LIVE):
        handle._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)
