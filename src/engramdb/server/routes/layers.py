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
from engramdb.server.schemas import (
    KEY,
    MAX_INT,
    SHORT,
    TEXT,
    Count,
    GlobIn,
    Integer,
    MemoryList,
    MemoryOut,
    NamespaceOrNull,
    ObjectOrNull,
    Request,
    Response,
    Time,
    documented,
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


def _sent(body: Request) -> dict[str, Any]:
    return body.model_dump(exclude_unset=True)


class Done(Response):
    ok: bool = True


# -- working blocks -----------------------------------------------------------------------


class PinRequest(Request):
    name: str = documented(KEY, description="The block: `persona`, `goal`, `plan` ...")
    text: str = documented(TEXT, description="Its whole new text.")
    session: str | None = documented(SHORT, default=None,
                                     description="Pin for this session only.")
    namespace: NamespaceOrNull = Field(None, description="Default `agents/<caller>`.")
    limit_tokens: Integer | None = Field(None, ge=1, le=1_000_000,
                                         description="Refuse texts over this many tokens.")
    expected_version: Count | None = Field(
        None, description="Compare-and-swap: `0` creates only, `n` updates only version n.")


class UnpinRequest(Request):
    name: str = documented(KEY)
    session: str | None = documented(SHORT, default=None)
    namespace: NamespaceOrNull = None
    expected_version: Count | None = None


@router.post("/blocks", response_model=MemoryOut, summary="Pin a working block",
             responses=error_responses(400, 401, 403, 409, 413, 429, 503))
def pin(body: PinRequest, session: SessionDep) -> dict[str, Any]:
    """Create or update a named working block (a new version each time). 409
    ``version_conflict`` when ``expected_version`` is not current; 400
    ``block_too_large`` when the text is over the block's token limit."""
    fields = _sent(body)
    return session.pin(fields.pop("name"), fields.pop("text"), **fields).to_dict()


@router.post("/blocks/unpin", response_model=MemoryOut, summary="Unpin a working block",
             responses=error_responses(400, 401, 403, 404, 409, 413, 429, 503))
def unpin(body: UnpinRequest, session: SessionDep) -> dict[str, Any]:
    """Remove a block: its memory gets a ``retracted`` version; history keeps it."""
    fields = _sent(body)
    return session.unpin(fields.pop("name"), **fields).to_dict()


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


class EpisodeRequest(Request):
    session: str = documented(SHORT, description="The session it belongs to.")
    role: str = documented({"minLength": 1, "maxLength": 100},
                           description="`user`, `assistant`, `tool`, `observation` ...")
    content: str = documented(TEXT, description="What was said or seen.")
    at: Time | None = Field(None, description="When it happened (default now).")
    metadata: ObjectOrNull = None
    namespace: NamespaceOrNull = None


@router.post("/episodes", status_code=status.HTTP_201_CREATED, response_model=MemoryOut,
             summary="Record an episode", responses=error_responses(400, 401, 403, 413, 429, 503))
def episode(body: EpisodeRequest, session: SessionDep) -> dict[str, Any]:
    """Append one interaction record to a session (an ``episodic`` memory)."""
    fields = _sent(body)
    return session.episode(fields.pop("session"), fields.pop("role"), fields.pop("content"),
                           **fields).to_dict()


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


class SummarizeRequest(Request):
    session: str = documented(SHORT)
    namespace: NamespaceOrNull = None
    method: str = documented({"enum": ["auto", "extractive", "llm"]}, default="auto")


class ExtractRequest(Request):
    session: str = documented(SHORT)
    namespace: NamespaceOrNull = None


@router.post("/summaries", status_code=status.HTTP_201_CREATED, response_model=MemoryOut,
             summary="Summarise a session",
             responses=error_responses(400, 401, 403, 404, 409, 413, 429, 502, 503))
def summarize(body: SummarizeRequest, session: SessionDep) -> dict[str, Any]:
    """Write an episodic summary linked to the episodes it covers. 409
    ``llm_not_configured`` for ``method=llm`` without an LLM; 502 when the LLM fails."""
    fields = _sent(body)
    return session.summarize(fields.pop("session"), **fields).to_dict()


@router.post("/extractions", status_code=status.HTTP_201_CREATED, response_model=MemoryList,
             summary="Extract facts from a session",
             responses=error_responses(400, 401, 403, 404, 409, 413, 429, 502, 503))
def extract(body: ExtractRequest, session: SessionDep) -> dict[str, Any]:
    """Turn a session's episodes into assertions (needs an LLM: 409
    ``llm_not_configured`` otherwise), checked for conflicts like any write."""
    fields = _sent(body)
    return {"memories": [m.to_dict() for m in session.extract(fields.pop("session"),
                                                              **fields)]}


# -- tools and procedures -----------------------------------------------------------------


class ToolOutcomeRequest(Request):
    tool: str = documented(KEY)
    ok: bool
    latency_ms: float | None = Field(None, ge=0, le=1e9)
    error: str | None = documented({"maxLength": 2000}, default=None)
    metadata: ObjectOrNull = None
    namespace: NamespaceOrNull = None


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
    fields = _sent(body)
    session.tool_outcome(fields.pop("tool"), fields.pop("ok"), **fields)
    return {"ok": True}


class ToolOutcomeBatchRequest(Request):
    outcomes: list[ToolOutcomeRequest] = Field(
        description="Outcomes to record in one transaction (all or none), each as for "
                    "`POST /v1/tool-outcomes`; more than the server's `max_batch` "
                    "(`GET /v1/info`, `limits`) is 413.")


class Recorded(Response):
    recorded: int = Field(description="How many outcomes were recorded.")


@router.post("/tool-outcomes/batch", status_code=status.HTTP_201_CREATED,
             response_model=Recorded, summary="Record many tool outcomes",
             responses=error_responses(400, 401, 403, 413, 429, 503))
def tool_outcomes(body: ToolOutcomeBatchRequest, session: SessionDep,
                  settings: SettingsDep) -> dict[str, Any]:
    """Record many tool calls' outcomes in one transaction: one request, one commit."""
    check_batch(len(body.outcomes), "outcomes", settings)
    outcomes = [o.model_dump(exclude_unset=True) for o in body.outcomes]
    return {"recorded": session.tool_outcomes(outcomes)}


@router.get("/tool-stats", response_model=ToolStatsList, summary="Tool reliability",
            responses=error_responses(400, 401, 429, 503))
def tool_stats(session: SessionDep, tool: Annotated[str | None, Query()] = None,
               since: Since = None,
               agent: Annotated[str | None, Query(description="Only this agent's.")] = None,
               namespace: Glob = "**") -> dict[str, Any]:
    """Per tool, over the outcomes the caller may read: calls, rates, latency, errors."""
    stats = session.tool_stats(tool, since=since, agent=agent, namespace=namespace)
    return {"tools": [s.to_dict() for s in stats]}


class ProcedureRequest(Request):
    name: str = documented(KEY)
    text: str = documented(TEXT)
    namespace: NamespaceOrNull = None
    expected_version: Count | None = None


class ProcedureOutcomeRequest(Request):
    name: str = documented(KEY)
    version: Count
    ok: bool
    namespace: NamespaceOrNull = None


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


class RecommendRequest(Request):
    task: str = documented(TEXT)
    k: Integer = Field(5, ge=1, le=100)
    namespace: GlobIn = "**"


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
    fields = _sent(body)
    return session.procedure(fields.pop("name"), fields.pop("text"), **fields).to_dict()


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
    fields = _sent(body)
    session.procedure_outcome(fields.pop("name"), fields.pop("version"), fields.pop("ok"),
                              **fields)
    return {"ok": True}


@router.post("/recommendations", response_model=RecommendationList,
             summary="Recommend procedures and tools",
             responses=error_responses(400, 401, 413, 429, 503))
def recommend(body: RecommendRequest, session: SessionDep) -> dict[str, Any]:
    """The procedure versions and tools most likely to succeed at ``task``, with evidence."""
    fields = _sent(body)
    return {"recommendations": [r.to_dict() for r in session.recommend(fields.pop("task"),
                                                                       **fields)]}
