"""``engram mcp``: the MCP door (needs ``engramdb[mcp]``), registered as a CLI extension.

The server acts as the principal of its API key, never as the database's
owner, so ``--as`` does not apply. A bad or missing key fails before
anything is served, with the usual red ``[unauthenticated]`` line and exit
status 2.
"""

from __future__ import annotations

import importlib

import click

from engramdb.cli.app import Env, pass_env
from engramdb.errors import MissingExtra

__all__ = ["command"]

MCP_EXTRA = "engramdb[mcp]"


@click.command(name="mcp")
@click.option("--api-key", envvar="ENGRAM_API_KEY", default=None, metavar="KEY",
              help="API key of the principal the server acts for (env ENGRAM_API_KEY). "
                   "Over --transport http it may be left out: the server then serves every "
                   "principal, each request acting as the owner of its bearer key.")
@click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio",
              show_default=True,
              help="stdio: the agent runtime launches this command; http: streamable HTTP "
                   "at http://HOST:PORT/mcp (requests need 'Authorization: Bearer KEY').")
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP interface.")
@click.option("--port", type=int, default=8421, show_default=True, help="HTTP port.")
@click.option("--combine", is_flag=True, default=False,
              help="PostgreSQL: send single writes through the write combiner, so the MCP "
                   "servers of agents on this host share one call per batch of writes; see "
                   "docs/scaling.md.")
@pass_env
def command(env: Env, api_key: str | None, transport: str, host: str, port: int,
            combine: bool) -> None:
    """Serve the database at --db to agents over MCP, as the principal of --api-key.

    Over --transport http without --api-key, one server serves a whole crew: each
    request acts as the principal of its 'Authorization: Bearer KEY'.
    """
    if env.agent is not None:
        raise click.UsageError("`engram mcp` acts as the principal of its API key; drop --as")
    try:
        # Doors are sibling layers: the CLI starts this one by name, as `engram serve` does.
        door = importlib.import_module("engramdb.mcp")
    except ModuleNotFoundError as exc:
        raise MissingExtra(f"engram mcp needs the MCP SDK ({exc.name} is not installed); "
                           f"pip install '{MCP_EXTRA}'", extra=MCP_EXTRA) from exc
    door.run(env.target, api_key, transport=transport, host=host, port=port,
             combine=combine)
