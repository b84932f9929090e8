"""Each remote operation as data: method, path, body, and how to decode the answer.

Built once here and executed by both the blocking :class:`~engramdb.client.Client`
and the :class:`~engramdb.client.AsyncClient`, so the two cannot drift apart.
Arguments are forwarded as given; validation is the server's (the engine's).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from engramdb.audit.checkpoint import Checkpoint
from engramdb.audit.evidence import CheckpointReport, EventProof
from engramdb.client._wire import (
    PrincipalInfo,
    basis_to_wire,
    checkpoint_from_wire,
    checkpoint_report_from_wire,
    conflict_from_wire,
    context_from_wire,
    decision_from_wire,
    encode,
    event_from_wire,
    explanation_from_wire,
    grant_from_wire,
    memory_from_wire,
    predicate_from_wire,
    principal_from_wire,
    proof_from_wire,
    read_from_wire,
    recall_from_wire,
    settings_from_wire,
    verify_from_wire,
)
from engramdb.codec import check_chars, check_json
from engramdb.errors import InvalidInput
from engramdb.lifecycle_values import ErasureReceipt, MaintenanceReport
from engramdb.model import (
    UNSET,
    Conflict,
    Context,
    Decision,
    DecisionExplanation,
    Event,
    Grant,
    Memory,
    MemoryDraft,
    Principal,
    ReadRecord,
    RecallResult,
    VerifyReport,
)
from engramdb.policy.conflicts import NamespaceSettings, PredicateSchema

__all__ = ["UNSET", "Call", "user_json"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One HTTP request and the decoder of its JSON answer."""

    method: str
    path: str
    decode: Callable[[Any], T]
    json: Any = None
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None

    def content(self) -> bytes | None:
        """The JSON body.

        Raises:
            InvalidInput: an argument JSON cannot carry (NaN, a set, bytes, ...).
        """
        if self.json is None:
            return None
        try:
            return json.dumps(self.json, allow_nan=False, separators=(",", ":")).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidInput(f"an argument cannot be sent as JSON ({exc}); pass strings, "
                               "finite numbers, booleans, None, lists and dicts") from exc


