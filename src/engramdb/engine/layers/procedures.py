"""Procedural memory: which tools and procedures work.

* Tool outcomes are rows of ``tool_outcomes`` (not memories: thousands a
  second, no text to search), each one logged as a ``tool.outcome`` event in
  its own namespace (default the agent's private one). ``tool_stats`` reads
  only outcomes in namespaces the caller may read.
* A procedure is a named ``procedural`` memory (see :mod:`.named`); each
  ``procedure`` call adds a version. ``procedure_outcome`` records one use of
  one version as a ``procedure_outcomes`` row in the reporter's namespace.
* ``recommend`` ranks procedure versions and tools for a task by
  ``relevance * expected success rate`` (Laplace estimate), with the counts.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from engramdb.audit.tool_stats import HOUR, RECENT, aggregate, hour_of, stats_of, without
from engramdb.codec import new_id, to_micros
from engramdb.engine.access import Caller
from engramdb.engine.layers.named import LayerService, check_name, find_named, upsert_named
from engramdb.engine.outcomes import check_outcome, write_outcomes
from engramdb.engine.recall import Recall
from engramdb.engine.resources import Resources
from engramdb.engine.rows import _short, check_bool, check_count, check_text
from engramdb.engine.trust import TrustEngine
from engramdb.engine.writes import Writer
from engramdb.errors import InvalidInput, NotFound, VersionConflict
from engramdb.model import (
    Memory,
    RecallFilter,
    check_glob,
    check_namespace,
    namespace_matches,
    to_utc,
)
from engramdb.model_layers import ProcedureInfo, Recommendation, ToolStats, VersionStats
from engramdb.storage.base import Effect, Insert, Span

__all__ = ["Procedures", "tool_stats_of", "tools_named_in"]

KEY = "procedure"
_OUTCOME_FIELDS = frozenset({"tool", "ok", "latency_ms", "error", "metadata", "namespace"})
_WORD = re.compile(r"[\w.-]+")
FILLED = ("tool_stats", "tool_stats_hourly")  # aggregates filled once from older outcomes


def tool_stats_of(tool: str, rows: Sequence[Mapping[str, Any]]) -> ToolStats:
    """Statistics of one tool's outcome rows (any order), exactly as the aggregate gives."""
    return stats_of(tool, aggregate(rows).values(), rows)


def tools_named_in(task: str) -> list[str]:
    """Tool names a task may mention: its words, and adjacent pairs joined by ``_`` or ``-``."""
    words = _WORD.findall(task.lower())
    names = set(words)
    for a, b in itertools.pairwise(words):
        names |= {f"{a}_{b}", f"{a}-{b}", f"{b}_{a}", f"{b}-{a}", a + b}
    return sorted(names)


def _relevance(name: str, task_words: set[str]) -> float:
    parts = [p for p in re.split(r"[\W_]+", name.lower()) if p]
    return sum(p in task_words for p in parts) / len(parts) if parts else 0.0


class _Readable:
    """Which aggregate rows a caller may count under a namespace glob (memoised per
    namespace)."""

    def __init__(self, s: Caller, namespace: str) -> None:
        self._glob = namespace
        self._acl = s.acl()
        self._seen: dict[str, bool] = {}

    def group(self, row: Mapping[str, Any]) -> bool:
        ns = row["namespace"]
        ok = self._seen.get(ns)
        if ok is None:
            ok = self._seen[ns] = (namespace_matches(self._glob, ns)
                                   and self._acl.check("read", ns).allow)
        return ok


