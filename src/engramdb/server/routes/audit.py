"""``/v1/audit``: signed checkpoints and inclusion proofs of the log. Admin keys only.

``POST /v1/audit/checkpoints`` is ``db.checkpoint``: the server signs with the
Ed25519 key configured at serve time (``ServerSettings.checkpoint_key``), or,
for a SQLite file, with ``<db file>.audit-key.pem`` next to it, created on
first use exactly as ``engram init`` creates it. ``POST
/v1/audit/checkpoints/verify`` is ``db.verify_checkpoint`` and ``GET
/v1/audit/proofs/{seq}`` is ``db.prove``.

The engine's methods also accept file paths; over HTTP only values are
accepted (a checkpoint object, PEM text), so a caller can never make the
server read one of its files.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path as FilePath
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, Path, Query
from pydantic import Field

from engramdb.audit.checkpoint import Checkpoint, load_private_key, public_key_from_pem
from engramdb.audit.evidence import default_key_path, ensure_signing_key
from engramdb.engine import Database
from engramdb.errors import ConfigurationError, InvalidInput
from engramdb.server.deps import AdminDep, DbDep, SettingsDep
from engramdb.server.errors import error_responses
from engramdb.server.schemas import (
    MAX_INT,
    CheckpointOut,
    CheckpointReportOut,
    EventProofOut,
    Request,
)
from engramdb.server.settings import ServerSettings

__all__ = ["router", "signing_key"]

log = logging.getLogger("engramdb.server")

router = APIRouter(prefix="/v1/audit", tags=["audit"])

_ERRORS = (400, 401, 403, 429, 503)
_key_lock = threading.Lock()


def signing_key(db: Database, settings: ServerSettings) -> Ed25519PrivateKey:
    """The private key this server signs checkpoints with.

    Raises:
        ConfigurationError: no key is configured and the database is not a
            file, or the configured key cannot be read.
    """
    path: str | FilePath | None = settings.checkpoint_key
    try:
        if path is None:
            file = db.info().path
            if file is None:
                raise ConfigurationError(
                    "this server has no checkpoint signing key: start it with "
                    "ServerSettings(checkpoint_key=PATH) (a key made by `engram audit keygen`)")
            path = default_key_path(file)
            with _key_lock:  # created on first use, as `engram init` creates it
                ensure_signing_key(path)
        return load_private_key(path)
    except InvalidInput as exc:
        log.error("checkpoint signing key unusable: %s", exc.message)
        raise ConfigurationError(
            "the server's checkpoint signing key cannot be used (see the server log); "
            "check ServerSettings.checkpoint_key") from exc


@router.post("/checkpoints", response_model=CheckpointOut, summary="Sign a checkpoint",
             responses=error_responses(*_ERRORS, 413))
def checkpoint(_: AdminDep, db: DbDep, settings: SettingsDep) -> dict[str, Any]:
    """Verify the whole log, then sign its size, head and Merkle root with the server's key.

    Keep the answer outside the database (it is the file ``engram audit
    checkpoint`` writes): a later rewrite of the log no longer matches it.
    503 ``integrity_error`` if the log does not verify.
    """
    return db.checkpoint(private_key=signing_key(db, settings)).to_dict()


class VerifyCheckpointRequest(Request):
    checkpoint: dict[str, Any] = Field(description="A checkpoint as `POST /v1/audit/checkpoints` "
                                       "returned it (the checkpoint file's JSON).")
    public_key: str | None = Field(
        None, description="The signer's published public key (PEM text). Without it the key "
        "embedded in the checkpoint is used and `signature.trusted` is false.")
    full: bool = Field(True, description="Also verify the current log (chain, replay, state).")


@router.post("/checkpoints/verify", response_model=CheckpointReportOut,
             summary="Check the log against a checkpoint",
             responses=error_responses(*_ERRORS, 413))
def verify_checkpoint(body: VerifyCheckpointRequest, _: AdminDep, db: DbDep) -> dict[str, Any]:
    """Whether the log still extends a signed checkpoint: the signature verifies, the
    first ``tree_size`` events still give the signed root and head, and a consistency
    proof ties that root to the current one. A failed check is ``ok: false`` with the
    ``problem``, not an error; a malformed checkpoint or key is 400."""
    cp = Checkpoint.from_dict(body.checkpoint)
    key = None
    if body.public_key is not None:
        if not body.public_key.lstrip().startswith("-----BEGIN"):
            raise InvalidInput("public_key must be PEM text (-----BEGIN PUBLIC KEY----- ...), "
                               "as `engram audit keygen` writes it", field="public_key")
        key = public_key_from_pem(body.public_key)
    return db.verify_checkpoint(cp, key, full=body.full).to_dict()


@router.get("/proofs/{seq}", response_model=EventProofOut,
            summary="Prove an event is in the log", responses=error_responses(*_ERRORS))
def prove(seq: Annotated[int, Path(ge=1, le=MAX_INT, description="The event's seq.")],
          _: AdminDep, db: DbDep,
          tree_size: Annotated[int | None, Query(ge=1, le=MAX_INT, description=(
              "Prove against the first `tree_size` events (a checkpoint's `tree_size`); "
              "default the whole log."))] = None) -> dict[str, Any]:
    """Event ``seq``'s envelope (never its payload) and its RFC 9162 inclusion proof; check
    it offline with ``engramdb.audit.verify_event_proof`` and a checkpoint of that size."""
    return db.prove(seq, tree_size=tree_size).to_dict()
