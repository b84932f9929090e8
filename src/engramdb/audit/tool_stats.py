"""Tool statistics as an aggregate: the fold shared by the writer and ``verify``.

Pure. ``tool_stats`` rows (``storage/schema.py``) are keyed
``(namespace, principal, tool, kind, label)``:

* ``total`` (label ``""``): calls, successes and the newest ``recorded_at``;
* ``latency`` (label: the latency rounded to 3 significant digits): how many
  calls reported it, so percentiles come from a histogram whose bins are exact
  for latencies of up to 3 significant digits and within 0.5 % otherwise;
* ``error`` (label: the error's first :data:`ERROR_CHARS` characters): how many
  failed calls reported it.

``tool_stats_hourly`` rows (migration 0022) hold the same counts per clock
hour (``hour``: the hour's first microsecond, UTC), keyed
``(namespace, principal, tool, hour, kind, label)``: ``tool_stats(since=T)``
adds up the whole hours after ``T`` and counts the outcomes of ``T``'s own hour
from ``T`` on, instead of reading every outcome since ``T``.

The writer counts each batch of outcomes (:func:`aggregate`) and adds the
counts onto the rows it touches (both tables), in the same transaction and log
event as the outcomes; ``verify`` counts every replayed outcome again and
compares. :func:`stats_of` turns aggregate rows (of either table) plus a
tool's newest outcomes into :class:`~engramdb.model_layers.ToolStats`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from engramdb.codec import from_micros
from engramdb.model_layers import ToolStats

__all__ = ["ERROR_CHARS", "HOUR", "HOURLY_COLUMNS", "KEY_COLUMNS", "RECENT", "Key", "aggregate",
           "hour_of", "keys_of", "stats_of", "without"]

ERROR_CHARS = 200
RECENT = 64  # outcomes weighed one by one in the recency-weighted rate
HALF_LIFE_CALLS = 10
_DECAY = 0.5 ** (1 / HALF_LIFE_CALLS)

Key = tuple[str, str, str, str, str]  # namespace, principal, tool, kind, label
KEY_COLUMNS = ("namespace", "principal", "tool", "kind", "label")
# The key of ``tool_stats_hourly``: the same with the hour after the tool.
HOURLY_COLUMNS = ("namespace", "principal", "tool", "hour", "kind", "label")
HOUR = 3_600_000_000  # microseconds


def hour_of(micros: int) -> int:
    """The first microsecond of the clock hour (UTC) holding ``micros``."""
    return int(micros) - int(micros) % HOUR


def latency_label(ms: float) -> str:
    """The histogram bin of a latency: its value to 3 significant digits."""
    return repr(float(f"{float(ms):.3g}"))


def keys_of(outcome: Mapping[str, Any], *, hourly: bool = False) -> list[tuple[Any, ...]]:
    """The aggregate rows one outcome counts in (``hourly``: in ``tool_stats_hourly``)."""
    head: tuple[Any, ...] = (outcome["namespace"], outcome["principal"], outcome["tool"])
    if hourly:
        head = (*head, hour_of(outcome["recorded_at"]))
    keys: list[tuple[Any, ...]] = [(*head, "total", "")]
    if outcome.get("latency_ms") is not None:
        keys.append((*head, "latency", latency_label(outcome["latency_ms"])))
    if not outcome["ok"] and outcome.get("error"):
        keys.append((*head, "error", str(outcome["error"])[:ERROR_CHARS]))
    return keys


def aggregate(outcomes: Iterable[Mapping[str, Any]], *, hourly: bool = False
              ) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The aggregate rows that count ``outcomes`` (``calls``, ``successes``,
    ``last_at`` and the key columns; ``tx`` is the writer's to add), of
    ``tool_stats`` or, ``hourly``, of ``tool_stats_hourly``."""
    # Outcomes that count in the same rows are counted together first (a batch of
    # 1,000 usually has a few dozen kinds), then each kind is filed by keys_of.
    kinds: dict[tuple[Any, ...], list[Any]] = {}
    for o in outcomes:
        at = int(o["recorded_at"])
        ok = bool(o["ok"])
        kind = (o["namespace"], o["principal"], o["tool"], hour_of(at) if hourly else 0, ok,
                o.get("latency_ms"), None if ok else o.get("error"))
        seen = kinds.get(kind)
        if seen is None:
            kinds[kind] = [1, at]
        else:
            seen[0] += 1
            seen[1] = max(seen[1], at)
    columns = HOURLY_COLUMNS if hourly else KEY_COLUMNS
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for (ns, principal, tool, _, ok, ms, error), (n, at) in kinds.items():
        one = {"namespace": ns, "principal": principal, "tool": tool, "recorded_at": at,
               "ok": ok, "latency_ms": ms, "error": error}
        for key in keys_of(one, hourly=hourly):
            row = out.get(key)
            if row is None:
                row = out[key] = dict(zip(columns, key, strict=True))
                row.update(calls=0, successes=0, last_at=0)
            row["calls"] += n
            row["successes"] += n if ok else 0
            row["last_at"] = max(row["last_at"], at)
    return out


