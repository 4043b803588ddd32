"""Corpus adapters (`registry`), their folds (`folds`) and `prepare_corpus` (`prepare`), which writes manifests."""

from mamer.data.corpora.base import CorpusError
from mamer.data.corpora.folds import shared_speakers, speaker_folds
from mamer.data.corpora.prepare import PrepareResult, prepare_corpus, summary
from mamer.data.corpora.registry import CORPORA, Corpus

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
