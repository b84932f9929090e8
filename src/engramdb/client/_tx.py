"""Remote transactions: writes buffered in the client, sent as one atomic batch.

Inside ``with client.transaction() as tx:`` each write is recorded, not sent;
when the block ends without an exception the whole batch goes to
``POST /v1/transactions``, where the engine applies it in one transaction (all
or nothing). An exception inside the block sends nothing. Each write returns a
:class:`PendingMemory` that becomes its :class:`~engramdb.model.Memory` on
commit; its ``id`` may be passed to later writes of the same transaction
("remember, then update it").

Differences from an embedded transaction, both inherent in batching: an error
in one write surfaces when the block ends (``err.details["op"]`` is the
write's index), and ``tx.get`` is not available (read before or after).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engramdb.client._calls import UNSET, update_body, user_json
from engramdb.client._wire import encode
from engramdb.errors import InvalidInput
from engramdb.model import Memory

__all__ = ["PendingMemory", "RemoteTransaction"]


class _Ref(str):
    """The ``id`` of a memory written earlier in the same, uncommitted transaction."""

    __slots__ = ("op",)
    op: int

    def __new__(cls, op: int) -> _Ref:
        ref = super().__new__(cls, f"$ref:{op}")
        ref.op = op
        return ref


class PendingMemory:
    """The result of a write in a remote transaction; a :class:`Memory` once committed.

    Before the commit only ``id`` is available (as a reference other writes
    of the same transaction accept); afterwards every ``Memory`` attribute is.
    """

    __slots__ = ("_index", "_memory")

    def __init__(self, index: int) -> None:
        self._index = index
        self._memory: Memory | None = None

    @property
    def memory(self) -> Memory:
        """The committed :class:`Memory`.

        Raises:
            InvalidInput: the transaction has not committed (yet).
        """
        if self._memory is None:
            raise InvalidInput("this write's memory exists only once its remote transaction "
                               "commits, at the end of the 'with' block")
        return self._memory

    @property
    def id(self) -> str:
        return self._memory.id if self._memory is not None else _Ref(self._index)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.memory, name)

    def __repr__(self) -> str:
        if self._memory is None:
            return f"<PendingMemory op={self._index} (uncommitted)>"
        return f"<PendingMemory {self._memory!r}>"


class RemoteTransaction:
    """The write API inside ``with client.transaction() as tx:`` (see module docs)."""

    def __init__(self) -> None:
        self._ops: list[dict[str, Any]] = []
        self._pending: list[PendingMemory] = []
        self._closed = False

    def _add(self, op: dict[str, Any]) -> PendingMemory:
        if self._closed:
            raise InvalidInput("this transaction has ended; open a new one")
        pending = PendingMemory(len(self._ops))
        self._ops.append(op)
        self._pending.append(pending)
        return pending

    def _target(self, memory_id: Any) -> dict[str, Any]:
        if isinstance(memory_id, PendingMemory):
            memory_id = memory_id.id
        if isinstance(memory_id, _Ref):
            return {"ref": memory_id.op}
        return {"id": memory_id}

    def remember(self, text: str, **fields: Any) -> PendingMemory:
        """Queue a :meth:`Client.remember`; same arguments."""
        values = {k: encode(v) for k, v in user_json(fields).items() if v is not None}
        return self._add({"op": "remember", "text": text, **values})

    def update(self, memory_id: str | PendingMemory, *, text: Any = UNSET,
               expected_version: int | None = None, idempotency_key: str | None = None,
               **fields: Any) -> PendingMemory:
        """Queue a :meth:`Client.update`; same arguments."""
        body = update_body(text, expected_version, idempotency_key, fields)
        return self._add({"op": "update", **self._target(memory_id), **body})

    def retract(self, memory_id: str | PendingMemory, *, reason: str | None = None,
                expected_version: int | None = None,
                idempotency_key: str | None = None) -> PendingMemory:
        """Queue a :meth:`Client.retract`; same arguments."""
        extra = {"reason": reason, "expected_version": expected_version,
                 "idempotency_key": idempotency_key}
        return self._add({"op": "retract", **self._target(memory_id),
                          **{k: v for k, v in extra.items() if v is not None}})

    def get(self, memory_id: str) -> Memory:
        """Not available remotely: the transaction's writes are not sent until it ends.

        Raises:
            InvalidInput: always; read before the transaction or after it.
        """
        raise InvalidInput("reads inside a remote transaction are not supported: its writes "
                           "are sent when the 'with' block ends; read before or after it")

    def _commit_ops(self) -> Sequence[Mapping[str, Any]]:
        self._closed = True
        return self._ops

    def _resolve(self, memories: list[Memory]) -> None:
        for pending, memory in zip(self._pending, memories, strict=True):
            pending._memory = memory