def without(rows: Iterable[Mapping[str, Any]], outcomes: Iterable[Mapping[str, Any]]
            ) -> list[dict[str, Any]]:
    """``tool_stats_hourly`` ``rows`` less the counts of ``outcomes`` they include (rows
    left with no calls dropped). ``last_at`` is kept: right for the remainder when
    the removed outcomes are older than every one left."""
    less = aggregate(outcomes, hourly=True)
    out = []
    for r in rows:
        gone = less.get(tuple(r[c] for c in HOURLY_COLUMNS))
        if gone is None:
            out.append(dict(r))
        elif int(r["calls"]) > gone["calls"]:
            out.append({**r, "calls": int(r["calls"]) - gone["calls"],
                        "successes": int(r["successes"]) - gone["successes"]})
    return out


def _nearest_rank(bins: Mapping[float, int], p: float) -> float | None:
    total = sum(bins.values())
    if not total:
        return None
    rank = max(1, math.ceil(p / 100 * total))
    seen = 0
    for value in sorted(bins):
        seen += bins[value]
        if seen >= rank:
            return value
    return None  # pragma: no cover - the counts add up to total


def stats_of(tool: str, rows: Iterable[Mapping[str, Any]],
             newest: Sequence[Mapping[str, Any]]) -> ToolStats:
    """One tool's statistics from its aggregate ``rows`` (any groups) and its outcomes.

    ``newest`` holds at least the :data:`RECENT` newest outcomes of the groups
    in ``rows`` (more are ignored). The recency-weighted rate weighs each of
    those ``0.5 ** (age / 10)`` by its age counted from the newest (0); older
    calls keep their weights but count at their own mean success rate.
    """
    calls = successes = last_at = 0
    agents: set[str] = set()
    latencies: Counter[float] = Counter()
    errors: Counter[str] = Counter()
    for r in rows:
        if r["kind"] == "total":
            calls += int(r["calls"])
            successes += int(r["successes"])
            last_at = max(last_at, int(r["last_at"]))
            agents.add(str(r["principal"]))
        elif r["kind"] == "latency":
            latencies[float(r["label"])] += int(r["calls"])
        elif r["kind"] == "error":
            # An erasure renames a row whose label held erased text to an opaque
            # "[erased <id>]": shown (and summed) as "[erased]".
            label = str(r["label"])
            errors["[erased]" if label.startswith("[erased ") else label] += int(r["calls"])
    recent = sorted(newest, key=lambda o: (o["recorded_at"], o["id"]), reverse=True)[:RECENT]
    ok = [bool(o["ok"]) for o in recent]
    weights = [_DECAY ** age for age in range(len(ok))]
    rest, rest_ok = calls - len(ok), successes - sum(ok)
    tail = _DECAY ** len(ok) * (1 - _DECAY ** rest) / (1 - _DECAY) if rest > 0 else 0.0
    weighted = sum(w for w, o in zip(weights, ok, strict=True) if o)
    weighted += tail * rest_ok / rest if rest > 0 else 0.0
    return ToolStats(
        tool=tool, calls=calls, successes=successes,
        success_rate=successes / calls if calls else 0.0,
        recent_rate=weighted / (sum(weights) + tail) if calls else 0.0,
        last_10_failures=sum(1 for o in ok[:10] if not o),
        latency_p50_ms=_nearest_rank(latencies, 50),
        latency_p95_ms=_nearest_rank(latencies, 95),
        errors=tuple(sorted(errors.items(), key=lambda e: (-e[1], e[0]))[:5]),
        agents=tuple(sorted(agents)),
        last_at=from_micros(last_at) if calls else None,
    )
