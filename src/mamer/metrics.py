"""Evaluation metrics: categorical (macro-F1, UAR, accuracy) and dimensional (CCC per dimension)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, recall_score
from sklearn.metrics import confusion_matrix as _sk_confusion

from mamer.modality import DIMENSIONS

# Headline metrics per task, in display order.
MAIN_METRICS = {
    "categorical": ("macro_f1", "uar"),
    "dimensional": ("ccc_mean",),
    "both": ("macro_f1", "uar", "ccc_mean"),
}


def categorical_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict[str, float]:
    """Macro-F1, weighted-F1, accuracy and UAR for integer labels `y_true`, `y_pred`: (N,).

    F1 scores average over the classes that occur in `y_true` or `y_pred` (as sklearn does by default): a class
    absent from a speaker-independent test fold and never predicted is not scored as 0, while a wrongly
    predicted absent class still counts. UAR is the mean recall over the classes present in `y_true`.
    """
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if y_true.size and (y_true.max() >= num_classes or y_pred.max() >= num_classes):
        raise ValueError(f"labels must be below num_classes={num_classes}")
    labels = sorted(set(np.unique(y_true).tolist()) | set(np.unique(y_pred).tolist()))
    present = sorted(np.unique(y_true).tolist())
    return {
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "uar": float(recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
    }


def ccc(pred: np.ndarray, true: np.ndarray) -> float:
    """Lin's concordance correlation coefficient of two (N,) arrays, with population (1/N) variances.

    CCC = 2 cov(p, t) / (var(p) + var(t) + (mean(p) - mean(t))^2). The denominator is zero only when
    both arrays are the same constant; CCC is undefined there and we return 0.0 so that a model that
    predicts a constant never scores above chance.
    """
    p = np.asarray(pred, dtype=np.float64).ravel()
    t = np.asarray(true, dtype=np.float64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"ccc: pred has {p.size} values but true has {t.size}")
    mp, mt = p.mean(), t.mean()
    cov = np.mean((p - mp) * (t - mt))
    denom = p.var() + t.var() + (mp - mt) ** 2
    if denom <= 0.0:
        return 0.0
    return float(2.0 * cov / denom)


def dimensional_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """CCC per dimension and their mean; `pred`, `true`: (N, 3), columns in `DIMENSIONS` order."""
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape or pred.ndim != 2 or pred.shape[1] != len(DIMENSIONS):
        raise ValueError(f"dimensional_metrics expects two (N, 3) arrays, got {pred.shape} and {true.shape}")
    out = {f"ccc_{d}": ccc(pred[:, i], true[:, i]) for i, d in enumerate(DIMENSIONS)}
    out["ccc_mean"] = float(np.mean(list(out.values())))
    return out


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion counts: (num_classes, num_classes) int array, rows = true class, columns = predicted."""
    labels = list(range(num_classes))
    return _sk_confusion(np.asarray(y_true).ravel(), np.asarray(y_pred).ravel(), labels=labels)


def main_metrics(task: str) -> tuple[str, ...]:
    """Headline metric names for a task: "categorical", "dimensional" or "both"."""
    if task not in MAIN_METRICS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(MAIN_METRICS)}")
    return MAIN_METRICS[task]
