"""The one exception tree of EngramDB.

Every error a caller can see, embedded or remote, is an :class:`EngramError`.
Each class carries a stable wire ``code`` and an HTTP ``status``; the HTTP
server serialises any ``EngramError`` as ``{"error": {"code", "message",
"details"}}`` and the remote client rebuilds the same class from ``code``, so
callers handle one exception type whichever door they came through.

::

    EngramError
    ├── InvalidInput (ValueError)               400 invalid_input
    │   ├── InvalidNamespace                    400 invalid_namespace
    │   ├── InvalidLayer                        400 invalid_layer
    │   ├── InvalidArguments (TypeError)        400 invalid_arguments
    │   ├── InvalidMetadata                     400 invalid_metadata
    │   ├── TextTooLong                         400 text_too_long
    │   ├── EmbeddingDimensionMismatch          400 embedding_dimension_mismatch
    │   ├── InvalidPolicy                       400 invalid_policy
    │   ├── ValueTypeError                      400 value_type_error
    │   └── BlockTooLarge                       400 block_too_large
    ├── Unauthenticated                         401 unauthenticated
    ├── PermissionDenied (PermissionError)      403 permission_denied
    ├── NotFound (LookupError)                  404 not_found
    ├── ConflictError                           409 conflict
    │   ├── VersionConflict                     409 version_conflict
    │   ├── ContradictionError                  409 contradiction
    │   ├── IdempotencyKeyReused                409 idempotency_key_reused
    │   ├── EmbedderMismatch                    409 embedder_mismatch
    │   └── LegalHoldActive                     409 legal_hold
    ├── PayloadTooLarge                         413 payload_too_large
    ├── RateLimited                             429 rate_limited
    ├── Overloaded                              503 overloaded
    ├── MissingExtra (ImportError)              500 missing_extra
    ├── ConfigurationError                      500 configuration_error
    │   └── LLMNotConfigured                    409 llm_not_configured
    ├── UpstreamError                           502 upstream_error
    └── StorageError                            503 storage_error
        ├── Busy                                503 busy (retryable, Retry-After)
        └── IntegrityError                      503 integrity_error
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "BlockTooLarge",
    "Busy",
    "ConfigurationError",
    "ConflictError",
    "ContradictionError",
    "EmbedderMismatch",
    "EmbeddingDimensionMismatch",
    "EngramError",
    "IdempotencyKeyReused",
    "IntegrityError",
    "InvalidArguments",
    "InvalidInput",
    "InvalidLayer",
    "InvalidMetadata",
    "InvalidNamespace",
    "InvalidPolicy",
    "LLMNotConfigured",
    "LegalHoldActive",
    "MissingExtra",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "StorageError",
    "TextTooLong",
    "Unauthenticated",
    "UpstreamError",
    "ValueTypeError",
    "VersionConflict",
    "error_from_wire",
    "fix_text",
]


class EngramError(Exception):
    """Root of every error EngramDB raises on purpose.

    Attributes:
        code: Stable machine-readable identifier, the same embedded and remote.
        status: HTTP status the server answers with.
        message: Human text that says what went wrong and what to do.
        details: JSON-serialisable extra facts (e.g. the current version).
    """

    code: ClassVar[str] = "engram_error"
    status: ClassVar[int] = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def __str__(self) -> str:
        hint = self.hint("python")
        return self.message if hint is None else f"{self.message}; {hint}"

    @property
    def fix(self) -> dict[str, Any] | None:
        """What the caller can do about it, as data: ``{"action": ..., **arguments}``."""
        value = self.details.get("fix")
        return value if isinstance(value, dict) else None

    def hint(self, door: str) -> str | None:
        """The fix in the caller's own words: ``door`` is python, cli, http or mcp."""
        return fix_text(self.fix, door)

    def to_wire(self) -> dict[str, Any]:
        """The JSON body the HTTP and MCP doors send for this error."""
        return {"code": self.code, "message": self.message, "details": self.details}

    def __reduce__(self) -> tuple[Any, ...]:
        # Keeps errors picklable across processes (multiprocessing tests, pools).
        return (_rebuild, (type(self), self.message, self.details))


def _rebuild(cls: type[EngramError], message: str, details: dict[str, Any]) -> EngramError:
    return cls(message, **details)


class InvalidInput(EngramError, ValueError):
    """A request that can never succeed as written; fix the input and retry."""

    code = "invalid_input"
    status = 400


class InvalidNamespace(InvalidInput):
    code = "invalid_namespace"


class InvalidLayer(InvalidInput):
    code = "invalid_layer"


