"""Per-view evaluation: the same utterances through the audio, text and audio+text views of one model."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from mamer.checkpoint import ModelMeta, load_model
from mamer.data.cache import load_split
from mamer.data.dataset import EmotionDataset, collate
from mamer.data.manifest import read_manifest, splits
from mamer.modality import has_categories
from mamer.scoring import evaluable_views, evaluate_views
from mamer.workflows.evaluation.report import build_report, write_report


def split_dataset(meta: ModelMeta, split: str) -> EmotionDataset:
    """The cached features and labels of one split of the manifest a run was trained on."""
    config = meta.run_config
    by_split = splits(read_manifest(Path(config.data.manifest))[0])
    if split not in by_split:
        raise ValueError(f"split {split!r} not in {config.data.manifest}; it has {sorted(by_split)}")
    max_frames = config.model.max_audio_tokens * config.model.audio_downsample
    return EmotionDataset(
        load_split(Path(meta.features), split),
        by_split[split],
        meta.label_space,
        max_frames,
        max_tokens=config.model.max_text_tokens,
    )


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    device: str = "cpu",
    batch_size: int = 64,
    report_dir: str | Path | None = None,
) -> dict:
    """Score every view the run can take on one split; writes report.json, report.md and plots into
    `report_dir` (default: the run directory)."""
    run_dir = Path(run_dir)
    model, meta = load_model(run_dir, device)
    config, targets = meta.run_config, meta.label_space
    loader = DataLoader(split_dataset(meta, split), batch_size=batch_size, collate_fn=collate)
    task = config.data.task
    views = evaluable_views(config.model.views)
    results, confusions, counts = evaluate_views(model, loader, views, task, targets, torch.device(device))
    chance = None
    if targets.labels and has_categories(task):  # uniform guessing: exact for UAR, about for macro-F1
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
    return report


def load_report(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "report.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; run `mamer evaluate {run_dir}` first")
    return json.loads(path.read_text())
