"""FastAPI dependencies the routes share: the caller's session, admin rights, settings.

The :class:`~engramdb.server.door.Door` middleware has already turned the
bearer key into an engine session; these read it back. ``bearer`` is declared
with ``Security`` so that the OpenAPI spec states the scheme on every API route.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from engramdb.engine import Database, Session
from engramdb.engine.admin import Admin
from engramdb.errors import PermissionDenied, Unauthenticated
from engramdb.server.door import KEY_SCOPE, SESSION_SCOPE
from engramdb.server.metrics import Metrics
from engramdb.server.settings import ServerSettings

__all__ = ["ActingDep", "AdminDep", "DbDep", "MetricsDep", "SessionDep", "SettingsDep",
           "current_session"]

bearer = HTTPBearer(auto_error=False, scheme_name="apiKey",
                    description="An EngramDB API key (`ek_<id>_<secret>`).")


def current_session(request: Request,
                    _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None
                    ) -> Session:
    """The engine session of the principal whose key authenticated this request."""
    session = request.scope.get(SESSION_SCOPE)
    if session is None:  # only reachable if a route is mounted outside /v1
        raise Unauthenticated("this route needs an API key: send 'Authorization: Bearer <key>'")
    return session


def current_key(request: Request) -> str:
    return str(request.scope.get(KEY_SCOPE, ""))


def database(request: Request) -> Database:
    return request.app.state.engram_db


def settings(request: Request) -> ServerSettings:
    return request.app.state.engram_settings


def metrics(request: Request) -> Metrics:
    return request.app.state.engram_metrics


class _ActingAdmin:
    """The database as :class:`Admin` sees it, with the calling admin as the actor.

    ``Admin`` logs ``db.principal`` as the actor of every change. Over HTTP the
    caller may be any admin principal, not only the built-in ``admin``; this view
    keeps the log's attribution right without changing the engine.
    """

    def __init__(self, db: Database, session: Session) -> None:
        self._db = db
        self.principal = session.principal

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def acting_database(session: Annotated[Session, Depends(current_session)],
                    request: Request) -> Database:
    """The database as the calling admin: what its admin-only methods are called on.

    The built-in ``admin`` gets the database itself; another admin principal a
    view whose ``principal`` is the caller, so logged changes name the caller.

    Raises:
        PermissionDenied: the caller is not an admin principal.
    """
    if not session.principal.is_admin:
        raise PermissionDenied(
            f"{session.principal.name!r} is not an admin; this route needs a key of an "
            "admin principal (kind 'admin')",
            principal=session.principal.name)
    db = database(request)
    if session.principal.name == db.principal.name:
        return db
    return _ActingAdmin(db, session)  # type: ignore[return-value]


def require_admin(acting: Annotated[Database, Depends(acting_database)]) -> Admin:
    """The admin surface (``db.admin``) for an admin caller.

    Raises:
        PermissionDenied: the caller is not an admin principal.
    """
    if isinstance(acting, _ActingAdmin):
        return Admin(acting)
    return acting.admin


SessionDep = Annotated[Session, Depends(current_session)]
AdminDep = Annotated[Admin, Depends(require_admin)]
ActingDep = Annotated[Database, Depends(acting_database)]
DbDep = Annotated[Database, Depends(database)]
SettingsDep = Annotated[ServerSettings, Depends(settings)]
MetricsDep = Annotated[Metrics, Depends(metrics)]
