"""The MCP tools of the memory layers: working blocks, episodes, tools, procedures.

Registered by :func:`engramdb.mcp._tools.register_tools` with the same
conventions: each tool is one call on the bound session, arguments left out
are not sent, and the engine's typed errors are what the model sees.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from mcp.types import CallToolResult
from pydantic import Field

from engramdb.mcp._wire import tool_result

if TYPE_CHECKING:
    from mcp.types import ToolAnnotations

    from engramdb.api import MemoryAPI

__all__ = ["register_layer_tools"]

Result = Annotated[CallToolResult, dict[str, Any]]

Session_ = Annotated[str | None, Field(
    description="A session id (any string you use for one conversation or task run). "
                "Omit for agent-wide.")]
Namespace = Annotated[str | None, Field(
    description="Slash path where it lives; you need the grant there. Omit for your "
                "private namespace 'agents/<your name>'.")]
Glob = Annotated[str, Field(
    description="Namespace glob, e.g. 'team/**'; '**' (default) is everything you may read.")]
ExpectedVersion = Annotated[int | None, Field(
    description="Compare-and-swap: the version you last read (0: create only). On a "
                "mismatch the call fails with version_conflict and changes nothing.")]
Time = Annotated[str | None, Field(description="An ISO-8601 time such as 2026-01-31T12:00:00Z.")]


def _given(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def register_layer_tools(tool: Callable[[Any], Callable[[Any], Any]],
                         acting: Callable[[], MemoryAPI], read_only: ToolAnnotations,
                         writes: ToolAnnotations) -> None:
    """Register the layer tools through ``tool`` (the registering decorator factory)."""

    def memories(found: list[Any]) -> dict[str, Any]:
        return {"memories": found}

    def done(call: Callable[[], None]) -> dict[str, Any]:
        call()
        return {"ok": True}

    @tool(writes)
    def pin(
        name: Annotated[str, Field(description="The block: 'persona', 'goal', 'plan' ...")],
        text: Annotated[str, Field(description="The block's whole new text.")],
        session: Session_ = None,
        namespace: Namespace = None,
        limit_tokens: Annotated[int | None, Field(
            description="Refuse texts over this many tokens (block_too_large).")] = None,
        expected_version: ExpectedVersion = None,
    ) -> Result:
        """Pin a named working block (goal, plan, persona) into every context you build.

        Creates the block or writes a new version of it. Returns the block's memory
        (its `version` is what to pass as expected_version next time). Errors:
        version_conflict (someone changed it since you read it: re-read, redo, retry),
        block_too_large (over its token limit; nothing is cut silently).
        """
        return tool_result(lambda: acting().pin(name, text, **_given(
            session=session, namespace=namespace, limit_tokens=limit_tokens,
            expected_version=expected_version)))

    @tool(writes)
    def unpin(
        name: Annotated[str, Field(description="The block to remove.")],
        session: Session_ = None,
        namespace: Namespace = None,
        expected_version: ExpectedVersion = None,
    ) -> Result:
        """Remove a working block so it stops appearing in your contexts.

        The block's memory gets a retracted version; its history keeps every earlier
        text. Errors: not_found (no such block for this session), version_conflict.
        """
        return tool_result(lambda: acting().unpin(name, **_given(
            session=session, namespace=namespace, expected_version=expected_version)))

    @tool(read_only)
    def blocks(session: Session_ = None, namespace: Annotated[str | None, Field(
            description="Glob of whose blocks to list; default your own.")] = None
               ) -> Result:
        """List the working blocks in force: your agent-wide ones, plus the session's.

        Returns `memories`: each block's memory, its name in metadata.block and its
        current `version` (pass it as expected_version when you edit the block).
        """
        return tool_result(lambda: memories(acting().blocks(session, **_given(
            namespace=namespace))))

    @tool(writes)
    def episode(
        session: Annotated[str, Field(description="The session it belongs to.")],
        role: Annotated[str, Field(description="'user', 'assistant', 'tool', 'observation' ...")],
        content: Annotated[str, Field(description="What was said, done or seen.")],
        at: Time = None,
        metadata: Annotated[dict[str, Any] | None, Field(
            description="Extra JSON facts (the key 'role' is reserved).")] = None,
        namespace: Namespace = None,
    ) -> Result:
        """Record one interaction of a session: a message, a tool call or an observation.

        Episodes are kept in the order they happened (`at`, default now) and can be
        listed, summarised and turned into facts later. Returns the episode's memory.
        """
        return tool_result(lambda: acting().episode(session, role, content, **_given(
            at=at, metadata=metadata, namespace=namespace)))

    @tool(read_only)
    def episodes(
        session: Session_ = None,
        agent: Annotated[str | None, Field(description="Only this agent's episodes.")] = None,
        since: Time = None,
        until: Time = None,
        limit: Annotated[int, Field(description="At most this many (the newest).")] = 100,
        namespace: Glob = "**",
    ) -> Result:
        """List what happened: the episodes you may read, in the order they happened.

        Give `session` for one session, or `agent` with `since`/`until` for what one
        agent did in a period. Returns `memories`, oldest first (the newest `limit`).
        """
        return tool_result(lambda: memories(acting().episodes(session, limit=limit,
                                                              namespace=namespace, **_given(
            agent=agent, since=since, until=until))))

    @tool(writes)
    def summarize(
        session: Annotated[str, Field(description="The session to summarise.")],
        namespace: Namespace = None,
        method: Annotated[str, Field(
            description="'extractive' (no model), 'llm', or 'auto' (the LLM if configured).",
            json_schema_extra={"enum": ["auto", "extractive", "llm"]})] = "auto",
    ) -> Result:
        """Write a summary memory of a session, linked to the episodes it covers.

        Without an LLM the summary is extractive (the session's most central sentences,
        each with its speaker). Returns the summary memory. Errors: not_found (no
        episodes you may read), llm_not_configured (method 'llm'), upstream_error.
        """
        return tool_result(lambda: acting().summarize(session, method=method,
                                                      **_given(namespace=namespace)))

    @tool(writes)
    def extract(
        session: Annotated[str, Field(description="The session to extract facts from.")],
        namespace: Namespace = None,
    ) -> Result:
        """Turn a session's episodes into structured facts (subject, predicate, value).

        Needs an LLM configured on the server (llm_not_configured otherwise, saying what
        to set). Facts go through the normal conflict detection and are linked to the
        episodes they came from. Returns `memories`.
        """
        return tool_result(lambda: memories(acting().extract(session, **_given(
            namespace=namespace))))

    @tool(writes)
    def tool_outcome(
        tool: Annotated[str, Field(description="The tool you called, e.g. 'web_search'.")],
        ok: Annotated[bool, Field(description="Did the call succeed?")],
        latency_ms: Annotated[float | None, Field(description="How long it took.")] = None,
        error: Annotated[str | None, Field(description="The error, e.g. '429'.")] = None,
        metadata: Annotated[dict[str, Any] | None, Field(description="Extra JSON.")] = None,
        namespace: Namespace = None,
    ) -> Result:
        """Report how a tool call went, so you and other agents learn which tools are reliable.

        Cheap: call it after every tool call. The outcomes feed tool_stats, the tool
        notes in context ('web_search: 4 of the last 10 calls failed') and recommend.
        """
        return tool_result(lambda: done(lambda: acting().tool_outcome(tool, ok, **_given(
            latency_ms=latency_ms, error=error, metadata=metadata, namespace=namespace))))

    @tool(writes)
    def tool_outcomes(
        outcomes: Annotated[list[dict[str, Any]], Field(
            description="Outcomes, each {tool, ok, latency_ms?, error?, metadata?, "
                        "namespace?} as for tool_outcome.")],
    ) -> Result:
        """Report many tool calls' outcomes at once (all or none), e.g. at the end of a step.

        One write for the whole list; cheaper than one tool_outcome per call. Returns
        `recorded`, how many were recorded.
        """
        return tool_result(lambda: {"recorded": acting().tool_outcomes(outcomes)})

    @tool(read_only)
    def tool_stats(
        tool: Annotated[str | None, Field(description="One tool; omit for all.")] = None,
        since: Time = None,
        agent: Annotated[str | None, Field(description="Only this agent's outcomes.")] = None,
        namespace: Glob = "**",
    ) -> Result:
        """How reliable tools have been: calls, success rate and a recency-weighted rate.

        Also latency p50/p95 and the most common errors, over the outcomes you may read
        (yours, or fleet-wide where you hold read grants). Returns `tools`.
        """
        return tool_result(lambda: {"tools": acting().tool_stats(tool, namespace=namespace,
                                                                 **_given(since=since,
                                                                          agent=agent))})

    @tool(writes)
    def procedure(
        name: Annotated[str, Field(description="The procedure's name, e.g. 'triage'.")],
        text: Annotated[str, Field(description="The playbook or prompt, whole.")],
        namespace: Namespace = None,
        expected_version: ExpectedVersion = None,
    ) -> Result:
        """Write a new version of a named procedure: a playbook or a prompt snippet.

        Every call adds a version; report how each version did with procedure_outcome
        so recommend can prefer the one that works. Errors: version_conflict.
        """
        return tool_result(lambda: acting().procedure(name, text, **_given(
            namespace=namespace, expected_version=expected_version)))

    @tool(writes)
    def procedure_outcome(
        name: Annotated[str, Field(description="The procedure used.")],
        version: Annotated[int, Field(description="Its version you followed.")],
        ok: Annotated[bool, Field(description="Did it work?")],
        namespace: Namespace = None,
    ) -> Result:
        """Report whether following one version of a procedure worked.

        The outcome is counted in the procedure's per-version statistics (procedures)
        and in recommend. Errors: not_found (no such procedure or version).
        """
        return tool_result(lambda: done(lambda: acting().procedure_outcome(
            name, version, ok, **_given(namespace=namespace))))

    @tool(read_only)
    def procedures(namespace: Glob = "**") -> Result:
        """List the procedures you may read, each with success statistics per version.

        Returns `procedures`: name, namespace, current version and text, and for every
        version its uses, successes and success rate from the outcomes you may read.
        """
        return tool_result(lambda: {"procedures": acting().procedures(namespace)})

    @tool(read_only)
    def recommend(
        task: Annotated[str, Field(description="What you are about to do.")],
        k: Annotated[int, Field(description="How many recommendations.")] = 5,
        namespace: Glob = "**",
    ) -> Result:
        """Which procedures and tools are most likely to succeed at a task, with evidence.

        Ranks by relevance to the task times the expected success rate. Returns
        `recommendations`: kind, name, version, score and the counts behind it.
        """
        return tool_result(lambda: {"recommendations": acting().recommend(
            task, k, namespace=namespace)})
