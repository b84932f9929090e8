"""Waiting for the read audit's flusher thread (it writes full batches after the read)."""

from __future__ import annotations

import time
from typing import Any


def settled(db: Any, pending: int, timeout: float = 30.0) -> int:
    """Wait until ``db``'s read audit holds ``pending`` unwritten reads (the flusher has
    written the rest); returns the count it ended with (the caller asserts it)."""
    deadline = time.monotonic() + timeout
    while db.read_audit.pending != pending and time.monotonic() < deadline:
        time.sleep(0.01)
    # One more look after a pause: a flusher that writes more than asked shows here.
    time.sleep(0.05)
    return int(db.read_audit.pending)
