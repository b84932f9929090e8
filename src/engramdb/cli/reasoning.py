"""Commands on what agents concluded: decide, explain, stale, conflicts, resolve, knowledge.

The headline features of EngramDB from the shell: decisions with the exact
versions they rest on (and whether that basis has changed since), the conflict
inbox, and "what did agent X know at T". Each is one engine call, rendered for
people or as ``--json``. (``engram context``, the packed working context an
agent reasons in, is in :mod:`engramdb.cli.layers`.)
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich import box
from rich.table import Table
from rich.text import Text

from engramdb.cli.app import Env, cli, pass_env
from engramdb.cli.memories import parse_as_of
from engramdb.cli.render import fmt_time, hits_table, memory_panel
from engramdb.model import Conflict, Decision, DecisionExplanation, ReceiptItem

__all__: list[str] = []


def _json_object(value: str | None, option: str) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON ({exc.msg}); e.g. '{{\"approved\": true}}'",
                                 param_hint=option) from exc
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object", param_hint=option)
    return data


def _basis_item(text: str) -> ReceiptItem:
    memory_id, at, version = text.rpartition("@")
    if not at or not version.isdigit() or not memory_id:
        raise click.BadParameter(f"{text!r} is not ID@VERSION, e.g. 0192ab...@2",
                                 param_hint="--basis")
    return ReceiptItem(memory_id, int(version))


# --------------------------------------------------------------------------- decisions


@cli.command()
@click.argument("description")
@click.option("--recall", "query", default=None, metavar="QUERY",
              help="Rest the decision on what this recall returns (with -n and -k).")
@click.option("-n", "--namespace", default="**", show_default=True,
              help="Namespace glob for --recall.")
@click.option("-k", "k", type=int, default=5, show_default=True, help="Hits for --recall.")
@click.option("--basis", "basis", multiple=True, metavar="ID@VERSION",
              help="A memory version the decision rests on (repeatable).")
@click.option("--outcome", default=None, help="JSON object describing the outcome.")
@click.option("--file-in", "file_in", default=None, metavar="NAMESPACE",
              help="Where the decision is filed (default agents/<you>).")
@pass_env
def decide(env: Env, description: str, query: str | None, namespace: str, k: int,
           basis: tuple[str, ...], outcome: str | None, file_in: str | None) -> None:
    """Record a decision and the exact memory versions it rests on.

    \b
    engram --as planner decide "approve the trade" --recall "outlook for X" -n 'acme/**'
    engram decide "keep the office" --basis 0192ab...@2 --outcome '{"keep": true}'
    """
    if query is None and not basis:
        raise click.UsageError("give the basis: --recall QUERY and/or --basis ID@VERSION")
    session = env.session()
    items: list[Any] = [_basis_item(b) for b in basis]
    if query is not None:
        items.append(session.recall(query, namespace=namespace, k=k).receipt)
    d = session.decide(description, basis=items, outcome=_json_object(outcome, "--outcome"),
                       namespace=file_in)
    if env.json:
        env.emit_json(d.to_dict())
        return
    env.say(Text.assemble(("decided ", "bold green"), Text(d.description, style="bold")))
    env.say(Text(f"decision {d.id} rests on {len(d.basis)} memory versions "
                 f"(explain it with: engram explain {d.id})", style="dim"))


@cli.command()
@click.argument("decision_id")
@pass_env
def explain(env: Env, decision_id: str) -> None:
    """What DECISION_ID rested on, as it was then and as it is now; stale or not."""
    e = env.session().explain(decision_id)
    if env.json:
        env.emit_json(e.to_dict())
        return
    _print_explanation(env, e)


def _print_explanation(env: Env, e: DecisionExplanation) -> None:
    d = e.decision
    state = Text("STALE: its basis has changed since", style="bold yellow") if e.stale \
        else Text("current: its basis is unchanged", style="bold green")
    env.say(Text.assemble(("decision ", "bold"), Text(d.description, style="bold"),
                          f"  by {d.principal} at {fmt_time(d.recorded_at)} (tx {d.tx})"))
    env.say(state)
    table = Table(box=box.SIMPLE_HEAVY, show_lines=True)
    for col in ("memory", "then", "now"):
        table.add_column(col, overflow="fold")
    for b in e.basis:
        ref = Text(f"{b.item.id} v{b.item.version}")
        if not b.visible:
            table.add_row(ref, Text("(not readable by you)", style="dim"), Text("-"))
            continue
        flags = [name for name in ("superseded", "retracted", "erased", "contested")
                 if getattr(b, name)]
        then = Text(b.then.text if b.then else "(erased)")
        now = Text(b.now.text if b.now else "-")
        if b.now is not None and b.then is not None and b.now.version != b.then.version:
            now.append(f"\nnow v{b.now.version}", style="dim")
        if flags:
            now.append("\n" + ", ".join(flags), style="yellow")
        table.add_row(ref, then, now)
    env.out.print(table)


@cli.command()
@click.option("-n", "--namespace", default="**", show_default=True, help="Namespace glob.")
@pass_env
def stale(env: Env, namespace: str) -> None:
    """Decisions whose basis has changed since they were made."""
    decisions = env.session().stale_decisions(namespace)
    if env.json:
        env.emit_json([d.to_dict() for d in decisions])
        return
    if not decisions:
        env.say(Text("no stale decisions (or none you may read)", style="green"))
        return
    env.out.print(_decision_table(decisions))


def _decision_table(decisions: list[Decision]) -> Table:
    table = Table(box=box.SIMPLE_HEAVY)
    for col in ("id", "decision", "by", "recorded", "stale since tx"):
        table.add_column(col, overflow="fold")
    for d in decisions:
        table.add_row(Text(d.id), Text(d.description), Text(d.principal),
                      fmt_time(d.recorded_at), str(d.stale_tx or "-"))
    return table


# --------------------------------------------------------------------------- conflicts


@cli.command()
@click.option("-n", "--namespace", default="**", show_default=True, help="Namespace glob.")
@click.option("--status", type=click.Choice(["open", "resolved", "all"]), default="open",
              show_default=True)
@click.option("--limit", type=int, default=100, show_default=True)
@pass_env
def conflicts(env: Env, namespace: str, status: str, limit: int) -> None:
    """The conflict inbox: contradictions and races between agents."""
    found = env.session().conflicts(namespace, status=None if status == "all" else status,
                                    limit=limit)
    if env.json:
        env.emit_json([c.to_dict() for c in found])
        return
    if not found:
        env.say(Text(f"no {'' if status == 'all' else status + ' '}conflicts "
                     "(or none you may read)", style="green"))
        return
    env.out.print(_conflict_table(found))


def _conflict_table(found: list[Conflict]) -> Table:
    table = Table(box=box.SIMPLE_HEAVY, show_lines=True)
    for col in ("id", "kind", "namespace", "about", "memories", "policy → outcome", "status"):
        table.add_column(col, overflow="fold")
    for c in found:
        about = " · ".join(p for p in (c.subject, c.predicate) if p) or c.reason
        table.add_row(Text(c.id), c.kind, Text(c.namespace), Text(about),
                      Text("\n".join(f"{m.id} v{m.version}" for m in c.memories)),
                      Text(f"{c.policy} → {c.outcome}"),
                      Text(c.status + (f"\nwinner {c.winner}" if c.winner else "")))
    return table


@cli.command()
@click.argument("conflict_id")
@click.option("--winner", default=None, metavar="MEMORY_ID",
              help="The memory that stands; the others are rejected. Omit to acknowledge.")
@click.option("--reason", default=None, help="Why (kept in the log).")
@pass_env
def resolve(env: Env, conflict_id: str, winner: str | None, reason: str | None) -> None:
    """Resolve CONFLICT_ID (needs admin on its namespace)."""
    c = env.session().resolve(conflict_id, winner=winner, reason=reason)
    if env.json:
        env.emit_json(c.to_dict())
        return
    env.say(Text.assemble(("resolved ", "bold green"), Text(c.id),
                          f" (winner {c.winner})" if c.winner else " (acknowledged)"))


# --------------------------------------------------------------------------- knowledge


@cli.command()
@click.argument("agent")
@click.argument("query", required=False)
@click.option("--at", "at", required=True,
              help="Transaction time: a tx number or an ISO-8601 time.")
@click.option("-n", "--namespace", default="**", show_default=True, help="Namespace glob.")
@click.option("-k", "k", type=int, default=None, help="Hits at most (with QUERY).")
@pass_env
def knowledge(env: Env, agent: str, query: str | None, at: str, namespace: str,
              k: int | None) -> None:
    """What AGENT could have recalled at --at (with its grants as they stood then).

    With QUERY, the recall AGENT would have got; without, every memory it could read.
    """
    env.admin_only("knowledge")
    at_value = parse_as_of(at)
    assert at_value is not None
    result = env.open().knowledge(agent, at=at_value, query=query, namespace=namespace, k=k)
    if isinstance(result, list):
        if env.json:
            env.emit_json([m.to_dict() for m in result])
            return
        if not result:
            env.say(Text(f"{agent} could read nothing at {at}", style="yellow"))
        for m in result:
            env.out.print(memory_panel(m))
        return
    if env.json:
        env.emit_json({"hits": [h.to_dict() for h in result.hits],
                       "receipt": result.receipt.to_dict()})
        return
    if not result.hits:
        env.say(Text(f"{agent} would have recalled nothing at {at}", style="yellow"))
    else:
        env.out.print(hits_table(result, title=f"what {agent} knew at {at}"))
