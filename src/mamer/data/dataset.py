"""Cached features + labels -> padded batches for the model."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch.utils.data import Dataset

from mamer.data.frame_norm import frame_statistics, group_statistics, standardised
from mamer.data.manifest import Utterance, corpus_of
from mamer.modality import DIMENSIONS, NORMALISATIONS, SCORING_GROUPS

if TYPE_CHECKING:  # keeps audio I/O out of the import path of the model-side code
    from mamer.data.cache import SplitFeatures

log = logging.getLogger(__name__)


@dataclass
class Targets:
    """Label space: class names, their parts, and train-split mean/std that normalise the dimensional targets.

    A part (`<class>@<corpus>`, from `data.class_parts`) is an output of its own that the rows of one corpus
    with that class train, e.g. `happiness@ravdess`, so that RAVDESS's acted happy clips and EmoDB's need not
    share one output. The head has `outputs` (the classes, then the parts); wherever the model answers
    or is scored, `class_logits` adds each part's probability to its class's, so the parts never show."""

    labels: list[str]
    dim_mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    dim_std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    parts: list[str] = field(default_factory=list)

    @classmethod
    def fit(
        cls,
        train: Sequence[Utterance],
        labels: Sequence[str] = (),
        class_parts: Mapping[str, Sequence[str]] | None = None,
    ) -> Targets:
        """The label space of the train rows: `labels` (default: their classes, sorted), the parts that
        `class_parts` (corpus -> classes) names, each checked to have train rows, and the A/V/D statistics."""
        names = list(labels) or sorted({u.label for u in train if u.label is not None})
        mean, std = [], []
        for dim in DIMENSIONS:
            values = torch.tensor(
                [getattr(u, dim) for u in train if getattr(u, dim) is not None], dtype=torch.float64
            )
            mean.append(values.mean().item() if len(values) else 0.0)
            std.append(values.std().item() if len(values) > 1 and values.std() > 0 else 1.0)
        trained = {(corpus_of(u.id), u.label) for u in train if u.label is not None}
        parts = []
        for corpus, chosen in (class_parts or {}).items():
            for label in chosen:
                if label not in names:
                    raise ValueError(
                        f"data.class_parts: {corpus}: {label!r} is not a class ({', '.join(names)})"
                    )
                if (corpus, label) not in trained:
                    raise ValueError(
                        f"data.class_parts: no train row of corpus {corpus!r} (id prefix {corpus}/) has class "
                        f"{label!r}, so its part would never train"
                    )
                parts.append(f"{label}@{corpus}")
        return cls(names, mean, std, parts)

    @property
    def outputs(self) -> list[str]:
        """The head's outputs: the classes, then their parts."""
        return self.labels + self.parts

    @property
    def output_classes(self) -> list[int]:
        """For each output, the index of the class it counts as."""
        return list(range(len(self.labels))) + [self.labels.index(p.rpartition("@")[0]) for p in self.parts]

    def class_index(self, u: Utterance) -> int:
        """The output row `u` trains: its corpus's part of its class if there is one, else its class; -100 for
        none."""
        part = f"{u.label}@{corpus_of(u.id)}"
        if part in self.parts:
            return len(self.labels) + self.parts.index(part)
        return self.labels.index(u.label) if u.label in self.labels else -100

    def class_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, outputs) head logits -> (N, classes) logits: the same without parts; with parts, the log of each
        class's probability with its parts' added (their softmax is the classes' probabilities)."""
        if not self.parts:
            return logits
        classes = range(len(self.labels))
        merge = torch.tensor(
            [[float(c == k) for k in classes] for c in self.output_classes], device=logits.device
        )
        return torch.log(logits.float().softmax(-1) @ merge)

    def normalised_dims(self, u: Utterance) -> list[float]:
        values = [getattr(u, d) for d in DIMENSIONS]
        return [
            math.nan if v is None else (v - m) / s
            for v, m, s in zip(values, self.dim_mean, self.dim_std, strict=True)
        ]

    def denormalise(self, dims: torch.Tensor) -> torch.Tensor:
        """(N, 3) normalised -> corpus scale."""
        return dims * torch.tensor(self.dim_std) + torch.tensor(self.dim_mean)


@dataclass
class Batch:
    """A padded batch. A modality absent from every sample is None."""

    ids: list[str]
    audio: torch.Tensor | None  # (B, Ta, Da) float
    audio_mask: torch.Tensor | None  # (B, Ta) bool, True = valid frame
    text: torch.Tensor | None  # (B, Tt, Dt) float
    text_mask: torch.Tensor | None  # (B, Tt) bool
    has_audio: torch.Tensor  # (B,) bool
    has_text: torch.Tensor  # (B,) bool
    labels: torch.Tensor  # (B,) long, -100 = no class label
    dims: torch.Tensor  # (B, 3) float, normalised, NaN = unknown
    weights: torch.Tensor | None = None  # (B,) float, each row's weight in the cross-entropy; None = equal

    def to(self, device: torch.device | str) -> Batch:
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}
        return Batch(**moved)

    def __len__(self) -> int:
        return len(self.ids)


