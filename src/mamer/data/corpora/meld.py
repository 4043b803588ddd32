"""MELD (Multimodal EmotionLines Dataset), as declare-lab distributes it.

Expected layout under ``root``::

    train_sent_emo.csv  dev_sent_emo.csv  test_sent_emo.csv      # the official split, text and labels
    train/dia0_utt0.wav  dev/...  test/...                       # optional audio, one file per utterance

Audio is attached when ``dia{D}_utt{U}.wav`` (or ``.flac``, or the MELD.Raw ``.mp4``) exists in
``<root>/<split>/`` or in a MELD.Raw folder (``train_splits``, ``dev_splits_complete``,
``output_repeated_splits_test``, directly under ``root`` or under ``<root>/<split>/``). A wav/flac is preferred;
otherwise the mp4 is attached as it is (`mamer.data.audio` decodes its audio track with PyAV; no ffmpeg program
is needed). Rows without media are text-only; an empty transcript gives an audio-only row (a note), or a problem
when there is no audio either.
"""

from __future__ import annotations

from pathlib import Path

from mamer.data.corpora.base import Prepared, csv_rows, some
from mamer.data.manifest import Utterance

EMOTIONS = ("neutral", "joy", "anger", "surprise", "sadness", "disgust", "fear")
SPLITS = ("train", "dev", "test")
COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")
MEDIA_FOLDERS = {
    "train": ("train", "train/train_splits", "train_splits"),
    "dev": ("dev", "dev/dev_splits_complete", "dev_splits_complete"),
    "test": ("test", "test/output_repeated_splits_test", "output_repeated_splits_test"),
}
AUDIO_SUFFIXES = (".wav", ".flac", ".mp4")  # in order of preference: extracted audio beats the video


def read_meld(root: Path) -> Prepared:
    """MELD rows with the official train/dev/test split; audio where a decodable file exists."""
    root = Path(root)
    tables = {split: root / f"{split}_sent_emo.csv" for split in SPLITS}
    if not any(t.is_file() for t in tables.values()):
        raise FileNotFoundError(
            f"{root}: no MELD tables; expected {', '.join(t.name for t in tables.values())}"
        )
    out = Prepared()
    audio_only: list[str] = []
    for split, table in tables.items():
        if not table.is_file():
            out.problems.append(f"{table}: file not found; split {split!r} skipped")
            continue
        media = _media_files(root, split)
        for line, row in csv_rows(table, COLUMNS):
            utt = _row(row, split, media, AUDIO_SUFFIXES, f"{table}:{line}", out.problems)
            if utt is None:
                continue
            out.rows.append(utt)
            if utt.text is None:
                audio_only.append(utt.id)
    out.notes += _notes(audio_only)
    return out


def _notes(audio_only: list[str]) -> list[str]:
    """Notes (not errors): rows with an empty transcript."""
    notes = []
    if audio_only:
        notes.append(
            f"{len(audio_only)} MELD rows have an empty transcript (e.g. {some(audio_only)}): audio only"
        )
    return notes


def _row(
    row: dict[str, str],
    split: str,
    media: dict[str, dict[str, Path]],
    suffixes: tuple[str, ...],
    where: str,
    problems: list[str],
) -> Utterance | None:
    """One MELD table row as an utterance with audio of the first of ``suffixes`` found, or None."""
    key = _key(row)
    if key is None:
        problems.append(
            f"{where}: Dialogue_ID/Utterance_ID must be integers, got "
            f"{row['Dialogue_ID']!r}/{row['Utterance_ID']!r}; row skipped"
        )
        return None
    emotion = row["Emotion"].lower()
    if emotion not in EMOTIONS:
        problems.append(
            f"{where}: unknown emotion {row['Emotion']!r} (expected one of {EMOTIONS}); row skipped"
        )
        return None
    files = media.get(key, {})
    audio = next((files[s] for s in suffixes if s in files), None)
    text = " ".join(row["Utterance"].split()) or None
    if text is None and audio is None:
        problems.append(f"{where}: empty transcript and no audio file for {key}; row skipped")
        return None
    return Utterance(
        id=f"{split}_{key}",
        audio=audio,
        text=text,
        label=emotion,
        arousal=None,
        valence=None,
        dominance=None,
        speaker=row["Speaker"] or None,
        split=split,
    )


def _key(row: dict[str, str]) -> str | None:
    """``dia{D}_utt{U}``, the MELD media file stem, or None if the ids are not integers."""
    dia, utt = row["Dialogue_ID"], row["Utterance_ID"]
    return f"dia{int(dia)}_utt{int(utt)}" if dia.isdigit() and utt.isdigit() else None


def _media_files(root: Path, split: str) -> dict[str, dict[str, Path]]:
    """stem -> {suffix: path} of the split's media files (one directory listing, not one stat per row)."""
    found: dict[str, dict[str, Path]] = {}
    for name in MEDIA_FOLDERS[split]:
        folder = root / name
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.suffix.lower() in AUDIO_SUFFIXES and not path.name.startswith("."):
                found.setdefault(path.stem, {}).setdefault(path.suffix.lower(), path.resolve())
    return found
