"""``/v1/admin``: principals (and their lives), API keys and grants. Admin keys only.

Each route is one call on ``db.admin``, acting as the calling admin; a
non-admin key gets 403 ``permission_denied``. Trust policy (predicates,
namespace settings, read audit, quarantine) is in :mod:`.policy`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response, status
from pydantic import Field, WithJsonSchema

from engramdb.engine.admin import KINDS
from engramdb.engine.stewardship import RETIRE_POLICIES
from engramdb.model import Grant, Principal
from engramdb.server.deps import AdminDep
from engramdb.server.errors import error_responses
from engramdb.server.schemas import (
    ACTION,
    NAME,
    UNIT,
    AgentCreated,
    AgentList,
    Count,
    GlobIn,
    GrantList,
    GrantOut,
    KeyCreated,
    MemoryList,
    PrincipalOut,
    Request,
    Time,
    documented,
)

__all__ = ["grant_out", "router"]

router = APIRouter(prefix="/v1/admin", tags=["admin"])

Name = Annotated[str, Path(description="Principal name.", json_schema_extra=NAME)]


class CreateAgentRequest(Request):
    name: str = documented(NAME, description="1-64 of `a-z 0-9 _ . -`, starting with a "
                           "letter or digit.")
    roles: list[str] = documented({"items": {"type": "string", **NAME}}, default_factory=list)
    trust: float = documented(UNIT, default=0.5, description="0..1.")
    kind: str = documented({"enum": list(KINDS)}, default="agent",
                           description="`agent`, `service`, `person` or `admin`.")


class GrantRequest(Request):
    grantee: str = documented({"pattern": r"^(role:)?[a-z0-9][a-z0-9_.-]{0,63}$"},
                              description="A principal name, or `role:<role>`.")
    pattern: GlobIn = Field(
        description="Namespace glob, e.g. `acme/research/**`.")
    actions: list[str] = documented({"items": {"type": "string", **ACTION}, "minItems": 1},
                                    description="Subset of `read`, `write`, `admin`, `erase`.")


class UpdateAgentRequest(Request):
    trust: float | None = documented(UNIT, default=None, description="New trust level, 0..1.")
    roles: list[str] | None = documented({"items": {"type": "string", **NAME}}, default=None,
                                         description="The principal's roles from now on "
                                         "(replacing the old ones).")


class RetireRequest(Request):
    # Any JSON passes: the engine answers an unknown policy with `invalid_policy`.
    policy: Annotated[Any, WithJsonSchema({"type": "string", "enum": list(RETIRE_POLICIES)})] = \
        Field("freeze", description="`freeze` (reversible), `transfer` (needs `successor`), "
              "`archive`; `erase` is refused until erasure exists.")
    successor: str | None = documented(NAME, default=None, description="Who inherits the "
                                       "private namespace (policy `transfer`).")


class RollbackRequest(Request):
    since: Count | Time = Field(description="Undo what the principal wrote from this "
                                "transaction number or time on.")


class RevokeKeyRequest(Request):
    key: str = documented({"minLength": 1}, description="The API key itself, or its id (the "
                          "part between the underscores of `ek_<id>_<secret>`).")


def _principal(p: Principal) -> dict[str, Any]:
    return {"name": p.name, "kind": p.kind, "roles": list(p.roles), "trust": p.trust,
            "status": p.status, "created_tx": p.created_tx}


def grant_out(g: Grant) -> dict[str, Any]:
    return {"id": g.id, "grantee": g.grantee, "pattern": g.pattern, "actions": list(g.actions),
            "granted_by": g.granted_by, "tx_from": g.tx_from, "tx_to": g.tx_to}


_ADMIN_ERRORS = (400, 401, 403, 429, 503)


@router.get("/agents", response_model=AgentList, summary="List principals",
            responses=error_responses(*_ADMIN_ERRORS))
def agents(admin: AdminDep) -> dict[str, Any]:
    """Every principal, by name."""
    return {"agents": [_principal(p) for p in admin.agents()]}


@router.post("/agents", status_code=status.HTTP_201_CREATED, response_model=AgentCreated,
             summary="Create a principal", responses=error_responses(*_ADMIN_ERRORS, 409, 413))
def create_agent(body: CreateAgentRequest, admin: AdminDep) -> dict[str, Any]:
    """Create a principal and return its first API key (shown only this once).

    409 ``conflict`` if the name is taken.
    """
    key = admin.create_agent(body.name, roles=body.roles, trust=body.trust, kind=body.kind)
    return {"agent": _principal(admin.principal(body.name)), "api_key": key}


@router.get("/agents/{name}", response_model=PrincipalOut, summary="Get a principal",
            responses=error_responses(*_ADMIN_ERRORS, 404))
def agent(name: Name, admin: AdminDep) -> dict[str, Any]:
    """One principal: kind, roles, trust, status."""
    return _principal(admin.principal(name))


@router.patch("/agents/{name}", response_model=PrincipalOut, summary="Change trust or roles",
              responses=error_responses(*_ADMIN_ERRORS, 404, 413))
def update_agent(name: Name, body: UpdateAgentRequest, admin: AdminDep) -> dict[str, Any]:
    """Change a principal's trust level and/or roles; takes effect at once (a logged event).

    400 for the admin principal itself or when neither field is given.
    """
    return _principal(admin.update_agent(name, **body.model_dump(exclude_unset=True)))


@router.post("/agents/{name}/retire", response_model=PrincipalOut,
             summary="Retire a principal", responses=error_responses(*_ADMIN_ERRORS, 404, 413))
def retire_agent(name: Name, admin: AdminDep,
                 body: Annotated[RetireRequest | None, Body()] = None) -> dict[str, Any]:
    """Stop a principal acting: its keys are revoked; nothing it wrote is deleted.

    ``freeze`` keeps grants and memories (undo with ``reactivate``); ``transfer``
    revokes its grants and gives ``successor`` its private namespace;
    ``archive`` revokes its grants and archives its private memories. The body
    is optional (default ``freeze``).
    """
    fields = body.model_dump(exclude_unset=True) if body is not None else {}
    return _principal(admin.retire_agent(name, **fields))


@router.post("/agents/{name}/reactivate", response_model=PrincipalOut,
             summary="Reactivate a frozen principal",
             responses=error_responses(*_ADMIN_ERRORS, 404, 413))
def reactivate_agent(name: Name, admin: AdminDep) -> dict[str, Any]:
    """Let a frozen principal act again. Its old keys stay revoked: issue a new one."""
    return _principal(admin.reactivate_agent(name))


@router.post("/agents/{name}/rollback", response_model=MemoryList,
             summary="Undo what a principal wrote",
             responses=error_responses(*_ADMIN_ERRORS, 404, 413))
def rollback_author(name: Name, body: RollbackRequest, admin: AdminDep) -> dict[str, Any]:
    """Undo everything the principal wrote since a transaction number or time.

    Memories it created are retracted; memories it changed get a new version
    restoring the last one before its first change. Answers the new versions.
    """
    return {"memories": [m.to_dict() for m in admin.rollback_author(name, body.since)]}


@router.post("/agents/{name}/keys", status_code=status.HTTP_201_CREATED,
             response_model=KeyCreated, summary="Create an API key",
             responses=error_responses(*_ADMIN_ERRORS, 404))
def create_key(name: Name, admin: AdminDep) -> dict[str, Any]:
    """Issue another key for a principal (rotation: create, switch, revoke the old one)."""
    return {"api_key": admin.create_key(name)}


@router.post("/keys/revoke", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
             summary="Revoke an API key", responses=error_responses(*_ADMIN_ERRORS, 404, 413))
def revoke_key(body: RevokeKeyRequest, admin: AdminDep) -> Response:
    """Revoke a key by the key itself or its id; it stops working at once."""
    admin.revoke_key(body.key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/grants", response_model=GrantList, summary="List live grants",
            responses=error_responses(*_ADMIN_ERRORS))
def grants(admin: AdminDep, grantee: Annotated[str | None, Query(
        description="Only this principal's (or `role:<r>`'s) grants.")] = None
           ) -> dict[str, Any]:
    """Grants in force, oldest first."""
    return {"grants": [grant_out(g) for g in admin.grants(grantee)]}


@router.post("/grants", status_code=status.HTTP_201_CREATED, response_model=GrantOut,
             summary="Grant access", responses=error_responses(*_ADMIN_ERRORS, 404, 413))
def grant(body: GrantRequest, admin: AdminDep) -> dict[str, Any]:
    """Allow ``actions`` on namespaces matching ``pattern``. 404 if the grantee is unknown."""
    return grant_out(admin.grant(body.grantee, body.pattern, body.actions))


@router.delete("/grants/{grant_id}", status_code=status.HTTP_204_NO_CONTENT,
               response_class=Response, summary="Revoke a grant",
               responses=error_responses(*_ADMIN_ERRORS, 404))
def revoke(grant_id: Annotated[str, Path(description="The grant's id.")],
           admin: AdminDep) -> Response:
    """End a grant; access through it stops at once (history keeps it)."""
    admin.revoke(grant_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
