"""Folds of protocols that give train and test rows only (EmoBox, nEMO's leave-speakers-out folds): a dev split
carved from each fold's train rows, so early stopping and every choice made on dev data never read a test row.

EmoBox's own example recipe does the same (it splits a fold's train rows 80/20 at random when no valid file
exists); here a fold whose test speakers are not among its train speakers keeps that property in its dev split:
whole train speakers are held out, never single clips of a speaker who also trains.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np

from mamer.data.manifest import Utterance

DEV_FRACTION = 0.2  # EmoBox's recipe: 80% train, 20% valid


def carve_dev(rows: list[Utterance], fraction: float = DEV_FRACTION, seed: int = 0) -> list[Utterance]:
    """``rows`` (splits train and test) with about ``fraction`` of the train rows moved to a ``dev`` split.

    Speaker-independent folds (every train row has a speaker, none of them tests) give dev whole speakers:
    ``round(fraction * n)`` of the n train speakers (at least one), evenly spaced in sorted order (RAVDESS's
    odd actors are men, even ones women: both genders develop). Otherwise dev is ``fraction`` of each class's
    train rows, drawn at random with ``seed`` (EmoBox's EmoDB folds test every speaker: so does dev).
    The choice depends on the rows alone, so every system and seed of a protocol shares one dev split.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"dev fraction must be in (0, 1), got {fraction}")
    train = [u for u in rows if u.split == "train"]
    tested = {u.speaker for u in rows if u.split == "test"}
    speakers = sorted({u.speaker for u in train if u.speaker})
    if speakers and all(u.speaker for u in train) and not tested & set(speakers):
        count = min(len(speakers) - 1, max(1, round(fraction * len(speakers))))
        if count < 1:
            raise ValueError(
                f"a dev split of whole speakers needs 2 train speakers or more, found {speakers}"
            )
        dev_speakers = {speakers[i * len(speakers) // count] for i in range(count)}
        return [dataclasses.replace(u, split="dev") if u.split == "train" and u.speaker in dev_speakers else u
                for u in rows]  # fmt: skip
    dev_ids = _stratified_ids(train, fraction, seed)
    return [
        dataclasses.replace(u, split="dev") if u.split == "train" and u.id in dev_ids else u for u in rows
    ]


def _stratified_ids(train: list[Utterance], fraction: float, seed: int) -> set[str]:
    """Ids of ``fraction`` of each class's rows (at least one of a class with two or more), drawn with ``seed``."""
    by_class: dict[str | None, list[str]] = defaultdict(list)
    for u in train:
        by_class[u.label].append(u.id)
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    for label in sorted(by_class, key=str):
        ids = sorted(by_class[label])
        take = min(len(ids) - 1, max(1, round(fraction * len(ids))))
        chosen.update(ids[i] for i in rng.permutation(len(ids))[:take])
    return chosen


def leave_speakers_out(rows: list[Utterance], k: int) -> list[list[Utterance]]:
    """``k`` folds of ``rows``: fold i tests the sorted speakers i, i + k, i + 2k, ... and trains on the rest
    (interleaved rather than contiguous, so each fold's test speakers mix the corpus's naming, and nEMO's
    fold is not all women). Every speaker is tested exactly once."""
    unnamed = [u.id for u in rows if not u.speaker]
    if unnamed:
        raise ValueError(f"leave-speakers-out folds need a speaker on every row; {len(unnamed)} have none, "
                         f"e.g. {unnamed[:3]}")  # fmt: skip
    speakers = sorted({u.speaker for u in rows if u.speaker})
    if len(speakers) < 4 or not 2 <= k <= len(speakers):
        raise ValueError(
            f"--folds {k}: leave-speakers-out folds need 4 speakers or more and 2 to {len(speakers)} folds "
            f"(n = leave one speaker out); found {len(speakers)} speakers"
        )
    folds = []
    for i in range(k):
        tested = set(speakers[i::k])
        folds.append([dataclasses.replace(u, split="test" if u.speaker in tested else "train") for u in rows])
    return folds
