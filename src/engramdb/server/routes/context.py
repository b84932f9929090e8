"""``/v1/context``: recall packed into a token budget, with a receipt for decisions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from engramdb.server.deps import SessionDep
from engramdb.server.errors import error_responses
from engramdb.server.routes.recall import RecallFilters
from engramdb.server.schemas import (
    TEXT,
    ContextOut,
    Count,
    GlobIn,
    Integer,
    LayersOrNull,
    Request,
    Time,
    documented,
)

__all__ = ["ContextRequest", "router"]

router = APIRouter(prefix="/v1", tags=["context"])


class ContextRequest(Request):
    task: str = documented(TEXT, description="What the context is for; the recall query.")
    budget_tokens: Integer = Field(2000, ge=1, le=1_000_000,
                                   description="Most cl100k tokens the text may use.")
    namespace: GlobIn = Field("**", description="Namespace glob to draw from.")
    layers: LayersOrNull = None
    as_of: Count | Time | None = Field(
        None, description="Transaction time: a transaction number or an ISO-8601 time.")
    valid_at: Time | None = None
    filters: RecallFilters | None = None


@router.post("/context", response_model=ContextOut, summary="Pack a working context",
             responses=error_responses(400, 401, 413, 429, 503))
def context(body: ContextRequest, session: SessionDep) -> dict[str, Any]:
    """Recall for ``task`` and pack the best memories, one line each with provenance,
    into ``budget_tokens``; the receipt names exactly the versions included."""
    fields = body.model_dump(exclude_unset=True)
    if fields.get("filters"):
        fields["filters"] = {k: v for k, v in fields["filters"].items() if v is not None}
    return session.context(fields.pop("task"), **fields).to_dict()


