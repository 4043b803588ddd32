"""A recording's timeline as a figure: emotion probabilities and A/V/D against time, with the words heard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from mamer.modality import DIMENSIONS

MAX_WORDS = 120  # more words than this would overlap: each segment's transcript start is shown instead


def plot_timeline(timeline, path: str | Path, title: str = "") -> Path:
    """Save `timeline` (a `mamer.workflows.inference.timeline.Timeline`) as a PNG: one panel of class
    probabilities (a step per segment), one of A/V/D when the model has them, the words along the top."""
    segments = timeline.segments
    first = segments[0].prediction if segments else None
    has_classes = first is not None and first.probabilities is not None
    has_dims = first is not None and first.arousal is not None
    panels = 1 + int(has_classes and has_dims)
    fig = Figure(
        figsize=(max(8.0, min(30.0, timeline.duration / 20)), 2.6 * panels + 0.8), layout="constrained"
    )
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    if has_classes:
        _probabilities(axes[0], segments)
    if has_dims:
        _dimensions(axes[-1], segments)
    for ax in axes:
        ax.set_xlim(0, max(timeline.duration, 1e-3))
        for s in segments:
            ax.axvspan(s.start, s.end, color="0.92", zorder=0)
    axes[-1].set_xlabel("time (s)")
    _words(axes[0], timeline, segments)
    fig.suptitle(title or f"{len(segments)} segments ({timeline.mode}), {timeline.duration:.1f} s")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _steps(segments, values: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """x, y of a step line holding each segment's value over its span (NaN in the gaps between segments)."""
    xs, ys = [], []
    for s, v in zip(segments, values, strict=True):
        xs += [s.start, s.end, s.end]
        ys += [v, v, np.nan]
    return np.array(xs), np.array(ys)


def _probabilities(ax, segments) -> None:
    labels = list(segments[0].prediction.probabilities)
    for label in labels:
        ax.plot(*_steps(segments, [s.prediction.probabilities[label] for s in segments]), label=label, lw=1.6)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("probability")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)


def _dimensions(ax, segments) -> None:
    for name in DIMENSIONS:
        ax.plot(*_steps(segments, [getattr(s.prediction, name) for s in segments]), label=name, lw=1.6)
    ax.set_ylabel("A / V / D")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)


def _words(ax, timeline, segments) -> None:
    """The words at their times along the top of `ax` where they fit (else each segment's transcript start),
    skipping those that would crowd the previous one."""
    words = timeline.words
    if words and len(words) <= MAX_WORDS:
        marks = [((w.start + w.end) / 2, w.text) for w in words]
    else:
        marks = [((s.start + s.end) / 2, (s.prediction.transcript or "")[:20]) for s in segments]
    gap, last, shown = timeline.duration / 60, -float("inf"), 0  # at most ~60 labels, in three staggered rows
    for x, text in marks:
        if text and x - last >= gap:
            ax.text(
                x,
                1.02 + 0.07 * (shown % 3),
                text,
                transform=ax.get_xaxis_transform(),
                fontsize=7,
                ha="center",
            )
            last, shown = x, shown + 1
