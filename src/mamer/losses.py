"""The method's losses, each a small object: supervised (L_S), contrastive (L_C), masked reconstruction (L_MAE)."""

from __future__ import annotations

import zlib

import torch
from torch import nn
from torch.nn import functional as F

from mamer.distributed import gather_rows, rank_world


def ccc(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Concordance correlation coefficient per column. pred, target: (N, K) -> (K,)."""
    pred, target = pred.float(), target.float()  # moments in fp32 even under bf16 autocast
    mean_p, mean_t = pred.mean(0), target.mean(0)
    var_p, var_t = pred.var(0, unbiased=False), target.var(0, unbiased=False)
    cov = ((pred - mean_p) * (target - mean_t)).mean(0)
    return 2 * cov / (var_p + var_t + (mean_p - mean_t) ** 2 + eps)


class CCCLoss(nn.Module):
    """1 - CCC per dimension, averaged; rows with a NaN target in a dimension are left out of it."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """pred, target: (N, K)."""
        losses = []
        for k in range(target.shape[1]):
            known = ~torch.isnan(target[:, k])
            if known.sum() >= 2:
                losses.append(1 - ccc(pred[known, k : k + 1], target[known, k : k + 1])[0])
        return torch.stack(losses).mean() if losses else pred.sum() * 0.0


class SupervisedLoss(nn.Module):
    """L_S for one view: row-weighted cross-entropy and/or 1 - CCC; unlabelled rows are ignored."""

    def __init__(self, use_classes: bool = True, use_dims: bool = False):
        super().__init__()
        self.use_classes, self.use_dims = use_classes, use_dims
        self.ccc = CCCLoss()

    def forward(
        self,
        logits: torch.Tensor | None,
        dims: torch.Tensor | None,
        labels: torch.Tensor,
        targets: torch.Tensor,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """logits: (N, C); dims: (N, 3); labels: (N,) long, -100 = unlabelled; targets: (N, 3), NaN = unknown;
        weights: (N,) each row's weight in the cross-entropy (its class weight, `row_weights`), None = equal.
        The cross-entropy is the weighted mean over the labelled rows, as torch's `weight=` gives for classes."""
        loss = labels.new_zeros((), dtype=torch.float32)
        labelled = labels != -100
        if self.use_classes and labelled.any():
            each = F.cross_entropy(logits, labels, ignore_index=-100, reduction="none")
            weights = labelled.float() if weights is None else weights.float() * labelled
            loss = loss + (each * weights).sum() / weights.sum()
        if self.use_dims:
            loss = loss + self.ccc(dims, targets)
        return loss


class ContrastiveLoss(nn.Module):
    """L_C: symmetric InfoNCE (CLIP) between audio-only and text-only embeddings of the same utterances.

    Under torchrun the rows of every rank are gathered first (`gather_rows`), so the negatives are the global
    batch and every rank computes the same loss, as one process holding the whole batch would.
    """

    def forward(
        self,
        audio: torch.Tensor,
        text: torch.Tensor,
        logit_scale: torch.Tensor,
        keys: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """audio, text: (N, E), row i of each from the same utterance (N may be 0 on a rank); logit_scale:
        log(1 / temperature); keys: (N,) an utterance key per row (`utterance_keys`), or None. A row drawn
        twice into the batch (oversampling, the distributed sampler's padding) is not its own negative: pairs
        of different rows with the same key are left out of the softmax. Fewer than 2 rows: a zero loss."""
        audio, text = F.normalize(audio.float(), dim=-1), F.normalize(text.float(), dim=-1)
        if keys is None:  # negative keys, distinct across rows and ranks: no row is anyone's twin
            keys = -1.0 - torch.arange(len(audio), device=audio.device) - rank_world()[0] * 2**20
        audio, text, keys = gather_rows(audio, text, keys.float()[:, None].to(audio.device))
        if len(audio) < 2:
            return logit_scale * 0.0
        logits = logit_scale.clamp(max=4.6052).exp() * audio @ text.T  # temperature >= 0.01, as in CLIP
        target = torch.arange(len(audio), device=audio.device)
        twins = (keys == keys.T) & (target[:, None] != target[None, :])
        logits = logits.masked_fill(twins, float("-inf"))
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def utterance_keys(ids: list[str]) -> torch.Tensor:
    """(N,) float32 keys, equal for equal ids: a 24-bit hash, exact in float32 so that it can travel with the
    embeddings through `gather_rows`. Two different ids share a key with probability 2^-24 per pair; they then
    only lose each other as negatives."""
    return torch.tensor([zlib.crc32(i.encode()) & 0xFFFFFF for i in ids], dtype=torch.float32)


class ReconstructionLoss(nn.Module):
    """L_MAE: rebuild frozen features at masked positions; MSE on per-position normalised targets, or cosine."""

    def __init__(self, kind: str = "mse"):
        super().__init__()
        if kind not in ("mse", "cosine"):
            raise ValueError(f"reconstruction loss kind must be 'mse' or 'cosine', got {kind!r}")
        self.kind = kind

    def forward(self, pred: torch.Tensor, target: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """pred, target: (B, T, D); masked: (B, T) bool, True = position to score."""
        if not masked.any():
            return pred.sum() * 0.0
        pred, target = pred[masked], target[masked].to(pred.dtype)
        if self.kind == "cosine":
            return (1 - F.cosine_similarity(pred, target, dim=-1)).mean()
        target = F.layer_norm(target, target.shape[-1:])  # normalised targets, as MAE's norm_pix_loss
        return F.mse_loss(pred, target)
