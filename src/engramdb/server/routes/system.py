"""Service routes: ``/healthz``, ``/metrics``, ``/v1/info``, ``/v1/me``, ``/v1/verify``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from engramdb import __version__
from engramdb.errors import EngramError, NotFound, PermissionDenied, StorageError
from engramdb.server.deps import AdminDep, DbDep, MetricsDep, SessionDep, SettingsDep
from engramdb.server.door import SESSION_SCOPE
from engramdb.server.errors import error_responses
from engramdb.server.routes.admin import grant_out
from engramdb.server.schemas import GrantList, HealthOut, InfoOut, MeOut, VerifyOut

__all__ = ["router"]

log = logging.getLogger("engramdb.server")

router = APIRouter(tags=["system"])


@router.get("/healthz", response_model=HealthOut, summary="Liveness and database check",
            responses=error_responses(503))
def healthz(db: DbDep) -> dict[str, Any]:
    """``ok`` when the server is up and its database answers; 503 otherwise. No key needed."""
    try:
        db.head()
    except EngramError:
        raise
    except Exception as exc:
        log.exception("health check failed")
        raise StorageError("the database did not answer the health check") from exc
    return {"status": "ok", "version": __version__}


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics",
            responses={200: {"description": "Prometheus text exposition format 0.0.4.",
                             "content": {"text/plain": {"schema": {"type": "string"}}}},
                       **error_responses(401, 403)})
def metrics(request: Request, db: DbDep, metrics: MetricsDep,
            settings: SettingsDep) -> PlainTextResponse:
    """Request counts and latency histograms per route, memories per layer and status,
    open conflicts, log length and the last verify result.

    Exposure is ``ServerSettings.metrics``: an admin key by default,
    ``public`` or ``off`` (404) by choice.
    """
    if settings.metrics == "off":
        raise NotFound("metrics are off on this server (ServerSettings.metrics)")
    if settings.metrics != "public":
        session = request.scope.get(SESSION_SCOPE)
        if session is None or not session.principal.is_admin:
            raise PermissionDenied("metrics need an admin key on this server")
    try:
        counts: dict[str, int] | None = db.counts()
    except Exception:
        log.exception("metrics: the database did not answer")
        counts = None
    return PlainTextResponse(metrics.render(counts),
                             media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/v1/info", response_model=InfoOut, summary="Server and database facts",
            responses=error_responses(401, 429))
def info(_: SessionDep, db: DbDep, settings: SettingsDep) -> dict[str, Any]:
    """Version, backend, embedder and dimension, the server's limits, the log's head and the
    last checkpoint signed on this database."""
    head = db.head()
    last = db.last_checkpoint()
    return {
        "version": __version__,
        "backend": db.info().backend,
        "embedder": db.embedder_name,
        "dimension": db.dimension,
        "limits": {
            "max_body_bytes": settings.max_body_bytes,
            "max_batch": settings.max_batch,
            "max_page_size": settings.max_page_size,
            "rate_limit_per_s": settings.rate_limit_per_s,
            "rate_limit_burst": settings.rate_limit_burst,
        },
        "head": {"seq": head.seq, "tx": head.tx},
        "last_checkpoint": None if last is None else last.to_dict(),
    }


@router.get("/v1/me", response_model=MeOut, summary="Who am I",
            responses=error_responses(401, 429))
def me(session: SessionDep) -> dict[str, Any]:
    """The principal the API key belongs to."""
    p = session.principal
    return {"name": p.name, "roles": list(p.roles), "trust": p.trust, "is_admin": p.is_admin}


@router.get("/v1/me/grants", response_model=GrantList, summary="My grants",
            responses=error_responses(401, 403, 429))
def my_grants(session: SessionDep) -> dict[str, Any]:
    """The grants in force for the key's principal (to it and to its roles), oldest first.
    Any key; admin keys may do everything whatever their grants."""
    return {"grants": [grant_out(g) for g in session.my_grants()]}


@router.post("/v1/verify", response_model=VerifyOut, summary="Verify the audit log",
             responses=error_responses(401, 403, 429, 503))
def verify(_: AdminDep, db: DbDep, metrics: MetricsDep) -> dict[str, Any]:
    """Check the whole hash chain and every state row against the log. Admin keys only.

    The outcome also feeds ``engram_last_verify_ok`` in ``/metrics``.
    """
    report = db.verify()
    metrics.verified(report)
    return report.to_dict()
