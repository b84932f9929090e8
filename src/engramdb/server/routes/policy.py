"""``/v1/admin``: trust policy. Predicate schemas, namespace settings, read audit, quarantine.

Admin keys only (403 otherwise). Each route is one engine call acting as the
calling admin: ``db.admin.declare_predicate`` / ``undeclare_predicate`` /
``predicates`` / ``schema_for``, ``configure_namespace`` / ``settings_for``,
``quarantined`` / ``approve``, and ``db.set_read_audit`` / ``read_audit_mode``.
Values (policy names, settings) are checked by the engine, with its errors
(``invalid_policy``, ``invalid_namespace``, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

from fastapi import APIRouter, Body, Path, Query, Response, status
from pydantic import BaseModel, Field, WithJsonSchema

from engramdb.engine.read_audit import READ_AUDIT_MODES
from engramdb.policy.conflicts import (
    CARDINALITIES,
    POLICIES,
    VALUE_TYPES,
    NamespaceSettings,
    PredicateSchema,
)
from engramdb.policy.crdt import MERGE_KINDS
from engramdb.server.deps import AdminDep, DbDep
from engramdb.server.errors import error_responses
from engramdb.server.requests import admin_model, invoke
from engramdb.server.schemas import (
    GLOB,
    MAX_INT,
    NAMESPACE,
    SHORT,
    UNIT,
    GlobIn,
    Integer,
    MemoryList,
    MemoryOut,
    NamespaceSettingsOut,
    PredicateList,
    PredicateOut,
    ReadAuditOut,
    Request,
    SettingsStored,
    documented,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin", tags=["policy"])

_ERRORS = (400, 401, 403, 429, 503)


def _choice_or_null(values: tuple[str, ...]) -> dict[str, Any]:
    return {"anyOf": [{"type": "string", "enum": list(values)}, {"type": "null"}]}


# Fields the engine validates: the spec names the choices, any JSON passes through so
# that a wrong value gets the engine's own error (`invalid_policy`), as embedded.
MergeIn = Annotated[Any, WithJsonSchema(_choice_or_null(MERGE_KINDS))]
PolicyIn = Annotated[Any, WithJsonSchema(_choice_or_null(POLICIES))]
DefaultPolicyIn = Annotated[Any, WithJsonSchema(_choice_or_null(
    tuple(p for p in POLICIES if p != "merge")))]


Namespace = Annotated[str, Query(description="A concrete namespace, e.g. `acme/research`.",
                                 json_schema_extra=NAMESPACE)]


def _schema(s: PredicateSchema) -> dict[str, Any]:
    return s.to_dict()


def _settings(s: NamespaceSettings) -> dict[str, Any]:
    return s.to_dict()


# -- predicate schemas ---------------------------------------------------------------------


_OVERRIDES: dict[str, dict[str, Any]] = {  # api.AdminAPI declares the fields
    "declare_predicate": {
        "pattern": Annotated[GlobIn, Field(
            description="Namespace glob the declaration applies to.")],
        "predicate": documented(SHORT, description="The predicate, e.g. `outlook`."),
        "cardinality": documented({"enum": list(CARDINALITIES)},
                                  description="`one`: one live value per subject (exact "
                                  "contradictions); `many`: a set of values."),
        "value_type": documented({"enum": list(VALUE_TYPES)},
                                 description="Type every value must have (default `any`)."),
        "merge": Annotated[MergeIn, Field(
            description="Merge kind (CRDT); implies policy `merge`.")],
        "policy": Annotated[PolicyIn, Field(
            description="Conflict policy (default `flag`, or `merge` with a merge kind).")],
    },
    "undeclare_predicate": {
        "pattern": Annotated[GlobIn, Field(description="The declaration's namespace glob.")],
        "predicate": documented(SHORT, description="The declared predicate."),
    },
    "approve": {
        "reason": documented({"maxLength": 2000}, description="Why (kept in the log)."),
    },
}
if TYPE_CHECKING:  # mypy sees BaseModels; FastAPI sees the derived models
    DeclarePredicateRequest: TypeAlias = BaseModel
    UndeclarePredicateRequest: TypeAlias = BaseModel
    ApproveRequest: TypeAlias = BaseModel
else:
    DeclarePredicateRequest = admin_model("declare_predicate",
                                          _OVERRIDES["declare_predicate"])
    UndeclarePredicateRequest = admin_model("undeclare_predicate",
                                            _OVERRIDES["undeclare_predicate"])
    ApproveRequest = admin_model("approve", _OVERRIDES["approve"])


@router.get("/predicates", response_model=PredicateList, summary="List predicate declarations",
            responses=error_responses(*_ERRORS))
def predicates(admin: AdminDep, namespace: Annotated[str | None, Query(
        description="Only declarations whose pattern matches this concrete namespace.",
        json_schema_extra=NAMESPACE)] = None) -> dict[str, Any]:
    """Current predicate declarations, oldest first."""
    return {"predicates": [_schema(p) for p in admin.predicates(namespace)]}


@router.post("/predicates", status_code=status.HTTP_201_CREATED, response_model=PredicateOut,
             summary="Declare a predicate", responses=error_responses(*_ERRORS, 413))
def declare_predicate(body: DeclarePredicateRequest, admin: AdminDep) -> dict[str, Any]:
    """Declare how a predicate behaves in namespaces matching ``pattern``.

    Replaces an earlier declaration for the same pattern and predicate; applies
    to writes from now on. 400 ``invalid_policy`` for an unknown policy or merge kind.
    """
    return _schema(invoke(admin, "declare_predicate", body))


@router.post("/predicates/undeclare", status_code=status.HTTP_204_NO_CONTENT,
             response_class=Response, summary="End a predicate declaration",
             responses=error_responses(*_ERRORS, 404, 413))
def undeclare_predicate(body: UndeclarePredicateRequest, admin: AdminDep) -> Response:
    """End a declaration; the defaults (or a broader declaration) apply again.

    404 if nothing is declared for that pattern and predicate.
    """
    invoke(admin, "undeclare_predicate", body)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/predicates/effective", response_model=PredicateOut,
            summary="The schema governing a predicate in a namespace",
            responses=error_responses(*_ERRORS))
def schema_for(admin: AdminDep, namespace: Namespace, predicate: Annotated[str, Query(
        description="The predicate.", json_schema_extra=SHORT)]) -> dict[str, Any]:
    """The declaration that applies (the most specific pattern), or the defaults
    (``declared: false``) when none does."""
    return _schema(admin.schema_for(namespace, predicate))


# -- namespace settings --------------------------------------------------------------------


class ConfigureNamespaceRequest(Request):
    """Settings for namespaces matching ``pattern``; ``null`` removes a setting there."""

    pattern: GlobIn = Field(description="Namespace glob the settings apply to.")
    trust_floor: float | None = documented(UNIT, default=None, description="Writes from "
                                           "principals with less trust land `quarantined`.")
    detect_free_text: bool | None = Field(None, description="Check memories without a "
                                          "predicate against similar ones.")
    default_policy: DefaultPolicyIn = Field(
        None, description="Policy for undeclared predicates and free-text conflicts.")
    authority: list[str] | None = Field(None, description="Ranking for the `authority` "
                                        "policy, highest first: names or `role:<r>`.")
    free_text_candidates: Integer | None = documented(
        {"minimum": 1, "maximum": 20}, default=None,
        description="How many similar memories the judge looks at.")
    judge_min_confidence: float | None = documented(UNIT, default=None, description="A "
                                                    "contradiction verdict below this is "
                                                    "ignored.")


@router.post("/settings", response_model=SettingsStored, summary="Configure namespaces",
             responses=error_responses(*_ERRORS, 413))
def configure_namespace(body: ConfigureNamespaceRequest, admin: AdminDep) -> dict[str, Any]:
    """Set trust settings on namespaces matching ``pattern``; only the fields sent change.

    A more specific pattern's value wins over a broader one's. 400 when no
    setting is given.
    """
    fields = body.model_dump(exclude_unset=True)
    pattern = fields.pop("pattern")
    return {"pattern": pattern, "settings": admin.configure_namespace(pattern, **fields)}


@router.get("/settings", response_model=NamespaceSettingsOut,
            summary="Settings in force for a namespace", responses=error_responses(*_ERRORS))
def settings_for(admin: AdminDep, namespace: Namespace) -> dict[str, Any]:
    """Every setting as it applies to one concrete namespace, defaults included."""
    return _settings(admin.settings_for(namespace))


# -- read audit ----------------------------------------------------------------------------


class ReadAuditRequest(Request):
    pattern: GlobIn = Field(description="Namespace glob; the most specific matching pattern "
                            "wins.")
    mode: str = documented({"enum": list(READ_AUDIT_MODES)}, description="`all` (every read "
                           "recorded, the default), `sampled` (a fraction `rate`) or `off`.")
    rate: float | None = documented({"exclusiveMinimum": 0, "maximum": 1}, default=None,
                                    description="For `sampled` only: the fraction recorded.")


@router.post("/read-audit", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
             summary="Choose how reads are audited", responses=error_responses(*_ERRORS, 413))
def set_read_audit(body: ReadAuditRequest, admin: AdminDep) -> Response:
    """How reads (recall, context, get) in namespaces matching ``pattern`` are recorded
    for ``GET /v1/memories/{id}/readers``: a logged settings change."""
    admin.set_read_audit(body.pattern, body.mode, rate=body.rate)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/read-audit", response_model=ReadAuditOut,
            summary="How reads of a namespace are audited", responses=error_responses(*_ERRORS))
def read_audit_mode(_: AdminDep, db: DbDep, namespace: Namespace) -> dict[str, Any]:
    """The read-audit mode and sampling rate that apply to one concrete namespace."""
    mode, rate = db.read_audit_mode(namespace)
    return {"namespace": namespace, "mode": mode, "rate": rate}


# -- quarantine ------------------------------------------------------------------------------


@router.get("/quarantine", response_model=MemoryList, summary="List quarantined memories",
            responses=error_responses(*_ERRORS))
def quarantined(admin: AdminDep, namespace: Annotated[str, Query(
        description="Namespace glob.", json_schema_extra=GLOB)] = "**",
                limit: Annotated[int, Query(ge=1, le=MAX_INT, description="At most this "
                                            "many.")] = 100) -> dict[str, Any]:
    """Memories waiting for approval (written below a namespace's trust floor), newest first."""
    return {"memories": [m.to_dict() for m in admin.quarantined(namespace, limit)]}


@router.post("/quarantine/{memory_id}/approve", response_model=MemoryOut,
             summary="Approve a quarantined memory",
             responses=error_responses(*_ERRORS, 404, 409, 413))
def approve(memory_id: Annotated[str, Path(description="The quarantined memory's id.")],
            admin: AdminDep,
            body: Annotated[ApproveRequest | None, Body()] = None) -> dict[str, Any]:
    """Release a quarantined memory: it is checked for conflicts and merged as if its
    author wrote it now (409 ``contradiction`` if a ``reject`` policy refuses it).
    The body is optional."""
    return invoke(admin, "approve", body, memory_id=memory_id).to_dict()
