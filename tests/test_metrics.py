"""Metrics against hand-computed values and an independent CCC formula."""

import numpy as np
import pytest

from mamer.metrics import (
    categorical_metrics,
    ccc,
    confusion,
    dimensional_metrics,
    main_metrics,
)
from mamer.modality import DIMENSIONS, VIEWS

# 3 classes, 6 utterances. Confusion (rows = true): [[2, 1, 0], [0, 1, 1], [0, 0, 1]].
Y_TRUE = np.array([0, 0, 0, 1, 1, 2])
Y_PRED = np.array([0, 0, 1, 1, 2, 2])
# class 0: TP 2, FP 0, FN 1 -> P 1,   R 2/3, F1 2*(2/3)/(5/3) = 4/5
# class 1: TP 1, FP 1, FN 1 -> P 1/2, R 1/2, F1 1/2
# class 2: TP 1, FP 1, FN 0 -> P 1/2, R 1,   F1 2*(1/2)/(3/2) = 2/3
F1 = [4 / 5, 1 / 2, 2 / 3]
SUPPORT = [3, 2, 1]
RECALL = [2 / 3, 1 / 2, 1.0]


def test_constants():
    assert VIEWS == ("audio", "text", "audio+text")
    assert DIMENSIONS == ("arousal", "valence", "dominance")
    assert main_metrics("categorical") == ("macro_f1", "uar")
    assert main_metrics("dimensional") == ("ccc_mean",)
    with pytest.raises(ValueError, match="unknown task"):
        main_metrics("regression")


def test_categorical_hand_computed():
    m = categorical_metrics(Y_TRUE, Y_PRED, num_classes=3)
    assert set(m) == {"macro_f1", "weighted_f1", "accuracy", "uar"}
    assert m["macro_f1"] == pytest.approx(sum(F1) / 3)  # 59/90
    assert m["macro_f1"] == pytest.approx(59 / 90)
    assert m["weighted_f1"] == pytest.approx(
        sum(f * s for f, s in zip(F1, SUPPORT, strict=True)) / 6
    )  # 61/90
    assert m["weighted_f1"] == pytest.approx(61 / 90)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["uar"] == pytest.approx(sum(RECALL) / 3)  # 13/18
    assert m["uar"] == pytest.approx(13 / 18)
    assert all(isinstance(v, float) for v in m.values())


def test_categorical_absent_class():
    # A 4th class that neither occurs nor is predicted (a class missing from a test fold) is not scored:
    # before, macro-F1 averaged it in as 0 (sum(F1) / 4). UAR ignores it too.
    m = categorical_metrics(Y_TRUE, Y_PRED, num_classes=4)
    assert m["macro_f1"] == pytest.approx(sum(F1) / 3)
    assert m["uar"] == pytest.approx(13 / 18)
    assert m["accuracy"] == pytest.approx(4 / 6)


def test_categorical_wrong_prediction_of_an_absent_class_counts():
    # Class 3 absent from y_true but predicted once: its F1 is 0 and it is averaged in.
    y_true, y_pred = np.array([0, 0, 1, 1]), np.array([0, 3, 1, 1])
    m = categorical_metrics(y_true, y_pred, num_classes=4)
    f1_0, f1_1 = 2 * 1 * 0.5 / 1.5, 1.0  # class 0: precision 1, recall 1/2
    assert m["macro_f1"] == pytest.approx((f1_0 + f1_1 + 0.0) / 3)
    assert m["uar"] == pytest.approx((0.5 + 1.0) / 2)


def test_categorical_perfect():
    y = np.array([0, 1, 2, 2, 1])
    m = categorical_metrics(y, y, num_classes=3)
    assert m == {"macro_f1": 1.0, "weighted_f1": 1.0, "accuracy": 1.0, "uar": 1.0}


def test_confusion_counts():
    cm = confusion(Y_TRUE, Y_PRED, num_classes=4)
    expected = np.array([[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(cm, expected)
    # recall per class is the diagonal over the row sums
    np.testing.assert_allclose(np.diag(cm)[:3] / cm.sum(1)[:3], RECALL)


def test_ccc_perfect_and_negated():
    true = np.array([-1.0, 0.0, 1.0, 2.0, -2.0])  # mean 0
    assert ccc(true, true) == pytest.approx(1.0)
    assert ccc(-true, true) == pytest.approx(-1.0)


def test_ccc_bias_shift():
    # true [1, 2, 3], pred = true + 1: means 2 and 3, var_t = var_p = cov = 2/3 (population).
    # CCC = 2 * 2/3 / (2/3 + 2/3 + 1^2) = (4/3) / (7/3) = 4/7, although Pearson r = 1.
    assert ccc(np.array([2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0])) == pytest.approx(4 / 7)


def test_ccc_scale():
    # true [-1, 0, 1], pred = 2 * true: var_t 2/3, var_p 8/3, cov 4/3 -> CCC = (8/3) / (10/3) = 0.8
    assert ccc(np.array([-2.0, 0.0, 2.0]), np.array([-1.0, 0.0, 1.0])) == pytest.approx(0.8)


def test_ccc_constant():
    const = np.full(4, 0.5)
    assert ccc(const, const) == 0.0  # undefined (0/0): defined as 0
    assert ccc(const, np.array([0.0, 1.0, 2.0, 3.0])) == 0.0  # constant prediction: cov = 0
    assert ccc(const, np.full(4, 2.0)) == 0.0


def test_ccc_matches_independent_formula():
    rng = np.random.default_rng(0)
    true = rng.normal(size=200)
    pred = 0.6 * true + rng.normal(scale=0.5, size=200) + 0.3
    # CCC = rho * 2 sx sy / (sx^2 + sy^2 + (mx - my)^2), rho from np.corrcoef
    rho = np.corrcoef(pred, true)[0, 1]
    sx, sy = pred.std(), true.std()
    expected = rho * 2 * sx * sy / (sx**2 + sy**2 + (pred.mean() - true.mean()) ** 2)
    assert ccc(pred, true) == pytest.approx(expected, rel=1e-10)


def test_ccc_shape_mismatch():
    with pytest.raises(ValueError):
        ccc(np.zeros(3), np.zeros(4))


def test_dimensional_metrics():
    arousal = np.array([-1.0, 0.0, 1.0])
    true = np.stack([arousal, arousal, np.array([1.0, 2.0, 3.0])], axis=1)
    pred = np.stack([arousal, -arousal, np.array([2.0, 3.0, 4.0])], axis=1)
    m = dimensional_metrics(pred, true)
    assert list(m) == ["ccc_arousal", "ccc_valence", "ccc_dominance", "ccc_mean"]
    assert m["ccc_arousal"] == pytest.approx(1.0)
    assert m["ccc_valence"] == pytest.approx(-1.0)
    assert m["ccc_dominance"] == pytest.approx(4 / 7)
    assert m["ccc_mean"] == pytest.approx((1 - 1 + 4 / 7) / 3)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        dimensional_metrics(pred[:, :2], true[:, :2])
