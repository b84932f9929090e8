"""``/v1/conflicts``: the conflict inbox, and resolving a conflict."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query

from engramdb.server.deps import SessionDep
from engramdb.server.errors import error_responses
from engramdb.server.requests import ResolveRequest, invoke
from engramdb.server.schemas import ConflictList, ConflictOut

__all__ = ["router"]

router = APIRouter(prefix="/v1/conflicts", tags=["conflicts"])


@router.get("", response_model=ConflictList, summary="List conflicts",
            responses=error_responses(400, 401, 429, 503))
def conflicts(session: SessionDep,
              namespace: Annotated[str, Query(description="Namespace glob.")] = "**",
              status: Annotated[Literal["open", "resolved", "all"], Query(
                  description="`open` (default), `resolved`, or `all`.")] = "open",
              limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> dict[str, Any]:
    """Conflicts in namespaces the caller may read, oldest first."""
    found = session.conflicts(namespace, status=None if status == "all" else status,
                              limit=limit)
    return {"conflicts": [c.to_dict() for c in found]}


@router.post("/{conflict_id}/resolve", response_model=ConflictOut,
             summary="Resolve a conflict",
             responses=error_responses(400, 401, 403, 404, 409, 413, 429, 503))
def resolve(conflict_id: Annotated[str, Path(description="The conflict's id.")],
            session: SessionDep,
            body: Annotated[ResolveRequest | None, Body()] = None) -> dict[str, Any]:
    """Resolve a conflict (needs ``admin`` on its namespace): the winner stands, every
    other memory in it gets a ``rejected`` version. A logged event."""
    return invoke(session, "resolve", body, conflict_id=conflict_id).to_dict()