class EmotionDataset(Dataset):
    """Rows of one split's feature cache joined with their manifest labels; with `audio_repeat` k > 1, each row
    that has audio appears k times (oversampling the audio rows of partially paired data); `corpus_repeat` gives
    the rows of named corpora (`corpus_of` their id) their own count, in place of `audio_repeat`.
    `audio_normalise` (`model.audio_normalise`): each row's audio frames standardised by its speaker's frames
    in this split (`speaker`) or by its own (`utterance`), or read as cached. With `speaker`, `groups` can score
    the rows by other groups: all the rows of a corpus together (`corpus`), or none (`none`: each row alone). A
    row of no group (no speaker, every row with `none`) is standardised by `lone_statistics` (the training rows'
    raw statistics, which the model keeps), or without them by the split's own; `lone_share`
    (`train.lone_share`) of the rows drawn, at random each time, are standardised so too."""

    def __init__(
        self,
        features: SplitFeatures,
        utterances: Sequence[Utterance],
        targets: Targets,
        max_frames: int,
        audio_repeat: int = 1,
        max_tokens: int | None = None,
        corpus_repeat: Mapping[str, int] | None = None,
        audio_normalise: str = "none",
        lone_statistics: tuple[torch.Tensor, torch.Tensor] | None = None,
        groups: str = "speaker",
        lone_share: float = 0.0,
    ):
        """`max_frames` / `max_tokens`: the most audio frames and text tokens the model reads (its learned
        positions); longer rows are shortened, and the count is logged."""
        by_id = {u.id: u for u in utterances}
        self.features, self.targets, self.max_frames, self.max_tokens = (
            features,
            targets,
            max_frames,
            max_tokens,
        )
        corpus_repeat = corpus_repeat or {}

        def repeats(i: int) -> int:
            default = audio_repeat if features.has_audio(i) else 1
            return corpus_repeat.get(corpus_of(features.ids[i]), default)

        self.rows = [i for i in range(len(features.ids)) for _ in range(repeats(i))]
        self.utterances = [by_id[features.ids[i]] for i in self.rows]
        self.row_weights: list[float] | None = None  # each row's cross-entropy weight (make_loaders)
        if audio_normalise not in NORMALISATIONS:
            raise ValueError(
                f"model.audio_normalise must be one of {', '.join(NORMALISATIONS)}, not {audio_normalise!r}"
            )
        self.audio_normalise = audio_normalise
        if lone_share and (audio_normalise != "speaker" or not 0.0 < lone_share < 1.0):
            raise ValueError(
                f"train.lone_share {lone_share} needs model.audio_normalise speaker and a share in [0, 1)"
            )
        if groups not in SCORING_GROUPS:
            raise ValueError(f"groups must be one of {', '.join(SCORING_GROUPS)}, not {groups!r}")
        self.speaker_statistics = []
        if audio_normalise == "speaker":
            if lone_statistics is None:  # without the training rows' statistics: this split's own raw ones
                lone_statistics = frame_statistics(
                    a for i in range(len(features.ids)) if (a := features.audio_of(i)) is not None
                )
            self.speaker_statistics = _speaker_statistics(features, by_id, lone_statistics, groups)
        self.lone_statistics, self.lone_share = lone_statistics, lone_share
        _warn_long(features, max_frames)
        _warn_long_text(features, max_tokens)

    def __len__(self) -> int:
        return len(self.rows)

    def modalities(self, i: int) -> tuple[bool, bool]:
        """(has audio, has text) of row `i`, without reading its features."""
        return self.features.has_audio(self.rows[i]), self.features.has_text(self.rows[i])

    def audio(self, row: int, alone: bool = False) -> torch.Tensor | None:
        """The whole audio `(T, D)` of feature row `row` as the model reads it (normalised, not shortened);
        `alone`: with `speaker`, as a clip alone (by `lone_statistics`)."""
        audio = self.features.audio_of(row)
        if audio is None or self.audio_normalise == "none":
            return audio
        if alone and self.audio_normalise == "speaker":
            return standardised(audio, self.lone_statistics)
        if self.audio_normalise == "utterance":
            return standardised(audio, frame_statistics([audio]))
        return standardised(audio, self.speaker_statistics[row])

    def audio_statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-dimension mean and std over every audio frame of the split as the model reads them (each row
        once, whatever its repeats), for `model.audio_standardise`."""
        rows = range(len(self.features.ids))
        statistics = frame_statistics(a for i in rows if (a := self.audio(i)) is not None)
        if statistics is None:
            raise ValueError("no audio frames in the split to standardise by (model.audio_standardise)")
        return statistics

    def __getitem__(self, i: int) -> dict:
        u, row = self.utterances[i], self.rows[i]
        alone = bool(self.lone_share) and float(torch.rand(())) < self.lone_share  # no draw without a share
        audio, text = self.audio(row, alone), self.features.text_of(row)
        return {
            "id": u.id,
            "audio": None if audio is None else audio[: self.max_frames],
            "text": None if text is None else text[: self.max_tokens],
            "label": self.targets.class_index(u),
            "dims": self.targets.normalised_dims(u),
            "weight": 1.0 if self.row_weights is None else self.row_weights[i],
        }


def _speaker_statistics(
    features: SplitFeatures,
    by_id: Mapping[str, Utterance],
    lone: tuple[torch.Tensor, torch.Tensor] | None,
    groups: str,
) -> list:
    """For each feature row, the statistics of its group's audio frames in the split (`groups`: its speaker's,
    its corpus's); `lone` for a row of no speaker, which is logged, and for every row with `groups` none."""

    def group(uid: str) -> tuple | None:  # corpus and speaker: two corpora may both have a speaker "01"
        speaker = by_id[uid].speaker
        if groups == "corpus":
            return (corpus_of(uid),)
        return None if groups == "none" or speaker is None else (corpus_of(uid), speaker)

    speakers = [group(i) for i in features.ids]
    blocks = [features.audio_of(i) for i in range(len(speakers))]
    alone = sum(s is None and b is not None for s, b in zip(speakers, blocks, strict=True))
    if alone and groups == "speaker":
        log.warning(
            "model.audio_normalise speaker: %d of %d rows with audio name no speaker; each is standardised by "
            "the training rows' statistics", alone, sum(b is not None for b in blocks),
        )  # fmt: skip
    return group_statistics(blocks, speakers, lone)


