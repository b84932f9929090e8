"""Verification of a stored database against its own log.

Three checks, in order, stopping at the first failure:

1. **The chain.** Events are numbered 1..n without gaps, each names the hash
   of the one before, each hash recomputes from its envelope, and each
   payload still matches the salted commitment the chain covers. The
   ``chain_head`` row agrees with the last event.
2. **Replay.** The effects stored in the payloads are applied, in order, to
   an empty in-memory model of the state tables; an effect that cannot apply
   (a duplicate insert, an update whose expectation fails) is a bad event.
3. **State.** Every state table equals the replayed model, row for row and
   column for column: an edit made to a table behind the engine's back is
   reported with the last event that wrote the row.
4. **Aggregates.** The replayed ``tool_stats`` and ``tool_stats_hourly`` rows
   equal the fold of the replayed ``tool_outcomes`` (:mod:`engramdb.audit.tool_stats`): a log whose
   counts disagree with the outcomes it carries is reported.

Derived indexes (full text, vectors) and bookkeeping columns are not state.

Erasure (``engine/erasure.py``) deletes the payload and salt of every event
that carried erased content. Such an event still links the chain (the chain
covers its commitment, never its payload); it is accepted when the
``erased_events`` table, itself written by a logged erasure event and
checked like every state table, names it. Its effects on rows that were not
erased are replayed from that record instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

from engramdb.audit.read_batches import derived_effects
from engramdb.audit.tool_stats import aggregate
from engramdb.codec import GENESIS_HASH, chain_hash
from engramdb.model import VerifyReport
from engramdb.storage.base import RawEvent, Storage, effect_to_dict
from engramdb.storage.schema import TABLES

__all__ = ["replay_effects", "verify_storage"]

Model = dict[str, dict[tuple[Any, ...], dict[str, Any]]]
# Columns that name the transaction which wrote a state row.
_ROW_TX = ("tx_from", "tx", "created_tx")


class _Bad(Exception):
    def __init__(self, seq: int | None, problem: str) -> None:
        super().__init__(problem)
        self.seq = seq
        self.problem = problem


def _iter_events(storage: Storage, batch: int = 5000) -> Iterator[RawEvent]:
    after = 0
    while True:
        events = storage.events(after=after, limit=batch)
        if not events:
            return
        yield from events
        after = events[-1].seq


def _norm(value: Any) -> Any:
    """Compare JSON values structurally (ints and floats of equal value agree)."""
    if isinstance(value, (dict, list)):
        return json.loads(json.dumps(value, sort_keys=True))
    return value


def replay_effects(model: Model, last_writer: dict[tuple[str, tuple[Any, ...]], int],
                   seq: int, payload: dict[str, Any]) -> None:
    """Apply one event's effects to ``model``; raise ``ValueError`` if they cannot apply."""
    # A read batch's index rows are derived from its payload, not logged.
    for eff in [*payload.get("effects", []), *map(effect_to_dict, derived_effects(payload))]:
        spec = TABLES.get(eff.get("table", ""))
        if spec is None:
            raise ValueError(f"effect on unknown table {eff.get('table')!r}")
        table = model.setdefault(spec.name, {})
        if eff["op"] == "insert":
            row = dict(eff["row"])
            key = tuple(row.get(k) for k in spec.key)
            if key in table:
                raise ValueError(f"insert of existing {spec.name} row {key}")
            table[key] = {c: row.get(c) for c in spec.columns}
        elif eff["op"] == "update":
            key = tuple(eff["key"].get(k) for k in spec.key)
            current = table.get(key)
            if current is None:
                raise ValueError(f"update of missing {spec.name} row {key}")
            row = current
            for col, expected in (eff.get("expect") or {}).items():
                if row.get(col) != expected:
                    raise ValueError(f"update of {spec.name} row {key} expected {col}={expected!r}")
            row.update(eff["changes"])
        else:
            raise ValueError(f"unknown effect op {eff.get('op')!r}")
        last_writer[(spec.name, key)] = seq


def _check_tool_stats(model: Model, last_writer: dict[tuple[str, tuple[Any, ...]], int]
                      ) -> None:
    """The aggregates the log carries must be the fold of the outcomes it carries."""
    for table, hourly in (("tool_stats", False), ("tool_stats_hourly", True)):
        want = aggregate(model["tool_outcomes"].values(), hourly=hourly)
        have = model[table]
        for key in sorted(set(want) | set(have), key=repr):
            w, h = want.get(key), have.get(key)
            if w is None or h is None or any(
                    w[c] != h.get(c) for c in ("calls", "successes", "last_at")):
                raise _Bad(last_writer.get((table, key)),
                           f"{table} row {key} does not count the tool outcomes in the log "
                           f"(log: {h and {c: h[c] for c in ('calls', 'successes')}}, "
                           f"outcomes: {w and {c: w[c] for c in ('calls', 'successes')}})")


