"""``/v1/decisions``: record decisions with their basis, explain them, find stale ones."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status

from engramdb.server.deps import SessionDep
from engramdb.server.errors import error_responses
from engramdb.server.requests import DecideRequest, invoke
from engramdb.server.schemas import DecisionList, DecisionOut, ExplanationOut

__all__ = ["router"]

router = APIRouter(prefix="/v1/decisions", tags=["decisions"])

DecisionId = Annotated[str, Path(description="The decision's id.")]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DecisionOut,
             summary="Record a decision",
             responses=error_responses(400, 401, 403, 404, 413, 429, 503))
def decide(body: DecideRequest, session: SessionDep) -> dict[str, Any]:
    """Record a decision and the exact memory versions it rests on.

    404 when a basis version does not exist or the caller may not read it.
    """
    return invoke(session, "decide", body).to_dict()


@router.get("/stale", response_model=DecisionList, summary="Decisions whose basis changed",
            responses=error_responses(400, 401, 429, 503))
def stale(session: SessionDep, namespace: Annotated[str, Query(
        description="Namespace glob of the decisions.")] = "**") -> dict[str, Any]:
    """Decisions the caller may see whose basis has changed since, oldest staleness first."""
    return {"decisions": [d.to_dict() for d in session.stale_decisions(namespace)]}


@router.get("/{decision_id}", response_model=DecisionOut, summary="Get a decision",
            responses=error_responses(401, 404, 429, 503))
def decision(decision_id: DecisionId, session: SessionDep) -> dict[str, Any]:
    """One decision the caller may see (its author, or a reader of its namespace)."""
    return session.decision(decision_id).to_dict()


@router.get("/{decision_id}/explain", response_model=ExplanationOut,
            summary="Explain a decision", responses=error_responses(401, 404, 429, 503))
def explain(decision_id: DecisionId, session: SessionDep) -> dict[str, Any]:
    """Each basis memory as it was then, what was written since and by whom, conflicts,
    and whether the decision is stale. Basis memories the caller may not read show
    only ``visible: false``."""
    return session.explain(decision_id).to_dict()
