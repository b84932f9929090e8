"""``/v1/transactions``: a batch of writes applied all-or-nothing.

The remote client buffers the writes made inside ``with client.transaction()``
and posts them here when the block ends; the server replays them inside one
engine ``Session.transaction()``, so they commit together or not at all. An
op may name the memory an earlier op of the same batch produced with
``ref`` (its index), which is how "remember, then update it" works in one
remote transaction.

The batch is bounded by ``ServerSettings.max_batch`` (413 beyond it) before the
engine's write lock is taken, and the texts of its ``remember`` and
``update`` ops are embedded in one batch before that too: an engine
transaction embeds each write while it holds the lock, which a large remote
batch would otherwise hold for the whole model run. The engine bounds one
transaction's work under the lock as well (``EngineConfig.max_tx_ops``,
``max_tx_text_chars``: 413 ``payload_too_large`` beyond them).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import Field

from engramdb.engine import Database
from engramdb.engine.rows import check_text
from engramdb.errors import EngramError, InvalidInput, PayloadTooLarge
from engramdb.model import Memory
from engramdb.server.deps import DbDep, SessionDep, SettingsDep
from engramdb.server.errors import error_responses
from engramdb.server.requests import RememberRequest, UpdateRequest
from engramdb.server.schemas import KEY, Count, MemoryList, Request, documented

__all__ = ["TransactionRequest", "router"]

router = APIRouter(prefix="/v1", tags=["transactions"])

Ref = Annotated[Count, Field(description="Index of an earlier op in this transaction whose "
                           "memory this op targets (instead of `id`).")]


class RememberOp(RememberRequest):
    op: Literal["remember"]


class _Targeted(Request):
    id: str | None = Field(None, description="The memory to change.")
    ref: Ref | None = None


class UpdateOp(_Targeted, UpdateRequest):
    op: Literal["update"]


class RetractOp(_Targeted):
    op: Literal["retract"]
    reason: str | None = documented({"maxLength": 2000}, default=None)
    expected_version: Count | None = None
    idempotency_key: str | None = documented(KEY, default=None)


Op = Annotated[RememberOp | UpdateOp | RetractOp, Field(discriminator="op")]


class TransactionRequest(Request):
    ops: list[Op] = Field(description="Writes in order: `remember`, `update`, `retract`.")


def _embed_ahead(db: Database, ops: list[Any]) -> dict[int, list[float]]:
    """Embeddings of the ``remember`` ops' texts, computed in one batch before the lock.

    Texts the engine would refuse are left out: the op then fails in the
    transaction with the engine's own error, exactly as without this step.
    """
    if db.embedder is None:
        return {}
    todo: list[tuple[int, str]] = []
    for i, op in enumerate(ops):
        # The body models are derived from engramdb.api (server/requests.py): read by name.
        text = getattr(op, "text", None)
        if isinstance(op, RememberOp | UpdateOp) and getattr(op, "embedding", None) is None \
                and text:
            try:
                todo.append((i, check_text(text, db.config)))
            except EngramError:
                continue
    if not todo:
        return {}
    vectors = db.embedder.embed([text for _, text in todo])
    return {i: [float(x) for x in v] for (i, _), v in zip(todo, vectors, strict=True)}


def _target(op: UpdateOp | RetractOp, index: int, results: list[Memory]) -> str:
    if (op.id is None) == (op.ref is None):
        raise InvalidInput(f"op {index} ({op.op}) needs exactly one of 'id' or 'ref'",
                           op=index)
    if op.ref is not None:
        if op.ref >= index:
            raise InvalidInput(f"op {index} refers to op {op.ref}; a ref must name an "
                               "earlier op of the same transaction", op=index)
        return results[op.ref].id
    return str(op.id)


@router.post("/transactions", response_model=MemoryList,
             summary="Apply writes atomically",
             responses=error_responses(400, 401, 403, 404, 409, 413, 429, 503))
def transaction(body: TransactionRequest, session: SessionDep, db: DbDep,
                settings: SettingsDep) -> dict[str, Any]:
    """Apply every op in one engine transaction; on any error none is applied.

    The response lists the memory each op produced, in op order. An error's
    ``details.op`` names the op that failed.
    """
    if len(body.ops) > settings.max_batch:
        raise PayloadTooLarge(
            f"transaction of {len(body.ops)} ops is over the server's limit of "
            f"{settings.max_batch}; split it", limit=settings.max_batch, size=len(body.ops))
    vectors = _embed_ahead(db, body.ops)
    results: list[Memory] = []
    with session.transaction() as tx:
        for i, op in enumerate(body.ops):
            try:
                fields = op.model_dump(exclude_unset=True, exclude={"op", "id", "ref"})
                if isinstance(op, RememberOp):
                    if i in vectors:
                        fields["embedding"] = vectors[i]
                    results.append(tx.remember(fields.pop("text"), **fields))
                elif isinstance(op, UpdateOp):
                    if i in vectors:
                        fields["embedding"] = vectors[i]
                    results.append(tx.update(_target(op, i, results), **fields))
                else:
                    results.append(tx.retract(_target(op, i, results), **fields))
            except EngramError as exc:
                exc.details.setdefault("op", i)
                raise
    return {"memories": [m.to_dict() for m in results]}