class Procedures(LayerService):
    """Tool outcomes, procedures and recommendations."""

    def __init__(self, res: Resources, trust: TrustEngine, recall: Recall) -> None:
        super().__init__(res, trust)
        self._recall = recall

    # -- tools ---------------------------------------------------------------------

    def tool_outcome(self, s: Caller, tool: str, ok: bool, *, latency_ms: float | None,
                     error: str | None, metadata: Mapping[str, Any] | None,
                     namespace: str | None, durable: bool = False) -> None:
        row = check_outcome(s.name, self._res.config, tool, ok, latency_ms, error, metadata,
                            namespace)
        self._write_outcomes(s, [row], durable=check_bool(durable, "durable"))

    def _write_outcomes(self, s: Caller, rows: list[dict[str, Any]], *,
                        durable: bool = True) -> None:
        # The only compare-and-swap in an outcome write is on the aggregate rows: a
        # writer that counted the same rows first wins; count again on top of it.
        for attempt in range(3):
            try:
                self._write(s, lambda wr: write_outcomes(wr, rows), durable=durable)
                return
            except VersionConflict:
                if attempt == 2:
                    raise

    def tool_outcomes(self, s: Caller, outcomes: Sequence[Mapping[str, Any]]) -> int:
        if not isinstance(outcomes, (list, tuple)):
            raise InvalidInput(f"tool_outcomes takes a list of outcomes, not "
                               f"{type(outcomes).__name__}; wrap an iterator in list(...)",
                               field="outcomes")
        if len(outcomes) > self._res.config.max_batch:
            raise InvalidInput(f"batch of {len(outcomes)} outcomes is over the limit of "
                               f"{self._res.config.max_batch}; split it", field="outcomes")
        rows = []
        for i, item in enumerate(outcomes):
            if not isinstance(item, Mapping) or not {"tool", "ok"} <= set(item) \
                    or not set(item) <= _OUTCOME_FIELDS:
                raise InvalidInput(
                    f"outcome {i} must be an object with tool and ok, and optionally "
                    f"{', '.join(sorted(_OUTCOME_FIELDS - {'tool', 'ok'}))}", field="outcomes")
            try:
                rows.append(check_outcome(
                    s.name, self._res.config, item["tool"], item["ok"], item.get("latency_ms"),
                    item.get("error"), item.get("metadata"), item.get("namespace")))
            except InvalidInput as exc:
                raise InvalidInput(f"outcome {i}: {exc.message}", field="outcomes") from exc
        if rows:
            self._write_outcomes(s, rows)
        return len(rows)

    def _from_aggregate(self, s: Caller, where: dict[str, Any], namespace: str
                        ) -> list[ToolStats]:
        """Per tool: the readable aggregate rows, plus each group's newest outcomes."""
        check_glob(namespace)
        readable = _Readable(s, namespace)
        by_tool: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        groups: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for r in self._res.storage.fetch("tool_stats", where):
            if readable.group(r):
                by_tool[r["tool"]].append(r)
                groups[r["tool"]].add((r["namespace"], r["principal"]))
        return [stats_of(tool, rows, self._newest(tool, groups[tool], {}))
                for tool, rows in sorted(by_tool.items())]

    def _newest(self, tool: str, groups: set[tuple[str, str]], since: dict[str, Any]
                ) -> list[dict[str, Any]]:
        """The :data:`RECENT` newest outcomes of ``tool`` matching ``since`` in each of
        ``groups`` (namespace, agent): one read per group, in index order."""
        return [o for ns, principal in sorted(groups) for o in self._res.storage.fetch(
            "tool_outcomes", {"tool": tool, "namespace": ns, "principal": principal, **since},
            order_by="recorded_at DESC, id DESC", limit=RECENT)]

    def tool_stats(self, s: Caller, tool: str | None, *, since: datetime | str | None,
                   agent: str | None, namespace: str) -> list[ToolStats]:
        where: dict[str, Any] = {}
        if tool is not None:
            where["tool"] = check_name(tool, "tool")
        if agent is not None:
            where["principal"] = _short(agent, "agent")
        if since is None:
            return self._from_aggregate(s, where, namespace)
        after = to_micros(to_utc(since, what="since"))
        assert after is not None
        return self._since(s, where, namespace, after)

    def _since(self, s: Caller, where: dict[str, Any], namespace: str, after: int
               ) -> list[ToolStats]:
        """Per tool, the outcomes recorded at or after ``after``: the hourly aggregate's
        whole hours after it, plus its own hour's from it on (by index, from whichever
        side of it is shorter), plus the newest outcomes since it."""
        check_glob(namespace)
        storage = self._res.storage
        readable = _Readable(s, namespace)
        first = hour_of(after)
        by_tool: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        groups: dict[str, set[tuple[str, str]]] = defaultdict(set)  # with calls since
        edge: set[tuple[str, str, str]] = set()  # with calls in ``after``'s hour, from it
        hour_rows: dict[tuple[str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
        for r in storage.fetch("tool_stats_hourly", {**where, "hour": Span(first, None)}):
            if not readable.group(r):
                continue
            if r["hour"] > first or after == first:
                by_tool[r["tool"]].append(r)
                groups[r["tool"]].add((r["namespace"], r["principal"]))
                continue
            hour_rows[(r["tool"], r["namespace"], r["principal"])].append(r)
            if r["kind"] == "total" and r["last_at"] >= after:
                edge.add((r["tool"], r["namespace"], r["principal"]))
        for tool, ns, principal in sorted(edge):
            # The shorter side of ``after`` in its hour is read: the outcomes from it
            # on, or the hour's counts less the outcomes before it.
            group = {"tool": tool, "namespace": ns, "principal": principal}
            if after - first > HOUR // 2:
                by_tool[tool] += aggregate(storage.fetch("tool_outcomes", {
                    **group, "recorded_at": Span(after, first + HOUR)})).values()
            else:
                by_tool[tool] += without(hour_rows[(tool, ns, principal)], storage.fetch(
                    "tool_outcomes", {**group, "recorded_at": Span(first, after)}))
            groups[tool].add((ns, principal))
        since = {"recorded_at": Span(after, None)}
        return [stats_of(tool, rows, self._newest(tool, groups[tool], since))
                for tool, rows in sorted(by_tool.items())]

    def tool_notes(self, s: Caller, task: str, namespace: str) -> list[ToolStats]:
        """Stats of the tools the task names, from the aggregate (totals and errors: a
        note shows no latency, so its histogram rows are not read)."""
        return self._from_aggregate(s, {"tool": tools_named_in(task), "kind": ["total", "error"]},
                                    namespace)

    def fill_stats(self, actor: str) -> None:
        """Count outcomes recorded before an aggregate existed, once per aggregate:
        ``tool_stats`` (migration 0019) and ``tool_stats_hourly`` (0022).

        One logged ``tool.stats`` event inserts the rows of every outcome, so
        ``verify`` replays them like any other state; ``meta`` keeps its
        transaction (``<table>_filled``), which an erasure may restate.
        """
        storage = self._res.storage
        missing = [t for t in FILLED if storage.meta(f"{t}_filled") is None]
        if not missing:
            return
        filled = 0
        with storage.write(actor) as w:
            effects: list[Effect] = []
            outcomes = None
            for table in missing:
                if not w.fetch(table, {}, limit=1):
                    if outcomes is None:
                        outcomes = w.fetch("tool_outcomes", {})
                    effects += [Insert(table, {**r, "tx": w.tx}) for r in aggregate(
                        outcomes, hourly=table == "tool_stats_hourly").values()]
            if effects:
                self._res.commit(w, "tool.stats", actor, None, None, effects)
                filled = w.tx
        for table in missing:
            storage.set_meta(f"{table}_filled", str(filled))

    # -- procedures ------------------------------------------------------------------

    def procedure(self, s: Caller, name: str, text: str, *, namespace: str | None,
                  expected_version: int | None) -> Memory:
        name = check_name(name, "name")
        text = check_text(text, self._res.config)
        ns = check_namespace(namespace if namespace is not None
                             else f"agents/{s.name}")
        if expected_version is not None:
            check_count(expected_version, "expected_version")
        vector = self._res.vectors_for([text])[0]
        return self._write(s, lambda wr: upsert_named(
            s, wr, namespace=ns, layer="procedural", key=KEY, name=name, text=text,
            session=None, metadata={}, expected_version=expected_version, vector=vector))

    def procedure_outcome(self, s: Caller, name: str, version: int, ok: bool, *,
                          namespace: str | None, durable: bool = False) -> None:
        name = check_name(name, "name")
        check_count(version, "version")
        check_bool(ok, "ok")
        check_bool(durable, "durable")
        ns = check_namespace(namespace if namespace is not None
                             else f"agents/{s.name}")
        mine = f"agents/{s.name}"

        def write(wr: Writer) -> None:
            cur = find_named(wr.w, ns, "procedural", KEY, name, None)
            if cur is None or not s.acl().check("read", ns).allow:
                raise NotFound(f"no procedure {name!r} in {ns}; check the name and namespace",
                               name=name)
            if not 1 <= version <= int(cur["version"]):
                raise NotFound(f"procedure {name!r} has versions 1 to {cur['version']}, not "
                               f"{version}", name=name, version=version)
            if mine not in wr._may_write:
                s.require("write", mine)
                wr._may_write.add(mine)
            row = {"id": new_id(), "principal": s.name, "namespace": mine,
                   "procedure_id": cur["id"], "version": version, "ok": int(ok),
                   "tx": wr.w.tx, "recorded_at": wr.w.recorded_at}
            wr._commit("procedure.outcome", mine, cur["id"],
                       [Insert("procedure_outcomes", row)], {"name": name})

        self._write(s, write, durable=durable)

    def procedures(self, s: Caller, *, namespace: str) -> list[ProcedureInfo]:
        spaces = s.readable(namespace, None)
        if not spaces:
            return []
        rows = self._res.storage.list_memories(
            RecallFilter(namespaces=spaces, layers=("procedural",)), order="oldest")
        rows = [r for r in rows if isinstance((r.get("metadata") or {}).get(KEY), str)]
        return self._with_stats(s, rows)

    def _with_stats(self, s: Caller, rows: Sequence[Mapping[str, Any]]) -> list[ProcedureInfo]:
        if not rows:
            return []
        acl = s.acl()
        counts: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
        for o in self._res.storage.fetch("procedure_outcomes",
                                     {"procedure_id": [r["id"] for r in rows]}):
            if acl.check("read", o["namespace"]).allow:
                c = counts[(o["procedure_id"], int(o["version"]))]
                c[0] += 1
                c[1] += int(o["ok"])
        return [ProcedureInfo(
            name=str(r["metadata"][KEY]), namespace=r["namespace"], id=r["id"],
            version=int(r["version"]), text=r["text"], author=r["author"],
            versions=tuple(VersionStats(v, *counts[(r["id"], v)])
                           for v in range(1, int(r["version"]) + 1)))
            for r in rows]

    def recommend(self, s: Caller, task: str, *, k: int, namespace: str
                  ) -> list[Recommendation]:
        if not isinstance(task, str) or not task.strip():
            raise InvalidInput("task must be a non-empty string: say what is to be done",
                               field="task")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 100:
            raise InvalidInput("k must be an integer from 1 to 100", field="k")
        words = {w.lower() for w in re.findall(r"\w+", task)}
        out: list[Recommendation] = []
        # Relevance: the recall score (scaled to the best hit) or how much of the
        # procedure's name the task mentions, whichever is higher.
        flt = s.filter(namespace, ["procedural"], None, None, None)
        result = self._recall.run(s.name, task, flt, 20, None)
        self._res.read_audit.record(s.name, result.receipt, result.memories)
        hits = result.hits
        top = max((h.score for h in hits), default=0.0) or 1.0
        recalled = {h.memory.id: h.score / top for h in hits}
        for info in self.procedures(s, namespace=namespace):
            relevance = max(recalled.get(info.id, 0.0), _relevance(info.name, words))
            if relevance <= 0:
                continue
            best = max(info.versions, key=lambda v: (v.expected_rate, v.version))
            out.append(Recommendation(
                "procedure", info.name, best.version, relevance * best.expected_rate,
                relevance, best.expected_rate,
                {"namespace": info.namespace, "uses": best.uses, "successes": best.successes,
                 "success_rate": best.success_rate,
                 "versions": [v.to_dict() for v in info.versions]}))
        for st in self.tool_stats(s, None, since=None, agent=None, namespace=namespace):
            relevance = _relevance(st.tool, words)
            if relevance > 0:
                rate = (st.successes + 1) / (st.calls + 2)
                out.append(Recommendation(
                    "tool", st.tool, None, relevance * rate, relevance, rate,
                    {"calls": st.calls, "successes": st.successes,
                     "success_rate": st.success_rate, "recent_rate": st.recent_rate,
                     "last_10_failures": st.last_10_failures,
                     "errors": [list(e) for e in st.errors]}))
        out.sort(key=lambda r: (-r.score, r.kind, r.name))
        return out[:k]
