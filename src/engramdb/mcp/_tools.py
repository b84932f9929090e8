"""The MCP tools: one per engine operation, each a thin call on the bound Session.

A tool's docstring is the description the model reads, and each argument's
``Field`` description lands in the tool's JSON input schema; both are written
for a model deciding which tool to call and how. A tool passes its arguments
to the engine as they came (the engine takes receipts in their JSON form and
ISO-8601 times); the engine validates, checks permissions and raises.
Arguments left out are not sent, so engine defaults apply.

Argument types are deliberately wide where the engine has a stronger rule
(``layer`` is a string whose schema lists the allowed values): the engine's
own error, with its stable code and a message that says what to do, is what
the model sees, the same as through every other door.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from engramdb.mcp._layer_tools import register_layer_tools
from engramdb.mcp._wire import tool_result
from engramdb.model import LAYERS

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from engramdb.api import MemoryAPI

__all__ = ["register_tools"]

Result = Annotated[CallToolResult, dict[str, Any]]
ToolFn = Callable[..., Result]

# -- argument types shared by several tools ------------------------------------------------

MemoryId = Annotated[str, Field(
    description="The memory's id, exactly as returned by remember, recall, get or history "
                "(e.g. '0197a3c2-...').",
)]
ExpectedVersion = Annotated[int | None, Field(
    description="Optimistic concurrency: the version you last read. The write happens only if "
                "the memory is still at this version; otherwise it fails with version_conflict "
                "and changes nothing. Omit to write whatever the current version is.",
)]
IdempotencyKey = Annotated[str | None, Field(
    description="Any unique string for this request. Retrying with the same key returns the "
                "first result instead of writing twice; reusing it for a different request "
                "fails with idempotency_key_reused.",
)]
AsOf = Annotated[int | str | None, Field(
    description="Transaction time to read at: a transaction number (the receipt's as_of) or an "
                "ISO-8601 time such as '2026-01-31T12:00:00Z'. Shows what the database knew "
                "then. Omit for now.",
)]
ValidAt = Annotated[str | None, Field(
    description="Valid time, ISO-8601: only facts that held in the world at that moment. "
                "Omit for facts valid now or open-ended.",
)]
Time = Annotated[str | None, Field(description="An ISO-8601 time such as 2026-01-31T12:00:00Z.")]
Layer = Annotated[str, Field(
    description="Memory layer: 'working' (scratch for the current task), 'episodic' (what "
                "happened), 'semantic' (facts and beliefs; the default), 'procedural' (how to "
                "do things: playbooks, prompts).",
    json_schema_extra={"enum": list(LAYERS)},
)]
Metadata = Annotated[dict[str, Any] | None, Field(
    description="Free-form JSON object stored with the memory (tags, urls, ids). "
                "Recall can filter on its keys.",
)]
Unit = Annotated[float | None, Field(description="A number from 0 to 1.")]
NamespaceGlob = Annotated[str, Field(
    description="Namespace glob to search: 'acme/research' (that namespace), 'acme/*' (one "
                "level below), 'acme/**' (acme and everything below), '**' (everything you may "
                "read; the default). Only namespaces you have read access to are ever searched.",
)]


def _given(**fields: Any) -> dict[str, Any]:
    """The keyword arguments the caller actually supplied (None means 'not given')."""
    return {k: v for k, v in fields.items() if v is not None}


def register_tools(server: MCPServer, acting: Callable[[], MemoryAPI]) -> list[str]:
    """Register every tool on ``server``; each call acts as ``acting()``.

    Args:
        server: the MCP server to add tools to.
        acting: returns the session of the bound principal (re-checked per call).

    Returns:
        The names of the registered tools.
    """
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    writes = ToolAnnotations(read_only_hint=False, destructive_hint=False,
                             idempotent_hint=False, open_world_hint=False)
    registered: list[str] = []

    def tool(annotations: ToolAnnotations) -> Callable[[ToolFn], ToolFn]:
        def add(fn: ToolFn) -> ToolFn:
            server.add_tool(fn, description=inspect.cleandoc(fn.__doc__ or ""),
                            annotations=annotations, structured_output=True)
            registered.append(fn.__name__)
            return fn
        return add

    @tool(writes)
    def remember(
        text: Annotated[str, Field(
            description="What to remember, as a self-contained statement another agent can "
                        "understand later without this conversation (max 32k characters).",
        )],
        namespace: Annotated[str | None, Field(
            description="Where to store it, a slash path such as 'acme/research/market'. "
                        "You need the write grant there. Omit to use your private namespace "
                        "'agents/<your name>'.",
        )] = None,
        layer: Layer = "semantic",
        subject: Annotated[str | None, Field(
            description="Structured assertion: what the fact is about, e.g. 'company:x' or "
                        "'user:42'. Give subject, predicate and value together for facts "
                        "that can be contradicted or superseded later.",
        )] = None,
        predicate: Annotated[str | None, Field(
            description="Structured assertion: the property, e.g. 'outlook' or 'email'.",
        )] = None,
        value: Annotated[Any, Field(
            description="Structured assertion: the value (any JSON), e.g. 'positive' or 42.",
        )] = None,
        metadata: Metadata = None,
        importance: Annotated[float | None, Field(
            description="0 to 1, how much this should weigh in recall (default 0.5).",
        )] = None,
        confidence: Annotated[float | None, Field(
            description="0 to 1, how sure you are (default 1.0).",
        )] = None,
        source: Annotated[str | None, Field(
            description="Where the information came from: a url, a document, a tool name.",
        )] = None,
        session: Annotated[str | None, Field(
            description="Id of the conversation or episode this came from, if any.",
        )] = None,
        valid_from: Annotated[str | None, Field(
            description="ISO-8601 time from which the fact holds in the world (default: now).",
        )] = None,
        valid_to: Annotated[str | None, Field(
            description="ISO-8601 time at which the fact stops holding (default: open-ended).",
        )] = None,
        expires_at: Annotated[str | None, Field(
            description="ISO-8601 time after which maintenance may drop this memory "
                        "(for working memory).",
        )] = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Result:
        """Store a new memory and get it back with its id.

        Use it for anything worth keeping beyond this conversation: observations,
        facts, beliefs, decisions' inputs, lessons, procedures. For a fact that can
        later change or be contradicted, also give a structured assertion
        (subject, predicate, value), e.g. subject='company:x', predicate='outlook',
        value='positive': that is how the database detects contradictions with what
        other agents wrote. Returns the stored memory: id, version (1), namespace,
        author (you; set by the database), timestamps, and `conflicts` listing any
        contradiction the write detected. Errors: permission_denied without the
        write grant; invalid_layer, invalid_namespace, invalid_input for bad
        arguments (nothing is stored).
        """
        return tool_result(lambda: acting().remember(text, layer=layer, **_given(
            namespace=namespace, subject=subject, predicate=predicate, value=value,
            metadata=metadata, importance=importance, confidence=confidence, source=source,
            session=session, valid_from=valid_from, valid_to=valid_to, expires_at=expires_at,
            idempotency_key=idempotency_key)))

    @tool(read_only)
    def recall(
        query: Annotated[str, Field(
            description="What you are looking for, in natural language or keywords.",
        )],
        namespace: NamespaceGlob = "**",
        k: Annotated[int, Field(description="Maximum number of hits, 1 to 1000.")] = 10,
        layers: Annotated[list[str] | None, Field(
            description="Only these layers: any of 'working', 'episodic', 'semantic', "
                        "'procedural'. Omit for all.",
        )] = None,
        as_of: AsOf = None,
        valid_at: ValidAt = None,
        filters: Annotated[dict[str, Any] | None, Field(
            description="Exact filters: 'author' (principal name), 'subject', 'predicate', "
                        "'session', 'metadata' (object of key: value equalities), "
                        "'recorded_after', 'recorded_before', 'valid_after', 'valid_before' "
                        "(ISO-8601), 'statuses' (e.g. ['active','retracted']), "
                        "'include_superseded' (true/false).",
        )] = None,
    ) -> Result:
        """Search memories by meaning and keywords; returns hits and a receipt.

        Use it before answering or deciding anything that past knowledge could
        inform. Search is hybrid (full text and vector similarity, fused with
        recency and importance) and covers only namespaces you may read. Returns
        `hits` best first, each with `memory` (id, version, text, namespace,
        author, assertion, times, status), `score`, `why` (the parts of the
        score), and `contested` / `rivals` when another memory contradicts it;
        and `receipt`: the exact memory versions returned. Pass that receipt
        object unchanged as `basis` to `decide` to record what a decision rests
        on. Use `as_of` to see what was known at an earlier time, `valid_at` for
        what held in the world at a moment. No hits is a normal answer.
        """
        def run() -> dict[str, Any]:
            r = acting().recall(query, namespace=namespace, k=k, **_given(
                layers=layers, as_of=as_of, valid_at=valid_at, filters=filters))
            return {"hits": list(r.hits), "receipt": r.receipt}
        return tool_result(run)

    @tool(read_only)
    def get(id: MemoryId, as_of: AsOf = None, valid_at: ValidAt = None) -> Result:
        """Read one memory by id: the current version, or the one current at `as_of`.

        Use it to re-read a memory before updating it (you need its `version` for
        `expected_version`) or to follow an id from a receipt or conflict. Returns
        the memory. An id you may not read answers exactly like an unknown id:
        not_found.
        """
        return tool_result(lambda: acting().get(id, **_given(as_of=as_of, valid_at=valid_at)))

    @tool(writes)
    def update(
        id: MemoryId,
        expected_version: ExpectedVersion = None,
        text: Annotated[str | None, Field(description="New text (re-embedded).")] = None,
        metadata: Metadata = None,
        importance: Unit = None,
        confidence: Unit = None,
        value: Annotated[Any, Field(
            description="New value of the structured assertion (any JSON).",
        )] = None,
        valid_from: Time = None,
        valid_to: Time = None,
        layer: Annotated[str | None, Field(
            description="Move to another layer: 'working', 'episodic', 'semantic' or "
                        "'procedural'.",
            json_schema_extra={"enum": list(LAYERS)},
        )] = None,
        source: Annotated[str | None, Field(description="New source.")] = None,
        expires_at: Time = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Result:
        """Change a memory by writing a new version; the old version stays in history.

        Pass only the fields to change (namespace, subject and predicate are fixed
        for a memory's life; to move a fact, remember a new one and retract the
        old). Always pass `expected_version` = the version you read: if another
        agent changed the memory since, the call fails with version_conflict
        (details.current_version says what is there) and nothing is written;
        then `get` it again, reapply your change and retry. Returns the new
        version. Errors: not_found (unknown or unreadable id), permission_denied
        (no write grant), invalid_input (e.g. a retracted memory).
        """
        return tool_result(lambda: acting().update(id, **_given(
            expected_version=expected_version, text=text, metadata=metadata,
            importance=importance, confidence=confidence, value=value, valid_from=valid_from,
            valid_to=valid_to, layer=layer, source=source, expires_at=expires_at,
            idempotency_key=idempotency_key)))

    @tool(ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False,
                          open_world_hint=False))
    def retract(
        id: MemoryId,
        reason: Annotated[str | None, Field(
            description="Why it is withdrawn (kept in the log; max 2000 characters).",
        )] = None,
        expected_version: ExpectedVersion = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Result:
        """Withdraw a memory that is wrong or no longer true.

        Writes a new version with status 'retracted' that ends the fact's
        validity; recall stops returning it, history keeps every version, and
        decisions that rested on it become stale. Give a reason. Use `update`
        instead when the fact merely changed value. Returns the retracted version.
        """
        return tool_result(lambda: acting().retract(id, **_given(
            reason=reason, expected_version=expected_version,
            idempotency_key=idempotency_key)))

    @tool(ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False,
                          open_world_hint=False))
    def forget(
        reason: Annotated[str, Field(
            description="Why it must be erased, e.g. 'GDPR request from user 42' (required; "
                        "kept in the log with who and when, max 2000 characters).",
        )],
        id: Annotated[str | None, Field(description="Erase this one memory.")] = None,
        subject: Annotated[str | None, Field(
            description="Erase every memory about this subject (e.g. 'user:42').")] = None,
        author: Annotated[str | None, Field(
            description="Erase every memory this principal wrote.")] = None,
        namespace: Annotated[str | None, Field(
            description="Erase every memory in namespaces matching this glob.")] = None,
    ) -> Result:
        """Erase memories for good (right to be forgotten); irreversible.

        Unlike retract, the content disappears from every version, search index
        and file, and summaries derived from it are erased too; the log keeps
        only that an erasure happened (who, selector, reason, time). Needs the
        'erase' grant on every namespace touched; give at least one selector.
        Returns the erasure receipt (ids, versions, counts per place). Errors:
        invalid_input (no selector or reason), not_found, permission_denied
        (no erase grant), legal_hold (a legal hold covers the memories).
        """
        return tool_result(lambda: acting().forget(reason=reason, **_given(
            id=id, subject=subject, author=author, namespace=namespace)))

    @tool(read_only)
    def history(id: MemoryId, as_of: AsOf = None) -> Result:
        """Every version of a memory, oldest first, with who wrote each and when.

        Use it to see how a fact evolved, who changed it, or what it said before
        a retraction. Returns `versions` (each a full memory with version,
        author, tx_from/tx_to and status). An id you may not read answers
        exactly like an unknown id: not_found.
        """
        return tool_result(lambda: {"versions": acting().history(id, **_given(as_of=as_of))})

    @tool(read_only)
    def namespaces(
        pattern: Annotated[str, Field(
            description="Namespace glob to list under, e.g. 'acme/**'. Default '**' (all).",
        )] = "**",
    ) -> Result:
        """List the namespaces you may read that hold memories.

        Use it to discover where knowledge lives before recalling or remembering.
        Namespaces you have no read grant for never appear. Returns `namespaces`,
        sorted.
        """
        return tool_result(lambda: {"namespaces": acting().namespaces(pattern)})

    @tool(read_only)
    def my_grants() -> Result:
        """List the grants in force for you: what you may do, and where.

        Use it to learn which namespaces you may read or write before you try.
        Returns `grants`, oldest first, each with `pattern` (a namespace glob),
        `actions` and `grantee` (you, or `role:<name>` for a role you hold).
        """
        return tool_result(lambda: {"grants": [
            {"id": g.id, "grantee": g.grantee, "pattern": g.pattern, "actions": list(g.actions),
             "tx_from": g.tx_from} for g in acting().my_grants()]})

    @tool(read_only)
    def context(
        task: Annotated[str, Field(
            description="The task you are about to work on, in a sentence or two; it is "
                        "the search query.",
        )],
        budget_tokens: Annotated[int, Field(
            description="Maximum size of the packed text in tokens (cl100k), 1 to 1,000,000.",
        )] = 2000,
        namespace: NamespaceGlob = "**",
        layers: Annotated[list[str] | None, Field(
            description="Only these layers: any of 'working', 'episodic', 'semantic', "
                        "'procedural'. Omit for all.",
        )] = None,
        as_of: AsOf = None,
        valid_at: ValidAt = None,
        session: Annotated[str | None, Field(
            description="Your session id: adds its pinned blocks and recent episodes.",
        )] = None,
        quotas: Annotated[dict[str, int] | None, Field(
            description="Token caps per layer, e.g. {'episodic': 500}.",
        )] = None,
    ) -> Result:
        """Get a working context for a task from all four memory layers, within a budget.

        Use it at the start of a task instead of several recalls. In order: your
        pinned blocks, relevant procedures and notes on the tools the task names,
        facts (contested ones marked with their rival), and the session's recent
        episodes, one numbered line each, in at most `budget_tokens`. Returns
        `text`, `parts` (each line's layer, score, tokens), `left_out` (and why),
        and `receipt`: the exact versions in the text. Pass that receipt unchanged
        as `basis` to `decide` when you decide something from this context.
        """
        return tool_result(lambda: acting().context(task, budget_tokens, namespace=namespace,
                                                    **_given(layers=layers, as_of=as_of,
                                                             valid_at=valid_at,
                                                             session=session,
                                                             quotas=quotas)))

    @tool(writes)
    def decide(
        description: Annotated[str, Field(
            description="What was decided, in a sentence, e.g. 'approve trade 1042'.",
        )],
        basis: Annotated[dict[str, Any] | list[Any], Field(
            description="What the decision rests on: the `receipt` object returned by recall "
                        "or context, passed unchanged ({'items': [{'id': ..., 'version': ...}], "
                        "'as_of': N, ...}), or a list of {'id': ..., 'version': ...} objects. "
                        "Every version must exist and be readable by you.",
        )],
        outcome: Annotated[dict[str, Any] | None, Field(
            description="The decision's result as a JSON object, e.g. {'approved': true, "
                        "'amount': 1000}.",
        )] = None,
        metadata: Metadata = None,
        namespace: Annotated[str | None, Field(
            description="Where the decision is filed (you need write access there; readers "
                        "of it may explain it). Default: your private namespace.",
        )] = None,
    ) -> Result:
        """Record a decision together with exactly which memory versions it was based on.

        Call it when you act on recalled knowledge (approve, reject, choose,
        answer) so the decision can be audited later: recall (or context) first,
        then pass its `receipt` unchanged as `basis`. If any of those memories is
        later updated, retracted or erased, the decision becomes stale, and
        `explain` shows what changed. Returns the decision: `id` (keep it for
        explain), `basis`, `outcome`, `tx`, `stale_tx` (null while the basis is
        current). Errors: not_found if a basis version does not exist or you may
        not read it; permission_denied without write access to `namespace`.
        """
        return tool_result(lambda: acting().decide(description, basis=basis, **_given(
            outcome=outcome, metadata=metadata, namespace=namespace)))

    @tool(read_only)
    def explain(
        decision_id: Annotated[str, Field(description="The decision's `id`, as returned by "
                                                      "decide.")],
    ) -> Result:
        """Explain a recorded decision: what it rested on, what changed since, is it stale.

        Use it before relying on an earlier decision (yours or another agent's
        that you may read). Returns `decision`, `stale` (true when any basis
        memory has changed since), and `basis`: for each memory version the
        decision used, `then` (as it was at decision time), `now` (its current
        version), `later` (versions written since, with authors), and flags
        `superseded`, `retracted`, `erased`, `contested` (open conflicts),
        `stale`. Basis memories you may not read show only `visible: false`.
        """
        return tool_result(lambda: acting().explain(decision_id))

    @tool(read_only)
    def conflicts(
        namespace: NamespaceGlob = "**",
        status: Annotated[str | None, Field(
            description="'open' (the default: still needs a resolution), 'resolved', or null "
                        "for both.",
            json_schema_extra={"enum": ["open", "resolved", None]},
        )] = "open",
        limit: Annotated[int, Field(description="At most this many, 1 to 10000.")] = 100,
    ) -> Result:
        """List conflicts between memories (the conflict inbox), oldest first.

        A conflict is data, not an error: two assertions that contradict each other
        (same subject and predicate, different values, overlapping validity), or
        free-text statements a judge found contradictory. Only namespaces you may
        read are listed. Each conflict has `id`, `kind`, `namespace`, `memories`
        (the id and version of each party), `detector` and `reason` (why it was
        flagged), `policy` and `outcome` (what the namespace's policy did),
        `status`, and after resolution `winner`, `resolution`, `resolved_by`.
        Use it to find contradictions to settle with `resolve`, or to understand
        why recall marked a hit `contested`. Returns `conflicts`.
        """
        return tool_result(lambda: {"conflicts": acting().conflicts(
            namespace, status=status, limit=limit)})

    @tool(writes)
    def resolve(
        conflict_id: Annotated[str, Field(description="The conflict's `id`, from conflicts.")],
        winner: Annotated[str | None, Field(
            description="Id of the memory that is right; every other memory in the conflict "
                        "gets a new version with status 'rejected'. Omit to acknowledge the "
                        "conflict without changing any memory.",
        )] = None,
        reason: Annotated[str | None, Field(
            description="Why this resolution (kept in the log; max 2000 characters).",
        )] = None,
    ) -> Result:
        """Settle a conflict by naming the memory that is right, and why.

        Needs the admin grant on the conflict's namespace. The winner stands
        (restored if a policy had rejected or superseded it); the other memories
        are rejected, and stay in history. The resolution is a logged event, and
        decisions based on rejected memories become stale. Returns the conflict
        with status 'resolved'. Errors: not_found (unknown or unreadable conflict),
        permission_denied (no admin grant), invalid_input (the winner is not one
        of the conflict's memories).
        """
        return tool_result(lambda: acting().resolve(conflict_id, **_given(
            winner=winner, reason=reason)))

    register_layer_tools(tool, acting, read_only, writes)
    return registered
