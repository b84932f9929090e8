"""Memory lifecycle over HTTP: erasure, maintenance, restore, policies and legal holds.

``POST /v1/forget`` is ``session.forget`` for any caller (the engine checks the
``erase`` grant on every namespace touched). The rest are admin routes, each
one engine call acting as the calling admin: ``db.maintain``, ``db.restore``,
``db.admin.set_lifecycle`` / ``lifecycle`` and ``db.admin.legal_hold``.
Values are checked by the engine, with its errors (``invalid_policy``,
``legal_hold``, ``permission_denied``, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from engramdb.server.deps import AdminDep, DbDep, SessionDep
from engramdb.server.errors import error_responses
from engramdb.server.requests import ForgetRequest, admin_model, invoke
from engramdb.server.schemas import (
    NAMESPACE,
    GlobIn,
    LayerOrNull,
    Response,
    documented,
)

__all__ = ["router"]

router = APIRouter(tags=["lifecycle"])

_ERRORS = (400, 401, 403, 429, 503)
_DURATION = {"anyOf": [{"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[smhdw]\s*$"},
                       {"type": "number", "exclusiveMinimum": 0}, {"type": "null"}]}


class ErasureReceiptOut(Response):
    erasure_id: str
    seq: int = Field(description="The logged `memory.erased` event.")
    actor: str
    selector: dict[str, str]
    reason: str
    tx: int
    memories: list[str] = Field(description="Ids erased (selected and derived).")
    versions: list[list[str | int]] = Field(description="`[id, version]` rows deleted.")
    counts: dict[str, int] = Field(description="How much was removed, per place.")
    files: dict[str, Any] = Field(description="What was done to the database files.")


class MaintenanceReportOut(Response):
    expired: list[str]
    archived: list[str] = Field(description="Archived by decay.")
    over_capacity: list[str]
    held: list[str] = Field(description="Due, but kept by a legal hold.")
    reinforced: int
    seq: int | None
    now: int = Field(description="The time evaluated against (microseconds).")
    files: dict[str, Any] = Field(default_factory=dict, description=(
        "The file purge finished for an earlier erasure whose own purge could not "
        "complete (a reader held the SQLite WAL); empty when none was pending."))


class PolicyOut(Response):
    pattern: str
    layer: str | None
    ttl: int | None = Field(description="Microseconds.")
    half_life: int | None = Field(description="Microseconds.")
    archive_below: float | None
    capacity: int | None
    on_retire: str | None


class PolicyLookupOut(Response):
    policy: PolicyOut | None


_OVERRIDES: dict[str, dict[str, Any]] = {  # api.AdminAPI declares the fields
    "set_lifecycle": {
        "pattern": Annotated[GlobIn, Field(description="Namespace glob.")],
        "layer": Annotated[LayerOrNull, Field(description="One layer, or null for all.")],
        "ttl": Annotated[Any, documented(_DURATION, description="e.g. `30d` or seconds.")],
        "half_life": Annotated[Any, documented(_DURATION, description="e.g. `7d`.")],
        "archive_below": Annotated[Any, documented(
            {"anyOf": [{"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                       {"type": "null"}]}, description="Relevance floor (0..1).")],
        "capacity": Annotated[Any, documented(
            {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]},
            description="Live memories kept per namespace.")],
        "on_retire": Annotated[Any, documented(
            {"anyOf": [{"enum": ["keep", "archive", "erase"]}, {"type": "null"}]},
            description="What retiring an agent does to its memories.")],
    },
    "legal_hold": {
        "pattern": Annotated[GlobIn, Field(description="Namespace glob.")],
        "on": Field(description="Place (true) or lift (false) the hold."),
        "reason": documented({"minLength": 1, "maxLength": 2000}, description="Why."),
    },
}
if TYPE_CHECKING:  # mypy sees BaseModels; FastAPI sees the derived models
    LifecycleRequest: TypeAlias = BaseModel
    LegalHoldRequest: TypeAlias = BaseModel
else:
    LifecycleRequest = admin_model("set_lifecycle", _OVERRIDES["set_lifecycle"])
    LegalHoldRequest = admin_model("legal_hold", _OVERRIDES["legal_hold"])


class LegalHoldOut(Response):
    pattern: str
    active: bool
    reason: str
    set_by: str
    tx: int


@router.post("/v1/forget", response_model=ErasureReceiptOut,
             summary="Erase memories for good", responses=error_responses(*_ERRORS, 404, 409))
def forget(body: ForgetRequest, session: SessionDep) -> dict[str, Any]:
    """Erase the selected memories (and those derived from them) from every version,
    index and file; needs ``erase`` on every namespace touched. 409 ``legal_hold``
    if a legal hold covers one. Returns the erasure receipt."""
    return invoke(session, "forget", body).to_dict()


@router.post("/v1/admin/maintain", response_model=MaintenanceReportOut,
             summary="Apply lifecycle policies now", responses=error_responses(*_ERRORS))
def maintain(_: AdminDep, db: DbDep) -> dict[str, Any]:
    """Expire, decay and cap memories per the policies in force (idempotent)."""
    return db.maintain().to_dict()


@router.post("/v1/admin/memories/{memory_id}/restore", summary="Restore an archived memory",
             responses=error_responses(*_ERRORS, 404))
def restore(memory_id: Annotated[str, Path(description="The archived memory's id.")],
            _: AdminDep, db: DbDep) -> dict[str, Any]:
    """Bring an archived or expired memory back to ``active`` as a new version."""
    return db.restore(memory_id).to_dict()


@router.put("/v1/admin/lifecycle", response_model=PolicyOut,
            summary="Set a lifecycle policy", responses=error_responses(*_ERRORS, 413))
def set_lifecycle(body: LifecycleRequest, admin: AdminDep) -> dict[str, Any]:
    """Declare TTL, decay, archival floor, capacity and retire policy for a glob (logged)."""
    return invoke(admin, "set_lifecycle", body)


@router.get("/v1/admin/lifecycle", response_model=PolicyLookupOut,
            summary="The lifecycle policy in force", responses=error_responses(*_ERRORS))
def lifecycle(admin: AdminDep,
              namespace: Annotated[str, Query(description="A concrete namespace.",
                                              json_schema_extra=NAMESPACE)],
              layer: Annotated[str | None, Query(description="A layer (default: all).")]
              = None) -> dict[str, Any]:
    """The merged policy that applies to one namespace (and layer), or null."""
    return {"policy": admin.lifecycle(namespace, layer=layer)}


@router.post("/v1/admin/legal-holds", response_model=LegalHoldOut,
             summary="Place or lift a legal hold", responses=error_responses(*_ERRORS, 404))
def legal_hold(body: LegalHoldRequest, admin: AdminDep) -> dict[str, Any]:
    """While on, erasure, expiry and archival in matching namespaces are refused."""
    return invoke(admin, "legal_hold", body)
