"""``/v1/decisions``: record decisions with their basis, explain them, find stale ones."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from pydantic import AfterValidator, Field, WithJsonSchema

from engramdb.server.deps import SessionDep
from engramdb.server.errors import error_responses
from engramdb.server.schemas import (
    MAX_INT,
    TEXT,
    DecisionList,
    DecisionOut,
    ExplanationOut,
    NamespaceOrNull,
    ObjectOrNull,
    Request,
    documented,
)

__all__ = ["DecideRequest", "router"]

router = APIRouter(prefix="/v1/decisions", tags=["decisions"])

_ITEM = {"type": "object", "properties": {"id": {"type": "string"},
                                           "version": {"type": "integer", "minimum": 1,
                                                       "maximum": MAX_INT}},
         "required": ["id", "version"]}


def _bounded(value: Any) -> Any:
    # The engine normalises the basis; integers past what JSON clients (and the
    # database's 64-bit columns) hold are refused here, before they reach SQL.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_INT:
            raise ValueError(f"basis holds the integer {item}, larger than {MAX_INT}")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value

# The engine normalises the basis itself (and says precisely what is wrong with one).
Basis = Annotated[Any, AfterValidator(_bounded), WithJsonSchema({"anyOf": [
    {"type": "object", "properties": {"items": {"type": "array", "items": _ITEM}},
     "required": ["items"], "description": "A receipt, as recall and context return it."},
    _ITEM,
    {"type": "array", "items": {"anyOf": [
        _ITEM, {"type": "object", "properties": {"items": {"type": "array", "items": _ITEM}},
                "required": ["items"]}]}},
]})]
DecisionId = Annotated[str, Path(description="The decision's id.")]


class DecideRequest(Request):
    description: str = documented(TEXT, description="What was decided.")
    basis: Basis = Field(description="What the decision rests on: a receipt "
                         "(`recall`/`context`), `{id, version}` items, or a list of these.")
    outcome: ObjectOrNull = Field(None, description="A JSON object describing the outcome.")
    metadata: ObjectOrNull = None
    namespace: NamespaceOrNull = Field(
        None, description="Where the decision is filed (default `agents/<you>`); needs write.")


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DecisionOut,
             summary="Record a decision",
             responses=error_responses(400, 401, 403, 404, 413, 429, 503))
def decide(body: DecideRequest, session: SessionDep) -> dict[str, Any]:
    """Record a decision and the exact memory versions it rests on.

    404 when a basis version does not exist or the caller may not read it.
    """
    fields = body.model_dump(exclude_unset=True)
    return session.decide(fields.pop("description"), **fields).to_dict()


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
