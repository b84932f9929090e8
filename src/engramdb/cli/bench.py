"""``engram bench``: run the benchmarks, print them, write BENCHMARKS.md.

The engine's own figures come from :mod:`engramdb.cli.benchmarks`. Other
parts of the project contribute rows through scripts in the repository's
``bench/`` folder: each of :data:`EXTERNAL` that exists is imported from its
file and its ``run()`` called (with ``quick=`` when it takes it); a dict it
returns becomes a table, a string is kept as Markdown. A missing script is
skipped with a note, a failing one is reported as failed, never hidden.
"""

from __future__ import annotations

import importlib
import inspect
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.table import Table
from rich.text import Text

from engramdb.cli.app import Env, cli, pass_env
from engramdb.cli.benchmarks import (
    Row,
    Section,
    bench_batch_writes,
    bench_locomo,
    bench_recall_latency,
    bench_single_writes,
)

__all__ = ["EXTERNAL", "describe_machine", "find_locomo", "render_markdown", "run_external"]

EXTERNAL: tuple[tuple[str, str], ...] = (
    ("bench_postgres.py", "PostgreSQL backend"),
    ("bench_http.py", "HTTP server"),
    ("judge_quality.py", "Contradiction judge quality"),
)


def _repo_root() -> Path | None:
    """The source checkout this package runs from (editable installs), if any."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "bench").is_dir():
            return parent
    cwd = Path.cwd()
    return cwd if (cwd / "bench").is_dir() else None


def find_locomo(explicit: str | None) -> Path | None:
    """The LoCoMo dev folder: --locomo, $ENGRAM_LOCOMO, or shared/ beside the checkout."""
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    if os.environ.get("ENGRAM_LOCOMO"):
        candidates.append(Path(os.environ["ENGRAM_LOCOMO"]))
    for base in filter(None, (_repo_root(), Path.cwd())):
        candidates.append(base.parent / "shared" / "data" / "locomo-dev")
    for c in candidates:
        if c.is_dir() and any(c.glob("*.json")):
            return c
    return None


# --------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _filesystem(path: Path) -> str:
    best, fstype = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _dev, mount, kind, *_ = line.split()
            if str(path.resolve()).startswith(mount) and len(mount) > len(best):
                best, fstype = mount, kind
    except OSError:
        pass
    return f"{fstype} (mounted at {best or '?'})"


def describe_machine(work: Path) -> list[tuple[str, str]]:
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return [
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("CPU", _cpu_model()),
        ("cores", str(os.cpu_count())),
        ("RAM", _ram()),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
        ("SQLite", sqlite3.sqlite_version),
        ("NumPy", _version("numpy")),
        ("EngramDB", _version("engramdb")),
        ("database files on", _filesystem(work)),
        ("load average at start (1/5/15 min)", load),
    ]


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


# --------------------------------------------------------------------------- external rows


def _flatten(prefix: str, value: Any, out: list[Row]) -> None:
    if isinstance(value, dict):
        for key, v in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), v, out)
    elif isinstance(value, (list, tuple)):
        out.append(Row(prefix, f"{len(value)} items"))
    elif isinstance(value, float):
        out.append(Row(prefix, f"{value:.4g}"))
    else:
        out.append(Row(prefix, str(value)))


def run_external(filename: str, title: str, *, quick: bool) -> Section:
    """Import ``bench/<filename>`` and turn what its ``run()`` returns into a section."""
    root = _repo_root()
    path = None if root is None else root / "bench" / filename
    section = Section(title)
    if path is None or not path.exists():
        section.notes.append(f"skipped: bench/{filename} is not in this checkout")
        return section
    try:
        # Imported by its package name, not from a file spec: scripts that start
        # worker processes (spawn) need their functions importable by name there too.
        if str(path.parent.parent) not in sys.path:
            sys.path.insert(0, str(path.parent.parent))
        module = importlib.import_module(f"bench.{path.stem}")
        run = module.run
        kwargs = {"quick": quick} if "quick" in inspect.signature(run).parameters else {}
        started = time.perf_counter()
        result = run(**kwargs)
        elapsed = time.perf_counter() - started
    except Exception as exc:  # noqa: BLE001 - a failing script is reported, not fatal
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        section.notes.append(f"FAILED: bench/{filename} raised {last}")
        return section
    if isinstance(result, str):
        section.data["markdown"] = result
    elif isinstance(result, dict):
        if isinstance(result.get("rows"), list) and all(isinstance(r, dict)
                                                        for r in result["rows"]):
            for r in result["rows"]:
                section.rows.append(Row(str(r.get("metric", "")), str(r.get("value", "")),
                                        str(r.get("target", "") or ""), r.get("met")))
            section.notes.extend(str(n) for n in result.get("notes", []))
        else:
            _flatten("", {k: v for k, v in result.items() if k != "notes"}, section.rows)
            notes = result.get("notes")
            if isinstance(notes, str):
                section.notes.append(notes)
            elif isinstance(notes, list):
                section.notes.extend(str(n) for n in notes)
    else:
        section.rows.append(Row("result", repr(result)))
    section.notes.append(f"from bench/{filename} run() in {elapsed:.1f} s")
    return section


# --------------------------------------------------------------------------- output


def _verdict(met: bool | None) -> str:
    return "" if met is None else ("met" if met else "MISSED")


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(machine: list[tuple[str, str]], sections: list[Section], *,
                    quick: bool, command: str) -> str:
    lines = ["# Benchmarks", ""]
    lines.append(f"Produced by `{command}`"
                 + (" (quick mode: small sizes, a smoke run, not the figures to quote)"
                    if quick else "") + ". Every figure is a single measured run on the "
                 "machine below; nothing was tuned to reach a target.")
    lines += ["", "## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {_md(k)} | {_md(v)} |" for k, v in machine]
    for s in sections:
        lines += ["", f"## {s.title}", ""]
        if s.rows:
            lines += ["| metric | value | target | |", "|---|---|---|---|"]
            lines += [f"| {_md(r.metric)} | {_md(r.value)} | {_md(r.target)} | "
                      f"{_verdict(r.met)} |" for r in s.rows]
        if s.data.get("markdown"):
            lines += ["", str(s.data["markdown"]).strip()]
        for note in s.notes:
            lines += ["", _md(note)]
    return "\n".join(lines) + "\n"


def _print_section(env: Env, s: Section) -> None:
    table = Table(title=s.title, title_justify="left", box=box.SIMPLE_HEAVY)
    table.add_column("metric", overflow="fold")
    table.add_column("value", overflow="fold")
    table.add_column("target")
    table.add_column("")
    for r in s.rows:
        style = "" if r.met is None else ("green" if r.met else "bold red")
        table.add_row(Text(r.metric), Text(r.value), Text(r.target),
                      Text(_verdict(r.met), style=style))
    if s.rows:
        env.out.print(table)
    else:
        env.say(Text(s.title, style="italic"))
    for note in s.notes:
        env.out.print(Text(note, style="dim"))


# --------------------------------------------------------------------------- command


@cli.group(invoke_without_command=True)
@click.option("--quick", is_flag=True, help="Small sizes: a smoke run, not figures to quote.")
@click.option("--out", "out", default=None, metavar="FILE",
              help="Markdown report (default BENCHMARKS.md; with --quick, none unless given).")
@click.option("--workdir", default=None, type=click.Path(file_okay=False),
              help="Folder for the benchmark databases (default: a temporary folder).")
@click.option("--locomo", "locomo", default=None, metavar="DIR",
              help="LoCoMo dev folder (default: $ENGRAM_LOCOMO or ../shared/data/locomo-dev).")
@click.option("--only", multiple=True,
              type=click.Choice(["writes", "single", "recall", "locomo", "external"]),
              help="Run only these parts (repeatable).")
@click.pass_context
def bench(ctx: click.Context, quick: bool, out: str | None, workdir: str | None,
          locomo: str | None, only: tuple[str, ...]) -> None:
    """Measure write throughput, recall latency and LoCoMo recall@k; write BENCHMARKS.md.

    ``engram bench locomo`` measures LoCoMo recall@k alone, beside its baselines.
    """
    if ctx.invoked_subcommand is not None:
        return
    env = ctx.find_object(Env)
    assert env is not None
    env.admin_only("bench")
    from engramdb.retrieval.embed import default_embedder

    parts = set(only) or {"writes", "single", "recall", "locomo", "external"}
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="engram-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    machine = describe_machine(work)
    log: Callable[[str], None] = env.note
    embedder = default_embedder()
    sections: list[Section] = []
    started = time.perf_counter()
    try:
        if "writes" in parts:
            sections.append(bench_batch_writes(work, embedder, n=2_000 if quick else 20_000,
                                               log=log))
        if "single" in parts:
            sections.append(bench_single_writes(work, embedder, n=100 if quick else 2_000,
                                                log=log))
        if "recall" in parts:
            sizes = (1_000, 2_000) if quick else (10_000, 100_000)
            sections.append(bench_recall_latency(work, embedder, sizes=sizes,
                                                 queries=50 if quick else 300, log=log))
        if "locomo" in parts:
            folder = find_locomo(locomo)
            if folder is None:
                sections.append(Section("LoCoMo retrieval recall@k", notes=[
                    "skipped: no LoCoMo data found; pass --locomo DIR or set ENGRAM_LOCOMO"]))
            else:
                sections.append(bench_locomo(work, embedder, folder,
                                             conversations=1 if quick else None,
                                             questions=20 if quick else None,
                                             max_turns=120 if quick else None, log=log))
        if "external" in parts:
            for filename, title in EXTERNAL:
                log(f"external: bench/{filename}")
                sections.append(run_external(filename, title, quick=quick))
    finally:
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - started
    if hasattr(os, "getloadavg"):
        machine.append(("load average at end (1/5/15 min)",
                        " / ".join(f"{x:.2f}" for x in os.getloadavg())))
    machine.append(("benchmark wall time", f"{elapsed:.0f} s"))
    command = "engram bench" + (" --quick" if quick else "")
    if env.json:
        env.emit_json({"machine": dict(machine), "quick": quick, "seconds": elapsed,
                       "sections": [{"title": s.title, "notes": s.notes,
                                     "rows": [r.__dict__ for r in s.rows]} for s in sections]})
    else:
        env.out.print(Text("Machine", style="bold"))
        for key, value in machine:
            env.say(Text(f"  {key}: {value}"))
        for s in sections:
            _print_section(env, s)
        env.say(Text(f"benchmarks ran in {elapsed:.0f} s", style="dim"))
    target = out if out is not None else (None if quick else "BENCHMARKS.md")
    if target and target != "-":
        report = render_markdown(machine, sections, quick=quick, command=command)
        # Figures the test suite proves (authorisation, tampering, fuzzing) are kept
        # in bench/correctness.md and carried into every report.
        extra = Path(__file__).resolve().parents[3] / "bench" / "correctness.md"
        if extra.is_file():
            report = report.rstrip() + "\n\n" + extra.read_text(encoding="utf-8")
        Path(target).write_text(report, encoding="utf-8")
        env.note(f"wrote {target}", style="green")


@bench.command("locomo")
@click.option("--data", "data", default=None, metavar="DIR",
              help="LoCoMo folder (default: $ENGRAM_LOCOMO or ../shared/data/locomo-dev).")
@click.option("--out", "out", default=None, metavar="FILE",
              help="Also write the figures as Markdown (and a PNG plot beside it).")
@click.option("--cache", "cache", default=None, type=click.Path(file_okay=False),
              help="Folder to keep the turns' embeddings in between runs.")
@click.option("--conversations", type=int, default=None, help="Only the first N conversations.")
@click.option("--questions", type=int, default=None, help="At most N questions each.")
@click.option("--max-turns", type=int, default=None, help="Only the first N turns each.")
@pass_env
def bench_locomo_command(env: Env, data: str | None, out: str | None, cache: str | None,
                         conversations: int | None, questions: int | None,
                         max_turns: int | None) -> None:
    """LoCoMo recall@k (k 1..50) of recall() beside BM25, dense and RRF, per category."""
    env.admin_only("bench")
    from engramdb.cli.locomo import locomo_section, plot_recall_at_k
    from engramdb.errors import InvalidInput
    from engramdb.evaluation.locomo import measure
    from engramdb.retrieval.embed import default_embedder

    folder = find_locomo(data)
    if data is not None and folder != Path(data):  # an explicit folder is never swapped
        folder = None
    if folder is None:
        raise InvalidInput("no LoCoMo data found: pass --data DIR (a folder of LoCoMo "
                           "conversation JSON files) or set ENGRAM_LOCOMO")
    started = time.perf_counter()
    machine = describe_machine(Path(tempfile.gettempdir()))
    with tempfile.TemporaryDirectory(prefix="engram-locomo-") as work:
        measured = measure(Path(work), default_embedder(), folder,
                           conversations=conversations, questions=questions,
                           max_turns=max_turns, cache=Path(cache) if cache else None,
                           log=env.note)
    section = locomo_section(measured, questions=questions)
    if hasattr(os, "getloadavg"):
        machine.append(("load average at end (1/5/15 min)",
                        " / ".join(f"{x:.2f}" for x in os.getloadavg())))
    machine.append(("benchmark wall time", f"{time.perf_counter() - started:.0f} s"))
    if env.json:
        env.emit_json({"machine": dict(machine), "title": section.title, "notes": section.notes,
                       "rows": [r.__dict__ for r in section.rows],
                       "curves": section.data.get("curves")})
    else:
        _print_section(env, section)
    if out:
        target = Path(out)
        plot = plot_recall_at_k(section, target.with_suffix(".png"))
        report = render_markdown(machine, [section], quick=False,
                                 command="engram bench locomo")
        if plot is not None:
            report = report.rstrip() + f"\n\n![recall@k against k]({plot.name})\n"
        target.write_text(report, encoding="utf-8")
        env.note(f"wrote {target}" + (f" and {plot.name}" if plot else ""), style="green")


@bench.command("scale")
@click.option("--sizes", default="10000,100000", show_default=True, metavar="N,N,...",
              help="Database sizes (memories) to load and time.")
@click.option("--pg", "pg_url", default=None, metavar="URL",
              help="Also time PostgreSQL at this (empty, scratch) database URL.")
@click.option("--workdir", default=None, type=click.Path(file_okay=False),
              help="Folder for the SQLite databases (default: a temporary folder).")
@click.option("--queries", default=100, show_default=True, help="Queries per round (3 rounds).")
@click.option("--out", "out", default=None, metavar="FILE",
              help="Also write the Markdown section (and a PNG plot beside it) to FILE.")
@pass_env
def bench_scale(env: Env, sizes: str, pg_url: str | None, workdir: str | None, queries: int,
                out: str | None) -> None:
    """Recall latency, cold start and memory against size, beside NumPy brute force."""
    env.admin_only("bench")
    root = _repo_root()
    if root is None or not (root / "bench" / "scale.py").exists():
        raise click.UsageError("bench scale runs from a source checkout (bench/scale.py); "
                               "clone the repository and run it there")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    scale = importlib.import_module("bench.scale")
    markdown, run_scale, write_plot = scale.markdown, scale.run_scale, scale.write_plot
    try:
        wanted = [int(x) for x in sizes.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter("sizes are whole numbers, e.g. 10000,100000") from None
    if not wanted or min(wanted) < 1000:
        raise click.BadParameter("give sizes of at least 1000 memories")
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="engram-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        results = run_scale(work, wanted, pg_url=pg_url, reps=queries, log=env.note)
    finally:
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    machine = (f"Machine: {_cpu_model()}, {os.cpu_count()} cores, {_ram()}; "
               f"load average at end {load}.")
    plot = None
    if out:
        plot_path = Path(out).with_suffix(".png")
        write_plot(results, plot_path)
        plot = plot_path.name
    report = markdown(results, machine, plot)
    if out:
        Path(out).write_text(report, encoding="utf-8")
        env.note(f"wrote {out}", style="green")
    if env.json:
        env.emit_json({"machine": machine, "results": results})
    else:
        click.echo(report)
