"""``engram bench locomo``: LoCoMo recall@k figures and their plot.

The measuring is :func:`engramdb.evaluation.locomo.measure`; this module turns
its counts into a report section (overall and per category, tuning and
evaluation halves, every method of the same run) and a PNG of recall@k
against k.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from engramdb.cli.benchmarks import Row, Section, _pct
from engramdb.engine.rows import EngineConfig
from engramdb.evaluation.locomo import CATEGORIES, DIRECT, MAX_K, METHODS, SPLITS, Measured

__all__ = ["locomo_section", "plot_recall_at_k"]

GOAL_10, GOAL_25 = 0.75, 0.85


def locomo_section(m: Measured, *, questions: int | None = None) -> Section:
    """The report section of one run: recall@1/5/10/25/50 per method, split and category."""
    section = Section("LoCoMo recall@k: EngramDB's recall beside its baselines")
    curves: dict[str, dict[str, list[float | None]]] = {}
    for split in SPLITS:
        if not sum(m.total[split].values()):
            continue
        cats = sorted(m.total[split])
        n_q = sum(m.asked[split].values())
        for method in METHODS:
            curves.setdefault(split, {})[method] = [
                m.recall_at(method, split, cats, k) for k in range(1, MAX_K + 1)]
            cells = []
            for k in (1, 5, 10, 25, 50):
                per_cat = " / ".join(f"{m.recall_at(method, split, [c], k) or 0:.2f}"
                                     for c in cats)
                cells.append(f"@{k} {m.recall_at(method, split, cats, k) or 0:.3f} ({per_cat})")
            section.rows.append(Row(f"{split} ({n_q} questions): {method}", "; ".join(cells)))
        cells = []
        for k, name in DIRECT.items():
            per_cat = " / ".join(f"{m.recall_at(name, split, [c], k) or 0:.2f}" for c in cats)
            cells.append(f"@{k} {m.recall_at(name, split, cats, k) or 0:.3f} ({per_cat})")
        met = all((m.recall_at(DIRECT[10], split, [c], 10) or 0) >= GOAL_10
                  and (m.recall_at(DIRECT[25], split, [c], 25) or 0) >= GOAL_25 for c in cats)
        section.rows.append(Row(f"{split}: engramdb, recall(k=10) and recall(k=25) called",
                                "; ".join(cells),
                                f">= {GOAL_10} @10, >= {GOAL_25} @25, per category", met))
    section.data["curves"] = curves
    if m.latency:
        section.rows.append(Row("recall() latency at k=50 (query embedded; from the cache "
                                "folder when kept), p50 / p95",
                                f"{_pct(m.latency, 50) * 1000:.1f} / "
                                f"{_pct(m.latency, 95) * 1000:.1f} ms "
                                f"(mean {statistics.fmean(m.latency) * 1000:.1f} ms)"))
    names = ", ".join(f"{c}={CATEGORIES[c]}" for c in CATEGORIES)
    cut = "" if questions is None else f"; at most {questions} questions each"
    section.notes.append(
        f"{len(m.conversations)} conversations; tuning half (where the ranking's constants "
        f"were chosen): {', '.join(sorted(m.tuning))}; evaluation half: the others{cut}. "
        "Each cell: share of evidence turns in the top k over all questions of categories "
        f"1-4, then per category in brackets ({names}). Each turn is one episodic memory "
        "'<speaker>: <text>' (plus the photo caption), valid from its session's time, in its "
        "session; one namespace per conversation. bm25 = the storage's full-text search "
        "alone, dense = exact vector search alone, rrf = both fused by reciprocal rank (k=60, "
        "the ranking recall() used before), engramdb = recall(k=50) with default settings "
        "(every k read from one call); the goal row asks recall() for exactly 10 and 25 hits, "
        "as a user would (the engine draws 3k candidates per retriever, at least "
        f"{EngineConfig().recall_candidates}).")
    return section


def plot_recall_at_k(section: Section, path: Path) -> Path | None:
    """A PNG of recall@k against k, one panel per split; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    curves = section.data.get("curves") or {}
    if not curves:
        return None
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4), sharey=True)
    panels = np.atleast_1d(axes)
    for ax, (split, methods) in zip(panels, curves.items(), strict=True):
        for method, ys in methods.items():
            ax.plot(range(1, MAX_K + 1), [y or 0.0 for y in ys], label=method,
                    linewidth=2.5 if method == "engramdb" else 1.2)
        for goal in (GOAL_10, GOAL_25):
            ax.axhline(goal, color="grey", linestyle=":", linewidth=0.8)
        ax.set_title(f"LoCoMo dev, {split}" + (" half" if split != "all" else ""))
        ax.set_xlabel("k")
        ax.grid(alpha=0.3)
    panels[0].set_ylabel("recall@k (share of evidence turns)")
    panels[0].legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