class InvalidArguments(InvalidInput, TypeError):
    """A call that does not fit the method's signature (an unknown keyword, a missing argument).

    Also a ``TypeError``, which is what Python raises for such a call, so code
    that caught that keeps working.
    """

    code = "invalid_arguments"


class InvalidMetadata(InvalidInput):
    code = "invalid_metadata"


class TextTooLong(InvalidInput):
    code = "text_too_long"


class EmbeddingDimensionMismatch(InvalidInput):
    code = "embedding_dimension_mismatch"


class InvalidPolicy(InvalidInput):
    code = "invalid_policy"


class ValueTypeError(InvalidInput):
    code = "value_type_error"


class BlockTooLarge(InvalidInput):
    """A working block's text is over its token limit (it is never cut silently)."""

    code = "block_too_large"


class Unauthenticated(EngramError):
    """No credentials, or credentials that are wrong, revoked or expired."""

    code = "unauthenticated"
    status = 401


class PermissionDenied(EngramError, PermissionError):
    """The principal lacks the grant for this action on this namespace."""

    code = "permission_denied"
    status = 403


class NotFound(EngramError, LookupError):
    """No such object, or one the caller may not see (the two look the same)."""

    code = "not_found"
    status = 404


class ConflictError(EngramError):
    """The request collides with the current state; re-read and decide.

    (Named ``Conflict`` before 0.2; that name now means the conflict *record*,
    :class:`engramdb.model.Conflict`. ``engramdb.errors.Conflict`` still works,
    with a ``DeprecationWarning``.)
    """

    code = "conflict"
    status = 409


class VersionConflict(ConflictError):
    """``expected_version`` did not match; ``current_version`` says what is there."""

    code = "version_conflict"

    @property
    def current_version(self) -> int | None:
        value = self.details.get("current_version")
        return int(value) if value is not None else None


class ContradictionError(ConflictError):
    """A ``reject`` policy refused an assertion that contradicts live ones."""

    code = "contradiction"

    @property
    def rivals(self) -> list[dict[str, Any]]:
        return list(self.details.get("rivals", []))


class IdempotencyKeyReused(ConflictError):
    """An idempotency key was sent again with a different request."""

    code = "idempotency_key_reused"


class EmbedderMismatch(ConflictError):
    """The database was built with another embedder or dimension."""

    code = "embedder_mismatch"


class LegalHoldActive(ConflictError):
    """A legal hold covers the memories: erasure, expiry and archival are refused."""

    code = "legal_hold"


class PayloadTooLarge(EngramError):
    code = "payload_too_large"
    status = 413


class RateLimited(EngramError):
    code = "rate_limited"
    status = 429


class Overloaded(EngramError):
    """The server has as many requests in progress as it accepts; retry after ``Retry-After``."""

    code = "overloaded"
    status = 503


class MissingExtra(EngramError, ImportError):
    """An optional dependency is not installed; the message names the extra."""

    code = "missing_extra"
    status = 500


class ConfigurationError(EngramError):
    code = "configuration_error"
    status = 500


class LLMNotConfigured(ConfigurationError):
    """A call needs an LLM and none is configured; the message says how to set one.

    A 409, not a 5xx: the server is healthy, it is set up without the feature.
    """

    code = "llm_not_configured"
    status = 409


class UpstreamError(EngramError):
    """An embedding or LLM service answered badly or not at all."""

    code = "upstream_error"
    status = 502


class StorageError(EngramError):
    """The database could not be reached or refused the operation."""

    code = "storage_error"
    status = 503


class Busy(StorageError):
    """The write lock was not free in time (another writer held it); retry the request.

    Retryable: nothing was written. Over HTTP a 503 with ``Retry-After``;
    ``retry_after`` (seconds) is in ``details``.
    """

    code = "busy"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, **{"retryable": True, "retry_after": 1, **details})


class IntegrityError(StorageError):
    """Stored data does not match its log; run ``engram verify``."""

    code = "integrity_error"


# -- fixes in the caller's language --------------------------------------------
#
# An error names its fix as data (``details["fix"]``, e.g. ``{"action": "grant",
# "grantee": "planner", "pattern": "acme/**", "actions": ["read"]}``) rather than
# as a Python call, and each door says it in its own words: a CLI user is told the
# ``engram`` command, an HTTP user the route, a Python user the method.

DOORS = ("python", "cli", "http", "mcp")


def _q(value: Any) -> str:
    """A shell word: quoted when it holds anything but safe characters."""
    text = str(value)
    safe = text and all(c.isalnum() or c in "-_./:@" for c in text)
    return text if safe else "'" + text.replace("'", "'\\''") + "'"


