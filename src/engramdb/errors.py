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
    │   ├── InvalidMetadata                     400 invalid_metadata
    │   ├── TextTooLong                         400 text_too_long
    │   ├── EmbeddingDimensionMismatch          400 embedding_dimension_mismatch
    │   ├── InvalidPolicy                       400 invalid_policy
    │   └── ValueTypeError                      400 value_type_error
    ├── Unauthenticated                         401 unauthenticated
    ├── PermissionDenied (PermissionError)      403 permission_denied
    ├── NotFound (LookupError)                  404 not_found
    ├── ConflictError                           409 conflict
    │   ├── VersionConflict                     409 version_conflict
    │   ├── ContradictionError                  409 contradiction
    │   ├── IdempotencyKeyReused                409 idempotency_key_reused
    │   └── EmbedderMismatch                    409 embedder_mismatch
    ├── PayloadTooLarge                         413 payload_too_large
    ├── RateLimited                             429 rate_limited
    ├── MissingExtra (ImportError)              500 missing_extra
    ├── ConfigurationError                      500 configuration_error
    ├── UpstreamError                           502 upstream_error
    └── StorageError                            503 storage_error
        ├── Busy                                503 busy (retryable, Retry-After)
        └── IntegrityError                      503 integrity_error
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "Busy",
    "ConfigurationError",
    "ConflictError",
    "ContradictionError",
    "EmbedderMismatch",
    "EmbeddingDimensionMismatch",
    "EngramError",
    "IdempotencyKeyReused",
    "IntegrityError",
    "InvalidInput",
    "InvalidLayer",
    "InvalidMetadata",
    "InvalidNamespace",
    "InvalidPolicy",
    "MissingExtra",
    "NotFound",
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


class PayloadTooLarge(EngramError):
    code = "payload_too_large"
    status = 413


class RateLimited(EngramError):
    code = "rate_limited"
    status = 429


class MissingExtra(EngramError, ImportError):
    """An optional dependency is not installed; the message names the extra."""

    code = "missing_extra"
    status = 500


class ConfigurationError(EngramError):
    code = "configuration_error"
    status = 500


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