def user_json(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with ``metadata`` and ``value`` checked as the engine checks them.

    They are stored as JSON, so what JSON cannot carry exactly (NaN, sets,
    datetimes, non-string keys) is refused here with the engine's own
    ``InvalidMetadata`` instead of being silently converted on the way.
    """
    out = dict(values)
    for name in ("metadata", "value"):
        if out.get(name) is not None:
            out[name] = check_json(out[name], what=name)
    return out


def _seg(value: Any, what: str = "memory id") -> str:
    """A path segment: a non-empty string, percent-encoded.

    A string no database could hold (NUL, an unpaired surrogate) is refused
    here with the engine's error; it cannot even be put into a URL.
    """
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{what} must be a non-empty string", field=what)
    return quote(check_chars(value, what), safe="")


_id = _seg


def _when(value: int | datetime | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _compact(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: encode(v) for k, v in values.items() if v is not None}


def _memories(key: str) -> Callable[[Any], list[Memory]]:
    return lambda body: [memory_from_wire(m) for m in body[key]]


def draft_fields(item: MemoryDraft | Mapping[str, Any]) -> dict[str, Any]:
    """A batch item as the JSON the server takes."""
    if isinstance(item, MemoryDraft):
        values = {f.name: getattr(item, f.name) for f in fields(item)}
        if not values.get("metadata"):
            values.pop("metadata")
        return _compact(user_json(values))
    if isinstance(item, Mapping):
        return {str(k): encode(v) for k, v in user_json(item).items()}
    raise InvalidInput("each batch item must be a MemoryDraft or a dict")


# -- memories ---------------------------------------------------------------------------


def remember(text: str, values: Mapping[str, Any]) -> Call[Memory]:
    return Call("POST", "/v1/memories", memory_from_wire,
                json={"text": text, **_compact(user_json(values))})


def remember_many(drafts: Sequence[MemoryDraft | Mapping[str, Any]]) -> Call[list[Memory]]:
    if isinstance(drafts, (str, bytes)) or not isinstance(drafts, Sequence):
        raise InvalidInput("remember_many takes a list of MemoryDraft or dicts")
    return Call("POST", "/v1/memories/batch", _memories("memories"),
                json={"memories": [draft_fields(d) for d in drafts]})


def update_body(text: Any, expected_version: int | None, idempotency_key: str | None,
                changes: Mapping[str, Any]) -> dict[str, Any]:
    body = {k: encode(v) for k, v in user_json(changes).items()}  # None clears a field
    if text is not UNSET:
        body["text"] = text
    body.update(_compact({"expected_version": expected_version,
                          "idempotency_key": idempotency_key}))
    return body


def update(memory_id: str, body: Mapping[str, Any]) -> Call[Memory]:
    return Call("PATCH", f"/v1/memories/{_id(memory_id)}", memory_from_wire, json=dict(body))


def retract(memory_id: str, body: Mapping[str, Any]) -> Call[Memory]:
    return Call("POST", f"/v1/memories/{_id(memory_id)}/retract", memory_from_wire,
                json=_compact(body))


def get(memory_id: str, as_of: Any, valid_at: Any) -> Call[Memory]:
    params = _compact({"as_of": _when(as_of), "valid_at": _when(valid_at)})
    return Call("GET", f"/v1/memories/{_id(memory_id)}", memory_from_wire, params=params)


def history(memory_id: str, as_of: Any) -> Call[list[Memory]]:
    return Call("GET", f"/v1/memories/{_id(memory_id)}/history", _memories("versions"),
                params=_compact({"as_of": _when(as_of)}))


def recall(query: str, values: Mapping[str, Any]) -> Call[RecallResult]:
    body = {"query": query, **_compact(values)}
    if isinstance(body.get("layers"), str):
        body["layers"] = [body["layers"]]
    return Call("POST", "/v1/recall", recall_from_wire, json=body)


def transaction(ops: Sequence[Mapping[str, Any]]) -> Call[list[Memory]]:
    return Call("POST", "/v1/transactions", _memories("memories"), json={"ops": list(ops)})


def changes_page(since: int, namespace: str, limit: int
                 ) -> Call[tuple[list[Event], int, bool]]:
    def decode(body: Any) -> tuple[list[Event], int, bool]:
        return [event_from_wire(e) for e in body["events"]], int(body["next"]), bool(body["more"])

    return Call("GET", "/v1/changes", decode,
                params={"since": since, "namespace": namespace, "limit": limit})


def recent(namespace: str, k: int, layers: Sequence[str] | str | None) -> Call[list[Memory]]:
    params: dict[str, Any] = {"namespace": namespace, "k": k}
    if layers is not None:
        params["layers"] = [layers] if isinstance(layers, str) else list(layers)
    return Call("GET", "/v1/memories", _memories("memories"), params=params)


def who_read(memory_id: str) -> Call[list[ReadRecord]]:
    return Call("GET", f"/v1/memories/{_id(memory_id)}/readers",
                lambda b: [read_from_wire(r) for r in b["reads"]])


def namespaces(pattern: str) -> Call[list[str]]:
    return Call("GET", "/v1/namespaces", lambda b: list(b["namespaces"]),
                params={"pattern": pattern})


def context(task: str, values: Mapping[str, Any]) -> Call[Context]:
    body = {"task": task, **_compact(values)}
    if isinstance(body.get("layers"), str):
        body["layers"] = [body["layers"]]
    return Call("POST", "/v1/context", context_from_wire, json=body)


def decide(description: str, basis: Any, values: Mapping[str, Any]) -> Call[Decision]:
    body = {"description": description, "basis": basis_to_wire(basis),
            **{k: encode(v) for k, v in values.items() if v is not None}}
    for name in ("outcome", "metadata"):
        if body.get(name) is not None:
            body[name] = check_json(body[name], what=name)
    return Call("POST", "/v1/decisions", decision_from_wire, json=body)


def decision(decision_id: str) -> Call[Decision]:
    return Call("GET", f"/v1/decisions/{_seg(decision_id, 'decision id')}", decision_from_wire)


def explain(decision_id: str) -> Call[DecisionExplanation]:
    return Call("GET", f"/v1/decisions/{_seg(decision_id, 'decision id')}/explain",
                explanation_from_wire)


def stale_decisions(namespace: str) -> Call[list[Decision]]:
    return Call("GET", "/v1/decisions/stale",
                lambda b: [decision_from_wire(d) for d in b["decisions"]],
                params={"namespace": namespace})


def conflicts(namespace: str, status: str | None, limit: int) -> Call[list[Conflict]]:
    return Call("GET", "/v1/conflicts",
                lambda b: [conflict_from_wire(c) for c in b["conflicts"]],
                params={"namespace": namespace, "status": "all" if status is None else status,
                        "limit": limit})


def resolve(conflict_id: str, winner: str | None, reason: str | None) -> Call[Conflict]:
    return Call("POST", f"/v1/conflicts/{_seg(conflict_id, 'conflict id')}/resolve",
                conflict_from_wire, json=_compact({"winner": winner, "reason": reason}))


def knowledge(agent: str, values: Mapping[str, Any]) -> Call[RecallResult | list[Memory]]:
    def decode(body: Any) -> RecallResult | list[Memory]:
        if body.get("recall") is not None:
            return recall_from_wire(body["recall"])
        return [memory_from_wire(m) for m in body.get("memories") or ()]

    body = {"agent": agent, **_compact(values)}
    if isinstance(body.get("layers"), str):
        body["layers"] = [body["layers"]]
    return Call("POST", "/v1/knowledge", decode, json=body)


# -- system -------------------------------------------------------------------------------


def me(api_key: str | None = None) -> Call[PrincipalInfo]:
    def decode(body: Any) -> PrincipalInfo:
        return PrincipalInfo(name=body["name"], roles=tuple(body["roles"]),
                             trust=float(body["trust"]), is_admin=bool(body["is_admin"]))

    headers = {"Authorization": f"Bearer {api_key}"} if api_key is not None else None
    return Call("GET", "/v1/me", decode, headers=headers)


def info() -> Call[dict[str, Any]]:
    return Call("GET", "/v1/info", dict)


def verify() -> Call[VerifyReport]:
    return Call("POST", "/v1/verify", verify_from_wire)


# -- admin ----------------------------------------------------------------------------------


def create_agent(name: str, roles: Sequence[str], trust: float, kind: str) -> Call[str]:
    return Call("POST", "/v1/admin/agents", lambda b: str(b["api_key"]),
                json={"name": name, "roles": encode(roles), "trust": trust, "kind": kind})


def principal(name: str) -> Call[Principal]:
    return Call("GET", f"/v1/admin/agents/{_seg(name, 'principal name')}", principal_from_wire)


def agents() -> Call[list[Principal]]:
    return Call("GET", "/v1/admin/agents",
                lambda b: [principal_from_wire(p) for p in b["agents"]])


def create_key(name: str) -> Call[str]:
    return Call("POST", f"/v1/admin/agents/{_seg(name, 'principal name')}/keys",
                lambda b: str(b["api_key"]))


def revoke_key(api_key_or_id: str) -> Call[None]:
    return Call("POST", "/v1/admin/keys/revoke", lambda _: None, json={"key": api_key_or_id})


def grant(grantee: str, pattern: str, actions: Sequence[str] | str) -> Call[Grant]:
    acts = [actions] if isinstance(actions, str) else encode(actions)
    return Call("POST", "/v1/admin/grants", grant_from_wire,
                json={"grantee": grantee, "pattern": pattern, "actions": acts})


def revoke(grant_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/admin/grants/{_seg(grant_id, 'grant id')}", lambda _: None)


def my_grants() -> Call[list[Grant]]:
    return Call("GET", "/v1/me/grants", lambda b: [grant_from_wire(g) for g in b["grants"]])


def grants(grantee: str | None) -> Call[list[Grant]]:
    return Call("GET", "/v1/admin/grants", lambda b: [grant_from_wire(g) for g in b["grants"]],
                params=_compact({"grantee": grantee}))


# -- trust policy (admin) -------------------------------------------------------------------


def _memory_list(body: Any) -> list[Memory]:
    return [memory_from_wire(m) for m in body["memories"]]


def declare_predicate(pattern: str, predicate: str, values: Mapping[str, Any]
                      ) -> Call[PredicateSchema]:
    return Call("POST", "/v1/admin/predicates", predicate_from_wire,
                json={"pattern": pattern, "predicate": predicate, **_compact(values)})


def undeclare_predicate(pattern: str, predicate: str) -> Call[None]:
    return Call("POST", "/v1/admin/predicates/undeclare", lambda _: None,
                json={"pattern": pattern, "predicate": predicate})


def predicates(namespace: str | None) -> Call[list[PredicateSchema]]:
    return Call("GET", "/v1/admin/predicates",
                lambda b: [predicate_from_wire(p) for p in b["predicates"]],
                params=_compact({"namespace": namespace}))


def schema_for(namespace: str, predicate: str) -> Call[PredicateSchema]:
    return Call("GET", "/v1/admin/predicates/effective", predicate_from_wire,
                params={"namespace": namespace, "predicate": predicate})


def configure_namespace(pattern: str, settings: Mapping[str, Any]) -> Call[dict[str, Any]]:
    # None is sent as null: it removes that setting for the pattern.
    return Call("POST", "/v1/admin/settings", lambda b: dict(b["settings"]),
                json={"pattern": pattern, **{k: encode(v) for k, v in settings.items()}})


def settings_for(namespace: str) -> Call[NamespaceSettings]:
    return Call("GET", "/v1/admin/settings", settings_from_wire, params={"namespace": namespace})


def update_agent(name: str, values: Mapping[str, Any]) -> Call[Principal]:
    return Call("PATCH", f"/v1/admin/agents/{_seg(name, 'principal name')}",
                principal_from_wire, json=_compact(values))


def reactivate_agent(name: str) -> Call[Principal]:
    return Call("POST", f"/v1/admin/agents/{_seg(name, 'principal name')}/reactivate",
                principal_from_wire)


def retire_agent(name: str, policy: str, successor: str | None) -> Call[Principal]:
    return Call("POST", f"/v1/admin/agents/{_seg(name, 'principal name')}/retire",
                principal_from_wire, json=_compact({"policy": policy, "successor": successor}))


def rollback_author(name: str, since: int | datetime | str) -> Call[list[Memory]]:
    return Call("POST", f"/v1/admin/agents/{_seg(name, 'principal name')}/rollback",
                _memory_list, json={"since": encode(since)})


def quarantined(namespace: str, limit: int) -> Call[list[Memory]]:
    return Call("GET", "/v1/admin/quarantine", _memory_list,
                params={"namespace": namespace, "limit": limit})


def approve(memory_id: str, reason: str | None) -> Call[Memory]:
    return Call("POST", f"/v1/admin/quarantine/{_id(memory_id)}/approve", memory_from_wire,
                json=_compact({"reason": reason}))


def set_read_audit(pattern: str, mode: str, rate: float | None) -> Call[None]:
    return Call("POST", "/v1/admin/read-audit", lambda _: None,
                json=_compact({"pattern": pattern, "mode": mode, "rate": rate}))


def read_audit_mode(namespace: str) -> Call[tuple[str, float]]:
    return Call("GET", "/v1/admin/read-audit", lambda b: (str(b["mode"]), float(b["rate"])),
                params={"namespace": namespace})


# -- checkpoints and proofs (admin) -----------------------------------------------------------


def checkpoint() -> Call[Checkpoint]:
    return Call("POST", "/v1/audit/checkpoints", checkpoint_from_wire)


def verify_checkpoint(checkpoint: Mapping[str, Any], public_key_pem: str | None,
                      full: bool) -> Call[CheckpointReport]:
    return Call("POST", "/v1/audit/checkpoints/verify", checkpoint_report_from_wire,
                json=_compact({"checkpoint": dict(checkpoint), "public_key": public_key_pem,
                               "full": full}))


def prove(seq: int, tree_size: int | None) -> Call[EventProof]:
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise InvalidInput("event seq must be an integer", field="seq")
    return Call("GET", f"/v1/audit/proofs/{seq}", proof_from_wire,
                params=_compact({"tree_size": tree_size}))


def checkpoint_body(checkpoint: Any) -> dict[str, Any]:
    """A checkpoint argument as JSON: a :class:`Checkpoint`, its dict, or a file to read here.

    Raises:
        InvalidInput: the file cannot be read or is not a checkpoint.
    """
    if isinstance(checkpoint, Checkpoint):
        return checkpoint.to_dict()
    if isinstance(checkpoint, Mapping):
        return dict(checkpoint)
    if isinstance(checkpoint, (str, os.PathLike)):
        try:
            text = Path(checkpoint).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"cannot read checkpoint file {os.fspath(checkpoint)!r}: "
                               f"{exc.strerror}", field="checkpoint") from exc
        return Checkpoint.from_json(text).to_dict()
    raise InvalidInput("checkpoint must be a Checkpoint, its dict, or the path of its file",
                       field="checkpoint")


def public_key_text(public_key: Any) -> str | None:
    """A public key argument as PEM text: a key object, PEM text or bytes, or a file to read."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from engramdb.audit.checkpoint import load_public_key, public_key_pem

    if public_key is None:
        return None
    if isinstance(public_key, Ed25519PublicKey):
        return public_key_pem(public_key)
    if isinstance(public_key, bytes):
        return public_key.decode("ascii", errors="replace")
    if isinstance(public_key, str) and public_key.lstrip().startswith("-----"):
        return public_key
    if isinstance(public_key, (str, os.PathLike)):
        return public_key_pem(load_public_key(public_key))
    raise InvalidInput("public_key must be an Ed25519 public key, PEM text, or a PEM file path",
                       field="public_key")


# -- lifecycle: erasure, maintenance, policies, legal holds ---------------------------------


def forget(selector: Mapping[str, Any], reason: str) -> Call[ErasureReceipt]:
    return Call("POST", "/v1/forget", ErasureReceipt.from_dict,
                json={**_compact(selector), "reason": reason})


def maintain() -> Call[MaintenanceReport]:
    return Call("POST", "/v1/admin/maintain", MaintenanceReport.from_dict)


def restore(memory_id: str) -> Call[Memory]:
    return Call("POST", f"/v1/admin/memories/{_id(memory_id)}/restore", memory_from_wire)


def set_lifecycle(pattern: str, fields: Mapping[str, Any]) -> Call[dict[str, Any]]:
    return Call("PUT", "/v1/admin/lifecycle", dict,
                json={"pattern": pattern, **{k: _duration(v) for k, v in fields.items()}})


def lifecycle(namespace: str, layer: str | None) -> Call[dict[str, Any] | None]:
    return Call("GET", "/v1/admin/lifecycle", lambda b: b["policy"],
                params=_compact({"namespace": namespace, "layer": layer}))


def legal_hold(pattern: str, on: bool, reason: str) -> Call[dict[str, Any]]:
    return Call("POST", "/v1/admin/legal-holds", dict,
                json={"pattern": pattern, "on": on, "reason": reason})


def _duration(value: Any) -> Any:
    # A timedelta travels as seconds; strings and numbers as given (the engine checks).
    return value.total_seconds() if isinstance(value, timedelta) else value
