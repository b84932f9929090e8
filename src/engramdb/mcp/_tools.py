"""The MCP tools of the memory calls: one per declared call, each a call on the session.

Each tool is derived from its call's declaration (:mod:`engramdb.mcp._args`):
its arguments are the declared keywords. What is written here is what the
model reads: the tool's description (for a model deciding which tool to call
and how) and each argument's description, plus how the result is shaped. A
tool passes its arguments to the engine as they came (the engine takes
receipts in their JSON form and ISO-8601 times); the engine validates, checks
permissions and raises. Arguments left out are not sent, so engine defaults
apply. The layer tools are in :mod:`engramdb.mcp._layer_tools`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engramdb.mcp._args import (
    ERASE,
    READ,
    WRITE,
    AsOf,
    ExpectedVersion,
    IdempotencyKey,
    Layer,
    Layers,
    MemoryId,
    Metadata,
    NamespaceGlob,
    Time,
    ToolSpec,
    Unit,
    ValidAt,
    described,
    register,
    under,
)
from engramdb.mcp._layer_tools import LAYER_TOOLS
from engramdb.model import LAYERS

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from engramdb.api import MemoryAPI

__all__ = ["MEMORY_TOOLS", "register_tools"]


def _hits(result: Any) -> dict[str, Any]:
    return {"hits": list(result.hits), "receipt": result.receipt}


def _grants(grants: list[Any]) -> dict[str, Any]:
    return {"grants": [{"id": g.id, "grantee": g.grantee, "pattern": g.pattern,
                        "actions": list(g.actions), "tx_from": g.tx_from} for g in grants]}


MEMORY_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "remember", WRITE,
        doc="""Store a new memory and get it back with its id.

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
        """,
        args={
            "text": described("What to remember, as a self-contained statement another agent "
                              "can understand later without this conversation (max 32k "
                              "characters)."),
            "namespace": described("Where to store it, a slash path such as "
                                   "'acme/research/market'. You need the write grant there. "
                                   "Omit to use your private namespace 'agents/<your name>'."),
            "layer": Layer,
            "subject": described("Structured assertion: what the fact is about, e.g. 'company:x' "
                                 "or 'user:42'. Give subject, predicate and value together for "
                                 "facts that can be contradicted or superseded later."),
            "predicate": described("Structured assertion: the property, e.g. 'outlook' or "
                                   "'email'."),
            "value": described("Structured assertion: the value (any JSON), e.g. 'positive' or "
                               "42."),
            "metadata": Metadata,
            "importance": described("0 to 1, how much this should weigh in recall (default 0.5).",
                                    float | None),
            "confidence": described("0 to 1, how sure you are (default 1.0).", float | None),
            "source": described("Where the information came from: a url, a document, a tool "
                                "name."),
            "session": described("Id of the conversation or episode this came from, if any."),
            "valid_from": described("ISO-8601 time from which the fact holds in the world "
                                    "(default: now)."),
            "valid_to": described("ISO-8601 time at which the fact stops holding (default: "
                                  "open-ended)."),
            "expires_at": described("ISO-8601 time after which maintenance may drop this memory "
                                    "(for working memory)."),
            "idempotency_key": IdempotencyKey,
        },
    ),
    ToolSpec(
        "recall", READ,
        doc="""Search memories by meaning and keywords; returns hits and a receipt.

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
        """,
        args={
            "query": described("What you are looking for, in natural language or keywords."),
            "namespace": NamespaceGlob,
            "k": described("Maximum number of hits, 1 to 1000."),
            "layers": Layers,
            "as_of": AsOf,
            "valid_at": ValidAt,
            "filters": described(
                "Exact filters: 'author' (principal name), 'subject', 'predicate', 'session', "
                "'metadata' (object of key: value equalities), 'recorded_after', "
                "'recorded_before', 'valid_after', 'valid_before' (ISO-8601), 'statuses' (e.g. "
                "['active','retracted']), 'include_superseded' (true/false)."),
        },
        shape=_hits,
    ),
    ToolSpec(
        "get", READ,
        doc="""Read one memory by id: the current version, or the one current at `as_of`.

        Use it to re-read a memory before updating it (you need its `version` for
        `expected_version`) or to follow an id from a receipt or conflict. Returns
        the memory. An id you may not read answers exactly like an unknown id:
        not_found.
        """,
        args={
            "memory_id": MemoryId, "as_of": AsOf, "valid_at": ValidAt,
        },
    ),
    ToolSpec(
        "update", WRITE,
        doc="""Change a memory by writing a new version; the old version stays in history.

        Pass only the fields to change (namespace, subject and predicate are fixed
        for a memory's life; to move a fact, remember a new one and retract the
        old). Always pass `expected_version` = the version you read: if another
        agent changed the memory since, the call fails with version_conflict
        (details.current_version says what is there) and nothing is written;
        then `get` it again, reapply your change and retry. Returns the new
        version. Errors: not_found (unknown or unreadable id), permission_denied
        (no write grant), invalid_input (e.g. a retracted memory).
        """,
        args={
            "memory_id": MemoryId,
            "expected_version": ExpectedVersion,
            "text": described("New text (re-embedded).", str | None),
            "metadata": Metadata,
            "importance": Unit,
            "confidence": Unit,
            "value": described("New value of the structured assertion (any JSON)."),
            "valid_from": Time,
            "valid_to": Time,
            "layer": described("Move to another layer: 'working', 'episodic', 'semantic' or "
                               "'procedural'.", str | None, enum=list(LAYERS)),
            "source": described("New source."),
            "expires_at": Time,
            "idempotency_key": IdempotencyKey,
        },
    ),
    ToolSpec(
        "retract", ERASE,
        doc="""Withdraw a memory that is wrong or no longer true.

        Writes a new version with status 'retracted' that ends the fact's
        validity; recall stops returning it, history keeps every version, and
        decisions that rested on it become stale. Give a reason. Use `update`
        instead when the fact merely changed value. Returns the retracted version.
        """,
        args={
            "memory_id": MemoryId,
            "reason": described("Why it is withdrawn (kept in the log; max 2000 characters)."),
            "expected_version": ExpectedVersion,
            "idempotency_key": IdempotencyKey,
        },
    ),
    ToolSpec(
        "forget", ERASE,
        doc="""Erase memories for good (right to be forgotten); irreversible.

        Unlike retract, the content disappears from every version, search index
        and file, and summaries derived from it are erased too; the log keeps
        only that an erasure happened (who, selector, reason, time). Needs the
        'erase' grant on every namespace touched; give at least one selector.
        Returns the erasure receipt (ids, versions, counts per place). Errors:
        invalid_input (no selector or reason), not_found, permission_denied
        (no erase grant), legal_hold (a legal hold covers the memories).
        """,
        args={
            "reason": described("Why it must be erased, e.g. 'GDPR request from user 42' "
                                "(required; kept in the log with who and when, max 2000 "
                                "characters)."),
            "id": described("Erase this one memory."),
            "subject": described("Erase every memory about this subject (e.g. 'user:42')."),
            "author": described("Erase every memory this principal wrote."),
            "namespace": described("Erase every memory in namespaces matching this glob."),
        },
    ),
    ToolSpec(
        "history", READ,
        doc="""Every version of a memory, oldest first, with who wrote each and when.

        Use it to see how a fact evolved, who changed it, or what it said before
        a retraction. Returns `versions` (each a full memory with version,
        author, tx_from/tx_to and status). An id you may not read answers
        exactly like an unknown id: not_found.
        """,
        args={
            "memory_id": MemoryId, "as_of": AsOf,
        },
        shape=under("versions"),
    ),
    ToolSpec(
        "namespaces", READ,
        doc="""List the namespaces you may read that hold memories.

        Use it to discover where knowledge lives before recalling or remembering.
        Namespaces you have no read grant for never appear. Returns `namespaces`,
        sorted.
        """,
        args={
            "pattern": described("Namespace glob to list under, e.g. 'acme/**'. Default '**' "
                                 "(all)."),
        },
        shape=under("namespaces"),
    ),
    ToolSpec(
        "my_grants", READ,
        doc="""List the grants in force for you: what you may do, and where.

        Use it to learn which namespaces you may read or write before you try.
        Returns `grants`, oldest first, each with `pattern` (a namespace glob),
        `actions` and `grantee` (you, or `role:<name>` for a role you hold).
        """,
        shape=_grants,
    ),
    ToolSpec(
        "context", READ,
        doc="""Get a working context for a task from all four memory layers, within a budget.

        Use it at the start of a task instead of several recalls. In order: your
        pinned blocks, relevant procedures and notes on the tools the task names,
        facts (contested ones marked with their rival), and the session's recent
        episodes, one numbered line each, in at most `budget_tokens`. Returns
        `text`, `parts` (each line's layer, score, tokens), `left_out` (and why),
        and `receipt`: the exact versions in the text. Pass that receipt unchanged
        as `basis` to `decide` when you decide something from this context.
        """,
        args={
            "task": described("The task you are about to work on, in a sentence or two; it is "
                              "the search query."),
            "budget_tokens": described("Maximum size of the packed text in tokens (cl100k), 1 to "
                                       "1,000,000."),
            "namespace": NamespaceGlob,
            "layers": Layers,
            "as_of": AsOf,
            "valid_at": ValidAt,
            "session": described("Your session id: adds its pinned blocks and recent episodes."),
            "quotas": described("Token caps per layer, e.g. {'episodic': 500}."),
        },
    ),
    ToolSpec(
        "decide", WRITE,
        doc="""Record a decision together with exactly which memory versions it was based on.

        Call it when you act on recalled knowledge (approve, reject, choose,
        answer) so the decision can be audited later: recall (or context) first,
        then pass its `receipt` unchanged as `basis`. If any of those memories is
        later updated, retracted or erased, the decision becomes stale, and
        `explain` shows what changed. Returns the decision: `id` (keep it for
        explain), `basis`, `outcome`, `tx`, `stale_tx` (null while the basis is
        current). Errors: not_found if a basis version does not exist or you may
        not read it; permission_denied without write access to `namespace`.
        """,
        args={
            "description": described("What was decided, in a sentence, e.g. 'approve trade "
                                     "1042'."),
            "basis": described(
                "What the decision rests on: the `receipt` object returned by recall or context, "
                "passed unchanged ({'items': [{'id': ..., 'version': ...}], 'as_of': N, ...}), or "
                "a list of {'id': ..., 'version': ...} objects. Every version must exist and be "
                "readable by you.", dict[str, Any] | list[Any]),
            "outcome": described("The decision's result as a JSON object, e.g. {'approved': true, "
                                 "'amount': 1000}."),
            "metadata": Metadata,
            "namespace": described("Where the decision is filed (you need write access there; "
                                   "readers of it may explain it). Default: your private "
                                   "namespace."),
        },
    ),
    ToolSpec(
        "explain", READ,
        doc="""Explain a recorded decision: what it rested on, what changed since, is it stale.

        Use it before relying on an earlier decision (yours or another agent's
        that you may read). Returns `decision`, `stale` (true when any basis
        memory has changed since), and `basis`: for each memory version the
        decision used, `then` (as it was at decision time), `now` (its current
        version), `later` (versions written since, with authors), and flags
        `superseded`, `retracted`, `erased`, `contested` (open conflicts),
        `stale`. Basis memories you may not read show only `visible: false`.
        """,
        args={
            "decision_id": described("The decision's `id`, as returned by decide."),
        },
    ),
    ToolSpec(
        "conflicts", READ,
        doc="""List conflicts between memories (the conflict inbox), oldest first.

        A conflict is data, not an error: two assertions that contradict each other
        (same subject and predicate, different values, overlapping validity), or
        free-text statements a judge found contradictory. Only namespaces you may
        read are listed. Each conflict has `id`, `kind`, `namespace`, `memories`
        (the id and version of each party), `detector` and `reason` (why it was
        flagged), `policy` and `outcome` (what the namespace's policy did),
        `status`, and after resolution `winner`, `resolution`, `resolved_by`.
        Use it to find contradictions to settle with `resolve`, or to understand
        why recall marked a hit `contested`. Returns `conflicts`.
        """,
        args={
            "namespace": NamespaceGlob,
            "status": described("'open' (the default: still needs a resolution), 'resolved', or "
                                "null for both.", str | None, enum=["open", "resolved", None]),
            "limit": described("At most this many, 1 to 10000."),
        },
        shape=under("conflicts"),
        keep_none=("status",),
    ),
    ToolSpec(
        "resolve", WRITE,
        doc="""Settle a conflict by naming the memory that is right, and why.

        Needs the admin grant on the conflict's namespace. The winner stands
        (restored if a policy had rejected or superseded it); the other memories
        are rejected, and stay in history. The resolution is a logged event, and
        decisions based on rejected memories become stale. Returns the conflict
        with status 'resolved'. Errors: not_found (unknown or unreadable conflict),
        permission_denied (no admin grant), invalid_input (the winner is not one
        of the conflict's memories).
        """,
        args={
            "conflict_id": described("The conflict's `id`, from conflicts."),
            "winner": described("Id of the memory that is right; every other memory in the "
                                "conflict gets a new version with status 'rejected'. Omit to "
                                "acknowledge the conflict without changing any memory."),
            "reason": described("Why this resolution (kept in the log; max 2000 characters)."),
        },
    ),
)


def register_tools(server: MCPServer, acting: Callable[[], MemoryAPI]) -> list[str]:
    """Register every tool on ``server``; each call acts as ``acting()``.

    Args:
        server: the MCP server to add tools to.
        acting: returns the session of the bound principal (re-checked per call).

    Returns:
        The names of the registered tools.
    """
    return register(server, acting, (*MEMORY_TOOLS, *LAYER_TOOLS))
