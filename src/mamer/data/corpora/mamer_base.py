"""mamer-base: the real corpora of the released model joined in one manifest and one label space.

``root`` is laid out like ``../shared/data``: ``emodb/``, ``ravdess/``, ``meld/``, ``goemotions/``, ``emobank/``,
each as its own adapter reads it. A corpus whose folder is missing is left out with a note (a root holding one
corpus gives the manifest of a dedicated single-corpus model; one without ``emodb/`` the no-EmoDB variant).

Label space: Ekman's six basic emotions + neutral, for the categorical task, plus arousal/valence/dominance where a
corpus rates them (task ``both``; a row without a class or without ratings has no term for it):

| class | EmoDB | RAVDESS | MELD | GoEmotions (Ekman) |
|---|---|---|---|---|
| anger | anger (Wut) | angry | anger | anger |
| disgust | disgust (Ekel) | disgust | disgust | disgust |
| fear | fear (Angst) | fearful | fear | fear |
| happiness | happiness (Freude) | happy | joy | joy |
| neutral | neutral | neutral | neutral | neutral |
| sadness | sadness (Trauer) | sad | sadness | sadness |
| surprise | - | surprised | surprise | surprise |
| left out | boredom (Langeweile) | calm | - | multi-label rows |

EmoDB's boredom and RAVDESS's calm have no counterpart in the other corpora and are left out (not merged into
neutral); GoEmotions rows with more than one label are left out by its adapter, and only every
``GOEMOTIONS_TRAIN_EVERY``-th of its single-label train rows is kept (training time; dev and test whole). The counts
are notes. EmoBank has no classes: its rows carry valence, arousal and dominance on its 1-5 scale, text only.

Modalities: EmoDB and RAVDESS are audio with their fixed sentences as text (the same sentences in every emotion,
so the text carries no emotion and the model must learn to ignore it); MELD, GoEmotions and EmoBank are text.

Ids and speakers are ``<corpus>/<id or speaker in the corpus>`` (`mamer.data.manifest.corpus_of` reads the corpus
back), so per-corpus scores and oversampling need no extra field. Splits, speaker-independent for the audio
corpora and official for the text corpora:

| corpus | train | dev | test |
|---|---|---|---|
| EmoDB | speakers 11-16 | ``dev_emodb``: speakers 09, 10 | ``test_emodb``: speakers 03, 08 |
| RAVDESS | actors 1-16 | ``dev_ravdess``: actors 17-20 | ``test_ravdess``: actors 21-24 |
| MELD, GoEmotions, EmoBank | official train | ``dev``: official dev | ``test_<corpus>``: official test |

The shared ``dev`` split, which training early-stops on, holds the text corpora only; the audio corpora's dev
rows are in their own splits, scored per corpus for model selection. (With task ``both``, scoring gave an audio
view without ratings a NaN CCC, so a dev score over it never saved a checkpoint; the scoring now skips such
metrics, but the released model was selected with this layout.) Each speaker set holds both genders (EmoDB
03/10 male, 08/09 female).

EmoDB's split is its speaker fold 0 of ``EMODB_FOLDS`` (`mamer.data.corpora.speaker_folds`: sorted speakers cut
into five pairs; fold k tests pair k and develops on pair k+1). `emodb_folds` gives the joint manifest for every
fold, EmoDB's rows resplit and the other corpora's unchanged (``mamer prepare --corpus mamer-base --folds 5``), for
the cross-validated EmoDB comparison.

mamer-base v2 (``mamer prepare --corpus mamer-base-v2``, issue 35) adds nEMO (Polish speech; anger, fear,
happiness, neutral, sadness, and surprised as surprise) in its leave-speakers-out fold 1: ``test_nemo`` and
``dev_nemo`` as for the other speech corpora. Its ``--folds 3`` leave one speech corpus out whole
(`held_out_folds`): the release's recipe scored on voices and a language it never heard.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from mamer.data.corpora.base import Prepared
from mamer.data.corpora.emobank import read_emobank
from mamer.data.corpora.emodb import read_emodb
from mamer.data.corpora.folds import speaker_folds
from mamer.data.corpora.goemotions import read_goemotions
from mamer.data.corpora.meld import read_meld
from mamer.data.corpora.nemo import FOLDS as NEMO_FOLDS
from mamer.data.corpora.nemo import nemo_folds, read_nemo
from mamer.data.corpora.ravdess import read_ravdess
from mamer.data.manifest import Utterance, corpus_of

LABELS = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
# Corpus label -> mamer-base class; None = left out. EmoBank has no classes.
MAPPINGS: dict[str, dict[str, str | None]] = {
    "emodb": {
        "anger": "anger",
        "boredom": None,
        "disgust": "disgust",
        "fear": "fear",
        "happiness": "happiness",
        "neutral": "neutral",
        "sadness": "sadness",
    },
    "ravdess": {
        "angry": "anger",
        "calm": None,
        "disgust": "disgust",
        "fearful": "fear",
        "happy": "happiness",
        "neutral": "neutral",
        "sad": "sadness",
        "surprised": "surprise",
    },
    "meld": {**{name: name for name in LABELS if name != "happiness"}, "joy": "happiness"},
    "goemotions": {**{name: name for name in LABELS if name != "happiness"}, "joy": "happiness"},
    "emobank": {},
    "nemo": {
        **{name: name for name in LABELS if name not in ("disgust", "surprise")},
        "surprised": "surprise",
    },
}
READERS: dict[str, Callable[[Path], Prepared]] = {
    "emodb": read_emodb,
    "ravdess": read_ravdess,
    "meld": read_meld,
    "goemotions": read_goemotions,
    "emobank": read_emobank,
}


def read_nemo_fold1(root: Path) -> Prepared:
    """nEMO's rows split as its EmoBox-style leave-speakers-out fold 1 (`nemo_folds`; it has no official split)."""
    part = read_nemo(root)
    part.rows = nemo_folds(part.rows, NEMO_FOLDS)[0]
    return part


