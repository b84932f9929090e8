"""Every failure as ``{"error": {"code", "message", "details"}}`` with the tree's status.

Engine errors go out exactly as :meth:`EngramError.to_wire` says. Framework
errors (malformed JSON, schema mismatches, unknown routes, wrong methods) are
given the same shape and a helpful message; a request that fails validation is
a 400 ``invalid_input``, never FastAPI's 422 dump. Anything unexpected is
logged here with its traceback and answered with a generic 500 that carries
no internal detail.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engramdb import errors as E
from engramdb.server.routing import route_table
from engramdb.server.schemas import ErrorResponse

__all__ = ["error_response", "error_responses", "install_handlers"]

log = logging.getLogger("engramdb.server")

_BY_STATUS: dict[int, str] = {
    400: E.InvalidInput.code,
    401: E.Unauthenticated.code,
    403: E.PermissionDenied.code,
    404: E.NotFound.code,
    405: "method_not_allowed",
    409: E.ConflictError.code,
    413: E.PayloadTooLarge.code,
    429: E.RateLimited.code,
}

_DESCRIPTIONS: dict[int, str] = {
    400: "Invalid input (`invalid_input` or a subclass such as `invalid_namespace`); "
         "nothing was written.",
    401: "No API key, or one that is malformed, unknown or revoked (`unauthenticated`).",
    403: "The principal lacks the grant or role for this action (`permission_denied`).",
    404: "No such object, or one the caller may not see: the two look the same "
         "(`not_found`).",
    409: "The request collides with the current state (`version_conflict`, "
         "`contradiction`, `idempotency_key_reused`, `conflict`).",
    413: "Request body or batch over the server's limit (`payload_too_large`).",
    429: "Too many requests for this API key (`rate_limited`); see `Retry-After`.",
    500: "Unexpected server error (`internal_error`); the server logged the details.",
    503: "The database could not serve the request (`storage_error`, or `busy`: the write lock "
         "was not free in time); retry later (see `Retry-After` when given).",
}


def error_response(status: int, code: str, message: str, details: Mapping[str, Any] | None = None,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    """A JSON error response in the one error shape."""
    body = {"error": {"code": code, "message": message, "details": dict(details or {})}}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def engram_error_response(exc: E.EngramError) -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(exc, E.Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, E.RateLimited) and "retry_after" in exc.details:
        headers["Retry-After"] = str(exc.details["retry_after"])
    elif exc.status == 503 and exc.details.get("retryable"):
        # A lock or serialization failure, a lost connection: nothing was written.
        headers["Retry-After"] = str(exc.details.get("retry_after", 1))
    wire = exc.to_wire()
    if exc.status >= 500 and not isinstance(exc, E.StorageError | E.UpstreamError):
        # Configuration problems are the operator's, not the caller's: log the detail.
        log.error("server error %s: %s", exc.code, exc.message)
    return error_response(exc.status, wire["code"], wire["message"], wire["details"], headers)


def _loc(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    return ".".join(parts) if parts else "request"


def validation_response(exc: RequestValidationError) -> JSONResponse:
    """400 ``invalid_input`` naming each bad field; input values are never echoed."""
    problems = []
    for err in exc.errors():
        loc = list(err.get("loc", ()))
        kind = str(err.get("type", "invalid"))
        if kind == "json_invalid":
            ctx = err.get("ctx") or {}
            msg = f"request body is not valid JSON ({ctx.get('error', 'parse error')})"
            loc = ["body"]
        elif kind == "extra_forbidden":
            msg = "unknown field; see the API docs (/docs) for the fields this route takes"
        else:
            msg = str(err.get("msg", "invalid value"))
        problems.append({"loc": loc, "type": kind, "message": msg})
    shown = "; ".join(f"{_loc(p['loc'])}: {p['message']}" for p in problems[:5])
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return error_response(400, E.InvalidInput.code, f"invalid request: {shown}{more}",
                          {"errors": problems[:50]})


def install_handlers(app: FastAPI) -> None:
    """Register the handlers that give every failure the one error shape."""

    async def on_engram(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, E.EngramError)
        return engram_error_response(exc)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return validation_response(exc)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        code = _BY_STATUS.get(status, "http_error")
        if status == 404:
            message = (f"no route {request.method} {request.url.path}; "
                       "see /docs or /openapi.json for the API")
        elif status == 405:
            allowed = route_table(request.app).methods(request.url.path)
            message = (f"{request.method} is not allowed on {request.url.path}; "
                       f"use {', '.join(allowed)}")
            return error_response(405, code, message, {"allowed": allowed},
                                  {"Allow": ", ".join(allowed)})
        elif status == 400:
            message = "request body could not be read; send UTF-8 JSON"
        else:
            message = str(exc.detail) if isinstance(exc.detail, str) else "request refused"
        return error_response(status, code, message, {}, exc.headers)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path,
                      exc_info=exc)
        return error_response(500, "internal_error",
                              "the server failed unexpectedly; it has logged the details")

    app.add_exception_handler(E.EngramError, on_engram)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses, all in the one shape."""
    return {s: {"model": ErrorResponse, "description": _DESCRIPTIONS[s]} for s in statuses}
