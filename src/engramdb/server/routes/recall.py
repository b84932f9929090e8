"""``/v1/recall``: hybrid search over what the caller may read.

The hot route of a busy server, so it costs the event loop as little as it
can: the endpoint is a coroutine that hands the whole recall, and the
response's validation and JSON encoding against :class:`RecallOut`, to one
of the process's bounded recall threads (:mod:`engramdb.server.threads`), and
sends the bytes that thread made. A plain ``def`` endpoint returning a dict
costs two thread hand-offs instead (its call, then FastAPI validating the
response model on another), each on the unbounded pool. The bytes are the ones
FastAPI's own response-model path makes: pydantic's ``dump_json`` of the
validated model, by alias.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import TypeAdapter

from engramdb.server.deps import SessionDep
from engramdb.server.errors import error_responses
from engramdb.server.requests import RecallRequest, invoke, sent, without_null_filters
from engramdb.server.schemas import RecallOut

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["recall"])

_OUT: TypeAdapter[RecallOut] = TypeAdapter(RecallOut)


def _answer(session: Any, fields: dict[str, Any]) -> Response:
    result = invoke(session, "recall", fields)
    out = _OUT.validate_python({"hits": [h.to_dict() for h in result.hits],
                                "receipt": result.receipt.to_dict()}, from_attributes=True)
    return Response(_OUT.dump_json(out, by_alias=True), media_type="application/json")


@router.post("/recall", response_model=RecallOut, summary="Recall memories",
             responses=error_responses(400, 401, 413, 429, 503))
async def recall(body: RecallRequest, session: SessionDep, request: Request) -> Response:
    """Full text and vectors fused with recency and importance, with a read receipt.

    Each hit's ``why`` holds the parts of its score; the ``receipt`` names the
    exact versions returned and the read point.
    """
    return await request.app.state.engram_threads.run(
        _answer, session, without_null_filters(sent(body)))
