"""``/v1/namespaces``: the namespaces the caller may read that hold memories."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from engramdb.server.deps import SessionDep
from engramdb.server.errors import error_responses
from engramdb.server.schemas import NamespaceList

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["namespaces"])


@router.get("/namespaces", response_model=NamespaceList, summary="List readable namespaces",
            responses=error_responses(400, 401, 429, 503))
def namespaces(session: SessionDep, pattern: Annotated[str, Query(
        description="Namespace glob.")] = "**") -> dict[str, Any]:
    """Namespaces matching ``pattern`` that hold memories and that the caller may read."""
    return {"namespaces": session.namespaces(pattern)}
