"""Corpus adapters: each reads a corpus as its owners distribute it and yields generic manifest rows.

``prepare_corpus("emodb", root, out)`` validates the rows (problems are reported and the rows skipped, or
raised with ``strict=True``) and writes the manifest(s) the rest of MAMER reads. Corpora without an official
split (EmoDB) get speaker-independent folds, one manifest per fold (``out_fold0.jsonl``, ...).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mamer.data.corpora.base import CorpusError, Prepared
from mamer.data.corpora.emobank import read_emobank
from mamer.data.corpora.emodb import read_emodb
from mamer.data.corpora.meld import read_meld
from mamer.data.manifest import Utterance, read_manifest, write_manifest

__all__ = ["CORPORA", "Corpus", "CorpusError", "PrepareResult", "prepare_corpus", "speaker_folds", "summary"]


@dataclass(frozen=True)
class Corpus:
    """An adapter: ``read(root)`` gives rows and problems; ``default_folds`` > 0 when it has no official
    split; ``folds`` says whether speaker folds make sense for it at all."""

    read: Callable[[Path], Prepared]
    default_folds: int = 0
    folds: bool = False


def read_generic(path: Path) -> Prepared:
    """A generic CSV/JSONL manifest, validated by `read_manifest`."""
    rows, problems = read_manifest(Path(path))
    return Prepared(rows=rows, problems=problems)


CORPORA: dict[str, Corpus] = {
    "emodb": Corpus(read_emodb, default_folds=5, folds=True),
    "meld": Corpus(read_meld),
    "emobank": Corpus(read_emobank),
    "manifest": Corpus(read_generic, folds=True),
}


@dataclass
class PrepareResult:
    """What `prepare_corpus` wrote (manifest path -> its rows), the problems it skipped, and notes."""

    written: dict[Path, list[Utterance]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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
        write_manifest(rows, out)
        result.written[out] = rows
        return result
    for k, fold_rows in enumerate(speaker_folds(rows, folds)):
        path = out.with_name(f"{out.stem}_fold{k}{out.suffix}")
        write_manifest(fold_rows, path)
        result.written[path] = fold_rows
    return result


def _corpus(name: str) -> Corpus:
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


def speaker_folds(rows: list[Utterance], k: int) -> list[list[Utterance]]:
    """``k`` speaker-independent splits of ``rows``: sorted speakers cut into k contiguous groups; fold i tests
    group i, develops on group i+1 (cyclic) and trains on the rest. k = number of speakers: leave one out."""
    unnamed = [u.id for u in rows if not u.speaker]
    if unnamed:
        raise ValueError(
            f"--folds needs a speaker on every row; {len(unnamed)} have none, e.g. {unnamed[:3]}"
        )
    speakers = sorted({u.speaker for u in rows if u.speaker})
    n = len(speakers)
    if n < 3:
        raise ValueError(f"speaker folds need at least 3 speakers (test, dev and train), found {speakers}")
    if not 3 <= k <= n:
        raise ValueError(f"--folds {k}: choose 3 to {n} folds for {n} speakers (n = leave one speaker out)")
    groups = [set(speakers[i * n // k : (i + 1) * n // k]) for i in range(k)]
    folds = []
    for i in range(k):
        test, dev = groups[i], groups[(i + 1) % k]
        split = {s: "test" if s in test else "dev" if s in dev else "train" for s in speakers}
        folds.append([dataclasses.replace(u, split=split[u.speaker]) for u in rows])
    return folds


def summary(rows: list[Utterance]) -> str:
    """One line per manifest: rows per split, and how many have audio, text and both."""
    by_split = Counter(u.split for u in rows)
    audio = sum(u.audio is not None for u in rows)
    text = sum(u.text is not None for u in rows)
    both = sum(u.audio is not None and u.text is not None for u in rows)
    order = sorted(by_split, key=lambda s: {"train": 0, "dev": 1, "test": 2}.get(s, 3))
    splits = " / ".join(f"{s} {by_split[s]}" for s in order)
    return f"{len(rows)} rows ({splits}); audio {audio}, text {text}, both {both}"
