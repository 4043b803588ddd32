"""``prepare_corpus("emodb", root, out)``: read a corpus, validate its rows and write the manifest(s) MAMER reads.

Problems are reported and the rows skipped, or raised with ``strict=True``. Corpora without an official split get
folds, one manifest per fold (``out_fold0.jsonl``, ...): speaker-independent for EmoDB, leave-one-session-out for
IEMOCAP. Speakers found in more than one split of a manifest are a warning.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mamer.data.corpora.base import CorpusError
from mamer.data.corpora.folds import shared_speakers, speaker_folds
from mamer.data.corpora.registry import ALIASES, CORPORA, Corpus
from mamer.data.manifest import Utterance, write_manifest


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


def summary(rows: list[Utterance]) -> str:
    """One line per manifest: rows per split, and how many have audio, text and both."""
    by_split = Counter(u.split for u in rows)
    audio = sum(u.audio is not None for u in rows)
    text = sum(u.text is not None for u in rows)
    both = sum(u.audio is not None and u.text is not None for u in rows)
    order = sorted(by_split, key=lambda s: {"train": 0, "dev": 1, "test": 2}.get(s, 3))
    splits = " / ".join(f"{s} {by_split[s]}" for s in order)
    return f"{len(rows)} rows ({splits}); audio {audio}, text {text}, both {both}"
