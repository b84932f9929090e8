"""Commands of the memory layers: blocks, episodes, summaries, tools, procedures, context.

Each is one engine call; ``--json`` prints the engine's value as JSON, otherwise
one readable line per item.
"""

from __future__ import annotations

import json
from typing import Any

import click

from engramdb.cli.app import Env, cli, pass_env
from engramdb.cli.memories import parse_as_of
from engramdb.model import LAYERS, Memory

__all__: list[str] = []

OK = click.Choice(["ok", "fail"])


def _meta(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON ({exc.msg})", param_hint="--metadata") from exc
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--metadata")
    return data


def _memory_line(m: Memory) -> str:
    label = m.metadata.get("block") or m.metadata.get("procedure") or m.metadata.get("role")
    head = f"{m.id} v{m.version} {m.namespace}"
    return f"{head} [{label}] {m.text}" if label else f"{head} {m.text}"


def _memories(env: Env, found: list[Memory]) -> None:
    if env.json:
        env.emit_json({"memories": [m.to_dict() for m in found]})
        return
    for m in found:
        env.say(_memory_line(m))
    if not found:
        env.note("none")


def _memory(env: Env, m: Memory) -> None:
    if env.json:
        env.emit_json(m.to_dict())
    else:
        env.say(_memory_line(m))


@cli.command()
@click.argument("name")
@click.argument("text")
@click.option("--session", default=None, help="Pin for this session only.")
@click.option("-n", "--namespace", default=None, help="Default agents/<name>.")
@click.option("--limit-tokens", type=int, default=None, help="Refuse texts over this size.")
@click.option("--expected-version", type=int, default=None,
              help="Compare-and-swap: 0 creates only, N updates only version N.")
@pass_env
def pin(env: Env, name: str, text: str, session: str | None, namespace: str | None,
        limit_tokens: int | None, expected_version: int | None) -> None:
    """Create or update the working block NAME with TEXT."""
    _memory(env, env.session().pin(name, text, session=session, namespace=namespace,
                                   limit_tokens=limit_tokens,
                                   expected_version=expected_version))


@cli.command()
@click.argument("name")
@click.option("--session", default=None)
@click.option("-n", "--namespace", default=None)
@click.option("--expected-version", type=int, default=None)
@pass_env
def unpin(env: Env, name: str, session: str | None, namespace: str | None,
          expected_version: int | None) -> None:
    """Remove the working block NAME (history keeps it)."""
    _memory(env, env.session().unpin(name, session=session, namespace=namespace,
                                     expected_version=expected_version))


@cli.command()
@click.option("--session", default=None, help="Include this session's blocks.")
@click.option("-n", "--namespace", default=None, help="Glob; default agents/<name>.")
@pass_env
def blocks(env: Env, session: str | None, namespace: str | None) -> None:
    """List the working blocks in force."""
    _memories(env, env.session().blocks(session, namespace=namespace))


@cli.command()
@click.argument("session")
@click.argument("role")
@click.argument("content")
@click.option("--at", default=None, help="When it happened (ISO-8601; default now).")
@click.option("--metadata", default=None, help="JSON object.")
@click.option("-n", "--namespace", default=None)
@pass_env
def episode(env: Env, session: str, role: str, content: str, at: str | None,
            metadata: str | None, namespace: str | None) -> None:
    """Append an episode (ROLE said or did CONTENT) to SESSION."""
    _memory(env, env.session().episode(session, role, content, at=at, metadata=_meta(metadata),
                                       namespace=namespace))


@cli.command()
@click.option("--session", default=None)
@click.option("--agent", default=None, help="Only this agent's episodes.")
@click.option("--since", default=None, help="ISO-8601 time.")
@click.option("--until", default=None, help="ISO-8601 time.")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("-n", "--namespace", default="**", show_default=True)
@pass_env
def episodes(env: Env, session: str | None, agent: str | None, since: str | None,
             until: str | None, limit: int, namespace: str) -> None:
    """List episodes in the order they happened."""
    _memories(env, env.session().episodes(session, agent=agent, since=since, until=until,
                                          limit=limit, namespace=namespace))


@cli.command()
@click.argument("session")
@click.option("-n", "--namespace", default=None)
@click.option("--method", type=click.Choice(["auto", "extractive", "llm"]), default="auto",
              show_default=True)
@pass_env
def summarize(env: Env, session: str, namespace: str | None, method: str) -> None:
    """Write a summary memory of SESSION linked to its episodes."""
    _memory(env, env.session().summarize(session, namespace=namespace, method=method))


@cli.command()
@click.argument("session")
@click.option("-n", "--namespace", default=None)
@pass_env
def extract(env: Env, session: str, namespace: str | None) -> None:
    """Turn SESSION's episodes into facts (needs ENGRAM_LLM_URL and ENGRAM_LLM_MODEL)."""
    _memories(env, env.session().extract(session, namespace=namespace))


@cli.command("tool-outcome")
@click.argument("tool")
@click.argument("outcome", type=OK)
@click.option("--latency-ms", type=float, default=None)
@click.option("--error", default=None)
@click.option("--metadata", default=None, help="JSON object.")
@click.option("-n", "--namespace", default=None)
@click.option("--durable", is_flag=True, help="Wait until it is on disk (see docs/layers.md).")
@pass_env
def tool_outcome(env: Env, tool: str, outcome: str, latency_ms: float | None,
                 error: str | None, metadata: str | None, namespace: str | None,
                 durable: bool) -> None:
    """Record that a call of TOOL went ok or failed."""
    env.session().tool_outcome(tool, outcome == "ok", latency_ms=latency_ms, error=error,
                               metadata=_meta(metadata), namespace=namespace, durable=durable)
    if env.json:
        env.emit_json({"ok": True})
    else:
        env.note(f"recorded: {tool} {outcome}")


@cli.command("tool-outcomes")
@click.argument("source", type=click.File("r", encoding="utf-8"), default="-")
@pass_env
def tool_outcomes(env: Env, source: Any) -> None:
    """Record many outcomes at once from SOURCE (a file, or - for stdin).

    SOURCE holds JSON objects such as {"tool": "web_search", "ok": false,
    "latency_ms": 900, "error": "429"}, one per line or as one JSON array.
    All are recorded in one transaction, or none.
    """
    text = source.read()
    try:
        data = json.loads(text) if text.lstrip().startswith("[") else [
            json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON lines or a JSON array ({exc.msg}, line "
                                 f"{exc.lineno})", param_hint="SOURCE") from exc
    recorded = env.session().tool_outcomes(data)
    if env.json:
        env.emit_json({"recorded": recorded})
    else:
        env.note(f"recorded: {recorded} outcomes")


@cli.command("tool-stats")
@click.argument("tool", required=False)
@click.option("--since", default=None)
@click.option("--agent", default=None)
@click.option("-n", "--namespace", default="**", show_default=True)
@pass_env
def tool_stats(env: Env, tool: str | None, since: str | None, agent: str | None,
               namespace: str) -> None:
    """Reliability of each tool (or TOOL): calls, rates, latency, errors."""
    stats = env.session().tool_stats(tool, since=since, agent=agent, namespace=namespace)
    if env.json:
        env.emit_json({"tools": [s.to_dict() for s in stats]})
        return
    for s in stats:
        env.say(f"{s.note()}; recent rate {s.recent_rate:.0%}; p50 {s.latency_p50_ms} ms, "
                f"p95 {s.latency_p95_ms} ms")


@cli.command()
@click.argument("name")
@click.argument("text")
@click.option("-n", "--namespace", default=None)
@click.option("--expected-version", type=int, default=None)
@pass_env
def procedure(env: Env, name: str, text: str, namespace: str | None,
              expected_version: int | None) -> None:
    """Write a new version of procedure NAME."""
    _memory(env, env.session().procedure(name, text, namespace=namespace,
                                         expected_version=expected_version))


@cli.command("procedure-outcome")
@click.argument("name")
@click.argument("version", type=int)
@click.argument("outcome", type=OK)
@click.option("-n", "--namespace", default=None, help="Where the procedure lives.")
@click.option("--durable", is_flag=True, help="Wait until it is on disk (see docs/layers.md).")
@pass_env
def procedure_outcome(env: Env, name: str, version: int, outcome: str,
                      namespace: str | None, durable: bool) -> None:
    """Record that following VERSION of procedure NAME went ok or failed."""
    env.session().procedure_outcome(name, version, outcome == "ok", namespace=namespace,
                                    durable=durable)
    if env.json:
        env.emit_json({"ok": True})
    else:
        env.note(f"recorded: {name} v{version} {outcome}")


@cli.command()
@click.option("-n", "--namespace", default="**", show_default=True)
@pass_env
def procedures(env: Env, namespace: str) -> None:
    """List procedures with outcome statistics per version."""
    found = env.session().procedures(namespace)
    if env.json:
        env.emit_json({"procedures": [p.to_dict() for p in found]})
        return
    for p in found:
        stats = ", ".join(f"v{v.version} {v.successes}/{v.uses}" for v in p.versions)
        env.say(f"{p.namespace} {p.name} v{p.version}: {p.text}  ({stats})")


@cli.command()
@click.argument("task")
@click.option("-k", type=int, default=5, show_default=True)
@click.option("-n", "--namespace", default="**", show_default=True)
@pass_env
def recommend(env: Env, task: str, k: int, namespace: str) -> None:
    """The procedures and tools most likely to succeed at TASK, with evidence."""
    found = env.session().recommend(task, k, namespace=namespace)
    if env.json:
        env.emit_json({"recommendations": [r.to_dict() for r in found]})
        return
    for r in found:
        version = "" if r.version is None else f" v{r.version}"
        env.say(f"{r.score:.2f} {r.kind} {r.name}{version}: relevance {r.relevance:.2f}, "
                f"expected success {r.expected_rate:.0%}")


@cli.command()
@click.argument("task")
@click.option("-b", "--budget", "budget_tokens", type=int, default=2000, show_default=True)
@click.option("--session", default=None, help="Include this session's blocks and episodes.")
@click.option("-n", "--namespace", default="**", show_default=True)
@click.option("--quota", "quotas", multiple=True, metavar="LAYER=TOKENS",
              help="Token cap for a layer (repeatable).")
@click.option("-l", "--layer", "layers", multiple=True, type=click.Choice(LAYERS),
              help="Only these layers (repeatable).")
@click.option("--as-of", default=None, help="Transaction time: a tx number or ISO-8601 time.")
@pass_env
def context(env: Env, task: str, budget_tokens: int, session: str | None, namespace: str,
            quotas: tuple[str, ...], layers: tuple[str, ...], as_of: str | None) -> None:
    """Assemble a working context for TASK from the four layers."""
    caps: dict[str, int] = {}
    for q in quotas:
        layer, eq, n = q.partition("=")
        if not eq or not n.isdigit():
            raise click.BadParameter(f"{q!r} is not LAYER=TOKENS", param_hint="--quota")
        caps[layer] = int(n)
    ctx = env.session().context(task, budget_tokens, session=session, namespace=namespace,
                                quotas=caps or None, layers=layers or None,
                                as_of=parse_as_of(as_of))
    if env.json:
        env.emit_json(ctx.to_dict())
        return
    env.say(ctx.text)
    env.note(f"{ctx.tokens} of {ctx.budget} tokens; {len(ctx.left_out)} left out")