def verify_storage(storage: Storage) -> VerifyReport:
    """Verify the chain, the replay and the state of ``storage``."""
    model: Model = {name: {} for name in TABLES}
    last_writer: dict[tuple[str, tuple[Any, ...]], int] = {}
    prev_hash = GENESIS_HASH
    expected_seq = 1
    last_tx = 0
    last_time = 0
    checked = 0
    rows_checked = 0
    erased = {int(r["seq"]): r for r in storage.scan("erased_events")}
    try:
        for ev in _iter_events(storage):
            if ev.seq != expected_seq:
                raise _Bad(expected_seq if ev.seq > expected_seq else ev.seq,
                           f"event {expected_seq} is missing or out of order (found {ev.seq})")
            if ev.prev_hash != prev_hash:
                raise _Bad(ev.seq, f"event {ev.seq} does not link to the hash of event "
                                   f"{ev.seq - 1}: deleted, inserted or reordered events")
            if chain_hash(prev_hash, ev.envelope()) != ev.hash:
                raise _Bad(ev.seq, f"event {ev.seq} was changed: its hash does not recompute")
            if ev.tx < last_tx or ev.recorded_at < last_time:
                raise _Bad(ev.seq, f"event {ev.seq} goes back in transaction time")
            gone = erased.get(ev.seq)
            if gone is not None:
                if ev.payload is not None:
                    raise _Bad(ev.seq, f"event {ev.seq} was erased but its payload is still "
                                       "stored")
                payload: dict[str, Any] = {"effects": gone.get("effects") or []}
            else:
                if ev.payload is None or ev.salt is None:
                    raise _Bad(ev.seq, f"event {ev.seq} has lost its payload")
                digest = hashlib.sha256(ev.salt + ev.payload.encode("utf-8")).hexdigest()
                if digest != ev.commitment:
                    raise _Bad(ev.seq, f"event {ev.seq} payload was changed: it no longer "
                                       "matches its commitment")
                payload = json.loads(ev.payload)
            try:
                replay_effects(model, last_writer, ev.seq, payload)
            except (ValueError, KeyError, TypeError) as exc:
                raise _Bad(ev.seq, f"event {ev.seq} cannot be replayed: {exc}") from exc
            prev_hash, last_tx, last_time = ev.hash, ev.tx, ev.recorded_at
            expected_seq += 1
            checked += 1
        head = storage.head()
        if head.seq != checked or head.hash != prev_hash:
            raise _Bad(checked + 1 if head.seq > checked else checked,
                       f"the log ends at event {checked} but the chain head says {head.seq}: "
                       "events were deleted or the head was edited")
        for name, spec in TABLES.items():
            expected = model[name]
            seen: set[tuple[Any, ...]] = set()
            for row in storage.scan(name):
                rows_checked += 1
                key = tuple(row[k] for k in spec.key)
                seen.add(key)
                want = expected.get(key)
                if want is None:
                    row_tx = next((row[c] for c in _ROW_TX if row.get(c) is not None), None)
                    if isinstance(row_tx, int) and row_tx > last_tx:
                        # Written by a transaction the log no longer has: its tail was cut.
                        raise _Bad(checked + 1, f"{name} row {key} was written at tx {row_tx}, "
                                               f"after the last event (tx {last_tx}): events "
                                               "were removed from the end of the log")
                    raise _Bad(None, f"{name} row {key} is not in the log: inserted behind "
                                     "the engine's back")
                for col in spec.columns:
                    if _norm(row.get(col)) != _norm(want.get(col)):
                        raise _Bad(last_writer.get((name, key)),
                                   f"{name} row {key} column {col!r} does not match the log")
            missing = set(expected) - seen
            if missing:
                key = sorted(missing, key=repr)[0]
                raise _Bad(last_writer.get((name, key)),
                           f"{name} row {key} is in the log but missing from the table")
        _check_tool_stats(model, last_writer)
    except _Bad as bad:
        head = storage.head()
        return VerifyReport(ok=False, events_checked=checked, head_seq=head.seq,
                            head_hash=head.hash, first_bad_seq=bad.seq, problem=bad.problem,
                            rows_checked=rows_checked)
    return VerifyReport(ok=True, events_checked=checked, head_seq=checked, head_hash=prev_hash,
                        rows_checked=rows_checked)
