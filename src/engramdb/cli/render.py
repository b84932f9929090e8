"""How the CLI shows engine values to people: panels and tables built with rich.

Every piece of user or stored text goes into a :class:`rich.text.Text`, never
into markup, so a memory that contains ``[red]`` prints as written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from rich import box
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from engramdb.model import Event, Hit, Memory, RecallResult, VerifyReport

__all__ = [
    "event_table",
    "fmt_time",
    "history_table",
    "hits_table",
    "memory_panel",
    "short_hash",
    "verify_panel",
    "why_text",
]


def fmt_time(value: datetime | None) -> str:
    """``2026-05-08 13:56:00`` in UTC, or ``-``."""
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def short_hash(value: str | None, n: int = 12) -> str:
    return "-" if not value else value[:n]


def _json_value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _kv_table(rows: Iterable[tuple[str, Any]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold cyan", no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in rows:
        grid.add_row(key, value if isinstance(value, Text) else Text(str(value)))
    return grid


def memory_panel(m: Memory, *, title: str | None = None) -> Panel:
    """Every field of one memory version."""
    rows: list[tuple[str, Any]] = [
        ("text", Text(m.text, style="bold")),
        ("id", f"{m.id}  (version {m.version})"),
        ("namespace", m.namespace),
        ("layer", m.layer),
        ("status", Text(m.status, style="green" if m.status == "active" else "yellow")),
    ]
    if m.subject is not None:
        assertion = " · ".join(str(part) for part in (m.subject, m.predicate) if part is not None)
        if m.value is not None:
            assertion += f" = {_json_value(m.value)}"
        rows.append(("assertion", assertion))
    if m.metadata:
        rows.append(("metadata", _json_value(dict(m.metadata))))
    rows += [
        ("author", m.author),
        ("recorded", f"{fmt_time(m.recorded_at)} UTC  (tx {m.tx_from}"
                     + (f" to {m.tx_to})" if m.tx_to is not None else ", current)")),
        ("valid", f"{fmt_time(m.valid_from)} to "
                  + ("now" if m.valid_to is None else fmt_time(m.valid_to))),
        ("importance", f"{m.importance:.2f}"),
        ("confidence", f"{m.confidence:.2f}"),
    ]
    if m.source:
        rows.append(("claimed source", m.source))
    if m.session:
        rows.append(("claimed session", m.session))
    if m.expires_at is not None:
        rows.append(("expires", f"{fmt_time(m.expires_at)} UTC"))
    for c in m.conflicts:
        rows.append(("conflict", f"{c.kind}: {c.reason} ({c.outcome})"))
    return Panel(_kv_table(rows), title=title or "memory", title_align="left",
                 box=box.ROUNDED, expand=False)


def why_text(why: Mapping[str, float], sep: str = "\n") -> Text:
    """The parts of a fused score, in the order a reader checks them."""
    parts: list[str] = []
    if "text_rank" in why:
        parts.append(f"text #{int(why['text_rank'])}")
    if "vector_rank" in why:
        sim = why.get("vector_similarity")
        parts.append(f"vector #{int(why['vector_rank'])}"
                     + (f" ({sim:.2f})" if sim is not None else ""))
    for key in ("recency", "importance"):
        if key in why:
            parts.append(f"{key} {why[key]:.2f}")
    known = {"text_rank", "text_score", "vector_rank", "vector_similarity", "recency",
             "importance", "rrf", "relevance"}
    for key in sorted(set(why) - known):
        parts.append(f"{key} {why[key]:.2f}")
    return Text(sep.join(parts), style="dim")


def hits_table(result: RecallResult, *, title: str | None = None) -> Table:
    """Recall hits, best first, with the parts of each score."""
    table = Table(title=title, box=box.SIMPLE_HEAVY, show_lines=True, title_justify="left")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("memory", overflow="fold", min_width=40)
    table.add_column("why", no_wrap=True)
    for i, hit in enumerate(result.hits, start=1):
        table.add_row(str(i), f"{hit.score:.3f}", _hit_cell(hit), why_text(hit.why))
    return table


def _hit_cell(hit: Hit) -> Text:
    m = hit.memory
    cell = Text(m.text)
    cell.append(f"\n{m.namespace} · {m.layer} · by {m.author}", style="dim")
    cell.append(f"\n{m.id} v{m.version}", style="dim")
    if hit.contested:
        cell.append("  contested", style="yellow")
    return cell


def history_table(versions: Sequence[Memory]) -> Table:
    """Every version of a memory, oldest first: text, then who, when and for how long."""
    table = Table(box=box.SIMPLE_HEAVY, title_justify="left", show_lines=True,
                  title=f"history of {versions[0].id}" if versions else None)
    table.add_column("v", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("version", overflow="fold")
    for m in versions:
        tx = f"tx {m.tx_from}" + ("" if m.tx_to is None else f" to {m.tx_to}")
        valid = fmt_time(m.valid_from) + " to " + (
            "now" if m.valid_to is None else fmt_time(m.valid_to))
        cell = Text(m.text)
        cell.append(f"\nby {m.author}, recorded {fmt_time(m.recorded_at)} UTC ({tx})",
                    style="dim")
        cell.append(f"\nvalid {valid}", style="dim")
        style = "green" if m.status == "active" else "yellow"
        table.add_row(str(m.version), Text(m.status, style=style), cell)
    return table


def event_table(events: Iterable[Event]) -> Table:
    table = Table(box=box.SIMPLE_HEAVY)
    for name, kw in (("seq", {"justify": "right"}), ("tx", {"justify": "right"}),
                     ("recorded (UTC)", {}), ("kind", {}), ("actor", {}),
                     ("namespace", {}), ("subject", {"overflow": "fold"})):
        table.add_column(name, **kw)  # type: ignore[arg-type]
    for e in events:
        table.add_row(*event_cells(e))
    return table


def event_cells(e: Event) -> list[Text]:
    return [Text(str(e.seq)), Text(str(e.tx)), Text(fmt_time(e.recorded_at)), Text(e.kind),
            Text(e.actor), Text(e.namespace or "-"), Text(e.subject_ref or "-")]


def verify_panel(report: VerifyReport, bad_event: Event | None = None) -> Panel:
    """OK in green, or the first bad event and what is wrong with it, in red."""
    if report.ok:
        body = _kv_table([
            ("events", f"{report.events_checked} checked: chain, payload commitments, replay"),
            ("state rows", f"{report.rows_checked} match the log"),
            ("head", f"event {report.head_seq}  {report.head_hash}"),
        ])
        return Panel(body, title="[bold green]verify: OK[/]", title_align="left",
                     border_style="green", expand=False)
    rows: list[tuple[str, Any]] = [
        ("problem", Text(report.problem or "unknown", style="bold red")),
        ("first bad event", "-" if report.first_bad_seq is None else str(report.first_bad_seq)),
        ("events checked", f"{report.events_checked} before the problem"),
    ]
    if bad_event is not None:
        rows += [
            ("kind", bad_event.kind),
            ("actor", bad_event.actor),
            ("recorded", f"{fmt_time(bad_event.recorded_at)} UTC (tx {bad_event.tx})"),
            ("namespace", bad_event.namespace or "-"),
            ("subject", bad_event.subject_ref or "-"),
            ("hash", bad_event.hash),
        ]
    rows.append(("head", f"event {report.head_seq}  {report.head_hash}"))
    return Panel(_kv_table(rows), title="[bold red]verify: NOT OK[/]", title_align="left",
                 border_style="red", expand=False)
