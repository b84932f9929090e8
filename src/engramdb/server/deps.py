"""FastAPI dependencies the routes share: the caller's session, admin rights, settings.

The :class:`~engramdb.server.door.Door` middleware has already turned the
bearer key into an engine session; these read it back. ``bearer`` is declared
with ``Security`` so that the OpenAPI spec states the scheme on every API route.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from engramdb.engine import Database, Session
from engramdb.engine.admin import Admin
from engramdb.errors import PayloadTooLarge, PermissionDenied, Unauthenticated
from engramdb.server.door import KEY_SCOPE, SESSION_SCOPE
from engramdb.server.metrics import Metrics
from engramdb.server.settings import ServerSettings

__all__ = ["AdminDep", "DbDep", "MetricsDep", "SessionDep", "SettingsDep",
           "current_session"]

bearer = HTTPBearer(auto_error=False, scheme_name="apiKey",
                    description="An EngramDB API key (`ek_<id>_<secret>`).")


async def current_session(request: Request,
                    _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None
                    ) -> Session:
    """The engine session of the principal whose key authenticated this request."""
    session = request.scope.get(SESSION_SCOPE)
    if session is None:  # only reachable if a route is mounted outside /v1
        raise Unauthenticated("this route needs an API key: send 'Authorization: Bearer <key>'")
    return session


def current_key(request: Request) -> str:
    return str(request.scope.get(KEY_SCOPE, ""))


async def database(request: Request) -> Database:
    return request.app.state.engram_db


async def settings(request: Request) -> ServerSettings:
    return request.app.state.engram_settings


def check_batch(size: int, what: str, settings: ServerSettings) -> None:
    """Refuse a batch route's body of more than ``max_batch`` items (413)."""
    if size > settings.max_batch:
        raise PayloadTooLarge(f"batch of {size} {what} is over the server's limit of "
                              f"{settings.max_batch}; split it", limit=settings.max_batch,
                              size=size)


async def metrics(request: Request) -> Metrics:
    return request.app.state.engram_metrics


async def require_admin(session: Annotated[Session, Depends(current_session)]) -> Admin:
    """The admin surface (``session.admin``) of an admin caller, acting as that caller.

    Raises:
        PermissionDenied: the caller is not an admin principal.
    """
    if not session.principal.is_admin:
        raise PermissionDenied(
            f"{session.principal.name!r} is not an admin; this route needs a key of an "
            "admin principal (kind 'admin')",
            principal=session.principal.name)
    return session.admin


SessionDep = Annotated[Session, Depends(current_session)]
AdminDep = Annotated[Admin, Depends(require_admin)]
DbDep = Annotated[Database, Depends(database)]
SettingsDep = Annotated[ServerSettings, Depends(settings)]
MetricsDep = Annotated[Metrics, Depends(metrics)]