# mamer-base v2 (issue 35): the same corpora and nEMO, Polish speech (`read_mamer_base_v2`)
V2_READERS: dict[str, Callable[[Path], Prepared]] = {**READERS, "nemo": read_nemo_fold1}
AUDIO_CORPORA = ("emodb", "ravdess", "nemo")
EMODB_FOLDS = 5  # EmoDB's split: its speaker fold 0 of five (test 03, 08; dev 09, 10; the other six train)
# Every 8th GoEmotions train row (4,945 of 39,555 single-label rows), so that the whole recipe trains in about an
# hour on 2 CPU cores; its dev and test rows are all kept.
GOEMOTIONS_TRAIN_EVERY = 8


def split_name(corpus: str, split: str) -> str:
    """A corpus split's name in the joint manifest: train stays train; test becomes ``test_<corpus>``; dev stays
    dev for the text corpora and becomes ``dev_<corpus>`` for the audio corpora (see the module docstring)."""
    if split == "test" or (split == "dev" and corpus in AUDIO_CORPORA):
        return f"{split}_{corpus}"
    return split


def read_mamer_base(root: Path, readers: dict[str, Callable[[Path], Prepared]] = READERS) -> Prepared:
    """Every corpus of ``readers`` found under ``root`` in the mamer-base label space and splits; at least one
    must be there."""
    root = Path(root)
    found = [name for name in readers if (root / name).is_dir()]
    if not found:
        raise FileNotFoundError(f"{root}: none of {', '.join(f'{n}/' for n in readers)} found; "
                                "point --root at a folder laid out like ../shared/data")  # fmt: skip
    out = Prepared()
    missing = [name for name in readers if name not in found]
    if missing:
        out.notes.append(f"{root}: no {', '.join(f'{n}/' for n in missing)}: left out of mamer-base")
    for name in found:
        part = readers[name](root / name)
        out.problems += [f"{name}: {p}" for p in part.problems]
        out.notes += [f"{name}: {n}" for n in part.notes]
        rows, dropped = joint_rows(name, part.rows)
        out.rows += rows
        if name == "goemotions":
            train = sum(u.split == "train" for u in part.rows)
            out.notes.append(f"goemotions: every {GOEMOTIONS_TRAIN_EVERY}th train row kept "
                             f"({len(range(0, train, GOEMOTIONS_TRAIN_EVERY))} of {train})")  # fmt: skip
        if dropped:
            counts = ", ".join(f"{label} {n}" for label, n in sorted(dropped.items()))
            out.notes.append(
                f"{name}: {sum(dropped.values())} rows outside the mamer-base classes left out ({counts})"
            )
    out.rows = emodb_fold(out.rows, 0, EMODB_FOLDS)
    return out


