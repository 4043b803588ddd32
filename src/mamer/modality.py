"""One home for the names every part of MAMER shares: modalities, views, A/V/D dimensions, tasks and the
groups audio features are normalised by.

A *view* is the set of modalities the shared model reads, written ``"audio"``, ``"text"`` or ``"audio+text"``.
"""

from __future__ import annotations

from collections.abc import Iterable

MODALITIES = ("audio", "text")
VIEWS = ("audio", "text", "audio+text")
DIMENSIONS = ("arousal", "valence", "dominance")
TASKS = ("categorical", "dimensional", "both")
# model.audio_normalise: the group whose statistics audio frames are standardised by (mamer.data.frame_norm)
NORMALISATIONS = ("none", "utterance", "speaker")
# the groups a model with `audio_normalise: speaker` is scored by: its speakers' clips (as trained), all the clips
# of a corpus in the split together (a folder of one source), or each clip alone (by the training statistics)
SCORING_GROUPS = ("speaker", "corpus", "none")


def modalities_of(view: str) -> tuple[str, ...]:
    """The modalities a view reads: ``"audio+text"`` -> ``("audio", "text")``."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; known: {', '.join(VIEWS)}")
    return tuple(view.split("+"))


def view_of(modalities: Iterable[str]) -> str:
    """The view that reads exactly ``modalities`` (any order): ``{"text", "audio"}`` -> ``"audio+text"``."""
    present = set(modalities)
    return "+".join(m for m in MODALITIES if m in present)


def modalities_in(views: Iterable[str]) -> set[str]:
    """Every modality any of ``views`` reads."""
    return {m for view in views for m in modalities_of(view)}


def views_within(modalities: Iterable[str]) -> list[str]:
    """The views, in canonical order, that read only modalities from ``modalities``."""
    present = set(modalities)
    return [v for v in VIEWS if set(modalities_of(v)) <= present]


def has_categories(task: str) -> bool:
    """Whether a task predicts emotion categories ("categorical" or "both")."""
    return task in ("categorical", "both")


def has_dimensions(task: str) -> bool:
    """Whether a task predicts arousal/valence/dominance ("dimensional" or "both")."""
    return task in ("dimensional", "both")
