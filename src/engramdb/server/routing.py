"""The server's path templates, matched against concrete paths.

Metrics label requests by template (``/v1/memories/{memory_id}``) and a 405
answer lists every method of the path in ``Allow``; both come from the one
table here, built from the OpenAPI spec so it always matches the routes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from engramdb.server import inspector
from engramdb.server.docs_page import ASSETS, DOCS_PATH

__all__ = ["RouteTable", "route_table", "template_regex"]


def template_regex(template: str) -> re.Pattern[str]:
    """``/v1/memories/{memory_id}`` -> a regex matching concrete paths of that route."""
    parts = re.split(r"(\{[^}/]+\})", template)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


class RouteTable:
    """Path templates in registration order, with their HTTP methods."""

    def __init__(self, paths: Mapping[str, Iterable[str]]) -> None:
        self._rows = [(template_regex(t), t, frozenset(m.upper() for m in methods))
                      for t, methods in paths.items()]

    def template(self, path: str) -> str | None:
        """The first template matching ``path`` (static segments win: they come first)."""
        for regex, template, _ in self._rows:
            if regex.fullmatch(path):
                return template
        return None

    def methods(self, path: str) -> list[str]:
        """The methods served at ``path`` (by the first template that matches it)."""
        for regex, _, methods in self._rows:
            if regex.fullmatch(path):
                return sorted(methods)
        return []


def route_table(app: Any) -> RouteTable:
    """The route table of a FastAPI app, built once from its OpenAPI spec."""
    table = getattr(app.state, "engram_routes", None)
    if table is None:
        paths = {p: list(item) for p, item in app.openapi()["paths"].items()}
        paths["/openapi.json"] = ["get"]
        if getattr(app.state, "engram_docs", False):
            paths[DOCS_PATH] = ["get"]
            paths[ASSETS + "/{asset}"] = ["get"]
        if getattr(app.state, "engram_ui", False):
            paths[inspector.UI_PATH] = ["get"]
            paths[inspector.UI_PATH + "/"] = ["get"]
            paths[inspector.ASSETS + "/{asset}"] = ["get"]
        table = app.state.engram_routes = RouteTable(paths)
    return table
