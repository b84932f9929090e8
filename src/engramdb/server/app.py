"""The FastAPI application: routers, the door middleware, error handlers, the spec.

:func:`create_app` wires an open :class:`~engramdb.Database` to HTTP. It holds
no state of its own beyond metrics and rate-limit buckets: several processes
serving one PostgreSQL database behave as one service.
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from engramdb import __version__, telemetry
from engramdb.engine import Database
from engramdb.server.docs_page import install_docs
from engramdb.server.door import Door
from engramdb.server.errors import install_handlers
from engramdb.server.inspector import install_inspector
from engramdb.server.metrics import Metrics
from engramdb.server.routes import ROUTERS
from engramdb.server.routing import route_table
from engramdb.server.settings import ServerSettings
from engramdb.server.threads import EngineThreads
from engramdb.server.tracing import TraceRequests

__all__ = ["create_app"]

_DESCRIPTION = """\
EngramDB over HTTP: the same operations, semantics and errors as the embedded
Python API. Every `/v1` route needs `Authorization: Bearer <api key>`; the key
decides the principal every call is made as. Errors are always
`{"error": {"code", "message", "details"}}` with a stable `code`.
"""

_DOOR_ERRORS = {
    "401": "No API key, or one that is malformed, unknown or revoked (`unauthenticated`).",
    "413": "Request body over the server's limit (`payload_too_large`).",
    "429": "Too many requests for this API key (`rate_limited`); see `Retry-After`.",
}

# FastAPI >= 0.165 traces requests itself once an OpenTelemetry provider is installed, query
# strings included (where a recall query could travel); EngramDB's own server span
# (server/tracing.py) replaces it, so memory text stays out of attributes by default.
_NATIVE_TELEMETRY_OFF: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False,
                   "operation_spans": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters else {})

# (from path, method, status) -> links to operations that take the new object's id,
# so that clients (and stateful fuzzers) can follow a created object.
_LINKS: dict[tuple[str, str, str], dict[str, tuple[str, str, dict[str, Any]]]] = {
    ("/v1/memories", "post", "201"): {
        "GetMemory": ("/v1/memories/{memory_id}", "get", {"memory_id": "$response.body#/id"}),
        "MemoryHistory": ("/v1/memories/{memory_id}/history", "get",
                          {"memory_id": "$response.body#/id"}),
        "UpdateMemory": ("/v1/memories/{memory_id}", "patch",
                         {"memory_id": "$response.body#/id"}),
        "RetractMemory": ("/v1/memories/{memory_id}/retract", "post",
                          {"memory_id": "$response.body#/id"}),
    },
    ("/v1/admin/agents", "post", "201"): {
        "GetAgent": ("/v1/admin/agents/{name}", "get", {"name": "$response.body#/agent/name"}),
        "CreateKey": ("/v1/admin/agents/{name}/keys", "post",
                      {"name": "$response.body#/agent/name"}),
    },
    ("/v1/admin/grants", "post", "201"): {
        "RevokeGrant": ("/v1/admin/grants/{grant_id}", "delete",
                        {"grant_id": "$response.body#/id"}),
    },
}


def create_app(db: Database, *, settings: ServerSettings | None = None) -> FastAPI:
    """An ASGI application serving ``db``.

    Args:
        db: An open database; the server does not close it.
        settings: Limits and behaviour; defaults to :class:`ServerSettings`.

    Returns:
        A FastAPI app, to run with any ASGI server (``uvicorn``) or
        :func:`engramdb.server.serve`.
    """
    settings = settings or ServerSettings()
    telemetry.configure_from_env()
    app = FastAPI(
        title="EngramDB",
        version=__version__,
        description=_DESCRIPTION,
        docs_url=None,  # docs_page serves /docs from local assets, never from a CDN
        redoc_url=None,
        redirect_slashes=False,
        **_NATIVE_TELEMETRY_OFF,
    )
    metrics = Metrics()
    bound = recall_threads(settings, db)
    threads = EngineThreads(bound)
    app.state.engram_db = db
    app.state.engram_threads = threads
    app.state.engram_settings = settings
    app.state.engram_metrics = metrics
    for router in ROUTERS:
        app.include_router(router)
    install_handlers(app)
    app.state.engram_docs = settings.docs != "off" and install_docs(app)
    app.state.engram_ui = install_inspector(app)
    app.add_middleware(Door, db=db, settings=settings, metrics=metrics,
                       routes=lambda: route_table(app), threads=EngineThreads(bound))
    if telemetry.active() is not None:  # outermost, so refusals are traced too
        app.add_middleware(TraceRequests, routes=lambda: route_table(app))
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def recall_threads(settings: ServerSettings, db: Database) -> int | None:
    """The bound on recall threads per process (``settings.recall_threads``, ``auto`` resolved)."""
    value = settings.recall_threads
    if value == "auto":
        return 1 if db.info().backend == "sqlite" else None
    return value if isinstance(value, int) else None


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated spec, completed with what the code enforces outside pydantic."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    spec = get_openapi(title=app.title, version=app.version, description=app.description,
                       routes=app.routes)
    settings: ServerSettings = app.state.engram_settings
    db: Database = app.state.engram_db
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    operation_ids = {(path, method): op.get("operationId")
                     for path, item in spec["paths"].items() for method, op in item.items()}
    for path, path_item in spec["paths"].items():
        for method, op in path_item.items():
            responses = op.setdefault("responses", {})
            # FastAPI's 422 never happens: validation errors are sent as 400 invalid_input.
            responses.pop("422", None)
            # The door answers these before any route runs, so every route can send them.
            door: list[str] = []
            if path.startswith("/v1/"):
                door += ["401", "429"]
            if method in ("post", "put", "patch", "delete"):
                door.append("413")
            for status in door:
                responses.setdefault(status, {
                    "description": _DOOR_ERRORS[status],
                    "content": {"application/json": {"schema": error_ref}},
                })
            for status_code, response in responses.items():
                if status_code[0] in "45":
                    # Errors are JSON even on routes whose success is text (/metrics).
                    response["content"] = {"application/json": {"schema": error_ref}}
            for param in op.get("parameters", ()):
                if (path, param["name"]) == ("/v1/changes", "limit"):
                    _set_max(param["schema"], settings.max_page_size)
            for status_code, response in responses.items():
                links = _LINKS.get((path, method, status_code))
                if links:
                    response["links"] = {
                        name: {"operationId": operation_ids[(target, target_method)],
                               "parameters": params}
                        for name, (target, target_method, params) in links.items()
                        if (target, target_method) in operation_ids
                    }
    schemas = spec.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    _limit_items(schemas, "BatchRequest", "memories", settings.max_batch)
    _limit_items(schemas, "TransactionRequest", "ops", settings.max_batch)
    k = schemas.get("RecallRequest", {}).get("properties", {}).get("k")
    if k is not None:
        k["maximum"] = int(db.config.max_k)
    app.openapi_schema = spec
    return spec


def _set_max(schema: dict[str, Any], maximum: int) -> None:
    for option in schema.get("anyOf", [schema]):
        if option.get("type") == "integer":
            option["maximum"] = maximum


def _limit_items(schemas: dict[str, Any], model: str, field: str, most: int) -> None:
    prop = schemas.get(model, {}).get("properties", {}).get(field)
    if prop is not None:
        prop["maxItems"] = most
