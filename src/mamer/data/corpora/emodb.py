"""EmoDB (Berlin Database of Emotional Speech), in either of two layouts under ``root``:

- the official distribution: ``root/wav/SSTTTEV.wav``, where SS is the speaker, TTT the sentence code, E the
  emotion letter and V the version (``03a01Wa.wav``: speaker 03, sentence a01, anger, version a);
- a metadata table: ``root/metadata.csv`` with columns id, audio (relative to root), text, emotion (English
  name), speaker (and optionally gender, sentence), e.g. ``03a01Fa,audio/03a01Fa.flac,Der Lappen...,happiness,03``.

EmoDB has no official split: splits come from speaker-independent folds (``mamer.data.corpora.speaker_folds``).
"""

from __future__ import annotations

from pathlib import Path

from mamer.data.corpora.base import Prepared, acted_clip, check_audio, rows_of_table
from mamer.data.manifest import Utterance

EMOTIONS = {
    "W": "anger",  # Wut
    "L": "boredom",  # Langeweile
    "E": "disgust",  # Ekel
    "A": "fear",  # Angst
    "F": "happiness",  # Freude
    "T": "sadness",  # Trauer
    "N": "neutral",
}

# The ten sentences, by the text code in the file name; every speaker says each one in every emotion.
SENTENCES = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}


def read_emodb(root: Path) -> Prepared:
    """EmoDB rows (split left empty for the folds to fill), from ``root/metadata.csv`` or ``root/wav/``."""
    root = Path(root)
    if (root / "metadata.csv").is_file():
        return _from_metadata(root / "metadata.csv")
    if (root / "wav").is_dir():
        return _from_wav_folder(root / "wav")
    raise FileNotFoundError(
        f"{root}: no EmoDB found; expected the official layout ({root}/wav/03a01Wa.wav ...) "
        f"or a table {root}/metadata.csv (id, audio, text, emotion, speaker)"
    )


def parse_code(stem: str) -> tuple[str, str, str]:
    """(speaker, sentence code, emotion name) of an EmoDB file stem like ``03a01Wa``; ValueError says why not."""
    if len(stem) != 7 or not stem[:2].isdigit():
        raise ValueError(f"name {stem!r} is not an EmoDB code SSTTTEV (e.g. 03a01Wa)")
    speaker, sentence, letter = stem[:2], stem[2:5], stem[5]
    if letter not in EMOTIONS:
        codes = ", ".join(f"{k}={v}" for k, v in EMOTIONS.items())
        raise ValueError(f"unknown emotion letter {letter!r} in {stem!r} (expected one of {codes})")
    if sentence not in SENTENCES:
        raise ValueError(
            f"unknown sentence code {sentence!r} in {stem!r} (expected one of {sorted(SENTENCES)})"
        )
    return speaker, sentence, EMOTIONS[letter]


def _from_wav_folder(folder: Path) -> Prepared:
    out = Prepared()
    files = sorted(folder.glob("*.wav"))
    if not files:
        raise FileNotFoundError(f"{folder}: no .wav files")
    for path in files:
        try:
            speaker, sentence, emotion = parse_code(path.stem)
        except ValueError as err:
            out.problems.append(f"{path}: {err}; file skipped")
            continue
        out.rows.append(acted_clip(path.stem, path, SENTENCES[sentence], emotion, speaker))
    return out


def _from_metadata(table: Path) -> Prepared:
    return rows_of_table(table, ("id", "audio", "emotion"), _metadata_row)


def _metadata_row(row: dict[str, str], table: Path, where: str, problems: list[str]) -> Utterance | None:
    """One metadata.csv row as an utterance, or None (with the reason in ``problems``)."""
    names = set(EMOTIONS.values())
    if not row["id"]:
        problems.append(f"{where}: empty id; row skipped")
        return None
    emotion = row["emotion"].lower()
    if emotion not in names:
        problems.append(
            f"{where}: unknown emotion {row['emotion']!r} (expected one of {sorted(names)}); row skipped"
        )
        return None
    if not row["audio"]:
        problems.append(f"{where}: empty audio path; row skipped")
        return None
    audio = table.parent / row["audio"]
    if not check_audio(audio, where, problems):
        return None
    text = row.get("text") or SENTENCES.get(row.get("sentence") or row["id"][2:5])
    if not text:
        problems.append(f"{where}: empty transcript and no known sentence code; row kept audio-only")
    return acted_clip(row["id"], audio, text, emotion, row.get("speaker") or row["id"][:2])
