"""The MCP tools of the memory layers: working blocks, episodes, tools, procedures.

Registered by :func:`engramdb.mcp._tools.register_tools` with the same
conventions (:mod:`engramdb.mcp._args`): each tool is derived from its declared
call, arguments left out are not sent, and the engine's typed errors are what
the model sees.
"""

from __future__ import annotations

from engramdb.mcp._args import (
    READ,
    WRITE,
    CompareAndSwap,
    Durable,
    Glob,
    Namespace,
    Session,
    Time,
    ToolSpec,
    described,
    done,
    memories,
    under,
)

__all__ = ["LAYER_TOOLS"]

LAYER_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "pin", WRITE,
        doc="""Pin a named working block (goal, plan, persona) into every context you build.

        Creates the block or writes a new version of it. Returns the block's memory
        (its `version` is what to pass as expected_version next time). Errors:
        version_conflict (someone changed it since you read it: re-read, redo, retry),
        block_too_large (over its token limit; nothing is cut silently).
        """,
        args={
            "name": described("The block: 'persona', 'goal', 'plan' ..."),
            "text": described("The block's whole new text."),
            "session": Session,
            "namespace": Namespace,
            "limit_tokens": described("Refuse texts over this many tokens (block_too_large)."),
            "expected_version": CompareAndSwap,
        },
    ),
    ToolSpec(
        "unpin", WRITE,
        doc="""Remove a working block so it stops appearing in your contexts.

        The block's memory gets a retracted version; its history keeps every earlier
        text. Errors: not_found (no such block for this session), version_conflict.
        """,
        args={
            "name": described("The block to remove."),
            "session": Session,
            "namespace": Namespace,
            "expected_version": CompareAndSwap,
        },
    ),
    ToolSpec(
        "blocks", READ,
        doc="""List the working blocks in force: your agent-wide ones, plus the session's.

        Returns `memories`: each block's memory, its name in metadata.block and its
        current `version` (pass it as expected_version when you edit the block).
        """,
        args={
            "session": Session,
            "namespace": described("Glob of whose blocks to list; default your own."),
        },
        shape=memories,
    ),
    ToolSpec(
        "episode", WRITE,
        doc="""Record one interaction of a session: a message, a tool call or an observation.

        Episodes are kept in the order they happened (`at`, default now) and can be
        listed, summarised and turned into facts later. Returns the episode's memory.
        """,
        args={
            "session": described("The session it belongs to."),
            "role": described("'user', 'assistant', 'tool', 'observation' ..."),
            "content": described("What was said, done or seen."),
            "at": Time,
            "metadata": described("Extra JSON facts (the key 'role' is reserved)."),
            "namespace": Namespace,
        },
    ),
    ToolSpec(
        "episodes", READ,
        doc="""List what happened: the episodes you may read, in the order they happened.

        Give `session` for one session, or `agent` with `since`/`until` for what one
        agent did in a period. Returns `memories`, oldest first (the newest `limit`).
        """,
        args={
            "session": Session,
            "agent": described("Only this agent's episodes."),
            "since": Time,
            "until": Time,
            "limit": described("At most this many (the newest)."),
            "namespace": Glob,
        },
        shape=memories,
    ),
    ToolSpec(
        "summarize", WRITE,
        doc="""Write a summary memory of a session, linked to the episodes it covers.

        Without an LLM the summary is extractive (the session's most central sentences,
        each with its speaker). Returns the summary memory. Errors: not_found (no
        episodes you may read), llm_not_configured (method 'llm'), upstream_error.
        """,
        args={
            "session": described("The session to summarise."),
            "namespace": Namespace,
            "method": described("'extractive' (no model), 'llm', or 'auto' (the LLM if "
                                "configured).", enum=["auto", "extractive", "llm"]),
        },
    ),
    ToolSpec(
        "extract", WRITE,
        doc="""Turn a session's episodes into structured facts (subject, predicate, value).

        Needs an LLM configured on the server (llm_not_configured otherwise, saying what
        to set). Facts go through the normal conflict detection and are linked to the
        episodes they came from. Returns `memories`.
        """,
        args={
            "session": described("The session to extract facts from."),
            "namespace": Namespace,
        },
        shape=memories,
    ),
    ToolSpec(
        "tool_outcome", WRITE,
        doc="""Report how a tool call went, so you and other agents learn which tools are reliable.

        Cheap: call it after every tool call. The outcomes feed tool_stats, the tool
        notes in context ('web_search: 4 of the last 10 calls failed') and recommend.
        """,
        args={
            "tool": described("The tool you called, e.g. 'web_search'."),
            "ok": described("Did the call succeed?"),
            "latency_ms": described("How long it took."),
            "error": described("The error, e.g. '429'."),
            "metadata": described("Extra JSON."),
            "namespace": Namespace,
            "durable": Durable,
        },
        shape=done,
    ),
    ToolSpec(
        "tool_outcomes", WRITE,
        doc="""Report many tool calls' outcomes at once (all or none), e.g. at the end of a step.

        One write for the whole list; cheaper than one tool_outcome per call. Returns
        `recorded`, how many were recorded.
        """,
        args={
            "outcomes": described("Outcomes, each {tool, ok, latency_ms?, error?, metadata?, "
                                  "namespace?} as for tool_outcome."),
        },
        shape=under("recorded"),
    ),
    ToolSpec(
        "tool_stats", READ,
        doc="""How reliable tools have been: calls, success rate and a recency-weighted rate.

        Also latency p50/p95 and the most common errors, over the outcomes you may read
        (yours, or fleet-wide where you hold read grants). Returns `tools`.
        """,
        args={
            "tool": described("One tool; omit for all."),
            "since": Time,
            "agent": described("Only this agent's outcomes."),
            "namespace": Glob,
        },
        shape=under("tools"),
    ),
    ToolSpec(
        "procedure", WRITE,
        doc="""Write a new version of a named procedure: a playbook or a prompt snippet.

        Every call adds a version; report how each version did with procedure_outcome
        so recommend can prefer the one that works. Errors: version_conflict.
        """,
        args={
            "name": described("The procedure's name, e.g. 'triage'."),
            "text": described("The playbook or prompt, whole."),
            "namespace": Namespace,
            "expected_version": CompareAndSwap,
        },
    ),
    ToolSpec(
        "procedure_outcome", WRITE,
        doc="""Report whether following one version of a procedure worked.

        The outcome is counted in the procedure's per-version statistics (procedures)
        and in recommend. Errors: not_found (no such procedure or version).
        """,
        args={
            "name": described("The procedure used."),
            "version": described("Its version you followed."),
            "ok": described("Did it work?"),
            "namespace": Namespace,
            "durable": Durable,
        },
        shape=done,
    ),
    ToolSpec(
        "procedures", READ,
        doc="""List the procedures you may read, each with success statistics per version.

        Returns `procedures`: name, namespace, current version and text, and for every
        version its uses, successes and success rate from the outcomes you may read.
        """,
        args={
            "namespace": Glob,
        },
        shape=under("procedures"),
    ),
    ToolSpec(
        "recommend", READ,
        doc="""Which procedures and tools are most likely to succeed at a task, with evidence.

        Ranks by relevance to the task times the expected success rate. Returns
        `recommendations`: kind, name, version, score and the counts behind it.
        """,
        args={
            "task": described("What you are about to do."),
            "k": described("How many recommendations."),
            "namespace": Glob,
        },
        shape=under("recommendations"),
    ),
)
