"""An experiment's runs averaged: experiment.json, the markdown tables of experiment.md, and robustness plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mamer.config import ExperimentConfig, RunConfig
from mamer.metrics import main_metrics
from mamer.modality import MODALITIES, VIEWS, has_categories
from mamer.scoring import evaluable_views
from mamer.workflows.evaluation.plots import plot_robustness
from mamer.workflows.evaluation.report import format_params


def _mean_std(values) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample std over runs (axis 0) of scalars or equal-length curves; std 0 for a single run."""
    values = np.asarray(values, dtype=np.float64)
    std = values.std(0, ddof=1) if len(values) > 1 else np.zeros_like(values[0])
    return values.mean(0), std


def mean_curves(runs: list[dict[str, dict]]) -> dict[str, dict]:
    """Per modality, the mean and std over runs of `robustness_curves` results with the same fractions."""
    merged = {}
    for modality in MODALITIES:
        present = [r[modality] for r in runs if modality in r]
        if present:
            mean, std = _mean_std([c["scores"] for c in present])
            merged[modality] = {
                "view": present[0]["view"],
                "fractions": present[0]["fractions"],
                "scores": mean.tolist(),
                "scores_std": std.tolist(),
            }
    return merged


def view_scores(reports: list[dict]) -> dict[str, dict[str, float]]:
    """Mean and std over runs of every metric of every view: {view: {metric: mean, metric_std: std}}."""
    out = {}
    for view in VIEWS:
        per_run = [r["results"][view] for r in reports if r["results"].get(view)]
        if not per_run:  # no run had rows for this view (e.g. audio views on a text-only corpus)
            continue
        scores = {}
        for metric in per_run[0]:
            mean, std = _mean_std([p[metric] for p in per_run])
            scores[metric], scores[f"{metric}_std"] = float(mean), float(std)
        out[view] = scores
    return out


def summarise(results: list[dict], config: RunConfig, e: ExperimentConfig) -> dict:
    """experiment.json: {"systems": {name: {"params", "views": {view: {metric, metric_std}}, ...}}, "folds", ...}."""
    systems = {}
    for name in e.systems:
        mine = [r for r in results if r["system"] == name]
        trained_views = mine[0]["config"]["model"]["views"]
        by_split = {}
        for split in e.test_splits:
            reports = [r["reports"][split] for r in mine if split in r["reports"]]
            if reports:
                by_split[split] = view_scores(reports)
        robustness = {
            split: mean_curves([r["robustness"][split] for r in mine if split in r["robustness"]])
            for split in by_split
            if e.robustness
        }
        systems[name] = {
            "params": mine[0]["params"],
            "trained_views": trained_views,
            "missing_modality_views": [v for v in evaluable_views(trained_views) if v not in trained_views],
            "views": next(iter(by_split.values()), {}),
            "splits": by_split,
            "robustness": robustness,
            "runs": len(mine),
            "wall_s": sum(r["train_s"] + r["eval_s"] for r in mine),
            "code": sorted({r.get("code", "unrecorded") for r in mine}),
        }
    return {
        "name": config.name,
        "task": config.data.task,
        "systems": systems,
        "folds": e.folds or 1,
        "seeds": list(e.seeds),
        "test_splits": list(e.test_splits),
        "metrics": table_metrics(config, e),
    }


def table_metrics(config: RunConfig, e: ExperimentConfig) -> list[str]:
    """The table's metric columns: `experiment.metrics`, else the task's headline metrics."""
    if e.metrics:
        return list(e.metrics)
    if not has_categories(config.data.task):
        return ["ccc_arousal", "ccc_valence", "ccc_dominance"]
    return list(main_metrics(config.data.task))


def _cell(scores: dict[str, float] | None, metric: str) -> str:
    if not scores or metric not in scores:
        return "–"
    std = scores.get(f"{metric}_std", 0.0)
    return f"{scores[metric]:.3f} ± {std:.3f}" if std else f"{scores[metric]:.3f}"


def experiment_table(summary: dict, split: str) -> str:
    """Markdown: rows = systems (and a "modality missing" row for systems scored on views they were not
    trained on), columns = views x metrics, then parameters, runs and wall time."""
    metrics, systems = summary["metrics"], summary["systems"]
    views = [v for v in VIEWS if any(v in s["splits"].get(split, {}) for s in systems.values())]
    columns = [(v, m) for v in views for m in metrics]
    lines = [
        "| system | " + " | ".join(f"{v} {m}" for v, m in columns) + " | params | runs | wall |",
        "|---" * (len(columns) + 4) + "|",
    ]
    for name, s in systems.items():
        scores = s["splits"].get(split)
        if scores is None:
            continue
        rows = [(name, s["trained_views"])]
        if s["missing_modality_views"]:
            rows.append((f"{name}, modality missing", s["missing_modality_views"]))
        for label, shown in rows:
            cells = [_cell(scores.get(v), m) if v in shown else "–" for v, m in columns]
            tail = f"{format_params(s['params'])} | {s['runs']} | {s['wall_s'] / 60:.1f} min"
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {tail} |")
    return "\n".join(lines)


def write_outputs(summary: dict, out: Path) -> list[Path]:
    """experiment.json, experiment.md (one table per test split) and robustness[_<split>].png."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "experiment.json").write_text(json.dumps(summary, indent=1) + "\n")
    seeds, folds = summary["seeds"], summary["folds"]
    text = [
        f"# Experiment `{summary['name']}` ({summary['task']})",
        "",
        f"Mean ± std over {len(seeds)} seed(s) {seeds} x {folds} fold(s); wall = training + evaluation time of all"
        " runs of a system. A `modality missing` row scores a model on views it was not trained on.",
    ]
    code = {name: s["code"] for name, s in summary["systems"].items()}
    if len({v for versions in code.values() for v in versions}) > 1:
        listed = "; ".join(f"{name}: {', '.join(versions)}" for name, versions in code.items())
        text += ["", f"Runs were trained by more than one version of mamer's source code ({listed})."]
    paths = [out / "experiment.json", out / "experiment.md"]
    for k, split in enumerate(summary["test_splits"]):
        text += ["", f"## Split `{split}`", "", experiment_table(summary, split)]
        curves = {
            n: s["robustness"][split] for n, s in summary["systems"].items() if split in s["robustness"]
        }
        if any(curves.values()):
            png = out / ("robustness.png" if k == 0 else f"robustness_{split}.png")
            metric = "mean CCC" if summary["task"] == "dimensional" else "macro-F1"
            paths.append(plot_robustness(curves, metric, png))
            text += [
                "",
                f"Robustness (score vs fraction of frames/tokens dropped at test time): `{png.name}`",
            ]
    (out / "experiment.md").write_text("\n".join(text) + "\n")
    return paths
