"""``/v1/context``: recall packed into a token budget, with a receipt for decisions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from engramdb.server.deps import SessionDep
from engramdb.server.errors import error_responses
from engramdb.server.requests import ContextRequest, invoke, sent, without_null_filters
from engramdb.server.schemas import ContextOut

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["context"])


@router.post("/context", response_model=ContextOut, summary="Pack a working context",
             responses=error_responses(400, 401, 413, 429, 503))
def context(body: ContextRequest, session: SessionDep) -> dict[str, Any]:
    """Assemble a working context from the four layers (pinned blocks, procedures and
    tool notes, facts, the session's episodes) within ``budget_tokens``; ``parts`` and
    ``left_out`` say what went in and what did not; the receipt names exactly the
    memory versions included."""
    return invoke(session, "context", without_null_filters(sent(body))).to_dict()
