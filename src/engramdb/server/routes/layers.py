"""The memory layers over HTTP: working blocks, episodes, summaries, tools, procedures.

Each route is one engine call on the caller's session with only the fields
the caller sent, so defaults, validation and errors are the engine's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from pydantic import Field

from engramdb.server.deps import SessionDep, SettingsDep, check_batch
from engramdb.server.errors import error_responses
from engramdb.server.requests import (
    EpisodeRequest,
    ExtractRequest,
    PinRequest,
    ProcedureOutcomeRequest,
    ProcedureRequest,
    RecommendRequest,
    SummarizeRequest,
    ToolOutcomeBatchRequest,
    ToolOutcomeRequest,
    UnpinRequest,
    invoke,
    sent,
)
from engramdb.server.schemas import (
    MAX_INT,
    MemoryList,
    MemoryOut,
    Response,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["layers"])

Glob = Annotated[str, Query(description="Namespace glob.")]
_ISO = {"pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ].*)?$"}
# Passed on as text: the engine parses ISO-8601 exactly as embedded (a number is refused).
Since = Annotated[str | None, Query(description="ISO-8601 time: only from then on.",
                                    json_schema_extra=_ISO)]
Until = Annotated[str | None, Query(description="ISO-8601 time: only before then.",
                                    json_schema_extra=_ISO)]


class Done(Response):
    ok: bool = True


# -- working blocks -----------------------------------------------------------------------


@router.post("/blocks", response_model=MemoryOut, summary="Pin a working block",
             responses=error_responses(400, 401, 403, 409, 413, 429, 503))
def pin(body: PinRequest, session: SessionDep) -> dict[str, Any]:
    """Create or update a named working block (a new version each time). 409
    ``version_conflict`` when ``expected_version`` is not current; 400
    ``block_too_large`` when the text is over the block's token limit."""
    return invoke(session, "pin", body).to_dict()


@router.post("/blocks/unpin", response_model=MemoryOut, summary="Unpin a working block",
             responses=error_responses(400, 401, 403, 404, 409, 413, 429, 503))
def unpin(body: UnpinRequest, session: SessionDep) -> dict[str, Any]:
    """Remove a block: its memory gets a ``retracted`` version; history keeps it."""
    return invoke(session, "unpin", body).to_dict()


@router.get("/blocks", response_model=MemoryList, summary="List working blocks",
            responses=error_responses(400, 401, 429, 503))
def blocks(session: SessionDep, session_id: Annotated[str | None, Query(
               alias="session", description="Include this session's blocks.")] = None,
           namespace: Annotated[str | None, Query(
               description="Glob; default the caller's `agents/<name>`.")] = None
           ) -> dict[str, Any]:
    """The blocks in force: agent-wide ones, plus the session's when one is given."""
    return {"memories": [m.to_dict() for m in session.blocks(session_id,
                                                             namespace=namespace)]}


# -- episodes -------------------------------------------------------------------------------


@router.post("/episodes", status_code=status.HTTP_201_CREATED, response_model=MemoryOut,
             summary="Record an episode", responses=error_responses(400, 401, 403, 413, 429, 503))
def episode(body: EpisodeRequest, session: SessionDep) -> dict[str, Any]:
    """Append one interaction record to a session (an ``episodic`` memory)."""
    return invoke(session, "episode", body).to_dict()


@router.get("/episodes", response_model=MemoryList, summary="List episodes",
            responses=error_responses(400, 401, 429, 503))
def episodes(session: SessionDep,
             session_id: Annotated[str | None, Query(alias="session")] = None,
             agent: Annotated[str | None, Query(description="Only this agent's.")] = None,
             since: Since = None,
             until: Until = None,
             limit: Annotated[int, Query(ge=1, le=MAX_INT)] = 100,
             namespace: Glob = "**") -> dict[str, Any]:
    """Episodes the caller may read, in the order they happened (the newest ``limit``)."""
    found = session.episodes(session_id, agent=agent, since=since, until=until, limit=limit,
                             namespace=namespace)
    return {"memories": [m.to_dict() for m in found]}


@router.post("/summaries", status_code=status.HTTP_201_CREATED, response_model=MemoryOut,
             summary="Summarise a session",
             responses=error_responses(400, 401, 403, 404, 409, 413, 429, 502, 503))
def summarize(body: SummarizeRequest, session: SessionDep) -> dict[str, Any]:
    """Write an episodic summary linked to the episodes it covers. 409
    ``llm_not_configured`` for ``method=llm`` without an LLM; 502 when the LLM fails."""
    return invoke(session, "summarize", body).to_dict()


@router.post("/extractions", status_code=status.HTTP_201_CREATED, response_model=MemoryList,
             summary="Extract facts from a session",
             responses=error_responses(400, 401, 403, 404, 409, 413, 429, 502, 503))
