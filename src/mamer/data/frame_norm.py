"""Audio frames standardised by the statistics of the group they come from (`model.audio_normalise`).

Emotion moves a speaker's features less than the speaker does: a probe on features standardised per speaker
gains 10 UA on RAVDESS's unseen speakers (docs/results.md, "EmoBox protocol"). A model with
`audio_normalise: speaker` reads every clip's frames less its group's per-dimension mean, over its group's std:
in training and evaluation the group is the clip's speaker within its split; at inference it is what the caller
names (`speaker` in `predict_batch`'s items; a folder with `--one-source`; a timeline's whole recording). A clip
of no group (no speaker in the manifest, given alone, or the only clip of its group) is standardised by the
training rows' raw statistics, which the model keeps (`AudioDownProjection.reference_*`): standardised by its
own frames, a clip loses the very offset from its speaker's average that the model reads, and scores near chance
(docs/results.md, "Speaker normalisation in the model"). `utterance` standardises every clip by its own frames."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import torch

from mamer.modality import NORMALISATIONS

STD_FLOOR = 1e-5  # the least std divided by: a dimension constant over a group is left centred, not blown up
Statistics = tuple[torch.Tensor, torch.Tensor]  # per-dimension (mean, std), each (D,)


def frame_statistics(blocks: Iterable[torch.Tensor]) -> Statistics | None:
    """Per-dimension mean and std `(D,)` float32 over every frame of `blocks` (each `(T, D)`; float64 sums,
    one block at a time, so the frames of a whole split need not fit in memory); None for no frames."""
    total = squares = None
    frames = 0
    for block in blocks:
        block = block.double()
        total = block.sum(0) if total is None else total + block.sum(0)
        squares = block.square().sum(0) if squares is None else squares + block.square().sum(0)
        frames += len(block)
    if not frames:
        return None
    mean = total / frames
    return mean.float(), (squares / frames - mean.square()).clamp(min=0).sqrt().float()


def standardised(block: torch.Tensor, statistics: Statistics) -> torch.Tensor:
    """`(T, D)` frames -> float32 frames less `mean`, over `std` (floored at `STD_FLOOR`)."""
    mean, std = statistics
    return (block.float() - mean) / std.clamp(min=STD_FLOOR)


def group_statistics(
    blocks: Sequence[torch.Tensor | None], groups: Sequence[Hashable | None], alone: Statistics | None = None
) -> list[Statistics | None]:
    """For each block, the statistics of all the blocks of its group; a block of no group (None), or the only
    block of its group, gets `alone`, or without it its own; None where a block is None. (One clip's own
    statistics remove what the model reads: see the module's docstring.)"""
    members: dict[Hashable, list[int]] = {}
    for i, (block, group) in enumerate(zip(blocks, groups, strict=True)):
        if block is not None:
            members.setdefault(("group", group) if group is not None else ("alone", i), []).append(i)
    out: list[Statistics | None] = [None] * len(blocks)
    for (kind, _), index in members.items():
        lone = kind == "alone" or len(index) == 1
        statistics = alone if lone and alone is not None else frame_statistics(blocks[i] for i in index)
        for i in index:
            out[i] = statistics
    return out


def normalised_blocks(
    blocks: Sequence[torch.Tensor | None],
    groups: Sequence[Hashable | None],
    mode: str,
    alone: Statistics | None = None,
) -> list[torch.Tensor | None]:
    """`blocks` as a model with `audio_normalise: mode` reads them (`groups` and `alone` as in
    `group_statistics`; with `utterance`, each block by its own frames whatever its group)."""
    if mode == "none":
        return list(blocks)
    if mode not in NORMALISATIONS:
        raise ValueError(f"audio_normalise must be one of {', '.join(NORMALISATIONS)}, not {mode!r}")
    if mode == "utterance":
        groups, alone = [None] * len(blocks), None
    return [
        None if b is None else standardised(b, s)
        for b, s in zip(blocks, group_statistics(blocks, groups, alone), strict=True)
    ]
