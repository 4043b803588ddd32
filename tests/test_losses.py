import math

import pytest
import torch

from mamer.losses import CCCLoss, ContrastiveLoss, ReconstructionLoss, SupervisedLoss, ccc


def test_ccc_perfect_and_negated():
    target = torch.tensor([[-2.0], [-1.0], [1.0], [2.0]])
    assert ccc(target, target).item() == pytest.approx(1.0, abs=1e-6)
    assert ccc(-target, target).item() == pytest.approx(-1.0, abs=1e-6)


def test_ccc_hand_computed_shift():
    # pred = target + 1: var_p = var_t = 2.5, cov = 2.5, mean gap 1 -> 2 * 2.5 / (2.5 + 2.5 + 1) = 5/6
    target = torch.tensor([[-2.0], [-1.0], [1.0], [2.0]])
    assert ccc(target + 1, target).item() == pytest.approx(5 / 6, abs=1e-6)


def test_ccc_loss_averages_dimensions_and_skips_unknown():
    target = torch.tensor([[1.0, 0.0], [2.0, 1.0], [3.0, math.nan], [4.0, 3.0]])
    pred = torch.tensor([[1.0, 0.0], [2.0, -1.0], [3.0, 5.0], [4.0, -3.0]])
    # dim 0 perfect (loss 0); dim 1 over rows 0,1,3: pred = -target with target mean 4/3 ...
    t, p = torch.tensor([0.0, 1.0, 3.0]), torch.tensor([0.0, -1.0, -3.0])
    expected_ccc1 = (
        2
        * ((p - p.mean()) * (t - t.mean())).mean()
        / (p.var(unbiased=False) + t.var(unbiased=False) + (p.mean() - t.mean()) ** 2)
    )
    assert CCCLoss()(pred, target).item() == pytest.approx((0 + 1 - expected_ccc1.item()) / 2, abs=1e-5)


def test_infonce_identical_pairs_low_orthogonal_high():
    loss = ContrastiveLoss()
    scale = torch.tensor(math.log(1 / 0.07))
    eye = torch.eye(4)
    assert loss(eye, eye, scale).item() < 0.01
    # every audio row orthogonal to every text row: uniform logits -> log(N)
    audio, text = torch.eye(8)[:4], torch.eye(8)[4:]
    assert loss(audio, text, scale).item() == pytest.approx(math.log(4), abs=1e-5)


def test_infonce_is_symmetric():
    a, t, s = torch.randn(6, 5), torch.randn(6, 5), torch.tensor(2.0)
    assert ContrastiveLoss()(a, t, s).item() == pytest.approx(ContrastiveLoss()(t, a, s).item(), abs=1e-6)


def test_reconstruction_scores_masked_positions_only():
    target = torch.randn(2, 5, 8)
    pred = torch.nn.functional.layer_norm(target, (8,)).clone()
    masked = torch.zeros(2, 5, dtype=torch.bool)
    masked[0, 1] = masked[1, 3] = True
    pred[0, 0] += 100.0  # unmasked: must not count
    assert ReconstructionLoss("mse")(pred, target, masked).item() == pytest.approx(0.0, abs=1e-6)
    assert ReconstructionLoss("cosine")(target * 3, target, masked).item() == pytest.approx(0.0, abs=1e-6)
    pred[1, 3] += 1.0
    assert ReconstructionLoss("mse")(pred, target, masked).item() == pytest.approx(0.5, abs=1e-5)


def test_supervised_row_weights_and_ignored_rows():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [5.0, -5.0]])
    labels = torch.tensor([0, 0, -100])
    no_dims = torch.full((3, 3), math.nan)
    first, second = math.log(1 + math.exp(-2)), math.log(1 + math.exp(2))
    assert SupervisedLoss()(logits, None, labels, no_dims).item() == pytest.approx(
        (first + second) / 2, abs=1e-5
    )
    weights = torch.tensor([1.0, 3.0, 100.0])  # the unlabelled row's weight counts for nothing
    loss = SupervisedLoss()(logits, None, labels, no_dims, weights)
    assert loss.item() == pytest.approx((first + 3 * second) / 4, abs=1e-5)
    as_torch = torch.nn.functional.cross_entropy(
        logits[:2], torch.tensor([0, 1]), weight=torch.tensor([1.0, 3.0])
    )
    rows = SupervisedLoss()(logits[:2], None, torch.tensor([0, 1]), no_dims[:2], torch.tensor([1.0, 3.0]))
    assert rows.item() == pytest.approx(as_torch.item(), abs=1e-6)  # class weights given per row


def test_a_row_drawn_twice_is_not_its_own_negative():
    """Rows 0 and 2 are the same utterance: the loss equals InfoNCE over rows {0, 1} and {1, 2} without the
    twin in each other's softmax, computed by hand here."""
    from mamer.losses import ContrastiveLoss, utterance_keys

    torch.manual_seed(0)
    audio, text = torch.randn(2, 8), torch.randn(2, 8)
    audio, text = torch.cat([audio, audio[:1]]), torch.cat([text, text[:1]])
    scale = torch.tensor(0.0)  # temperature 1
    loss = ContrastiveLoss()(audio, text, scale, utterance_keys(["a", "b", "a"]))
    a, t = torch.nn.functional.normalize(audio, dim=-1), torch.nn.functional.normalize(text, dim=-1)
    sim = a @ t.T
    allowed = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=torch.bool)
    masked = sim.masked_fill(~allowed, float("-inf"))
    expected = (
        torch.nn.functional.cross_entropy(masked, torch.arange(3))
        + torch.nn.functional.cross_entropy(masked.T, torch.arange(3))
    ) / 2
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    plain = ContrastiveLoss()(audio, text, scale)  # without keys the twin counts as a negative
    assert plain.item() > loss.item()
    assert utterance_keys(["x", "y", "x"]).tolist()[0] == utterance_keys(["x"]).tolist()[0]
