"""Commands on memories: init, remember, update, retract, recall, get, history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.text import Text

from engramdb.cli.app import Env, cli, init_hooks, pass_env
from engramdb.cli.render import history_table, hits_table, memory_panel
from engramdb.model import LAYERS

__all__ = ["parse_as_of", "parse_json_or_text"]


def parse_json_or_text(value: str) -> Any:
    """``5`` -> 5, ``true`` -> True, ``{"a":1}`` -> dict, anything else stays text."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def parse_as_of(value: str | None) -> int | str | None:
    """A transaction number (``12``) or an ISO-8601 time, as the engine takes it."""
    if value is None:
        return None
    return int(value) if value.isdigit() else value


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _metadata(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON ({exc.msg}); e.g. '{{\"source\": \"call\"}}'",
                                 param_hint="--metadata") from exc
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--metadata")
    return data


def _meta_filters(pairs: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--meta")
        out[key] = parse_json_or_text(value)
    return out


@cli.command()
@click.argument("path", required=False)
@click.option("--embedder", "spec", default=None, metavar="SPEC",
              help="local (default), local:<model>, openai:<base_url>#<model>, or none.")
@pass_env
def init(env: Env, path: str | None, spec: str | None) -> None:
    """Create a database at PATH (default: --db), recording its embedder.

    Running it again on an existing database changes nothing and says so.
    """
    env.admin_only("init")
    if path is not None:
        env.target = path
    existed = "://" not in env.target and Path(env.target).exists()
    db = env.open(embedder="default" if spec is None else spec)
    head = db.head()
    extra = [str(line) for hook in init_hooks() for line in (hook(env, env.target) or [])]
    if env.json:
        env.emit_json({"target": env.target, "created": not existed,
                       "embedder": db.embedder_name, "dimension": db.dimension or 0,
                       "events": head.seq, "notes": extra})
        return
    verb = "Already initialised" if existed else "Created"
    env.say(Text.assemble((f"{verb} ", "bold green"), (env.target, "bold"),
                                f"  embedder {db.embedder_name}",
                                f" ({db.dimension or 0} dimensions), {_plural(head.seq, 'event')}"))
    for line in extra:
        env.say(Text(line))
    if not existed:
        env.say(Text(f'Next: engram --db {env.target} remember "..." -n team/notes',
                           style="dim"))


@cli.command()
@click.argument("text")
@click.option("-n", "--namespace", default=None,
              help="Slash path, e.g. acme/research (default: the agent's agents/<name>).")
@click.option("-l", "--layer", type=click.Choice(LAYERS), default="semantic", show_default=True)
@click.option("--subject", default=None, help="Assertion subject, e.g. company:x.")
@click.option("--predicate", default=None, help="Assertion predicate, e.g. outlook.")
@click.option("--value", default=None, help="Assertion value (JSON, or plain text).")
@click.option("--metadata", default=None, help="JSON object.")
@click.option("--importance", type=float, default=0.5, show_default=True)
@click.option("--confidence", type=float, default=1.0, show_default=True)
@click.option("--source", default=None, help="Where it came from (a URL, a tool, ...).")
@click.option("--valid-from", default=None, help="When it starts to hold (ISO-8601).")
@click.option("--valid-to", default=None, help="When it stops holding (ISO-8601).")
@click.option("--idempotency-key", default=None, help="A retry with the same key writes once.")
@pass_env
def remember(env: Env, text: str, namespace: str | None, layer: str, subject: str | None,
             predicate: str | None, value: str | None, metadata: str | None,
             importance: float, confidence: float, source: str | None,
             valid_from: str | None, valid_to: str | None,
             idempotency_key: str | None) -> None:
    """Store TEXT as a new memory (version 1) and print it."""
    m = env.session().remember(
        text, namespace=namespace, layer=layer, subject=subject, predicate=predicate,
        value=None if value is None else parse_json_or_text(value),
        metadata=_metadata(metadata), importance=importance, confidence=confidence,
        source=source, valid_from=valid_from, valid_to=valid_to,
        idempotency_key=idempotency_key,
    )
    if env.json:
        env.emit_json(m.to_dict())
        return
    env.out.print(memory_panel(m, title="remembered"))


@cli.command()
@click.argument("memory_id")
@click.option("--text", default=None, help="New text (re-embedded).")
@click.option("--expected-version", type=int, default=None,
              help="Apply only if this is still the current version (else exit 2).")
@click.option("--value", default=None, help="New assertion value (JSON, or plain text).")
@click.option("--metadata", default=None, help="New metadata (JSON object).")
@click.option("--importance", type=float, default=None)
@click.option("--confidence", type=float, default=None)
@click.option("--valid-from", default=None)
@click.option("--valid-to", default=None)
@pass_env
def update(env: Env, memory_id: str, text: str | None, expected_version: int | None,
           value: str | None, metadata: str | None, importance: float | None,
           confidence: float | None, valid_from: str | None, valid_to: str | None) -> None:
    """Write a new version of MEMORY_ID; the old one stays in its history."""
    fields: dict[str, Any] = {}
    if text is not None:
        fields["text"] = text
    if value is not None:
        fields["value"] = parse_json_or_text(value)
    if metadata is not None:
        fields["metadata"] = _metadata(metadata)
    for name, v in (("importance", importance), ("confidence", confidence),
                    ("valid_from", valid_from), ("valid_to", valid_to)):
        if v is not None:
            fields[name] = v
    if not fields:
        raise click.UsageError("say what to change: --text, --value, --metadata, ...")
    m = env.session().update(memory_id, expected_version=expected_version, **fields)
    if env.json:
        env.emit_json(m.to_dict())
        return
    env.out.print(memory_panel(m, title=f"updated to version {m.version}"))


@cli.command()
@click.argument("memory_id")
@click.option("--reason", default=None, help="Why it no longer holds.")
@click.option("--expected-version", type=int, default=None)
@pass_env
def retract(env: Env, memory_id: str, reason: str | None, expected_version: int | None) -> None:
    """End MEMORY_ID's validity (a new, retracted version; history keeps the rest)."""
    m = env.session().retract(memory_id, reason=reason, expected_version=expected_version)
    if env.json:
        env.emit_json(m.to_dict())
        return
    env.out.print(memory_panel(m, title=f"retracted (version {m.version})"))


@cli.command()
@click.argument("query")
@click.option("-n", "--namespace", default="**", show_default=True, help="Namespace glob.")
@click.option("-k", "k", type=int, default=10, show_default=True, help="Hits at most.")
@click.option("-l", "--layer", "layers", multiple=True, type=click.Choice(LAYERS),
              help="Only these layers (repeatable).")
@click.option("--as-of", default=None,
              help="Transaction time: a tx number or an ISO-8601 time.")
@click.option("--valid-at", default=None, help="Valid time: facts that held then (ISO-8601).")
@click.option("--author", default=None, help="Only memories written by this principal.")
@click.option("--meta", "meta", multiple=True, metavar="KEY=VALUE",
              help="Metadata equality filter (repeatable).")
@click.option("--include-superseded", is_flag=True, help="Also old versions.")
@pass_env
def recall(env: Env, query: str, namespace: str, k: int, layers: tuple[str, ...],
           as_of: str | None, valid_at: str | None, author: str | None,
           meta: tuple[str, ...], include_superseded: bool) -> None:
    """Hybrid search for QUERY: full text + vectors + recency + importance.

    Each hit shows its fused score and the parts of that score.
    """
    filters: dict[str, Any] = {}
    if author:
        filters["author"] = author
    if meta:
        filters["metadata"] = _meta_filters(meta)
    if include_superseded:
        filters["include_superseded"] = True
    result = env.session().recall(query, namespace=namespace, k=k, layers=layers or None,
                                  as_of=parse_as_of(as_of), valid_at=valid_at,
                                  filters=filters or None)
    if env.json:
        env.emit_json({"hits": [h.to_dict() for h in result.hits],
                       "receipt": result.receipt.to_dict()})
        return
    if not result.hits:
        env.say(Text("no memories match (or none you may read)", style="yellow"))
    else:
        env.out.print(hits_table(result))
    env.say(Text(f"receipt: {_plural(len(result.receipt), 'memory version')} as of tx "
                       f"{result.receipt.as_of}", style="dim"))


@cli.command()
@click.argument("memory_id")
@click.option("--as-of", default=None, help="Transaction time: a tx number or ISO-8601 time.")
@click.option("--valid-at", default=None, help="Valid time (ISO-8601).")
@pass_env
def get(env: Env, memory_id: str, as_of: str | None, valid_at: str | None) -> None:
    """Show MEMORY_ID as it is now, or as it was at --as-of."""
    m = env.session().get(memory_id, as_of=parse_as_of(as_of), valid_at=valid_at)
    if env.json:
        env.emit_json(m.to_dict())
        return
    title = "memory" if as_of is None else f"memory as of {as_of}"
    env.out.print(memory_panel(m, title=title))


@cli.command()
@click.argument("memory_id")
@click.option("--as-of", default=None, help="Only versions written by then.")
@pass_env
def history(env: Env, memory_id: str, as_of: str | None) -> None:
    """Every version of MEMORY_ID with its times and author, oldest first."""
    versions = env.session().history(memory_id, as_of=parse_as_of(as_of))
    if env.json:
        env.emit_json([m.to_dict() for m in versions])
        return
    env.out.print(history_table(versions))
