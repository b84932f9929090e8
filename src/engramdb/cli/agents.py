"""Commands for principals and grants: ``engram agent create|key|list|my-grants|grant|revoke|
reactivate``.

Just enough administration to use ``--as`` from the shell; the full admin
surface is ``db.admin`` in Python and the HTTP door.
"""

from __future__ import annotations

from typing import BinaryIO

import click
from rich import box
from rich.table import Table
from rich.text import Text

from engramdb.cli.app import Env, cli, pass_env
from engramdb.model import ACTIONS
from engramdb.private_file import private_file

__all__: list[str] = []


@cli.group()
def agent() -> None:
    """Create agents and grant them namespaces."""


@agent.command("create")
@click.argument("name")
@click.option("--role", "roles", multiple=True, help="Role name (repeatable).")
@click.option("--trust", type=float, default=0.5, show_default=True)
@click.option("--admin", "is_admin", is_flag=True,
              help="An admin principal: may do everything, like the built-in admin.")
@click.option("--key-file", type=click.Path(dir_okay=False), default=None,
              help="Write the API key to this new file (mode 0600) instead of printing it.")
@pass_env
def agent_create(env: Env, name: str, roles: tuple[str, ...], trust: float, is_admin: bool,
                 key_file: str | None) -> None:
    """Create agent NAME and print its API key (shown only this once)."""
    env.admin_only("agent create")
    admin = env.open(create=True).admin
    with private_file(key_file, what="key file") as fh:
        key = admin.create_agent(name, roles=roles, trust=trust,
                                 kind="admin" if is_admin else "agent")
        _hand_over_key(env, name, key, fh, key_file, created=True)


@agent.command("key")
@click.argument("name")
@click.option("--key-file", type=click.Path(dir_okay=False), default=None,
              help="Write the API key to this new file (mode 0600) instead of printing it.")
@pass_env
def agent_key(env: Env, name: str, key_file: str | None) -> None:
    """Issue another API key for NAME (``admin`` for the database's own admin).

    Older keys keep working until revoked (engram agent revoke-key), so a key
    can be rotated without downtime.
    """
    env.admin_only("agent key")
    admin = env.open().admin
    with private_file(key_file, what="key file") as fh:
        _hand_over_key(env, name, admin.create_key(name), fh, key_file, created=False)


@agent.command("revoke-key")
@click.argument("key_or_id")
@pass_env
def agent_revoke_key(env: Env, key_or_id: str) -> None:
    """Revoke an API key (the key itself or its id, the part after ``ek_``)."""
    env.admin_only("agent revoke-key")
    env.open().admin.revoke_key(key_or_id)
    if env.json:
        env.emit_json({"revoked_key": key_or_id.split("_")[1] if key_or_id.startswith("ek_")
                       else key_or_id})
        return
    env.say(Text.assemble(("revoked key ", "bold green"), Text(key_or_id[:15])))


@agent.command("reactivate")
@click.argument("name")
@pass_env
def agent_reactivate(env: Env, name: str) -> None:
    """Let a frozen agent act again."""
    env.admin_only("agent reactivate")
    p = env.open().admin.reactivate_agent(name)
    if env.json:
        env.emit_json({"name": p.name, "status": p.status})
        return
    env.say(Text.assemble(("reactivated ", "bold green"), Text(p.name)))


def _hand_over_key(env: Env, name: str, key: str, fh: BinaryIO | None, key_file: str | None,
                   *, created: bool) -> None:
    """Show a new key once, or write it to its claimed 0600 file and say where."""
    if fh is not None:
        fh.write((key + "\n").encode())
    if env.json:
        out = {"name": name, "key_file": key_file} if key_file else {"name": name, "api_key": key}
        env.emit_json(out)
        return
    if created:
        env.say(Text.assemble(("created agent ", "bold green"), (name, "bold")))
    if key_file is not None:
        env.say(Text(f"API key for {name} written to {key_file} (mode 0600)"))
    else:
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


@agent.command("my-grants")
@pass_env
def agent_my_grants(env: Env) -> None:
    """The grants in force for you (the admin, or the --as agent): yours and your roles'."""
    grants = env.session().my_grants()
    if env.json:
        env.emit_json([{"id": g.id, "grantee": g.grantee, "pattern": g.pattern,
                        "actions": list(g.actions), "tx": g.tx_from} for g in grants])
        return
    if not grants:
        env.say(Text("no grants"))
        return
    table = Table(box=box.SIMPLE_HEAVY)
    for col in ("pattern", "actions", "grantee", "id"):
        table.add_column(col, overflow="fold")
    for g in grants:
        table.add_row(Text(g.pattern), ", ".join(g.actions), Text(g.grantee), g.id)
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