def extract(body: ExtractRequest, session: SessionDep) -> dict[str, Any]:
    """Turn a session's episodes into assertions (needs an LLM: 409
    ``llm_not_configured`` otherwise), checked for conflicts like any write."""
    return {"memories": [m.to_dict() for m in invoke(session, "extract", body)]}


# -- tools and procedures -----------------------------------------------------------------


class ToolStatsOut(Response):
    tool: str
    calls: int
    successes: int
    success_rate: float
    recent_rate: float = Field(description="Each outcome weighted 0.5^(age/10), age 0 = newest.")
    last_10_failures: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    errors: list[list[Any]] = Field(description="`[error, count]`, most frequent first.")
    agents: list[str]
    last_at: datetime | None


class ToolStatsList(Response):
    tools: list[ToolStatsOut]


@router.post("/tool-outcomes", status_code=status.HTTP_201_CREATED, response_model=Done,
             summary="Record a tool outcome",
             responses=error_responses(400, 401, 403, 413, 429, 503))
def tool_outcome(body: ToolOutcomeRequest, session: SessionDep) -> dict[str, Any]:
    """Record one tool call's outcome (in ``agents/<caller>`` unless ``namespace``)."""
    invoke(session, "tool_outcome", body)
    return {"ok": True}


class Recorded(Response):
    recorded: int = Field(description="How many outcomes were recorded.")


@router.post("/tool-outcomes/batch", status_code=status.HTTP_201_CREATED,
             response_model=Recorded, summary="Record many tool outcomes",
             responses=error_responses(400, 401, 403, 413, 429, 503))
def tool_outcomes(body: ToolOutcomeBatchRequest, session: SessionDep,
                  settings: SettingsDep) -> dict[str, Any]:
    """Record many tool calls' outcomes in one transaction: one request, one commit."""
    given = sent(body)
    check_batch(len(given["outcomes"]), "outcomes", settings)
    return {"recorded": invoke(session, "tool_outcomes", given)}


@router.get("/tool-stats", response_model=ToolStatsList, summary="Tool reliability",
            responses=error_responses(400, 401, 429, 503))
def tool_stats(session: SessionDep, tool: Annotated[str | None, Query()] = None,
               since: Since = None,
               agent: Annotated[str | None, Query(description="Only this agent's.")] = None,
               namespace: Glob = "**") -> dict[str, Any]:
    """Per tool, over the outcomes the caller may read: calls, rates, latency, errors."""
    stats = session.tool_stats(tool, since=since, agent=agent, namespace=namespace)
    return {"tools": [s.to_dict() for s in stats]}


class VersionStatsOut(Response):
    version: int
    uses: int
    successes: int
    success_rate: float | None


class ProcedureOut(Response):
    name: str
    namespace: str
    id: str
    version: int
    text: str
    author: str
    versions: list[VersionStatsOut]


class ProcedureList(Response):
    procedures: list[ProcedureOut]


class RecommendationOut(Response):
    kind: str
    name: str
    version: int | None
    score: float
    relevance: float
    expected_rate: float
    evidence: dict[str, Any]


class RecommendationList(Response):
    recommendations: list[RecommendationOut]


@router.post("/procedures", response_model=MemoryOut, summary="Write a procedure version",
             responses=error_responses(400, 401, 403, 409, 413, 429, 503))
def procedure(body: ProcedureRequest, session: SessionDep) -> dict[str, Any]:
    """A new version of a named procedure; 409 on a stale ``expected_version``."""
    return invoke(session, "procedure", body).to_dict()


@router.get("/procedures", response_model=ProcedureList, summary="List procedures",
            responses=error_responses(400, 401, 429, 503))
def procedures(session: SessionDep, namespace: Glob = "**") -> dict[str, Any]:
    """Procedures the caller may read, with outcome statistics per version."""
    return {"procedures": [p.to_dict() for p in session.procedures(namespace)]}


@router.post("/procedure-outcomes", status_code=status.HTTP_201_CREATED, response_model=Done,
             summary="Record a procedure outcome",
             responses=error_responses(400, 401, 403, 404, 413, 429, 503))
def procedure_outcome(body: ProcedureOutcomeRequest, session: SessionDep) -> dict[str, Any]:
    """Record one use of one version of a procedure."""
    invoke(session, "procedure_outcome", body)
    return {"ok": True}


@router.post("/recommendations", response_model=RecommendationList,
             summary="Recommend procedures and tools",
             responses=error_responses(400, 401, 413, 429, 503))
def recommend(body: RecommendRequest, session: SessionDep) -> dict[str, Any]:
    """The procedure versions and tools most likely to succeed at ``task``, with evidence."""
    return {"recommendations": [r.to_dict() for r in invoke(session, "recommend", body)]}
