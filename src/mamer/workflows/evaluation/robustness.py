"""Robustness at test time: a trained run's score as a growing fraction of audio frames or text tokens is dropped.

Dropping removes feature rows (frozen-encoder frames or tokens) at random, keeping the order of the rest and at
least one row, so the sequence the model reads gets shorter and sparser: a degraded modality. A modality removed
altogether is the missing-modality case, scored by the unimodal views in the experiment table.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from mamer.checkpoint import load_model
from mamer.data.dataset import collate
from mamer.modality import MODALITIES
from mamer.scoring import evaluable_views, main_score, predict_view, score
from mamer.workflows.evaluation.evaluate import split_dataset


def drop_rows(block: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """block: (T, D) -> (T', D), a random `1 - fraction` of its rows (at least one) in their original order."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"drop fraction must be in [0, 1), got {fraction}")
    keep = max(1, round(len(block) * (1.0 - fraction)))
    if keep >= len(block):
        return block
    return block[torch.randperm(len(block), generator=generator)[:keep].sort().values]


class DroppedRows(Dataset):
    """A view of an `EmotionDataset` whose `modality` blocks lose `fraction` of their rows, the same rows for the
    same item on every read (seeded by `seed` and the item's index)."""

    def __init__(self, dataset: Dataset, modality: str, fraction: float, seed: int = 0):
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        self.dataset, self.modality, self.fraction, self.seed = dataset, modality, fraction, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.dataset[i])
        block = item[self.modality]
        if block is not None and self.fraction > 0:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
            item[self.modality] = drop_rows(block, self.fraction, generator)
        return item


def candidate_views(trained_views: list[str], modality: str) -> list[str]:
    """Views a degraded `modality` can be scored on, richest first: audio+text, then the modality alone."""
    views = evaluable_views(trained_views)
    return [v for v in ("audio+text", modality) if v in views]


def robustness_curves(
    run_dir: str | Path, split: str, fractions: list[float], device: str = "cpu", batch_size: int = 64
) -> dict[str, dict]:
    """`{modality: {"view": view, "fractions": [...], "scores": [...]}}`: the task's main score (macro-F1, mean
    CCC) of the run on `split` with each fraction of that modality's rows dropped, on the richest view that has
    rows in the split; modalities the model or the split lacks are left out."""
    model, meta = load_model(run_dir, device)
    config, targets = meta.run_config, meta.label_space
    dataset = split_dataset(meta, split, model)

    def scores(view: str, modality: str) -> list[float] | None:
        out = []
        for fraction in fractions:
            loader = DataLoader(DroppedRows(dataset, modality, fraction), batch_size, collate_fn=collate)
            pred = predict_view(model, loader, view, torch.device(device))
            if "ids" not in pred:  # no row of the split has this view's modalities
                return None
            metrics, _ = score(pred, config.data.task, targets)
            out.append(main_score(metrics, config.data.task))
        return out

    curves = {}
    for modality in MODALITIES:
        for view in candidate_views(config.model.views, modality):
            values = scores(view, modality)
            if values is not None:
                curves[modality] = {"view": view, "fractions": list(fractions), "scores": values}
                break
    return curves