def _json(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def fix_text(fix: Mapping[str, Any] | None, door: str) -> str | None:
    """The sentence that tells a caller of ``door`` how to apply ``fix``."""
    if not fix or door not in DOORS:
        return None
    action = fix.get("action")
    if action == "create_agent":
        name = fix.get("name")
        return {
            "python": f"an admin creates it with db.admin.create_agent({name!r})",
            "cli": f"create it with: engram agent create {_q(name)}",
            "http": f"an admin creates it with POST /v1/admin/agents {_json({'name': name})}",
            "mcp": f"an admin creates it (CLI: engram agent create {_q(name)})",
        }[door]
    if action == "grant":
        grantee, pattern = fix.get("grantee"), fix.get("pattern")
        actions = list(fix.get("actions") or [])
        cli = f"engram agent grant {_q(grantee)} {_q(pattern)} {' '.join(actions)}"
        body = {"grantee": grantee, "pattern": pattern, "actions": actions}
        return {
            "python": f"ask an admin for a grant: db.admin.grant({grantee!r}, {pattern!r}, "
                      f"{actions!r})",
            "cli": f"an admin grants it with: {cli}",
            "http": f"ask an admin for a grant: POST /v1/admin/grants {_json(body)}",
            "mcp": f"ask an admin for a grant (CLI: {cli})",
        }[door]
    if action == "reactivate_agent":
        name = fix.get("name")
        return {
            "python": f"an admin can reactivate it with db.admin.reactivate_agent({name!r})",
            "cli": f"an admin can reactivate it with: engram agent reactivate {_q(name)}",
            "http": f"an admin can reactivate it with POST /v1/admin/agents/{name}/reactivate",
            "mcp": f"an admin can reactivate it (CLI: engram agent reactivate {_q(name)})",
        }[door]
    if action == "declare_predicate":
        return {
            "python": "declare the predicate with a merge kind: "
                      "db.admin.declare_predicate(pattern, predicate, merge=...)",
            "cli": "declare the predicate with a merge kind over HTTP "
                   "(POST /v1/admin/predicates) or in Python (db.admin.declare_predicate)",
            "http": "declare the predicate with a merge kind: POST /v1/admin/predicates "
                    '{"pattern": ..., "predicate": ..., "merge": ...}',
            "mcp": "an admin declares the predicate with a merge kind "
                   "(POST /v1/admin/predicates)",
        }[door]
    if action == "init_database":
        path = fix.get("path")
        return {
            "python": f"create it with engramdb.open({path!r}) (create=True is the default)",
            "cli": f"create it with: engram init {_q(path)} (or point --db / ENGRAM_DB at an "
                   "existing database)",
            "http": "the server's database is missing; its operator runs engram init",
            "mcp": f"create it with: engram init {_q(path)}",
        }[door]
    if action == "lift_legal_hold":
        pattern = fix.get("pattern")
        body = {"pattern": pattern, "on": False, "reason": "..."}
        return {
            "python": f"an admin lifts it first with db.admin.legal_hold({pattern!r}, on=False, "
                      "reason=...)",
            "cli": f"an admin lifts it first over HTTP (POST /v1/admin/legal-holds "
                   f"{_json(body)}) or in Python (db.admin.legal_hold)",
            "http": f"an admin lifts it first: POST /v1/admin/legal-holds {_json(body)}",
            "mcp": "an admin lifts the legal hold first (POST /v1/admin/legal-holds)",
        }[door]
    if action == "create_key":
        name = fix.get("name")
        return {
            "python": f"an admin issues one with db.admin.create_key({name!r})",
            "cli": f"an admin issues one with: engram agent key {_q(name)}",
            "http": f"an admin issues one with POST /v1/admin/agents/{name}/keys",
            "mcp": f"an admin issues one (CLI: engram agent key {_q(name)})",
        }[door]
    return None


def _all_subclasses(cls: type[EngramError]) -> list[type[EngramError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


def error_from_wire(body: dict[str, Any]) -> EngramError:
    """Rebuild the exception a server sent, by its stable ``code``."""
    by_code = {cls.code: cls for cls in _all_subclasses(EngramError)}
    cls = by_code.get(str(body.get("code")), EngramError)
    details = body.get("details") or {}
    return cls(str(body.get("message", "unknown error")), **details)


def __getattr__(name: str) -> Any:
    if name == "Conflict":
        import warnings

        warnings.warn("engramdb.errors.Conflict is now ConflictError (engramdb.Conflict is the "
                      "conflict record's name in engramdb.model)", DeprecationWarning,
                      stacklevel=2)
        return ConflictError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
