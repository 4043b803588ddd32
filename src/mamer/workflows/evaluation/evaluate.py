"""Per-view evaluation: the same utterances through the audio, text and audio+text views of one model.

Only rows the task can score are scored, and `n` counts exactly those: a categorical task leaves out rows
without a class and rows whose class the model does not know (one its train split lacked); a dimensional task
rows without all three dimensions. The report's `unscored` says how many were left out and why.

A joined manifest (mamer-base's five corpora) is scored per corpus with `by_corpus`: the rows are grouped by the
prefix of their ids before the first "/" (`emodb/03a01Fa` -> emodb), each group scored on its own.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from mamer.checkpoint import ModelMeta, load_model
from mamer.data.cache import load_split
from mamer.data.dataset import EmotionDataset, collate
from mamer.data.manifest import read_manifest, splits
from mamer.modality import has_categories, has_dimensions
from mamer.model.mamer import MAMER
from mamer.scoring import corpus_parts, evaluable_views, predict_view, score_views
from mamer.workflows.evaluation.report import build_report, describe_unscored, write_report
from mamer.workflows.inference.prediction import check_labels

log = logging.getLogger(__name__)
GROUP_NOTES = {"speaker": "", "corpus": ", a corpus's clips as one group", "none": ", each clip alone"}


def split_dataset(meta: ModelMeta, split: str, model: MAMER, groups: str = "speaker") -> EmotionDataset:
    """The cached features and labels of one split of the manifest a run was trained on, as `model` reads them;
    a model with `audio_normalise: speaker` reads each clip standardised by its `groups`: its speaker's clips,
    its corpus's clips in the split (`corpus`), or the training rows' statistics it keeps (`none`: what a clip
    given alone gets)."""
    config = meta.run_config
    rows, _ = read_manifest(
        Path(config.data.manifest), labels=meta.label_space.labels, train_split=config.data.train_split
    )
    by_split = splits(rows)
    if split not in by_split:
        raise ValueError(f"split {split!r} not in {config.data.manifest}; it has {sorted(by_split)}")
    max_frames = config.model.max_audio_tokens * config.model.audio_downsample
    return EmotionDataset(
        load_split(Path(meta.features), split),
        by_split[split],
        meta.label_space,
        max_frames,
        max_tokens=config.model.max_text_tokens,
        audio_normalise=config.model.audio_normalise,
        lone_statistics=None if model.audio_in is None else model.audio_in.reference_statistics(),
        groups=groups,
    )


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    device: str = "cpu",
    batch_size: int = 64,
    report_dir: str | Path | None = None,
    by_corpus: bool = False,
    labels: Sequence[str] | None = None,
    groups: str = "speaker",
) -> dict:
    """Score every view the run can take on one split; writes report.json, report.md and plots into
    `report_dir` (default: the run directory). With `by_corpus` the report also holds each corpus's scores
    (`by_corpus`: corpus -> {"n", "results"} of the views with rows of that corpus). `labels` restricts the
    predictions to those classes (a corpus with fewer classes than the model, e.g. EmoDB and mamer-base's
    surprise), as `EmotionRecognizer.predict(labels=...)` does; rows of other classes are not scored. A model
    with `audio_normalise: speaker` standardises each clip by its `groups` (`split_dataset`): `none` is what
    `predict` does with a clip given alone, `corpus` what it does with a corpus's clips given as one group."""
    run_dir = Path(run_dir)
    model, meta = load_model(run_dir, device)
    config, targets = meta.run_config, meta.label_space
    task = config.data.task
    if labels and not has_categories(task):
        raise ValueError(f"labels restrict classes; {run_dir} has task {task!r}, which has none")
    labels = check_labels(labels, targets.labels)
    classes = [targets.labels.index(label) for label in labels] if labels else None
    dataset = split_dataset(meta, split, model, groups)
    rows, unscored = scored_rows(dataset, task, labels)
    if unscored["rows"]:
        log.warning("%s: %d row(s) not scored: %s", split, unscored["rows"], describe_unscored(unscored))
    loader = DataLoader(Subset(dataset, rows), batch_size=batch_size, collate_fn=collate)
    views = evaluable_views(config.model.views)
    preds = {view: predict_view(model, loader, view, torch.device(device)) for view in views}
    results, confusions, counts = score_views(preds, task, targets, classes)
    chance = None
    if targets.labels and has_categories(task):  # uniform guessing: exact for UAR, about for macro-F1
        guessed = len(labels or targets.labels)
        chance = {"macro_f1": 1.0 / guessed, "uar": 1.0 / guessed}
    extra = {
        "split": split,
        "n": counts,
        "unscored": unscored,
        "name": config.name,
        "params": meta.params,
        "trained_views": config.model.views,
        "encoders": meta.encoders,
        "chance": chance,
        "labels_scored": labels,
        "audio_normalise": dataset.audio_normalise + GROUP_NOTES[groups],
        "confusion": {view: matrix.tolist() for view, matrix in confusions.items()},  # rows: true classes
    }
    if by_corpus:
        extra["by_corpus"] = {}
        for corpus, part in corpus_parts(preds).items():
            part_results, _, part_counts = score_views(part, task, targets, classes)
            extra["by_corpus"][corpus] = {"n": part_counts, "results": part_results}
    report = build_report(task, results, targets.labels or None, extra=extra)
    write_report(report_dir or run_dir, report, confusions or None, chance)
    return report


def scored_rows(
    dataset: EmotionDataset, task: str, scored: Sequence[str] | None = None
) -> tuple[list[int], dict]:
    """The rows of `dataset` the task scores (of the `scored` classes only, when given), and
    `{"rows": how many are not, "why": {reason: count}}`."""
    labels = set(dataset.targets.labels)
    keep, why = [], Counter()
    for i, u in enumerate(dataset.utterances):
        reasons = []
        if has_categories(task):
            if u.label is None:
                reasons.append("no class")
            elif u.label not in labels:
                reasons.append(f"class {u.label!r}, which the model was not trained on")
            elif scored and u.label not in scored:
                reasons.append(f"class {u.label!r}, outside the labels scored")
        if has_dimensions(task) and any(
            v is None or math.isnan(v) for v in dataset.targets.normalised_dims(u)
        ):
            reasons.append("no arousal, valence and dominance")
        if reasons and (len(reasons) == 2 or task != "both"):
            why[" and ".join(reasons)] += 1
        else:
            keep.append(i)
    return keep, {"rows": sum(why.values()), "why": dict(why)}


def load_report(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "report.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; run `mamer evaluate {run_dir}` first")
    return json.loads(path.read_text())
