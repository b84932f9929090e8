"""Commands for principals and grants: ``engram agent create|list|grant|revoke``.

Just enough administration to use ``--as`` from the shell; the full admin
surface is ``db.admin`` in Python and the HTTP door.
"""

from __future__ import annotations

import click
from rich import box
from rich.table import Table
from rich.text import Text

from engramdb.cli.app import Env, cli, pass_env
from engramdb.model import ACTIONS

__all__: list[str] = []


@cli.group()
def agent() -> None:
    """Create agents and grant them namespaces."""


@agent.command("create")
@click.argument("name")
@click.option("--role", "roles", multiple=True, help="Role name (repeatable).")
@click.option("--trust", type=float, default=0.5, show_default=True)
@pass_env
def agent_create(env: Env, name: str, roles: tuple[str, ...], trust: float) -> None:
    """Create agent NAME and print its API key (shown only this once)."""
    env.admin_only("agent create")
    key = env.open().admin.create_agent(name, roles=roles, trust=trust)
    if env.json:
        env.emit_json({"name": name, "api_key": key})
        return
    env.say(Text.assemble(("created agent ", "bold green"), (name, "bold")))
    env.say(Text(f"API key (shown once, keep it secret): {key}"))


@agent.command("list")
@pass_env
def agent_list(env: Env) -> None:
    """Every principal with its roles, trust and grants."""
    db = env.open()
    principals = db.admin.agents()
    grants = db.admin.grants()
    if env.json:
        env.emit_json([{"name": p.name, "kind": p.kind, "roles": list(p.roles),
                        "trust": p.trust, "status": p.status,
                        "grants": [{"id": g.id, "pattern": g.pattern, "actions": list(g.actions)}
                                   for g in grants if g.grantee == p.name]}
                       for p in principals])
        return
    table = Table(box=box.SIMPLE_HEAVY)
    for col in ("name", "kind", "roles", "trust", "status", "grants"):
        table.add_column(col, overflow="fold")
    for p in principals:
        mine = [f"{g.pattern} {','.join(g.actions)}" for g in grants if g.grantee == p.name]
        table.add_row(Text(p.name), p.kind, Text(", ".join(p.roles) or "-"), f"{p.trust:.2f}",
                      p.status, Text("\n".join(mine) or "-"))
    env.out.print(table)


@agent.command("grant")
@click.argument("grantee")
@click.argument("pattern")
@click.argument("actions", nargs=-1, required=True, type=click.Choice(ACTIONS))
@pass_env
def agent_grant(env: Env, grantee: str, pattern: str, actions: tuple[str, ...]) -> None:
    """Let GRANTEE (an agent, or role:<name>) do ACTIONS in namespaces matching PATTERN.

    \b
    engram agent grant researcher 'acme/research/**' read write
    """
    env.admin_only("agent grant")
    g = env.open().admin.grant(grantee, pattern, list(actions))
    if env.json:
        env.emit_json({"id": g.id, "grantee": g.grantee, "pattern": g.pattern,
                       "actions": list(g.actions), "tx": g.tx_from})
        return
    env.say(Text.assemble(("granted ", "bold green"),
                                f"{g.grantee}: {', '.join(g.actions)} on {g.pattern} "
                                f"(grant {g.id})"))


@agent.command("revoke")
@click.argument("grant_id")
@pass_env
def agent_revoke(env: Env, grant_id: str) -> None:
    """End grant GRANT_ID (history keeps that it existed)."""
    env.admin_only("agent revoke")
    env.open().admin.revoke(grant_id)
    if env.json:
        env.emit_json({"revoked": grant_id})
        return
    env.say(Text.assemble(("revoked ", "bold green"), grant_id))
