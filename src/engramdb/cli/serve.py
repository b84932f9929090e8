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
@click.option("--admin-key", "admin_key", type=click.Choice(["auto", "new", "none"]),
              default="auto", show_default=True,
              help="auto: issue an admin key on the first start only; new: on every start; "
                   "none: never (use engram agent key admin).")
@click.option("--admin-key-file", type=click.Path(dir_okay=False), default=None,
              help="Write an issued admin key to this new file (mode 0600) instead of "
                   "printing it.")
@click.option("--maintain-every", type=float, default=3600.0, show_default=True,
              metavar="SECONDS", help="Run `engram maintain` in the background this often; "
                                      "0 turns it off.")
@click.option("--metrics", type=click.Choice(["key", "public", "off"]), default="key",
              show_default=True, help="Who may read /metrics: an admin key, anyone, nobody.")
@click.option("--docs", type=click.Choice(["off", "key", "public"]), default="off",
              show_default=True, help="Serve the interactive docs at /docs.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Server processes on the one port (use the cores; limits apply per "
                   "worker).")
@click.option("--combine", is_flag=True, default=False,
              help="PostgreSQL: send single writes through the write combiner, so the "
                   "workers (and other processes on this host opened with it) share one "
                   "call per batch of writes; see docs/scaling.md.")
@pass_env
def serve(env: Env, host: str, port: int, admin_key: str, admin_key_file: str | None,
          maintain_every: float, metrics: str, docs: str, workers: int,
          combine: bool) -> None:
    """Serve the database at --db over HTTP (needs engramdb[server]).

    Creates the database if it does not exist. The admin key is issued on the
    first start and shown once, framed on stderr (or written to
    --admin-key-file); get another any time with ``engram agent key admin``.
    """
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
    settings = server.ServerSettings(maintain_every_s=maintain_every or None, metrics=metrics,
                                     docs=docs)
    run(env.target, host=host, port=port, settings=settings, admin_key=admin_key,
        admin_key_file=admin_key_file, announce_key=lambda key: _announce_key(env, key),
        workers=workers, combine=combine)


def _announce_key(env: Env, key: str) -> None:
    """The admin key, once, framed so it is not lost among the log lines."""
    bar = "=" * 72
    env.note(bar, style="bold yellow")
    env.note("EngramDB admin API key (shown once; keep it secret):", style="bold yellow")
    env.note(key, style="bold")
    env.note("Lost it? engram agent key admin --key-file admin.key issues another.", style="dim")
    env.note(bar, style="bold yellow")
