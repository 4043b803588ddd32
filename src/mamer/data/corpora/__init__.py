"""Corpus adapters: each reads a corpus as its owners distribute it and yields generic manifest rows.

``prepare_corpus("emodb", root, out)`` validates the rows (problems are reported and the rows skipped, or
raised with ``strict=True``) and writes the manifest(s) the rest of MAMER reads. Corpora without an official
split get folds, one manifest per fold (``out_fold0.jsonl``, ...): speaker-independent for EmoDB,
leave-one-session-out for IEMOCAP. Speakers found in more than one split of a manifest are a warning.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mamer.data.corpora.base import CorpusError, Prepared, some
from mamer.data.corpora.emobank import read_emobank
from mamer.data.corpora.emodb import read_emodb
from mamer.data.corpora.iemocap import read_iemocap, session_of
from mamer.data.corpora.meld import read_meld
from mamer.data.corpora.msp_podcast import read_msp_podcast
from mamer.data.manifest import Utterance, read_manifest, write_manifest

__all__ = [
    "CORPORA",
    "Corpus",
    "CorpusError",
    "PrepareResult",
    "prepare_corpus",
    "shared_speakers",
    "speaker_folds",
    "summary",
]


def speaker_of(u: Utterance) -> str | None:
    """The unit most corpora's folds hold out: the speaker."""
    return u.speaker


@dataclass(frozen=True)
class Corpus:
    """An adapter: ``read(root)`` gives rows and problems; ``default_folds`` > 0 when it has no official
    split; ``folds`` says whether folds make sense for it at all, and ``fold_unit`` what they hold out."""

    read: Callable[[Path], Prepared]
    default_folds: int = 0
    folds: bool = False
    fold_unit: tuple[str, Callable[[Utterance], str | None]] = ("speaker", speaker_of)


def read_generic(path: Path) -> Prepared:
    """A generic CSV/JSONL manifest, validated by `read_manifest`."""
    rows, problems = read_manifest(Path(path))
    return Prepared(rows=rows, problems=problems)


CORPORA: dict[str, Corpus] = {
    "msp-podcast": Corpus(read_msp_podcast),
    "iemocap": Corpus(read_iemocap, default_folds=5, folds=True, fold_unit=("session", session_of)),
    "emodb": Corpus(read_emodb, default_folds=5, folds=True),
    "meld": Corpus(read_meld),
    "emobank": Corpus(read_emobank),
    "manifest": Corpus(read_generic, folds=True),
}
ALIASES = {"msp_podcast": "msp-podcast"}


@dataclass
class PrepareResult:
    """What `prepare_corpus` wrote (manifest path -> its rows), the problems it skipped, notes, and warnings
    about what was written (speakers shared across splits)."""

    written: dict[Path, list[Utterance]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def prepare_corpus(name: str, root: Path, out: Path, strict: bool = False, folds: int = 0) -> PrepareResult:
    """Read corpus ``name`` from ``root`` and write its manifest to ``out`` (or one per fold: ``out_fold{k}``)."""
    corpus = _corpus(name)
    folds = folds or corpus.default_folds
    if folds and not corpus.folds:
        raise ValueError(f"--folds: {name} has an official train/dev/test split; drop --folds")
    prepared = corpus.read(Path(root))
    rows = _drop_duplicates(prepared.rows, name, prepared.problems)
    if strict and prepared.problems:
        raise CorpusError(prepared.problems)
    if not rows:
        raise ValueError(f"{root}: no valid {name} rows ({len(prepared.problems)} problem(s))")
    result = PrepareResult(problems=prepared.problems, notes=prepared.notes)
    out = Path(out)
    if not folds:
        result.written[out] = rows
    else:
        unit, group = corpus.fold_unit
        for k, fold_rows in enumerate(speaker_folds(rows, folds, group, unit)):
            result.written[out.with_name(f"{out.stem}_fold{k}{out.suffix}")] = fold_rows
    for path, manifest_rows in result.written.items():
        write_manifest(manifest_rows, path)
        result.warnings += shared_speakers(manifest_rows, path)
    return result


def _corpus(name: str) -> Corpus:
    name = ALIASES.get(name, name)
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; known: {', '.join(CORPORA)}")
    return CORPORA[name]


def _drop_duplicates(rows: list[Utterance], name: str, problems: list[str]) -> list[Utterance]:
    seen: set[str] = set()
    kept = []
    for u in rows:
        if u.id in seen:
            problems.append(f"{name}: duplicate id {u.id!r}; later row skipped")
            continue
        seen.add(u.id)
        kept.append(u)
    return kept


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


def summary(rows: list[Utterance]) -> str:
    """One line per manifest: rows per split, and how many have audio, text and both."""
    by_split = Counter(u.split for u in rows)
    audio = sum(u.audio is not None for u in rows)
    text = sum(u.text is not None for u in rows)
    both = sum(u.audio is not None and u.text is not None for u in rows)
    order = sorted(by_split, key=lambda s: {"train": 0, "dev": 1, "test": 2}.get(s, 3))
    splits = " / ".join(f"{s} {by_split[s]}" for s in order)
    return f"{len(rows)} rows ({splits}); audio {audio}, text {text}, both {both}"
