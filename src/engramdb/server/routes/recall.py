"""``/v1/recall``: hybrid search over what the caller may read."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from engramdb.model import STATUSES
from engramdb.server.deps import SessionDep
from engramdb.server.errors import error_responses
from engramdb.server.schemas import (
    MAX_INT,
    TEXT,
    Count,
    GlobIn,
    Integer,
    LayersOrNull,
    RecallOut,
    Request,
    Time,
    documented,
)

__all__ = ["RecallFilters", "RecallRequest", "router"]

router = APIRouter(prefix="/v1", tags=["recall"])


class RecallFilters(Request):
    """Filters applied inside the index queries."""

    author: str | None = None
    authors: list[str] | None = None
    subject: str | None = None
    predicate: str | None = None
    session: str | None = None
    # Type-checked here: the engine reads a falsy non-dict as "no filter".
    metadata: dict[str, Any] | None = Field(None, description="Key -> value equalities.")
    recorded_after: Time | None = None
    recorded_before: Time | None = None
    valid_after: Time | None = None
    valid_before: Time | None = None
    statuses: list[str] | None = Field(
        None, description=f"Default `[\"active\"]`; any of {', '.join(STATUSES)}.")
    include_superseded: bool | None = None


class RecallRequest(Request):
    query: str = documented(TEXT, description="What to look for; non-empty.")
    namespace: GlobIn = Field(
        "**", description="Namespace glob (`acme/**`); results come only from namespaces "
        "the caller may read.")
    k: Integer = Field(10, ge=1, le=MAX_INT, description="Most hits to return (the database "
                   "caps it, 1000 by default).")
    layers: LayersOrNull = None
    as_of: Count | Time | None = Field(
        None, description="Transaction time: a transaction number or an ISO-8601 time.")
    valid_at: Time | None = Field(None, description="Valid time: facts that held then.")
    filters: RecallFilters | None = None
    query_embedding: list[float] | None = Field(
        None, description="The query already embedded with the database's embedder; the "
        "server then skips embedding `query` (which still drives full-text search).")


@router.post("/recall", response_model=RecallOut, summary="Recall memories",
             responses=error_responses(400, 401, 413, 429, 503))
def recall(body: RecallRequest, session: SessionDep) -> dict[str, Any]:
    """Full text and vectors fused with recency and importance, with a read receipt.

    Each hit's ``why`` holds the parts of its score; the ``receipt`` names the
    exact versions returned and the read point.
    """
    fields = body.model_dump(exclude_unset=True)
    if fields.get("filters"):
        # In JSON, null means "not given": the engine's default for that filter applies.
        fields["filters"] = {k: v for k, v in fields["filters"].items() if v is not None}
    result = session.recall(fields.pop("query"), **fields)
    return {"hits": [h.to_dict() for h in result.hits], "receipt": result.receipt.to_dict()}
