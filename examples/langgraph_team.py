"""Three LangGraph nodes, three EngramDB agents, one shared memory; no LLM needed.

Two analyst nodes run in parallel and each writes what it believes about a
company; they disagree. EngramDB flags the contradiction (it shows in the
conflict inbox), and the reviewer node's search marks both claims contested, so
it records a decision to hold, resting on the exact versions it read.

    python examples/langgraph_team.py [path/to/engram.db]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore

import engramdb
from engramdb.integrations.langgraph import EngramStore


class State(TypedDict, total=False):
    company: str
    report: list[str]


def analyst(name: str, claim: str) -> Any:
    def node(state: State, *, store: BaseStore) -> State:
        me = store.as_agent(name)  # type: ignore[attr-defined]
        me.put(("facts", state["company"]), name, {"text": claim})
        return {}
    return node


def reviewer(state: State, *, store: BaseStore) -> State:
    me = store.as_agent("reviewer")  # type: ignore[attr-defined]
    hits = me.search(("facts", state["company"]))
    report = [f"{h.author}: {h.value['text']}" + (" [contested]" if h.contested else "")
              for h in hits]
    if any(h.contested for h in hits):
        d = me.session.decide("hold the announcement until the CEO is confirmed",
                              basis=hits[0].receipt, outcome={"hold": True})
        report.append(f"decision {d.id[:8]} rests on {len(d.basis)} memory versions")
    return {"report": report}


def build(db: Any) -> Any:
    """The compiled graph, with its agents and grants set up in ``db``."""
    store = EngramStore(db)
    for name in ("analyst-a", "analyst-b", "reviewer"):
        db.admin.create_agent(name)
        db.admin.grant(name, "langgraph/**", ["read", "write"])
        db.admin.grant(name, f"agents/{name}", ["read", "write"])
    graph = StateGraph(State)
    graph.add_node("analyst_a", analyst("analyst-a", "The CEO of Acme is Alice Smith"))
    graph.add_node("analyst_b", analyst("analyst-b", "The CEO of Acme is Bob Jones"))
    graph.add_node("reviewer", reviewer)
    graph.add_edge(START, "analyst_a")
    graph.add_edge(START, "analyst_b")
    graph.add_edge(["analyst_a", "analyst_b"], "reviewer")
    graph.add_edge("reviewer", END)
    return graph.compile(store=store)


def main(path: str) -> None:
    db = engramdb.open(path, embedder=None)
    try:
        out = build(db).invoke({"company": "acme"})
        print("\n".join(out["report"]))
        for c in db.conflicts("langgraph/**"):
            print(f"inbox: {c.kind} ({c.outcome}): {c.reason}")
    finally:
        db.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(tempfile.mkdtemp()) / "team.db"))
