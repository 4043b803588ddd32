"""Scoring one view's predictions: rows without the task's labels are left out, never a crash."""

from __future__ import annotations

import numpy as np
import pytest

from mamer.data.dataset import Targets
from mamer.scoring import main_score, score

TARGETS = Targets(labels=["angry", "happy", "sad"], dim_mean=[3.0, 3.0, 3.0], dim_std=[1.0, 1.0, 1.0])


def predictions(labels, dims_true) -> dict[str, np.ndarray]:
    n = len(labels)
    rng = np.random.default_rng(0)
    return {
        "ids": np.array([f"u{i}" for i in range(n)]),
        "logits": rng.standard_normal((n, 3)).astype(np.float32),
        "dims": rng.standard_normal((n, 3)).astype(np.float32),
        "labels": np.array(labels),
        "dims_true": np.array(dims_true, dtype=np.float32),
    }


def test_a_view_whose_rows_are_all_unlabelled_scores_nothing():
    pred = predictions([-100, -100, -100], [[0.1, 0.2, 0.3], [0.5, -0.2, 0.0], [-1.0, 0.4, 0.2]])
    metrics, matrix = score(pred, "both", TARGETS)
    assert matrix is None and "macro_f1" not in metrics and "ccc_mean" in metrics
    metrics, matrix = score(pred, "categorical", TARGETS)
    assert (metrics, matrix) == ({}, None)
    assert main_score(metrics, "categorical") == 0.0


def test_a_view_without_known_dimensions_has_no_ccc():
    pred = predictions([0, 1, 2], [[np.nan] * 3] * 3)
    metrics, matrix = score(pred, "both", TARGETS)
    assert "ccc_mean" not in metrics and "macro_f1" in metrics and matrix.shape == (3, 3)


def test_classes_restrict_the_predictions_and_the_scored_rows():
    """Scoring a corpus with fewer classes than the model (EmoDB and mamer-base's surprise): the likeliest of
    the given classes is the prediction, and rows of the other classes have no categorical score."""
    pred = predictions([0, 1, 1, 2], [[np.nan] * 3] * 4)
    pred["logits"] = np.array(
        [[0.0, 0.0, 5.0], [0.0, 1.0, 5.0], [2.0, 1.0, 5.0], [0.0, 1.0, 5.0]], np.float32
    )
    everything, _ = score(pred, "categorical", TARGETS)
    assert everything["accuracy"] == 0.25  # "sad" wins every row
    restricted, matrix = score(pred, "categorical", TARGETS, classes=[0, 1])
    # rows 0-2 (angry, happy, happy) scored; predictions angry / happy / angry without "sad"
    assert restricted["accuracy"] == 2 / 3 and restricted["uar"] == 0.75
    assert matrix.sum() == 3 and matrix[:, 2].sum() == 0


def test_main_score_of_task_both_averages_the_parts_the_rows_have():
    """A corpus with classes and no ratings (EmoDB in mamer-base) is ranked by its macro-F1, not half of it."""
    assert main_score({"macro_f1": 0.6}, "both") == pytest.approx(0.6)
    assert main_score({"ccc_mean": 0.4}, "both") == pytest.approx(0.4)
    assert main_score({"macro_f1": 0.6, "ccc_mean": 0.4}, "both") == pytest.approx(0.5)
    assert main_score({}, "both") == 0.0
