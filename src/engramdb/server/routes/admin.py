"""``/v1/admin``: principals (and their lives), API keys and grants. Admin keys only.

Each route is one call on ``db.admin``, acting as the calling admin; a
non-admin key gets 403 ``permission_denied``. Trust policy (predicates,
namespace settings, read audit, quarantine) is in :mod:`.policy`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

from fastapi import APIRouter, Body, Path, Query, Response, status
from pydantic import BaseModel, Field, WithJsonSchema

from engramdb.engine.admin import KINDS
from engramdb.engine.stewardship import RETIRE_POLICIES
from engramdb.model import Grant, Principal
from engramdb.server.deps import AdminDep
from engramdb.server.errors import error_responses
from engramdb.server.requests import admin_model, invoke, sent
from engramdb.server.schemas import (
    ACTION,
    NAME,
    UNIT,
    AgentCreated,
    AgentList,
    GlobIn,
    GrantList,
    GrantOut,
    KeyCreated,
    MemoryList,
    PrincipalOut,
    documented,
)

__all__ = ["grant_out", "router"]

router = APIRouter(prefix="/v1/admin", tags=["admin"])

Name = Annotated[str, Path(description="Principal name.", json_schema_extra=NAME)]


# The body models: fields derived from api.AdminAPI, limits and descriptions here.
_OVERRIDES: dict[str, dict[str, Any]] = {
    "create_agent": {
        "name": documented(NAME, description="1-64 of `a-z 0-9 _ . -`, starting with a "
                           "letter or digit."),
        "roles": documented({"items": {"type": "string", **NAME}}),
        "trust": documented(UNIT, description="0..1."),
        "kind": documented({"enum": list(KINDS)},
                           description="`agent`, `service`, `person` or `admin`."),
    },
    "grant": {
        "grantee": documented({"pattern": r"^(role:)?[a-z0-9][a-z0-9_.-]{0,63}$"},
                              description="A principal name, or `role:<role>`."),
        "pattern": Annotated[GlobIn, Field(
            description="Namespace glob, e.g. `acme/research/**`.")],
        "actions": documented({"items": {"type": "string", **ACTION}, "minItems": 1},
                              description="Subset of `read`, `write`, `admin`, `erase`."),
    },
    "update_agent": {
        "trust": documented(UNIT, description="New trust level, 0..1."),
        "roles": documented({"items": {"type": "string", **NAME}},
                            description="The principal's roles from now on (replacing the old "
                            "ones)."),
    },
    "retire_agent": {
        # Any JSON passes: the engine answers an unknown policy with `invalid_policy`.
        "policy": Annotated[Any, WithJsonSchema({"type": "string",
                                                 "enum": list(RETIRE_POLICIES)}),
                            Field(description="`freeze` (reversible), `transfer` (needs "
                                  "`successor`), `archive`; `erase` is refused until erasure "
                                  "exists.")],
        "successor": documented(NAME, description="Who inherits the private namespace (policy "
                                "`transfer`)."),
    },
    "rollback_author": {
        "since": Field(description="Undo what the principal wrote from this transaction number "
                       "or time on."),
    },
    "revoke_key": {
        "api_key_or_id": documented(
            {"minLength": 1}, description="The API key itself, or its id (the part between "
            "the underscores of `ek_<id>_<secret>`)."),
    },
}
if TYPE_CHECKING:  # mypy sees BaseModels; FastAPI sees the derived models
    CreateAgentRequest: TypeAlias = BaseModel
    GrantRequest: TypeAlias = BaseModel
    UpdateAgentRequest: TypeAlias = BaseModel
    RetireRequest: TypeAlias = BaseModel
    RollbackRequest: TypeAlias = BaseModel
    RevokeKeyRequest: TypeAlias = BaseModel
else:
    CreateAgentRequest = admin_model("create_agent", _OVERRIDES["create_agent"])
    GrantRequest = admin_model("grant", _OVERRIDES["grant"])
    UpdateAgentRequest = admin_model("update_agent", _OVERRIDES["update_agent"])
    RetireRequest = admin_model("retire_agent", _OVERRIDES["retire_agent"])
    RollbackRequest = admin_model("rollback_author", _OVERRIDES["rollback_author"])
    RevokeKeyRequest = admin_model("revoke_key", _OVERRIDES["revoke_key"])


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
    key = invoke(admin, "create_agent", body)
    return {"agent": _principal(admin.principal(sent(body)["name"])), "api_key": key}


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
    return _principal(invoke(admin, "update_agent", body, name=name))


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
    return _principal(invoke(admin, "retire_agent", body, name=name))


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
    return {"memories": [m.to_dict() for m in invoke(admin, "rollback_author", body,
                                                     name=name)]}


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
    invoke(admin, "revoke_key", body)
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
    return grant_out(invoke(admin, "grant", body))


@router.delete("/grants/{grant_id}", status_code=status.HTTP_204_NO_CONTENT,
               response_class=Response, summary="Revoke a grant",
               responses=error_responses(*_ADMIN_ERRORS, 404))
def revoke(grant_id: Annotated[str, Path(description="The grant's id.")],
           admin: AdminDep) -> Response:
    """End a grant; access through it stops at once (history keeps it)."""
    admin.revoke(grant_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
