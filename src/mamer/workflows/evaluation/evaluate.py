"""Per-view evaluation: the same utterances through the audio, text and audio+text views of one model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from mamer.checkpoint import ModelMeta, load_model
from mamer.data.dataset import EmotionDataset, Targets, collate
from mamer.data.features import load_split
from mamer.data.manifest import read_manifest, splits
from mamer.metrics import categorical_metrics, confusion, dimensional_metrics
from mamer.modality import VIEWS
from mamer.model.mamer import MAMER
from mamer.objective import run_view, view_rows
from mamer.workflows.evaluation.model_card import write_model_card
from mamer.workflows.evaluation.report import build_report, write_report


def evaluable_views(trained_views: list[str]) -> list[str]:
    """Every view whose modalities the model saw in training: a multimodal-only model also gets the unimodal
    views (its missing-modality scores); a dedicated audio-only model gets only audio."""
    seen = {m for v in trained_views for m in v.split("+")}
    return [v for v in VIEWS if set(v.split("+")) <= seen]


@torch.inference_mode()
def predict_view(model: MAMER, loader: DataLoader, view: str, device: torch.device) -> dict[str, np.ndarray]:
    """Run one view over a loader; keeps the rows that have the view's modalities."""
    model.eval()
    keep: dict[str, list] = {"ids": [], "logits": [], "dims": [], "labels": [], "dims_true": []}
    for batch in loader:
        batch = batch.to(device)
        out, rows = run_view(model, batch, view), view_rows(batch, view)
        if out is None or not rows.any():
            continue
        keep["ids"].extend(i for i, r in zip(batch.ids, rows.tolist(), strict=True) if r)
        if out.logits is not None:
            keep["logits"].append(out.logits[rows].float().cpu())
        if out.dims is not None:
            keep["dims"].append(out.dims[rows].float().cpu())
        keep["labels"].append(batch.labels[rows].cpu())
        keep["dims_true"].append(batch.dims[rows].cpu())
    return {k: (np.asarray(v) if k == "ids" else torch.cat(v).numpy()) for k, v in keep.items() if v}


def score(
    pred: dict[str, np.ndarray], task: str, targets: Targets
) -> tuple[dict[str, float], np.ndarray | None]:
    """Metrics of one view's predictions, and its confusion matrix for categorical tasks."""
    metrics: dict[str, float] = {}
    matrix = None
    if task in ("categorical", "both") and "logits" in pred:
        labelled = pred["labels"] != -100
        y_true, y_pred = pred["labels"][labelled], pred["logits"][labelled].argmax(1)
        metrics.update(categorical_metrics(y_true, y_pred, len(targets.labels)))
        matrix = confusion(y_true, y_pred, len(targets.labels))
    if task in ("dimensional", "both") and "dims" in pred:
        known = ~np.isnan(pred["dims_true"]).any(1)
        scale = targets.denormalise
        true = scale(torch.from_numpy(pred["dims_true"][known])).numpy()
        metrics.update(dimensional_metrics(scale(torch.from_numpy(pred["dims"][known])).numpy(), true))
    return metrics, matrix


def main_score(metrics: dict[str, float], task: str) -> float:
    """The number early stopping and comparisons rank by: macro-F1, mean CCC, or their mean for both."""
    parts = []
    if task in ("categorical", "both"):
        parts.append(metrics.get("macro_f1", 0.0))
    if task in ("dimensional", "both"):
        parts.append(metrics.get("ccc_mean", 0.0))
    return float(np.mean(parts))


def evaluate_views(model, loader, views, task, targets, device) -> tuple[dict, dict, dict]:
    """Metrics, confusion matrices and utterance counts per view."""
    results, confusions, counts = {}, {}, {}
    for view in views:
        pred = predict_view(model, loader, view, device)
        results[view], matrix = score(pred, task, targets)
        counts[view] = len(pred.get("ids", []))
        if matrix is not None:
            confusions[view] = matrix
    return results, confusions, counts


def split_dataset(meta: ModelMeta, split: str) -> EmotionDataset:
    """The cached features and labels of one split of the manifest a run was trained on."""
    config = meta.run_config
    by_split = splits(read_manifest(Path(config.data.manifest))[0])
    if split not in by_split:
        raise ValueError(f"split {split!r} not in {config.data.manifest}; it has {sorted(by_split)}")
    max_frames = config.model.max_audio_tokens * config.model.audio_downsample
    return EmotionDataset(
        load_split(Path(meta.features), split), by_split[split], meta.label_space, max_frames
    )


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    device: str = "cpu",
    batch_size: int = 64,
    report_dir: str | Path | None = None,
) -> dict:
    """Score every view the run can take on one split; writes report.json, report.md, plots and MODEL_CARD.md
    into `report_dir` (default: the run directory)."""
    run_dir = Path(run_dir)
    model, meta = load_model(run_dir, device)
    config, targets = meta.run_config, meta.label_space
    loader = DataLoader(split_dataset(meta, split), batch_size=batch_size, collate_fn=collate)
    task = config.data.task
    views = evaluable_views(config.model.views)
    results, confusions, counts = evaluate_views(model, loader, views, task, targets, torch.device(device))
    chance = None
    if targets.labels and task != "dimensional":  # uniform guessing: exact for UAR, about for macro-F1
        chance = {"macro_f1": 1.0 / len(targets.labels), "uar": 1.0 / len(targets.labels)}
    extra = {
        "split": split,
        "n": counts,
        "name": config.name,
        "params": meta.params,
        "trained_views": config.model.views,
        "encoders": meta.encoders,
        "chance": chance,
    }
    report = build_report(task, results, targets.labels or None, extra=extra)
    write_report(report_dir or run_dir, report, confusions or None, chance)
    if report_dir is None:  # the model card describes the run on its main test split
        write_model_card(run_dir, report)
    return report


def load_report(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "report.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; run `mamer evaluate {run_dir}` first")
    return json.loads(path.read_text())
