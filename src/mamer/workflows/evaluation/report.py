"""Evaluation reports: per-view results as JSON + markdown + PNG plots, and side-by-side system comparison."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from mamer.metrics import MAIN_METRICS, main_metrics
from mamer.modality import VIEWS
from mamer.workflows.evaluation.plots import plot_confusion, plot_views


def build_report(
    task: str, results: dict[str, dict[str, float]], labels: list[str] | None, extra: dict | None = None
) -> dict:
    """Assemble a report dict: {"task", "labels", "results": {view: {metric: value}}, **extra}.

    Views are kept in `VIEWS` order, only those present in `results`.
    """
    main_metrics(task)  # validates the task name
    unknown = set(results) - set(VIEWS)
    if unknown:
        raise ValueError(f"unknown view(s) {sorted(unknown)}; expected a subset of {list(VIEWS)}")
    ordered = {v: {k: float(x) for k, x in results[v].items()} for v in VIEWS if v in results}
    return {
        "task": task,
        "labels": list(labels) if labels is not None else None,
        "results": ordered,
        **(extra or {}),
    }


def format_table(report: dict) -> str:
    """Markdown table of a report: rows = views, columns = metrics (3 decimals, "-" where missing)."""
    results = report["results"]
    metrics = _metric_columns(report["task"], results.values())
    lines = ["| view | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for view, scores in results.items():
        lines.append(f"| {view} | " + " | ".join(_fmt(scores.get(m)) for m in metrics) + " |")
    return "\n".join(lines)


def format_corpus_table(report: dict) -> str:
    """Markdown table of a report's per-corpus scores: rows = corpus x view (with its n), columns = metrics."""
    by_corpus = report.get("by_corpus") or {}
    per_view = [scores for c in by_corpus.values() for scores in c["results"].values()]
    metrics = _metric_columns(report["task"], per_view)
    lines = ["| corpus | view | n | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 3) + "|"]
    for corpus, found in by_corpus.items():
        for view, scores in found["results"].items():
            cells = " | ".join(_fmt(scores.get(m)) for m in metrics)
            lines.append(f"| {corpus or '(no prefix)'} | {view} | {found['n'][view]} | {cells} |")
    return "\n".join(lines)


def write_report(
    run_dir: str | Path,
    report: dict,
    confusions: dict[str, np.ndarray] | None = None,
    chance: dict[str, float] | None = None,
) -> list[Path]:
    """Write report.json, report.md, confusion_<view>.png per view and views.png into `run_dir`.

    `confusions` maps view -> (C, C) counts (rows = true); `chance` maps metric -> chance-level value and is
    stored in report.json under "chance". Returns the written paths.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if chance is not None:
        report = {**report, "chance": dict(chance)}

    json_path = run_dir / "report.json"
    json_path.write_text(json.dumps(report, indent=2, default=_to_json) + "\n")
    md_path = run_dir / "report.md"
    md_path.write_text(_markdown(report, chance))
    paths = [json_path, md_path]

    labels = report.get("labels")
    for view in [v for v in VIEWS if v in (confusions or {})]:
        title = f"{view} ({report['task']})"
        paths.append(plot_confusion(confusions[view], labels, title, run_dir / f"confusion_{view}.png"))
    paths.append(plot_views(report, run_dir / "views.png", chance))
    return paths


def compare_table(reports: dict[str, dict], params: dict[str, int | None]) -> str:
    """Side-by-side markdown table: rows = systems, columns = views x headline metrics, plus "params".

    A system without a view (e.g. an audio-only model has no text view) shows "-" in that view's columns.
    """
    views = [v for v in VIEWS if any(v in r["results"] for r in reports.values())]
    tasks = {r["task"] for r in reports.values()}
    metrics = [m for m in MAIN_METRICS["both"] if any(m in main_metrics(t) for t in tasks)]
    columns = [(v, m) for v in views for m in metrics]
    header = "| system | " + " | ".join(f"{v} {m}" for v, m in columns) + " | params |"
    lines = [header, "|---" * (len(columns) + 2) + "|"]
    for name, rep in reports.items():
        cells = [_fmt(rep["results"].get(v, {}).get(m)) for v, m in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {format_params(params.get(name))} |")
    return "\n".join(lines)


def format_params(n: int | None) -> str:
    """Human-readable parameter count: 950 -> "950", 12_300 -> "12.3K", 1_234_567 -> "1.23M"; None -> "-"."""
    if n is None:
        return "-"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}"
    return str(int(n))


def _markdown(report: dict, chance: dict[str, float] | None) -> str:
    """The report.md text: a title, the table and, if given, the chance level."""
    text = f"# Evaluation report ({report['task']})\n\n{format_table(report)}\n"
    if report.get("by_corpus"):
        text += f"\n## By corpus\n\n{format_corpus_table(report)}\n"
    if report.get("labels_scored"):
        text += f"\nClasses scored (predictions restricted to them): {', '.join(report['labels_scored'])}.\n"
    if chance:
        text += "\nChance level: " + ", ".join(f"{m} {v:.3f}" for m, v in chance.items()) + "\n"
    unscored = report.get("unscored") or {}
    if unscored.get("rows"):
        text += (
            f"\nNot scored (not counted in n): {unscored['rows']} row(s), {describe_unscored(unscored)}.\n"
        )
    return text


def describe_unscored(unscored: dict) -> str:
    """A report's `unscored` in words: "3 with class 'surprise', which the model was not trained on; ..."."""
    return "; ".join(f"{count} with {reason}" for reason, count in unscored["why"].items())


def _metric_columns(task: str, per_view: Iterable[dict[str, float]]) -> list[str]:
    """Headline metrics of `task` first, then any other metric in order of first appearance."""
    columns = list(main_metrics(task))
    for scores in per_view:
        columns += [m for m in scores if m not in columns]
    return columns


def _fmt(value: float | None) -> str:
    """Three decimals, or "-" for a missing value."""
    return "-" if value is None else f"{value:.3f}"


def _to_json(obj: object) -> object:
    """json.dumps fallback for numpy scalars and arrays found in `extra`."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"report value of type {type(obj).__name__} is not JSON serialisable")
