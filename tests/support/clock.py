"""A wall clock the tests set: the time the storage stamps on each transaction.

A transaction's ``recorded_at`` is the wall clock, never earlier than the head's
(``engramdb.storage.sql``). :class:`WallClock` replaces the clock that module
reads, for one test, so outcomes land at chosen times (whole hours, the edge of
an hour) on every backend and door that runs in this process.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest

__all__ = ["WallClock"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class WallClock:
    """Stands in for the ``time`` module in ``engramdb.storage.sql_write``: ``time_ns``
    returns :attr:`now`; everything else is the real module's."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, start: datetime) -> None:
        self.now = start
        clock = self

        class _Time(ModuleType):
            def time_ns(self) -> int:
                return (clock.now - _EPOCH) // timedelta(microseconds=1) * 1000

            def __getattr__(self, name: str) -> Any:
                return getattr(time, name)

        monkeypatch.setattr("engramdb.storage.sql_write.time", _Time("time"))

    def at(self, when: datetime) -> None:
        assert when >= self.now, "the log's clock only goes forward"
        self.now = when

    @staticmethod
    def next_hour(after: datetime | None = None, *, plus: int = 0) -> datetime:
        """The first whole UTC hour after ``after`` (default now), plus ``plus`` hours."""
        t = (after or datetime.now(UTC)).astimezone(UTC)
        return t.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1 + plus)
