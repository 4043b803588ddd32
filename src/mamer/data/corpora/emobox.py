"""EmoBox's fold files as splits (Ma et al., "EmoBox: Multilingual Multi-corpus Speech Emotion Recognition
Toolkit and Benchmark", Interspeech 2024; github.com/emo-box/EmoBox, MIT).

A corpus's EmoBox folder (``data/<corpus>/`` there) holds ``label_map.json`` and ``fold_N/<corpus>_train_fold_N.jsonl``
and ``..._test_fold_N.jsonl``: one JSON object a line with ``key`` (``emodb-03a01Fa``: the dataset name, a dash,
and the corpus's own clip name, which is our id) and ``emo`` (EmoBox's label, which ``label_map.json`` maps to
its unified name: ``boredem`` -> ``Boredom``). Each fold becomes one manifest of the corpus's rows as our
adapter reads them (our labels and audio; EmoBox's ``wav`` path is not used), with the fold's train and test
rows and a dev split carved from its train rows (`carve_dev`): EmoBox has no validation split.

A fold row whose clip our copy lacks, or whose EmoBox class is not the class our adapter reads, is a problem
naming the fold file and line; the row is left out of that fold.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from mamer.data.corpora.base import some
from mamer.data.corpora.train_dev import carve_dev
from mamer.data.manifest import Utterance

# Our adapters' class names (EmoDB's English names, RAVDESS's and nEMO's own) -> EmoBox's unified names.
UNIFIED = {
    "anger": "Angry", "angry": "Angry", "boredom": "Boredom", "calm": "Calm", "disgust": "Disgust",
    "fear": "Fear", "fearful": "Fear", "happiness": "Happy", "happy": "Happy", "neutral": "Neutral",
    "sadness": "Sad", "sad": "Sad", "surprise": "Surprise", "surprised": "Surprise",
}  # fmt: skip
SPLITS = ("train", "test")


def fold_numbers(folder: Path) -> list[int]:
    """EmoBox's fold numbers under ``folder`` (``fold_1``, ``fold_2``, ...), sorted; an error if none."""
    folder = Path(folder)
    numbers = sorted(
        int(m.group(1)) for p in folder.glob("fold_*") if (m := re.fullmatch(r"fold_(\d+)", p.name))
    )
    if not numbers:
        raise FileNotFoundError(
            f"{folder}: no EmoBox folds (fold_1/, fold_2/, ... with *_train_fold_N.jsonl)"
        )
    return numbers


def read_label_map(folder: Path) -> dict[str, str]:
    """EmoBox label -> its unified class name, from ``folder/label_map.json``."""
    path = Path(folder) / "label_map.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: EmoBox's label map is missing (it maps each fold's `emo` to a class)"
        )
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a JSON object of label -> class ({err})") from err
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise ValueError(f"{path}: expected a JSON object of label -> class name")
    return mapping


def fold_file(folder: Path, number: int, split: str) -> Path:
    """The fold file of ``split`` (train or test) in ``folder/fold_<number>/``."""
    found = sorted((Path(folder) / f"fold_{number}").glob(f"*_{split}_fold_{number}.jsonl"))
    if len(found) != 1:
        raise FileNotFoundError(
            f"{Path(folder) / f'fold_{number}'}: expected one *_{split}_fold_{number}.jsonl, found {len(found)}"
        )
    return found[0]


def unified_class(emo: str, label_map: dict[str, str], notes: list[str]) -> str | None:
    """EmoBox's unified class of fold label ``emo``: ``label_map[emo]``, or the one key equal to it ignoring case
    (EmoBox's EmoDB folds write ``neutral`` where its label map says ``Neutral``; noted once); else None."""
    if emo in label_map:
        return label_map[emo]
    alike = [key for key in label_map if key.casefold() == emo.casefold()]
    if len(alike) != 1:
        return None
    note = f"EmoBox label {emo!r} is not in label_map.json; read as its key {alike[0]!r} (same but for case)"
    if note not in notes:
        notes.append(note)
    return label_map[alike[0]]


def read_fold(
    path: Path, label_map: dict[str, str], problems: list[str], notes: list[str]
) -> dict[str, tuple[str, str]]:
    """Our id -> (EmoBox's unified class, "file:line") of each row of one fold file; bad lines are problems."""
    rows: dict[str, tuple[str, str]] = {}
    for line, text in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        where = f"{path}:{line}"
        if not text.strip():
            continue
        try:
            record = json.loads(text)
            key, emo = record["key"], record["emo"]
        except (ValueError, KeyError, TypeError):
            problems.append(f"{where}: not an EmoBox fold row (a JSON object with key and emo); row skipped")
            continue
        if not isinstance(key, str) or "-" not in key:
            problems.append(f"{where}: key {key!r} is not <dataset>-<clip>; row skipped")
            continue
        unified = unified_class(str(emo), label_map, notes)
        if unified is None:
            problems.append(
                f"{where}: label {emo!r} is not in label_map.json ({sorted(label_map)}); row skipped"
            )
            continue
        uid = key.split("-", 1)[1]
        if uid in rows:
            problems.append(f"{where}: {key} is listed twice; later row skipped")
            continue
        rows[uid] = (unified, where)
    return rows


def emobox_folds(
    rows: list[Utterance], folder: Path, problems: list[str], notes: list[str]
) -> list[list[Utterance]]:
    """One fold's rows per EmoBox fold under ``folder`` (in fold order): ``rows`` (a corpus as our adapter reads
    it) split into train / dev / test as the fold files say, dev carved from train. Fold rows we cannot use are
    appended to ``problems``, labels read leniently to ``notes``."""
    numbers = fold_numbers(folder)
    label_map = read_label_map(folder)
    ours = {u.id: u for u in rows}
    folds = []
    for number in numbers:
        kept: list[Utterance] = []
        seen: dict[str, str] = {}
        for split in SPLITS:
            path = fold_file(folder, number, split)
            missing = []
            for uid, (unified, where) in read_fold(path, label_map, problems, notes).items():
                u = ours.get(uid)
                if u is None:
                    missing.append(uid)
                elif uid in seen:
                    problems.append(
                        f"{where}: {uid} is also in the {seen[uid]} rows of fold {number}; skipped"
                    )
                elif UNIFIED.get(u.label or "") != unified:
                    problems.append(
                        f"{where}: EmoBox says {unified} for {uid}, our copy {u.label!r}; row skipped"
                    )
                else:
                    seen[uid] = split
                    kept.append(dataclasses.replace(u, split=split))
            if missing:
                problems.append(f"{path}: {len(missing)} clip(s) not in our copy of the corpus ({some(missing)}); "
                                "left out of the fold")  # fmt: skip
        if not any(u.split == "test" for u in kept) or not any(u.split == "train" for u in kept):
            raise ValueError(f"{folder}/fold_{number}: no train or no test rows match the corpus's ids")
        folds.append(carve_dev(kept))
    return folds