def read_mamer_base_v2(root: Path) -> Prepared:
    """mamer-base's corpora and nEMO (`V2_READERS`), in the same label space and splits; nEMO's are its
    leave-speakers-out fold 1 (`nemo_folds`: test EB0, KS0, SM0, dev IC0; docs/results.md's nEMO fold 1)."""
    return read_mamer_base(root, V2_READERS)


def held_out_folds(rows: list[Utterance], k: int) -> list[list[Utterance]]:
    """Leave one speech corpus out with the whole recipe (``mamer prepare --corpus mamer-base-v2 --folds 3``):
    fold k puts every row of the k-th of `AUDIO_CORPORA` (EmoDB, RAVDESS, nEMO) in ``test_<corpus>``, its train
    and dev rows too, and leaves the other corpora's rows as they are."""
    if k != len(AUDIO_CORPORA):
        raise ValueError(
            f"leaving one speech corpus out gives {len(AUDIO_CORPORA)} folds (one per corpus), not {k}"
        )
    present = {corpus_of(u.id) for u in rows}
    missing = [corpus for corpus in AUDIO_CORPORA if corpus not in present]
    if missing:
        raise ValueError(
            f"--folds leaves each speech corpus out in turn; this root has no {', '.join(missing)}"
        )
    return [
        [dataclasses.replace(u, split=f"test_{held}") if corpus_of(u.id) == held else u for u in rows]
        for held in AUDIO_CORPORA
    ]


def emodb_folds(rows: list[Utterance], k: int) -> list[list[Utterance]]:
    """The joint manifest once per EmoDB speaker fold (``k`` folds): EmoDB's rows resplit, the rest unchanged."""
    if not any(corpus_of(u.id) == "emodb" for u in rows):
        raise ValueError("--folds resplits EmoDB's speakers, and this mamer-base root has no emodb/")
    return [emodb_fold(rows, fold, k) for fold in range(k)]


def emodb_fold(rows: list[Utterance], fold: int, k: int) -> list[Utterance]:
    """``rows`` with EmoDB's split set by its speaker fold ``fold`` of ``k`` (``test_emodb``, ``dev_emodb``,
    ``train``); the other corpora's rows, and the order, unchanged."""
    emodb = [u for u in rows if corpus_of(u.id) == "emodb"]
    if not emodb:
        return rows
    split = {u.id: split_name("emodb", u.split) for u in speaker_folds(emodb, k)[fold]}
    return [dataclasses.replace(u, split=split[u.id]) if u.id in split else u for u in rows]


def joint_rows(corpus: str, rows: list[Utterance]) -> tuple[list[Utterance], Counter[str]]:
    """One corpus's rows with mamer-base ids, classes and splits, and the count of left-out labels."""
    mapping, kept, dropped = MAPPINGS[corpus], [], Counter()
    if corpus == "goemotions":
        rows = subsample_train(rows, GOEMOTIONS_TRAIN_EVERY)
    for u in rows:
        label = None
        if u.label is not None:
            label = mapping.get(u.label)
            if label is None:
                dropped[u.label] += 1
                continue
        split = "train" if corpus == "emodb" else u.split  # EmoDB's by its speaker fold (`emodb_fold`)
        speaker = None if u.speaker is None else f"{corpus}/{u.speaker}"  # EmoDB's 03 is not RAVDESS's 03
        kept.append(dataclasses.replace(u, id=f"{corpus}/{u.id}", label=label, speaker=speaker,
                                        split=split_name(corpus, split)))  # fmt: skip
    return kept, dropped


def subsample_train(rows: list[Utterance], every: int) -> list[Utterance]:
    """Every ``every``-th train row in corpus order (a fixed subset); other splits whole."""
    train = [u for u in rows if u.split == "train"][::every]
    return train + [u for u in rows if u.split != "train"]
