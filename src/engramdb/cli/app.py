"""The ``engram`` command group: global options, the open database, error handling.

Every command is a thin door onto the engine: it parses options, calls one
engine method and renders the result (rich tables for people, ``--json`` for
programs). Errors the engine raises on purpose (:class:`EngramError`) become
one red line with their code and exit status 2; bad usage is click's usage
message, also status 2. A traceback means a bug.

Other doors add commands without editing this file: a module
``engramdb.cli.<name>`` for a name in :data:`EXTENSIONS` that defines
``command`` (a click command or group) is registered when it exists, and its
optional ``on_init(env, target)`` runs at the end of ``engram init`` (for
example to generate the audit signing key).
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.text import Text

from engramdb.errors import EngramError

if TYPE_CHECKING:
    from engramdb.engine import Database, Session

__all__ = ["EXTENSIONS", "EngramGroup", "Env", "cli", "main", "pass_env"]

DEFAULT_DB = "engram.db"
# Commands that other parts of the project contribute as engramdb.cli.<name>.
EXTENSIONS: tuple[str, ...] = ("audit", "mcp")


@dataclass
class Env:
    """What every command shares: where the database is, who acts, how to print."""

    target: str
    agent: str | None
    json: bool
    out: Console = field(default_factory=lambda: Console(highlight=False))
    err: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))
    _db: Database | None = None

    def open(self, *, embedder: Any = "default", create: bool = False) -> Database:
        """The database at ``--db``, opened once per command.

        Only commands that make a database (``init``, ``import``, ``remember``,
        ``serve``) pass ``create=True``; every other command refuses a missing
        file with the path and ``engram init``, so a typo in ``--db`` never
        leaves an empty database behind.
        """
        if self._db is None:
            import engramdb

            self._db = engramdb.open(self.target, embedder=embedder, create=create)
        return self._db

    def session(self, *, create: bool = False) -> Session:
        """The admin's session, or the ``--as`` agent's."""
        db = self.open(create=create)
        return db if self.agent is None else db.as_agent(self.agent)

    def admin_only(self, command: str) -> None:
        """Refuse ``--as`` for commands that act on the whole database."""
        if self.agent is not None:
            raise click.UsageError(
                f"`engram {command}` acts on the whole database as its owner; drop --as"
            )

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def emit_json(self, value: Any) -> None:
        """One JSON document on stdout (``--json`` mode)."""
        click.echo(json.dumps(value, ensure_ascii=False, default=str))

    def say(self, line: Text | str) -> None:
        """One line on stdout, never wrapped or cut (it may be copied from)."""
        self.out.print(line if isinstance(line, Text) else Text(line), soft_wrap=True)

    def note(self, message: str, style: str = "dim") -> None:
        """A human remark on stderr, so stdout stays clean for data."""
        self.err.print(Text(message, style=style), soft_wrap=True)


pass_env = click.make_pass_decorator(Env)


def report_error(env_json: bool, exc: EngramError) -> None:
    """Print an engine error the way every command does: one line, code first."""
    if env_json:
        click.echo(json.dumps({"error": exc.to_wire()}, ensure_ascii=False, default=str))
        return
    line = Text()
    line.append("error ", style="bold red")
    line.append(f"[{exc.code}] ", style="red")
    hint = exc.hint("cli")
    text = exc.message if hint is None else f"{exc.message}; {hint}"
    line.append(text.replace("\n", " "), style="red")
    Console(stderr=True, highlight=False).print(line, soft_wrap=True)


class EngramGroup(click.Group):
    """A group that turns :class:`EngramError` into a red line and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EngramError as exc:
            env = ctx.find_object(Env)
            report_error(bool(env and env.json), exc)
            raise click.exceptions.Exit(2) from exc

    def list_commands(self, ctx: click.Context) -> list[str]:
        _load_extensions(self)
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        _load_extensions(self)
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _accept_global_options(command)
        return command


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    env = ctx.find_object(Env)
    if value and env is not None:
        env.json = True


def _set_target(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    env = ctx.find_object(Env)
    if value is not None and env is not None:
        env.target = value


def _set_agent(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    env = ctx.find_object(Env)
    if value is not None and env is not None:
        env.agent = value


# The global options a command also takes after its name (``engram serve --db x.db``).
_FOLLOWING: tuple[tuple[str, dict[str, Any]], ...] = (
    ("--json", {"is_flag": True, "callback": _set_json,
                "help": "Machine-readable JSON output (same as the global --json)."}),
    ("--db", {"default": None, "metavar": "PATH_OR_URL", "callback": _set_target,
              "help": "SQLite file or postgresql:// URL (same as the global --db)."}),
    ("--as", {"default": None, "metavar": "AGENT", "callback": _set_agent,
              "help": "Act as this agent (same as the global --as)."}),
)


def _accept_global_options(command: click.Command) -> None:
    """Let ``--json``, ``--db`` and ``--as`` follow the subcommand too."""
    for flag, spec in _FOLLOWING:
        if not any(flag in getattr(p, "opts", ()) for p in command.params):
            command.params.append(click.Option([flag], expose_value=False, **spec))
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _accept_global_options(sub)


_extensions_loaded = False
_init_hooks: list[Callable[[Env, str], Any]] = []


def _load_extensions(group: click.Group) -> None:
    global _extensions_loaded
    if _extensions_loaded:
        return
    _extensions_loaded = True
    for name in EXTENSIONS:
        try:
            module = importlib.import_module(f"engramdb.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"engramdb.cli.{name}":
                continue
            raise
        command = getattr(module, "command", None)
        if isinstance(command, click.Command) and command.name not in group.commands:
            group.add_command(command)
        hook = getattr(module, "on_init", None)
        if callable(hook):
            _init_hooks.append(hook)


def init_hooks() -> Iterator[Callable[[Env, str], Any]]:
    """The ``on_init`` hooks of the installed extensions."""
    _load_extensions(cli)
    yield from _init_hooks


@click.group(cls=EngramGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "target", default=DEFAULT_DB, envvar="ENGRAM_DB", show_default=True,
              metavar="PATH_OR_URL",
              help="SQLite file or postgresql:// URL (env ENGRAM_DB).")
@click.option("--as", "agent", default=None, metavar="AGENT",
              help="Act as this agent: its grants apply and it is the author of writes.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.version_option(package_name="engramdb", prog_name="engram")
@click.pass_context
def cli(ctx: click.Context, target: str, agent: str | None, as_json: bool) -> None:
    """EngramDB: a memory-native database for multi-agent AI systems.

    \b
    engram init                         create engram.db
    engram remember "text" -n ns        store a memory
    engram recall "question"            hybrid search with score parts
    engram verify                       check the log and the state
    engram demo                         a two-agent walk-through
    """
    env = Env(target=target, agent=agent, json=as_json)
    ctx.obj = env
    ctx.call_on_close(env.close)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``engram``)."""
    try:
        rv = cli.main(args=argv, prog_name="engram", standalone_mode=False)
    except click.exceptions.Abort:
        Console(stderr=True).print(Text("aborted", style="red"))
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:  # pragma: no cover - standalone_mode=False returns it
        sys.exit(exc.exit_code)
    except EngramError as exc:  # raised outside a command (e.g. while closing)
        report_error("--json" in (argv or sys.argv), exc)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)
