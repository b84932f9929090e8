"""Per-key token buckets: the server's request rate limit.

Each API key owns a bucket of ``burst`` tokens refilled at ``rate`` tokens a
second; a request takes one token or is refused with the time until one is
available (sent as ``Retry-After``). Buckets live in this process: with
several server processes the effective limit is per process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["RateLimiter"]

_MAX_BUCKETS = 10_000


class RateLimiter:
    """Token buckets keyed by API key id.

    Args:
        rate: Tokens added per second.
        burst: Bucket capacity (and initial fill).
        clock: Monotonic seconds; injectable so the arithmetic can be tested
            without sleeping.
    """

    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token for ``key``.

        Returns:
            ``0.0`` when the request may proceed, else the seconds until a
            token will be available (nothing is taken).
        """
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > _MAX_BUCKETS:
                    self._prune(now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def wait(self, key: str) -> float:
        """Seconds until ``key`` has a token again (``0.0`` if it has one); takes nothing."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        # A bucket that has refilled completely holds no state worth keeping.
        full = [k for k, (tokens, last) in self._buckets.items()
                if tokens + (now - last) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]
