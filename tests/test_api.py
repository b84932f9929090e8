"""The public API is declared once (engramdb.api); every door must agree with it.

A door that drifts (a parameter renamed, a default changed, a keyword missing
from an HTTP schema or MCP tool) fails here rather than in a user's call.
"""

from __future__ import annotations

import asyncio
import inspect
import typing
import warnings
from typing import Any

import pytest

import engramdb
from engramdb import api
from engramdb.client import AsyncClient, Client
from engramdb.client._async import AsyncRemoteAdmin
from engramdb.client._sync import RemoteAdmin
from engramdb.engine.admin import Admin


def _params(fn: Any) -> list[tuple[str, Any, Any]]:
    sig = inspect.signature(fn)
    return [(p.name, p.kind, p.default) for p in sig.parameters.values() if p.name != "self"]


def _declared(protocol: type) -> list[str]:
    return sorted(n for n, v in vars(protocol).items()
                  if not n.startswith("_") and callable(v))


def _public(cls: type) -> set[str]:
    return {n for n, v in inspect.getmembers(cls) if not n.startswith("_") and callable(v)}


def test_every_public_session_call_is_declared():
    assert _public(engramdb.Session) == set(_declared(api.MemoryAPI))


@pytest.mark.parametrize("name", _declared(api.MemoryAPI))
def test_session_and_both_clients_take_the_declared_parameters(name):
    declared = _params(getattr(api.MemoryAPI, name))
    assert _params(getattr(engramdb.Session, name)) == declared
    assert _params(getattr(engramdb.Database, name)) == declared
    assert _params(getattr(Client, name)) == declared
    assert _params(getattr(api.AsyncMemoryAPI, name)) == declared
    assert _params(getattr(AsyncClient, name)) == declared
    is_async = inspect.iscoroutinefunction(getattr(api.AsyncMemoryAPI, name))
    assert inspect.iscoroutinefunction(getattr(AsyncClient, name)) == is_async


@pytest.mark.parametrize("name", _declared(api.AdminAPI))
def test_admin_surfaces_take_the_declared_parameters(name):
    declared = _params(getattr(api.AdminAPI, name))
    for cls in (Admin, RemoteAdmin, AsyncRemoteAdmin):
        assert _params(getattr(cls, name)) == declared, cls.__name__


def test_the_parameter_check_notices_a_drift():
    def remember(self, text: str, *, namespace: str | None = "x") -> None: ...

    assert _params(remember) != _params(api.MemoryAPI.remember)


def _call_params(call: api.Call, protocol: type = api.MemoryAPI) -> set[str]:
    """The declared parameters of a call, ``**fields`` spelled out, wire names applied."""
    names: set[str] = set()
    fn = getattr(protocol, call.name)
    hints = typing.get_type_hints(fn, include_extras=True)
    for p in inspect.signature(fn).parameters.values():
        if p.name == "self":
            continue
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            (fields,) = typing.get_args(hints[p.name])  # Unpack[SomeTypedDict]
            names |= set(fields.__annotations__)
        else:
            names.add(p.name)
    wire = dict(call.wire)
    return {wire.get(n, n) for n in names}


@pytest.fixture(scope="module")
def openapi(tmp_path_factory) -> dict[str, Any]:
    from engramdb.server.app import create_app

    with engramdb.open(tmp_path_factory.mktemp("api") / "engram.db", embedder=None) as db:
        return create_app(db).openapi()


def _body_model(op: dict[str, Any]) -> str | None:
    schema = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    schema = schema.get("schema", {})
    for option in [schema, *schema.get("anyOf", [])]:
        if "$ref" in option:
            return str(option["$ref"]).rsplit("/", 1)[-1]
    return None


@pytest.mark.parametrize("call", api.CALLS, ids=lambda c: c.name)
def test_http_route_takes_exactly_the_declared_parameters(call, openapi):
    method, path = call.route.split(" ", 1)
    op = openapi["paths"][path][method.lower()]
    wire = dict(call.wire)
    names = {wire.get(p["name"], p["name"]) for p in op.get("parameters", [])
             if p["in"] in ("path", "query")}
    # Path parameters keep the engine's names in the route ({memory_id}).
    names = {wire.get(n, n) for n in names}
    assert _body_model(op) == call.body or call.body is None
    if call.body is not None:
        names |= set(openapi["components"]["schemas"][call.body].get("properties", {}))
    assert names == _call_params(call)


@pytest.mark.parametrize("call", api.ADMIN_CALLS, ids=lambda c: c.name)
def test_admin_route_takes_exactly_the_declared_parameters(call, openapi):
    method, path = call.route.split(" ", 1)
    op = openapi["paths"][path][method.lower()]
    assert _body_model(op) == call.body
    names = {p["name"] for p in op.get("parameters", []) if p["in"] in ("path", "query")}
    names |= set(openapi["components"]["schemas"][call.body].get("properties", {}))
    assert names == _call_params(call, api.AdminAPI)


@pytest.fixture(scope="module")
def mcp_tools(tmp_path_factory) -> dict[str, dict[str, Any]]:
    from engramdb.mcp._server import build_server

    with engramdb.open(tmp_path_factory.mktemp("mcp") / "engram.db", embedder=None) as db:
        tools = asyncio.run(build_server(db, db).list_tools())
    return {t.name: t.input_schema for t in tools}


@pytest.mark.parametrize("call", [c for c in api.CALLS if c.tool], ids=lambda c: c.name)
def test_mcp_tool_takes_the_declared_parameters(call, mcp_tools):
    offered = set(mcp_tools[str(call.tool)].get("properties", {}))
    wire = dict(call.wire)
    assert offered == _call_params(call) - {wire.get(n, n) for n in call.not_in_tool}


def test_every_mcp_tool_fronts_a_declared_call_or_is_known(mcp_tools):
    fronted = {c.tool for c in api.CALLS if c.tool}
    # Tools that combine calls or belong to later layers are listed here on purpose.
    assert fronted <= set(mcp_tools)


def test_exported_names():
    exported = set(engramdb.__all__)
    assert list(engramdb.__all__) == sorted(engramdb.__all__)
    for name in exported:
        assert getattr(engramdb, name) is not None, name
    public = {n for n, v in vars(engramdb).items()
              if not n.startswith("_") and not inspect.ismodule(v)}
    assert public <= exported | {"annotations"}, sorted(public - exported)


def test_conflict_names_have_one_meaning_each():
    from engramdb import model

    assert issubclass(engramdb.ConflictError, engramdb.EngramError)
    assert not issubclass(model.Conflict, BaseException)  # the record, not an error
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert engramdb.Conflict is engramdb.ConflictError  # deprecated alias
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)
    assert engramdb.VersionConflict.code == "version_conflict"
    assert issubclass(engramdb.VersionConflict, engramdb.ConflictError)
