"""``/v1/recall``: hybrid search over what the caller may read."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from engramdb.server.deps import SessionDep
from engramdb.server.errors import error_responses
from engramdb.server.requests import RecallRequest, invoke, sent, without_null_filters
from engramdb.server.schemas import RecallOut

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["recall"])


@router.post("/recall", response_model=RecallOut, summary="Recall memories",
             responses=error_responses(400, 401, 413, 429, 503))
def recall(body: RecallRequest, session: SessionDep) -> dict[str, Any]:
    """Full text and vectors fused with recency and importance, with a read receipt.

    Each hit's ``why`` holds the parts of its score; the ``receipt`` names the
    exact versions returned and the read point.
    """
    result = invoke(session, "recall", without_null_filters(sent(body)))
    return {"hits": [h.to_dict() for h in result.hits], "receipt": result.receipt.to_dict()}

