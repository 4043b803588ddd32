"""Report figures: confusion matrices and per-view bars of the headline metrics (PNG, Agg, no display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# The object-oriented Figure API renders through Agg and never touches pyplot's global state or a display,
# so figures need no explicit close: they are freed when they go out of scope.
from matplotlib.figure import Figure

from mamer.metrics import main_metrics
from mamer.modality import VIEWS


def plot_confusion(matrix: np.ndarray, labels: list[str] | None, title: str, path: str | Path) -> Path:
    """Save a confusion matrix (C, C) of counts, rows = true, coloured by row-normalised rate.

    Each cell is annotated with its count and its percentage of the true class.
    """
    counts = np.asarray(matrix)
    n = counts.shape[0]
    labels = list(labels) if labels is not None else [str(i) for i in range(n)]
    row_sum = counts.sum(axis=1, keepdims=True)
    rate = np.divide(counts, row_sum, out=np.zeros(counts.shape, dtype=float), where=row_sum > 0)

    size = 2.0 + 0.7 * n
    fig = Figure(figsize=(size + 1.0, size), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(rate, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, label="fraction of true class")
    for i in range(n):
        for j in range(n):
            color = "white" if rate[i, j] > 0.5 else "black"
            ax.text(
                j,
                i,
                f"{counts[i, j]}\n{100 * rate[i, j]:.0f}%",
                ha="center",
                va="center",
                fontsize=8,
                color=color,
            )
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _save(fig, path)


def plot_views(report: dict, path: str | Path, chance: dict[str, float] | None = None) -> Path:
    """Save grouped bars: one group per headline metric, one bar per view, dashed chance level if known.

    `chance` maps metric name -> chance-level value; defaults to `report.get("chance")`.
    """
    chance = chance if chance is not None else report.get("chance") or {}
    results = report["results"]
    views = [v for v in VIEWS if v in results]
    metrics = list(main_metrics(report["task"]))
    width = 0.8 / max(len(views), 1)

    fig = Figure(figsize=(1.8 + 1.6 * len(metrics), 3.6), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(metrics))
    for k, view in enumerate(views):
        values = [results[view].get(m, np.nan) for m in metrics]
        bars = ax.bar(x + (k - (len(views) - 1) / 2) * width, values, width, label=view)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    label = "chance"
    for i, m in enumerate(metrics):
        if m in chance:
            ax.hlines(
                chance[m], i - 0.45, i + 0.45, colors="black", linestyles="dashed", label=label, zorder=3
            )
            label = None  # one legend entry for all chance segments
    ax.set_xticks(x, metrics)
    ax.set_ylabel("score")
    ax.set_title(f"{report['task']}: per-view results")
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.margins(y=0.1)  # headroom for the value labels
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def plot_robustness(curves: dict[str, dict[str, dict]], metric: str, path: str | Path) -> Path:
    """Save one panel per modality: score vs fraction of its frames/tokens dropped, a line (+- std band) per system.

    `curves` maps system -> modality -> {"view", "fractions", "scores", "scores_std"} (see mamer.workflows.evaluation.robustness).
    A system keeps its colour across panels; one legend lists them all.
    """
    modalities = [m for m in ("audio", "text") if any(m in c for c in curves.values())]
    fig = Figure(figsize=(4.2 * max(len(modalities), 1) + 2.2, 3.6), layout="constrained")
    axes = fig.subplots(1, max(len(modalities), 1), squeeze=False)[0]
    unit = {"audio": "audio frames", "text": "text tokens"}
    legend = {}
    for ax, modality in zip(axes, modalities, strict=False):
        for k, (system, per_modality) in enumerate(curves.items()):
            if modality not in per_modality:
                continue
            c = per_modality[modality]
            x, y = np.array(c["fractions"]), np.array(c["scores"])
            std = np.array(c.get("scores_std", np.zeros_like(y)))
            color = f"C{k % 10}"
            (line,) = ax.plot(x, y, marker="o", color=color)
            ax.fill_between(x, y - std, y + std, color=color, alpha=0.15)
            legend.setdefault(system, line)
        ax.set_xlabel(f"fraction of {unit[modality]} dropped at test time")
        ax.set_ylabel(
            f"{metric} ({', '.join(sorted({c[modality]['view'] for c in curves.values() if modality in c}))})"
        )
        ax.set_title(f"{unit[modality]} dropped")
        ax.grid(alpha=0.3)
    fig.legend(list(legend.values()), list(legend), fontsize=8, loc="outside right upper")
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as PNG to `path`, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=120)
    return path
