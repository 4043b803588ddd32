"""A recording's timeline as a figure: the label of each segment as a coloured strip, class probabilities and
A/V/D against time, in the page's colours (`colours.py`).

No transcript text is drawn: matplotlib has no text shaping (Arabic-script letters come out unjoined) and its
default font lacks most scripts (Devanagari came out as boxes, with a warning per glyph). The words are in the
rows `mamer predict` writes, next to each segment's times.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from mamer.modality import DIMENSIONS
from mamer.workflows.evaluation.colours import colours_of

LINE_STYLES = dict(zip(DIMENSIONS, ("-", "--", ":"), strict=True))  # A/V/D apart without colour too


def plot_timeline(timeline, path: str | Path, title: str = "") -> Path:
    """Save `timeline` (a `mamer.workflows.inference.timeline.Timeline`) as a PNG (see `timeline_figure`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    timeline_figure(timeline, title).savefig(path, dpi=110)
    return path


def timeline_figure(timeline, title: str = "") -> Figure:
    """The figure: a strip of segment labels, then one panel of class probabilities (a step per segment) and
    one of A/V/D when the model has them; time in seconds along the shared x axis."""
    segments = timeline.segments
    first = segments[0].prediction if segments else None
    has_classes = first is not None and first.probabilities is not None
    has_dims = first is not None and first.arousal is not None
    ratios = [0.35] * has_classes + [2.2] * has_classes + [2.2] * has_dims or [2.2]
    fig = Figure(
        figsize=(max(8.0, min(30.0, timeline.duration / 20)), 0.4 + sum(ratios)), layout="constrained"
    )
    axes = fig.subplots(len(ratios), 1, sharex=True, squeeze=False, height_ratios=ratios)[:, 0]
    if has_classes:
        colours = colours_of(list(first.probabilities))
        _strip(axes[0], segments, colours)
        _probabilities(axes[1], segments, colours)
    if has_dims:
        _dimensions(axes[-1], segments)
    spans = [(s.start, s.end - s.start) for s in segments]
    for ax in axes[int(has_classes) :]:
        ax.set_xlim(0, max(timeline.duration, 1e-3))
        ax.broken_barh(spans, (0, 1), transform=ax.get_xaxis_transform(), color="0.93", zorder=0)
    axes[0].set_xlim(0, max(timeline.duration, 1e-3))
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(title or f"{len(segments)} segments ({timeline.mode}), {timeline.duration:.1f} s")
    return fig


def _steps(segments, values: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """x, y of a step line holding each segment's value over its span (NaN in the gaps between segments)."""
    xs = np.array([[s.start, s.end, s.end] for s in segments]).ravel()
    ys = np.array([[v, v, np.nan] for v in values]).ravel()
    return xs, ys


def _strip(ax, segments, colours: dict[str, str]) -> None:
    """Each segment's label as a coloured span (the page's strip), with a legend of the labels."""
    spans = [(s.start, s.end - s.start) for s in segments]
    ax.broken_barh(spans, (0, 1), facecolors=[colours[s.prediction.label] for s in segments])
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_ylabel("label", rotation=0, ha="right", va="center")
    handles = [Patch(color=colour, label=label) for label, colour in colours.items()]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)


def _probabilities(ax, segments, colours: dict[str, str]) -> None:
    for label, colour in colours.items():
        values = [s.prediction.probabilities[label] for s in segments]
        ax.plot(*_steps(segments, values), label=label, color=colour, lw=1.6)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("probability")


def _dimensions(ax, segments) -> None:
    colours = colours_of(list(DIMENSIONS))
    for name in DIMENSIONS:
        values = [getattr(s.prediction, name) for s in segments]
        ax.plot(*_steps(segments, values), label=name, color=colours[name], ls=LINE_STYLES[name], lw=1.6)
    ax.set_ylabel("A / V / D")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