def _warn_long(features: SplitFeatures, max_frames: int) -> None:
    """Say how many utterances `__getitem__` shortens to `max_frames` audio frames (never a silent crop)."""
    lengths = [len(a) for i in range(len(features.ids)) if (a := features.audio_of(i)) is not None]
    long = sum(n > max_frames for n in lengths)
    if long:
        log.warning(
            "%d of %d utterances have more than %d audio frames (model.max_audio_tokens x audio_downsample); "
            "the model reads only their first %d frames here (longest: %d). Raise model.max_audio_tokens to "
            "keep them whole; `mamer predict` reads long audio in windows instead.",
            long, len(lengths), max_frames, max_frames, max(lengths),
        )  # fmt: skip


def _warn_long_text(features: SplitFeatures, max_tokens: int | None) -> None:
    """Say how many texts `__getitem__` shortens to `max_tokens` tokens (a text encoder may give more)."""
    if max_tokens is None:
        return
    lengths = [len(t) for i in range(len(features.ids)) if (t := features.text_of(i)) is not None]
    long = sum(n > max_tokens for n in lengths)
    if long:
        log.warning(
            "%d of %d texts have more than %d tokens (model.max_text_tokens); the model reads their first %d",
            long, len(lengths), max_tokens, max_tokens,
        )  # fmt: skip


def _pad(blocks: list[torch.Tensor | None]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    present = [b for b in blocks if b is not None]
    if not present:
        return None, None
    length, dim = max(len(b) for b in present), present[0].shape[1]
    out = torch.zeros(len(blocks), length, dim)
    mask = torch.zeros(len(blocks), length, dtype=torch.bool)
    for i, b in enumerate(blocks):
        if b is not None:
            out[i, : len(b)] = b.float()
            mask[i, : len(b)] = True
    return out, mask


def collate(items: list[dict]) -> Batch:
    audio, audio_mask = _pad([it["audio"] for it in items])
    text, text_mask = _pad([it["text"] for it in items])
    return Batch(
        ids=[it["id"] for it in items],
        audio=audio,
        audio_mask=audio_mask,
        text=text,
        text_mask=text_mask,
        has_audio=torch.tensor([it["audio"] is not None for it in items]),
        has_text=torch.tensor([it["text"] is not None for it in items]),
        labels=torch.tensor([it["label"] for it in items], dtype=torch.long),
        dims=torch.tensor([it["dims"] for it in items], dtype=torch.float32),
        weights=torch.tensor([it["weight"] for it in items], dtype=torch.float32),
    )
