"""``engram serve``: the HTTP door, when the ``server`` extra provides it."""

from __future__ import annotations

import importlib

import click

from engramdb.cli.app import Env, cli, pass_env
from engramdb.errors import MissingExtra

__all__: list[str] = []

SERVER_EXTRA = "engramdb[server]"


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8420, show_default=True)
@click.option("--metrics", type=click.Choice(["key", "public", "off"]), default="key",
              show_default=True, help="Who may read /metrics: an admin key, anyone, nobody.")
@click.option("--docs", type=click.Choice(["off", "key", "public"]), default="off",
              show_default=True, help="Serve the interactive docs at /docs.")
@pass_env
def serve(env: Env, host: str, port: int, metrics: str, docs: str) -> None:
    """Serve the database at --db over HTTP (needs engramdb[server])."""
    env.admin_only("serve")
    try:
        server = importlib.import_module("engramdb.server")
    except ModuleNotFoundError as exc:
        missing = exc.name or "engramdb.server"
        raise MissingExtra(
            f"engram serve needs the HTTP server ({missing} is not installed); "
            f"pip install '{SERVER_EXTRA}'",
            extra=SERVER_EXTRA,
        ) from exc
    run = getattr(server, "run", None)
    if run is None:
        raise MissingExtra(
            f"this installation has no HTTP server entry point; pip install '{SERVER_EXTRA}'",
            extra=SERVER_EXTRA,
        )
    run(env.target, host=host, port=port,
        settings=server.ServerSettings(metrics=metrics, docs=docs))
