"""``prepare_corpus("emodb", root, out)``: read a corpus, validate its rows and write the manifest(s) MAMER reads.

Problems are reported and the rows skipped, or raised with ``strict=True``. Corpora without an official split get
folds, one manifest per fold (``out_fold0.jsonl``, ...): speaker-independent for EmoDB, leave-one-session-out for
IEMOCAP, leave-speakers-out with a dev split of train speakers for nEMO; mamer-base's folds resplit EmoDB's
speakers only. ``emobox=DIR`` takes the folds from EmoBox's fold files instead (`mamer.data.corpora.emobox`).
Every audio file's header is read: an empty or unreadable file leaves a text-only row (or skips a row without
text), a problem naming it. Speakers found in more than one split of a manifest, and (in a generic manifest) rows
of a class that its train split lacks, are warnings.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mamer.data.audio import AudioLoadError, check_readable
from mamer.data.corpora.base import CorpusError
from mamer.data.corpora.emobox import emobox_folds
from mamer.data.corpora.folds import shared_speakers, speaker_folds
from mamer.data.corpora.registry import ALIASES, CORPORA, Corpus
from mamer.data.manifest import Utterance, train_classes, unseen_classes, write_manifest


@dataclass
class PrepareResult:
    """What `prepare_corpus` wrote (manifest path -> its rows), the problems it skipped, notes, and warnings
    about what was written (speakers shared across splits)."""

    written: dict[Path, list[Utterance]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def prepare_corpus(
    name: str, root: Path, out: Path, strict: bool = False, folds: int = 0, emobox: Path | None = None
) -> PrepareResult:
    """Read corpus ``name`` from ``root`` and write its manifest to ``out`` (or one per fold: ``out_fold{k}``;
    with ``emobox``, fold k is EmoBox's ``fold_{k+1}``)."""
    corpus = _corpus(name)
    if emobox is not None and folds:
        raise ValueError("--emobox-folds gives the folds: drop --folds")
    folds = 0 if emobox is not None else folds or corpus.default_folds
    if (folds or emobox is not None) and not corpus.folds:
        raise ValueError(f"--folds / --emobox-folds: {name} has an official train/dev/test split; drop them")
    prepared = corpus.read(Path(root))
    named = _namer(prepared.where)
    if not prepared.audio_checked:
        prepared.rows = _readable_audio(prepared.rows, named, prepared.problems)
    rows = _drop_duplicates(prepared.rows, name, prepared.problems)
    if strict and prepared.problems:
        raise CorpusError(prepared.problems)
    if not rows:
        raise ValueError(f"{root}: no valid {name} rows ({len(prepared.problems)} problem(s))")
    result = PrepareResult(problems=prepared.problems, notes=prepared.notes)
    out = Path(out)
    if emobox is not None:
        for k, fold_rows in enumerate(emobox_folds(rows, Path(emobox), result.problems, result.notes)):
            result.written[out.with_name(f"{out.stem}_fold{k}{out.suffix}")] = fold_rows
    elif not folds:
        result.written[out] = rows
    else:
        unit, group = corpus.fold_unit
        cut = corpus.cut_folds or (lambda rows, k: speaker_folds(rows, k, group, unit))
        for k, fold_rows in enumerate(cut(rows, folds)):
            result.written[out.with_name(f"{out.stem}_fold{k}{out.suffix}")] = fold_rows
    for path, manifest_rows in result.written.items():
        write_manifest(manifest_rows, path)
        result.warnings += shared_speakers(manifest_rows, path)
        if corpus.user_labels:  # a corpus's own codes map to its classes: no split can invent one
            classes = train_classes(manifest_rows)
            result.warnings += unseen_classes(manifest_rows, classes, named, f"the train split of {path}")
    return result


def _namer(where: dict[str, str]) -> Callable[[Utterance], str]:
    """How a message names a row: file:line where the adapter knows it, else its id."""
    return lambda u: where.get(u.id, f"row {u.id!r}")


def _readable_audio(
    rows: list[Utterance], named: Callable[[Utterance], str], problems: list[str]
) -> list[Utterance]:
    """Rows whose audio file's header reads; one that does not loses its audio (skipped if it has no text)."""
    kept = []
    for u in rows:
        try:
            if u.audio is not None:
                check_readable(u.audio)
        except AudioLoadError as err:
            row = named(u)
            if u.text is None:
                problems.append(f"{err} ({row}, which has no text); row skipped")
                continue
            problems.append(f"{err} ({row}); row kept as text only")
            u = dataclasses.replace(u, audio=None)
        kept.append(u)
    return kept


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


def summary(rows: list[Utterance]) -> str:
    """One line per manifest: rows per split, and how many have audio, text and both."""
    by_split = Counter(u.split for u in rows)
    audio = sum(u.audio is not None for u in rows)
    text = sum(u.text is not None for u in rows)
    both = sum(u.audio is not None and u.text is not None for u in rows)
    order = sorted(by_split, key=lambda s: {"train": 0, "dev": 1, "test": 2}.get(s, 3))
    splits = " / ".join(f"{s} {by_split[s]}" for s in order)
    return f"{len(rows)} rows ({splits}); audio {audio}, text {text}, both {both}"
