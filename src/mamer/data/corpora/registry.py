"""The corpus adapters by name: each reads a corpus as its owners distribute it and yields manifest rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mamer.data.audio import check_readable
from mamer.data.corpora.base import Prepared
from mamer.data.corpora.cross_corpus import SPEECH_CORPORA, leave_one_corpus_out, read_speech_corpora
from mamer.data.corpora.emobank import read_emobank
from mamer.data.corpora.emodb import read_emodb
from mamer.data.corpora.folds import speaker_of
from mamer.data.corpora.goemotions import read_goemotions
from mamer.data.corpora.iemocap import read_iemocap, session_of
from mamer.data.corpora.mamer_base import emodb_folds, held_out_folds, read_mamer_base, read_mamer_base_v2
from mamer.data.corpora.meld import read_meld
from mamer.data.corpora.msp_podcast import read_msp_podcast
from mamer.data.corpora.nemo import FOLDS as NEMO_FOLDS
from mamer.data.corpora.nemo import nemo_folds, read_nemo
from mamer.data.corpora.ravdess import read_ravdess
from mamer.data.manifest import Utterance, read_rows


@dataclass(frozen=True)
class Corpus:
    """An adapter: ``read(root)`` gives rows and problems; ``default_folds`` > 0 when it has no official
    split; ``folds`` says whether folds make sense for it at all, and ``fold_unit`` what they hold out (across
    all rows, unless ``cut_folds(rows, k)`` cuts the k folds its own way); ``user_labels`` when its labels are
    the user's own (not a corpus's fixed codes): `prepare` then warns about classes that a manifest's train
    split lacks."""

    read: Callable[[Path], Prepared]
    default_folds: int = 0
    folds: bool = False
    fold_unit: tuple[str, Callable[[Utterance], str | None]] = ("speaker", speaker_of)
    cut_folds: Callable[[list[Utterance], int], list[list[Utterance]]] | None = None
    user_labels: bool = False


def read_generic(path: Path) -> Prepared:
    """A generic CSV/JSONL manifest, validated by `read_rows`, its audio files' headers included."""
    rows, problems = read_rows(Path(path), audio_check=check_readable)
    where = {u.id: f"{path}:{line}" for line, u in rows}
    return Prepared([u for _, u in rows], problems, where=where, audio_checked=True)


CORPORA: dict[str, Corpus] = {
    "msp-podcast": Corpus(read_msp_podcast),
    "iemocap": Corpus(read_iemocap, default_folds=5, folds=True, fold_unit=("session", session_of)),
    "emodb": Corpus(read_emodb, default_folds=5, folds=True),
    "meld": Corpus(read_meld),
    "emobank": Corpus(read_emobank),
    "ravdess": Corpus(read_ravdess, folds=True),
    "goemotions": Corpus(read_goemotions),
    "nemo": Corpus(read_nemo, default_folds=NEMO_FOLDS, folds=True, cut_folds=nemo_folds),
    "speech-corpora": Corpus(  # EmoDB, RAVDESS and nEMO in their shared classes; fold k leaves corpus k out
        read_speech_corpora, default_folds=len(SPEECH_CORPORA), folds=True, cut_folds=leave_one_corpus_out
    ),
    "mamer-base": Corpus(read_mamer_base, folds=True, cut_folds=emodb_folds),  # EmoDB's speakers only
    # mamer-base's corpora and nEMO (issue 35); fold k leaves speech corpus k (EmoDB, RAVDESS, nEMO) out whole
    "mamer-base-v2": Corpus(read_mamer_base_v2, folds=True, cut_folds=held_out_folds),
    "manifest": Corpus(read_generic, folds=True, user_labels=True),
}
ALIASES = {"msp_podcast": "msp-podcast"}
