"""Every door is documented: each HTTP route, MCP tool and resource, and CLI command.

The lists come from the running code, never from a list kept here: the HTTP
routes from the OpenAPI spec the app serves, the MCP tools and resources from
what :func:`engramdb.mcp.build_server` registers, the CLI commands by walking
the ``engram`` click group (its lazily loaded subcommands included, down to
``engram audit ...``). Each must have its own heading in ``docs/http.md``,
``docs/mcp.md`` or ``docs/cli.md``; a heading naming something that no longer
exists fails too. The last tests show each check failing when a heading is
removed, so the checks cannot pass vacuously.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

import engramdb
from engramdb.cli.app import cli

DOCS = Path(__file__).resolve().parents[1] / "docs"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Served by FastAPI itself, described in docs/http.md's prose rather than as routes.
FRAMEWORK_PATHS = ("/openapi.json", "/docs", "/docs/oauth2-redirect",
                   # the web inspector's static page and assets (docs/inspector.md)
                   "/ui", "/ui/", "/ui/assets/{asset}")


def headings(text: str) -> list[str]:
    """The code-quoted names of every Markdown heading: ``## `engram init` `` -> ``engram init``."""
    return re.findall(r"^#+ `([^`]+)`", text, flags=re.M)


# -- what the code serves --------------------------------------------------------------------


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> Iterator[engramdb.Database]:
    db = engramdb.open(tmp_path_factory.mktemp("docs") / "engram.db", embedder=None)
    yield db
    db.close()


@pytest.fixture(scope="module")
def routes(database) -> set[str]:
    """``METHOD /path`` of every operation in the live app's OpenAPI spec."""
    from engramdb.server import create_app

    spec = create_app(database).openapi()
    found = {f"{method.upper()} {path}" for path, item in spec["paths"].items()
             for method in item if method.upper() in METHODS}
    assert len(found) > 40  # the spec really was read
    return found


@pytest.fixture(scope="module")
def mcp_names(database) -> set[str]:
    """Every tool name, resource URI and resource template the MCP server registers."""
    from engramdb.mcp import build_server

    server = build_server(database, database)

    async def listed() -> set[str]:
        tools = [t.name for t in await server.list_tools()]
        resources = [str(r.uri) for r in await server.list_resources()]
        templates = [t.uri_template for t in await server.list_resource_templates()]
        return {*tools, *resources, *templates}

    names = asyncio.run(listed())
    assert {"remember", "recall", "engram://namespaces"} <= names
    return names


def commands(group: click.Group = cli, ctx: click.Context | None = None,
             prefix: str = "engram") -> Iterator[str]:
    """Every command path, depth first, through click's own (lazy-loading) lookup."""
    ctx = ctx or click.Context(group, info_name=prefix)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        yield f"{prefix} {name}"
        if isinstance(command, click.Group):
            yield from commands(command, click.Context(command, parent=ctx, info_name=name),
                                f"{prefix} {name}")


# -- the checks ----------------------------------------------------------------------------------


def undocumented_routes(routes: set[str], text: str) -> list[str]:
    documented = {h for h in headings(text) if h.split(" ", 1)[0] in METHODS}
    return sorted(routes - documented)


def stale_routes(routes: set[str], text: str) -> list[str]:
    documented = {h for h in headings(text) if h.split(" ", 1)[0] in METHODS}
    return sorted(documented - routes)


def undocumented_mcp(names: set[str], text: str) -> list[str]:
    return sorted(names - set(headings(text)))


def undocumented_commands(paths: list[str], text: str) -> list[str]:
    # A heading may go on with the command's arguments: `engram audit prove SEQ`.
    documented = headings(text)
    return [p for p in paths if not any(h == p or h.startswith(p + " ") for h in documented)]


def stale_commands(paths: list[str], text: str) -> list[str]:
    known = set(paths)
    out = []
    for h in headings(text):
        if not h.startswith("engram "):
            continue
        words = h.split()
        if not any(" ".join(words[:n]) in known for n in range(2, len(words) + 1)):
            out.append(h)
    return out


def test_every_http_route_is_documented(routes):
    text = (DOCS / "http.md").read_text(encoding="utf-8")
    assert undocumented_routes(routes, text) == [], "routes missing from docs/http.md"
    assert stale_routes(routes, text) == [], "docs/http.md documents routes that do not exist"


def test_the_app_serves_no_route_outside_the_spec(database, routes):
    from engramdb.server import create_app

    app = create_app(database)
    served = {f"{m} {r.path}" for r in app.routes for m in getattr(r, "methods", ())
              if m in METHODS and r.path not in FRAMEWORK_PATHS}
    assert served <= routes


def test_every_mcp_tool_and_resource_is_documented(mcp_names):
    text = (DOCS / "mcp.md").read_text(encoding="utf-8")
    assert undocumented_mcp(mcp_names, text) == [], "missing from docs/mcp.md"


def test_every_cli_command_is_documented():
    paths = list(commands())
    assert {"engram serve", "engram audit keygen", "engram audit verify-proof"} <= set(paths)
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert undocumented_commands(paths, text) == [], "commands missing from docs/cli.md"
    assert stale_commands(paths, text) == [], "docs/cli.md documents commands that do not exist"


# -- the checks fail when a heading goes --------------------------------------------------------


def _without_heading(text: str, name: str) -> str:
    pattern = re.compile(rf"^#+ `{re.escape(name)}[` ].*$\n", flags=re.M)
    assert pattern.search(text), name
    return pattern.sub("", text)


def test_a_route_without_its_heading_is_reported(routes):
    text = (DOCS / "http.md").read_text(encoding="utf-8")
    for route in ("POST /v1/audit/checkpoints", "PATCH /v1/admin/agents/{name}"):
        assert undocumented_routes(routes, _without_heading(text, route)) == [route]
    assert stale_routes(routes - {"GET /v1/me"}, text) == ["GET /v1/me"]


def test_a_tool_without_its_heading_is_reported(mcp_names):
    text = (DOCS / "mcp.md").read_text(encoding="utf-8")
    assert undocumented_mcp(mcp_names, _without_heading(text, "resolve")) == ["resolve"]


def test_a_command_without_its_heading_is_reported():
    paths = list(commands())
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert undocumented_commands(paths, _without_heading(text, "engram audit prove")) == [
        "engram audit prove"]
    assert stale_commands([p for p in paths if p != "engram demo"], text) == ["engram demo"]
