import torch

from mamer.model.masking import random_token_mask


def test_masks_only_valid_tokens_at_the_ratio():
    valid = torch.tensor([[True] * 20, [True] * 10 + [False] * 10])
    masked = random_token_mask(valid, 0.3, torch.Generator().manual_seed(0))
    assert not (masked & ~valid).any()
    assert masked.sum(1).tolist() == [6, 3]


def test_keeps_one_token_and_zero_ratio_masks_nothing():
    valid = torch.tensor([[True, False, False], [False, False, False]])
    assert not random_token_mask(valid, 0.9).any()
    assert not random_token_mask(torch.ones(2, 5, dtype=torch.bool), 0.0).any()


def test_same_generator_seed_same_mask():
    valid = torch.ones(4, 30, dtype=torch.bool)
    a = random_token_mask(valid, 0.5, torch.Generator().manual_seed(3))
    b = random_token_mask(valid, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a[0], a[1])
