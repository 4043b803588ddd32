"""RAVDESS speech (Ryerson Audio-Visual Database of Emotional Speech and Song), in either of two layouts:

- the official distribution: ``root/Actor_NN/03-01-EE-II-SS-RR-NN.wav`` (or ``root/audio/Actor_NN/``, ``.wav`` or
  ``.flac``), the name coding modality (03 = audio only), vocal channel (01 = speech), emotion EE, intensity II
  (01 normal, 02 strong), statement SS, repetition RR and actor NN;
- a metadata table: ``root/metadata.csv`` with columns id, audio (relative to root), text, emotion, actor (and
  optionally intensity, statement, repetition, gender), e.g.
  ``03-01-01-01-01-01-01,audio/Actor_01/03-01-01-01-01-01-01.flac,Kids are talking by the door.,neutral,...,01``.

Eight classes, RAVDESS's own names: neutral, calm, happy, sad, angry, fearful, disgust, surprised. The speaker is
the actor. The two sentences carry no emotion, so the text is kept but uninformative. RAVDESS has no official
split: the default is speaker-independent by actor, 1-16 train, 17-20 dev, 21-24 test (`--folds K` gives actor
folds instead).
"""

from __future__ import annotations

from pathlib import Path

from mamer.data.corpora.base import Prepared, acted_clip, check_audio, rows_of_table
from mamer.data.manifest import Utterance

EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
SENTENCES = {"01": "Kids are talking by the door.", "02": "Dogs are sitting by the door."}
# Actor number -> split: the default speaker-independent split (16 / 4 / 4 actors, 8 / 2 / 2 of each gender).
TRAIN_ACTORS, DEV_ACTORS, TEST_ACTORS = range(1, 17), range(17, 21), range(21, 25)
AUDIO_SUFFIXES = (".wav", ".flac")


def split_of(actor: str) -> str:
    """The default split of an actor ("01".."24"): train 1-16, dev 17-20, test 21-24."""
    number = int(actor)
    return "train" if number in TRAIN_ACTORS else "dev" if number in DEV_ACTORS else "test"


def read_ravdess(root: Path) -> Prepared:
    """RAVDESS speech rows split by actor, from ``root/metadata.csv`` or the ``Actor_NN`` folders."""
    root = Path(root)
    if (root / "metadata.csv").is_file():
        return _from_metadata(root / "metadata.csv")
    files = [p for p in _actor_files(root) if p.suffix.lower() in AUDIO_SUFFIXES]
    if files:
        return _from_files(files)
    raise FileNotFoundError(
        f"{root}: no RAVDESS found; expected {root}/Actor_01/03-01-01-01-01-01-01.wav ... "
        f"or a table {root}/metadata.csv (id, audio, text, emotion, actor)"
    )


def _actor_files(root: Path) -> list[Path]:
    return sorted(
        p for base in (root, root / "audio") for p in base.glob("Actor_*/*") if not p.name.startswith(".")
    )


def parse_name(stem: str) -> tuple[str, str, str]:
    """(actor, emotion name, sentence) of a RAVDESS speech file stem like ``03-01-05-02-01-01-12``."""
    parts = stem.split("-")
    if len(parts) != 7 or not all(p.isdigit() and len(p) == 2 for p in parts):
        raise ValueError(
            f"name {stem!r} is not a RAVDESS code MM-VV-EE-II-SS-RR-AA (e.g. 03-01-05-02-01-01-12)"
        )
    modality, channel, emotion, _, statement, _, actor = parts
    if (modality, channel) != ("03", "01"):
        raise ValueError(f"{stem!r} is not audio-only speech (03-01-...); song and video are not read")
    if emotion not in EMOTIONS or statement not in SENTENCES or not 1 <= int(actor) <= 24:
        raise ValueError(f"unknown emotion, statement or actor code in {stem!r}")
    return actor, EMOTIONS[emotion], SENTENCES[statement]


def _from_files(files: list[Path]) -> Prepared:
    out = Prepared()
    for path in files:
        try:
            actor, emotion, text = parse_name(path.stem)
        except ValueError as err:
            out.problems.append(f"{path}: {err}; file skipped")
            continue
        out.rows.append(acted_clip(path.stem, path, text, emotion, actor, split_of(actor)))
    return out


def _from_metadata(table: Path) -> Prepared:
    return rows_of_table(table, ("id", "audio", "emotion", "actor"), _metadata_row)


def _metadata_row(row: dict[str, str], table: Path, where: str, problems: list[str]) -> Utterance | None:
    """One metadata.csv row as an utterance, or None (with the reason in ``problems``)."""
    names = set(EMOTIONS.values())
    emotion, actor = row["emotion"].lower(), row["actor"]
    if not row["id"] or not row["audio"]:
        problems.append(f"{where}: empty id or audio path; row skipped")
        return None
    if emotion not in names:
        problems.append(
            f"{where}: unknown emotion {row['emotion']!r} (expected one of {sorted(names)}); row skipped"
        )
        return None
    if not (actor.isdigit() and 1 <= int(actor) <= 24):
        problems.append(f"{where}: actor {actor!r} is not 1-24; row skipped")
        return None
    audio = table.parent / row["audio"]
    if not check_audio(audio, where, problems):
        return None
    text = row.get("text") or SENTENCES.get(row.get("statement", ""))
    actor = f"{int(actor):02d}"
    return acted_clip(row["id"], audio, text, emotion, actor, split_of(actor))
