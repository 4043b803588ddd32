"""Leave one corpus out over the speech corpora: train on two of EmoDB, RAVDESS and nEMO, test on the third.

mamer-base's generalisation criterion (docs/mamer-base.md, "Leave one corpus out"): how a model does on voices,
a language and recordings it never heard. ``root`` is laid out like ``../shared/data`` (``emodb/``,
``ravdess/``, ``nemo/``, each as its own adapter reads it; all three must be there).

Labels: the five classes all three corpora have, in mamer-base's names (chance UAR 0.2):

| class | EmoDB | RAVDESS | nEMO |
|---|---|---|---|
| anger | anger (Wut) | angry | anger |
| fear | fear (Angst) | fearful | fear |
| happiness | happiness (Freude) | happy | happiness |
| neutral | neutral | neutral | neutral |
| sadness | sadness (Trauer) | sad | sadness |
| left out | boredom, disgust | calm, disgust, surprised | surprised |

Ids and speakers are ``<corpus>/<id>`` as in mamer-base's manifest (`mamer.data.manifest.corpus_of` reads the
corpus back). Fold k tests corpus k of `SPEECH_CORPORA` whole; its train rows are the other two corpora's, with
a fifth of each one's speakers held out as dev (whole speakers, evenly spaced in sorted order: `carve_dev`), so
every choice made on dev is made on voices of the training corpora, never the tested one.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

from mamer.data.corpora.base import Prepared
from mamer.data.corpora.emodb import read_emodb
from mamer.data.corpora.mamer_base import MAPPINGS
from mamer.data.corpora.nemo import read_nemo
from mamer.data.corpora.ravdess import read_ravdess
from mamer.data.corpora.train_dev import carve_dev
from mamer.data.manifest import Utterance, corpus_of

SPEECH_CORPORA = {"emodb": read_emodb, "ravdess": read_ravdess, "nemo": read_nemo}  # fold k tests the k-th
SHARED_CLASSES = ("anger", "fear", "happiness", "neutral", "sadness")
_NEMO = {name: name for name in SHARED_CLASSES}
CLASS_OF = {"emodb": MAPPINGS["emodb"], "ravdess": MAPPINGS["ravdess"], "nemo": _NEMO}


def read_speech_corpora(root: Path) -> Prepared:
    """The three speech corpora under ``root`` in the shared classes, ids and speakers prefixed by corpus."""
    root = Path(root)
    missing = [name for name in SPEECH_CORPORA if not (root / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root}: no {', '.join(f'{n}/' for n in missing)}; leaving one corpus out "
                                "needs emodb/, ravdess/ and nemo/ (a folder laid out like ../shared/data)")  # fmt: skip
    out = Prepared(audio_checked=True)
    for name, read in SPEECH_CORPORA.items():
        part = read(root / name)
        out.audio_checked &= part.audio_checked  # else `prepare_corpus` reads every file's header
        out.problems += [f"{name}: {p}" for p in part.problems]
        out.notes += [f"{name}: {n}" for n in part.notes]
        out.where |= {f"{name}/{uid}": where for uid, where in part.where.items()}
        dropped: Counter[str] = Counter()
        for u in part.rows:
            label = CLASS_OF[name].get(u.label)
            if label not in SHARED_CLASSES:
                dropped[str(u.label)] += 1
                continue
            speaker = None if u.speaker is None else f"{name}/{u.speaker}"
            out.rows.append(dataclasses.replace(u, id=f"{name}/{u.id}", label=label, speaker=speaker))
        if dropped:
            counts = ", ".join(f"{label} {n}" for label, n in sorted(dropped.items()))
            out.notes.append(
                f"{name}: {sum(dropped.values())} rows outside the shared classes left out ({counts})"
            )
    return out


def leave_one_corpus_out(rows: list[Utterance], k: int) -> list[list[Utterance]]:
    """One fold per corpus of `SPEECH_CORPORA` (``k`` must be their number): that corpus tests, the others train
    and develop (`carve_dev` on each: a fifth of its speakers)."""
    if k != len(SPEECH_CORPORA):
        raise ValueError(
            f"leaving one corpus out gives {len(SPEECH_CORPORA)} folds (one per corpus), not {k}"
        )
    by_corpus = {name: [u for u in rows if corpus_of(u.id) == name] for name in SPEECH_CORPORA}
    folds = []
    for held_out in SPEECH_CORPORA:
        fold = []
        for name, part in by_corpus.items():
            if name == held_out:
                fold += [dataclasses.replace(u, split="test") for u in part]
            else:
                fold += carve_dev([dataclasses.replace(u, split="train") for u in part])
        folds.append(fold)
    return folds
