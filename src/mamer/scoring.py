"""Scores of a model per view: predictions over a loader, the task's metrics, and the number runs rank by."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from mamer.data.dataset import Targets
from mamer.data.manifest import corpus_of
from mamer.forward import run_view, view_rows
from mamer.metrics import categorical_metrics, confusion, dimensional_metrics
from mamer.modality import has_categories, has_dimensions, modalities_in, views_within
from mamer.model.mamer import MAMER


def evaluable_views(trained_views: list[str]) -> list[str]:
    """Every view whose modalities the model saw in training: a multimodal-only model also gets the unimodal
    views (its missing-modality scores); a dedicated audio-only model gets only audio."""
    return views_within(modalities_in(trained_views))


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
    pred: dict[str, np.ndarray], task: str, targets: Targets, classes: Sequence[int] | None = None
) -> tuple[dict[str, float], np.ndarray | None]:
    """Metrics of one view's predictions, and its confusion matrix for categorical tasks, over the classes (a
    class's parts count as the class: `Targets.class_logits`). With `classes` (indices into the label space)
    the predicted class is the likeliest of those alone, and rows of other classes have no categorical score."""
    metrics: dict[str, float] = {}
    matrix = None
    if has_categories(task) and "logits" in pred:
        labels = pred["labels"]
        labels = np.where(labels < 0, -100, np.asarray(targets.output_classes)[np.maximum(labels, 0)])
        labelled = labels != -100
        if classes is not None:
            labelled &= np.isin(labels, classes)
        if labelled.any():  # a view whose rows carry no class (A/V/D-only rows) has no categorical score
            logits = targets.class_logits(torch.from_numpy(pred["logits"][labelled])).numpy()
            if classes is not None:
                logits = np.where(np.isin(np.arange(logits.shape[1]), classes), logits, -np.inf)
            y_true, y_pred = labels[labelled], logits.argmax(1)
            metrics.update(categorical_metrics(y_true, y_pred, len(targets.labels)))
            matrix = confusion(y_true, y_pred, len(targets.labels))
    if has_dimensions(task) and "dims" in pred:
        known = ~np.isnan(pred["dims_true"]).any(1)
        if known.sum() >= 2:  # CCC needs two rows at least
            scale = targets.denormalise
            true = scale(torch.from_numpy(pred["dims_true"][known])).numpy()
            metrics.update(dimensional_metrics(scale(torch.from_numpy(pred["dims"][known])).numpy(), true))
    return metrics, matrix


def main_score(metrics: dict[str, float], task: str) -> float:
    """The number early stopping and comparisons rank by: macro-F1, mean CCC, or for task both the mean of those
    the rows have (a corpus with classes and no ratings is ranked by its macro-F1); 0 with neither."""
    parts = []
    if has_categories(task) and "macro_f1" in metrics:
        parts.append(metrics["macro_f1"])
    if has_dimensions(task) and "ccc_mean" in metrics:
        parts.append(metrics["ccc_mean"])
    return float(np.mean(parts)) if parts else 0.0


def corpus_parts(preds: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Each view's predictions split by the corpus of their ids: corpus -> view -> that corpus's rows, corpora
    in name order; a view without rows of a corpus (a text corpus has no audio) is left out of its part."""
    parts: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for view, pred in preds.items():
        corpora = np.array([corpus_of(i) for i in pred.get("ids", [])])
        for corpus in np.unique(corpora).tolist():
            parts.setdefault(corpus, {})[view] = {k: v[corpora == corpus] for k, v in pred.items()}
    return dict(sorted(parts.items()))


def score_views(
    preds: dict[str, dict[str, np.ndarray]], task: str, targets: Targets, classes: Sequence[int] | None = None
) -> tuple[dict, dict, dict]:
    """Metrics, confusion matrices and utterance counts per view of `predict_view`'s outputs (`classes`: see
    `score`)."""
    results, confusions, counts = {}, {}, {}
    for view, pred in preds.items():
        results[view], matrix = score(pred, task, targets, classes)
        counts[view] = len(pred.get("ids", []))
        if matrix is not None:
            confusions[view] = matrix
    return results, confusions, counts
