"""``/v1/knowledge``: what an agent could have recalled at a past transaction time."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from engramdb.model import RecallResult
from engramdb.server.deps import AdminDep, DbDep
from engramdb.server.errors import error_responses
from engramdb.server.schemas import (
    MAX_INT,
    NAME,
    Count,
    GlobIn,
    Integer,
    KnowledgeOut,
    LayersOrNull,
    Request,
    Time,
    documented,
)

__all__ = ["KnowledgeRequest", "router"]

router = APIRouter(prefix="/v1", tags=["knowledge"])


class KnowledgeRequest(Request):
    agent: str = documented(NAME, description="The principal's name.")
    at: Count | Time = Field(description="Transaction time: a transaction number or a time.")
    query: str | None = Field(None, description="With a query: the recall the agent would "
                              "have got; without: every memory it could read then.")
    namespace: GlobIn = Field("**", description="Namespace glob.")
    valid_at: Time | None = None
    k: Integer | None = Field(None, ge=1, le=MAX_INT)
    layers: LayersOrNull = None


@router.post("/knowledge", response_model=KnowledgeOut,
             summary="What an agent knew at a time",
             responses=error_responses(400, 401, 403, 404, 413, 429, 503))
def knowledge(body: KnowledgeRequest, _: AdminDep, db: DbDep) -> dict[str, Any]:
    """The agent's grants as they stood at ``at`` and memories as they were current then.

    Admin keys only (it is ``db.knowledge``, an audit of another principal).
    """
    fields = body.model_dump(exclude_unset=True)
    result = db.knowledge(fields.pop("agent"), **fields)
    if isinstance(result, RecallResult):
        return {"recall": {"hits": [h.to_dict() for h in result.hits],
                           "receipt": result.receipt.to_dict()}}
    return {"memories": [m.to_dict() for m in result]}
