"""``/v1/memories``: remember, batch remember, get, history, update, retract.

Each route is one engine call on the caller's session; only the fields the
caller actually sent are passed on, so the engine's defaults and validation
apply exactly as they do embedded.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, status

from engramdb.errors import InvalidInput
from engramdb.server.deps import SessionDep, SettingsDep, check_batch
from engramdb.server.errors import error_responses
from engramdb.server.requests import (
    BatchRequest,
    RememberRequest,
    RetractRequest,
    UpdateRequest,
    invoke,
)
from engramdb.server.schemas import MAX_INT, MemoryList, MemoryOut, MemoryVersions, ReadList

__all__ = ["AsOf", "ValidAt", "parse_as_of", "router"]

router = APIRouter(prefix="/v1/memories", tags=["memories"])

MemoryId = Annotated[str, Path(description="The memory's id.")]
AsOf = Annotated[str | None, Query(
    description="Read point in transaction time: a transaction number (`42`) or an "
    "ISO-8601 time. Default: now.",
    json_schema_extra={"pattern": r"^([0-9]{1,16}|[0-9]{4}-[0-9]{2}-[0-9]{2}([T ].*)?)$"})]
ValidAt = Annotated[str | None, Query(
    description="Valid time (ISO-8601): only a version whose fact held then.",
    json_schema_extra={"pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ].*)?$"})]
_INT = re.compile(r"^-?[0-9]+$")


def parse_as_of(as_of: str | None) -> int | str | None:
    """A query-string ``as_of``: digits are a transaction number, anything else a time."""
    if as_of is None or not _INT.match(as_of.strip()):
        return as_of
    number = int(as_of)
    if number > MAX_INT:
        raise InvalidInput(f"as_of must be a transaction number up to {MAX_INT} or a time",
                           field="as_of")
    return number


@router.post("", status_code=status.HTTP_201_CREATED, response_model=MemoryOut,
             summary="Remember a memory",
             responses=error_responses(400, 401, 403, 409, 413, 429, 503))
def remember(body: RememberRequest, session: SessionDep) -> dict[str, object]:
    """Store a new memory (version 1). Provenance (author, times) is set by the server.

    403 when the caller has no write grant on the namespace.
    """
    return invoke(session, "remember", body).to_dict()


@router.post("/batch", status_code=status.HTTP_201_CREATED, response_model=MemoryList,
             summary="Remember many memories atomically",
             responses=error_responses(400, 401, 403, 409, 413, 429, 503))
def remember_many(body: BatchRequest, session: SessionDep,
                  settings: SettingsDep) -> dict[str, object]:
    """Store several memories in one transaction: all are stored or none is."""
    sent = body.model_dump(exclude_unset=True)
    check_batch(len(sent["memories"]), "memories", settings)
    return {"memories": [m.to_dict() for m in session.remember_many(sent["memories"])]}


@router.get("", response_model=MemoryList, summary="Browse recent memories",
            responses=error_responses(400, 401, 429, 503))
def recent(session: SessionDep,
           namespace: Annotated[str, Query(description="Namespace glob.")] = "**",
           k: Annotated[int, Query(ge=1, le=MAX_INT, description="How many, at most.")] = 20,
           layers: Annotated[list[str] | None, Query(
               description="Only these layers (repeat the parameter).")] = None
           ) -> dict[str, object]:
    """The ``k`` most recently written current memories the caller may read, newest first."""
    return {"memories": [m.to_dict() for m in session.recent(namespace=namespace, k=k,
                                                             layers=layers)]}


@router.get("/{memory_id}", response_model=MemoryOut, summary="Get a memory",
            responses=error_responses(400, 401, 404, 429, 503))
def get(memory_id: MemoryId, session: SessionDep, as_of: AsOf = None,
        valid_at: ValidAt = None) -> dict[str, object]:
    """The version current at ``as_of`` (default now), optionally valid at ``valid_at``.

    404 for an unknown id and for a memory the caller may not read alike.
    """
    return session.get(memory_id, as_of=parse_as_of(as_of), valid_at=valid_at).to_dict()


@router.get("/{memory_id}/history", response_model=MemoryVersions,
            summary="Every version of a memory",
            responses=error_responses(400, 401, 404, 429, 503))
def history(memory_id: MemoryId, session: SessionDep, as_of: AsOf = None) -> dict[str, object]:
    """All versions, oldest first, with their times and authors."""
    versions = session.history(memory_id, as_of=parse_as_of(as_of))
    return {"versions": [m.to_dict() for m in versions]}


@router.get("/{memory_id}/readers", response_model=ReadList, summary="Who read a memory",
            responses=error_responses(400, 401, 403, 404, 429, 503))
def readers(memory_id: MemoryId, session: SessionDep) -> dict[str, object]:
    """Every recorded read of any version, oldest first. Needs ``admin`` on the memory's
    namespace (403 for a reader without it; 404 for one who may not read it)."""
    return {"reads": [{"principal": r.principal, "time": r.time, "version": r.version}
                      for r in session.who_read(memory_id)]}


@router.patch("/{memory_id}", response_model=MemoryOut, summary="Update a memory",
              responses=error_responses(400, 401, 403, 404, 409, 413, 429, 503))
def update(memory_id: MemoryId, body: UpdateRequest, session: SessionDep) -> dict[str, object]:
    """Write a new version; the old one keeps its history.

    With ``expected_version`` the update applies only if that version is still
    current; otherwise 409 ``version_conflict`` and ``details.current_version``.
    """
    return invoke(session, "update", body, memory_id=memory_id).to_dict()


@router.post("/{memory_id}/retract", response_model=MemoryOut, summary="Retract a memory",
             responses=error_responses(400, 401, 403, 404, 409, 413, 429, 503))
def retract(memory_id: MemoryId, session: SessionDep,
            body: Annotated[RetractRequest | None, Body()] = None) -> dict[str, object]:
    """End the memory's validity with a new, ``retracted`` version. The body is optional."""
    return invoke(session, "retract", body, memory_id=memory_id).to_dict()
