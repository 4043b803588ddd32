"""Speaker-independent folds for corpora without an official split, and a check that splits share no speaker."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from mamer.data.corpora.base import some
from mamer.data.manifest import Utterance


def speaker_of(u: Utterance) -> str | None:
    """The unit most corpora's folds hold out: the speaker."""
    return u.speaker


def speaker_folds(
    rows: list[Utterance],
    k: int,
    group: Callable[[Utterance], str | None] = speaker_of,
    unit: str = "speaker",
) -> list[list[Utterance]]:
    """``k`` speaker-independent splits of ``rows``: sorted units (``group`` of a row: its speaker, or its
    IEMOCAP session) cut into k contiguous groups; fold i tests group i, develops on group i+1 (cyclic) and
    trains on the rest. k = number of units: leave one out."""
    unnamed = [u.id for u in rows if not group(u)]
    if unnamed:
        raise ValueError(f"--folds needs a {unit} on every row; {len(unnamed)} have none, e.g. {unnamed[:3]}")
    units = sorted({group(u) for u in rows})
    n = len(units)
    if n < 3:
        raise ValueError(f"{unit} folds need at least 3 {unit}s (test, dev and train), found {units}")
    if not 3 <= k <= n:
        raise ValueError(f"--folds {k}: choose 3 to {n} folds for {n} {unit}s (n = leave one {unit} out)")
    groups = [set(units[i * n // k : (i + 1) * n // k]) for i in range(k)]
    folds = []
    for i in range(k):
        test, dev = groups[i], groups[(i + 1) % k]
        split = {s: "test" if s in test else "dev" if s in dev else "train" for s in units}
        folds.append([dataclasses.replace(u, split=split[group(u)]) for u in rows])
    return folds


def shared_speakers(rows: list[Utterance], path: Path) -> list[str]:
    """A warning (in a list, or none) naming a few speakers found in more than one split of ``rows``."""
    splits_of: dict[str, set[str]] = {}
    for u in rows:
        if u.speaker:
            splits_of.setdefault(u.speaker, set()).add(u.split)
    shared = sorted(s for s, found in splits_of.items() if len(found) > 1)
    if not shared:
        return []
    named = [f"{s} ({', '.join(sorted(splits_of[s]))})" for s in shared]
    return [
        f"{path}: {len(shared)} speaker(s) appear in more than one split, e.g. {some(named)}; "
        "scores on it are not speaker-independent"
    ]
