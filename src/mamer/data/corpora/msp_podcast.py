"""MSP-Podcast (UT Dallas MSP lab), as distributed (releases 1.11 and later).

Expected layout under ``root``::

    Labels/labels_consensus.csv          # FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender, Split_Set
    Audios/MSP-PODCAST_0001_0008.wav     # one file per FileName
    Transcripts/MSP-PODCAST_0001_0008.txt

The protocol is the one of the Odyssey 2024 SER challenge (its baseline repository msplabresearch/
MSP-Podcast_Challenge): partitions from Split_Set (Train -> train, Development -> dev, Test1 -> test, Test2 ->
test2, Test3 -> test3); the 8 primary classes A S H U F D C N; O (other) and X (no agreement) have no class
but keep arousal/valence/dominance (EmoAct/EmoVal/EmoDom, consensus ratings on the 1-7 scale, kept as is).
Rows with no label at all (a test set whose labels are withheld) are left out with a note. SpkrID "Unknown"
means no speaker. A missing transcript gives an audio-only row (a note); a missing audio file is a problem.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mamer.data.corpora.base import Prepared, csv_rows, folder_files, number_in, read_text, some
from mamer.data.manifest import Utterance

EMOTIONS = {
    "A": "angry",
    "S": "sad",
    "H": "happy",
    "U": "surprise",
    "F": "fear",
    "D": "disgust",
    "C": "contempt",
    "N": "neutral",
}
NO_CLASS = {"O": "other", "X": "no agreement"}  # excluded from the categorical task, kept for the dimensional
SPLITS = {"Train": "train", "Development": "dev", "Test1": "test", "Test2": "test2", "Test3": "test3"}
SCALE = (1.0, 7.0)
DIMENSION_COLUMNS = {"EmoAct": "arousal", "EmoVal": "valence", "EmoDom": "dominance"}
COLUMNS = ("FileName", "EmoClass", *DIMENSION_COLUMNS, "SpkrID", "Split_Set")


@dataclass
class _Layout:
    """The distribution's parts, each folder listed once."""

    table: Path
    audio_dir: Path
    audios: dict[str, Path]
    transcript_dir: Path
    transcripts: dict[str, Path]


def read_msp_podcast(root: Path) -> Prepared:
    """MSP-Podcast rows with the official partitions, from ``root/Labels``, ``root/Audios``, ``root/Transcripts``."""
    layout = _layout(Path(root))
    out = Prepared()
    first_line: dict[str, int] = {}
    unlabelled: Counter[str] = Counter()
    no_text: dict[str, list[str]] = {"no transcript file": [], "an empty transcript": []}
    for line, row in csv_rows(layout.table, COLUMNS):
        where = f"{layout.table}:{line}"
        if not row["EmoClass"] and not any(row[c] for c in DIMENSION_COLUMNS):
            unlabelled[row["Split_Set"] or "(no Split_Set)"] += 1
            continue
        name = row["FileName"]
        if name in first_line:
            out.problems.append(
                f"{where}: duplicate FileName {name!r} (first on line {first_line[name]}); row skipped"
            )
            continue
        first_line[name] = line
        utt = _row(row, where, layout, out.problems)
        if utt is None:
            continue
        text, missing = _transcript(layout.transcripts.get(f"{utt.id}.txt"))
        if missing:
            no_text[missing].append(utt.id)
        out.rows.append(dataclasses.replace(utt, text=text))
    out.notes += _notes(layout, unlabelled, no_text)
    return out


def _layout(root: Path) -> _Layout:
    """Check the three parts exist and list the two folders; FileNotFoundError says what is missing."""
    table = root / "Labels" / "labels_consensus.csv"
    if not table.is_file():
        raise FileNotFoundError(
            f"{root}: no MSP-Podcast labels; expected {table} (the corpus as distributed: Labels/, Audios/, "
            "Transcripts/)"
        )
    audios = folder_files(root / "Audios", ".wav")
    if not audios:
        raise FileNotFoundError(f"{root / 'Audios'}: no .wav files; MSP-Podcast rows need their audio there")
    transcripts = folder_files(root / "Transcripts", ".txt")
    return _Layout(table, root / "Audios", audios, root / "Transcripts", transcripts)


def _row(row: dict[str, str], where: str, layout: _Layout, problems: list[str]) -> Utterance | None:
    """One labels_consensus.csv row as an utterance without text, or None (the reasons in ``problems``)."""
    errors = []
    uid = row["FileName"].removesuffix(".wav")
    if not uid:
        errors.append("empty FileName")
    split = SPLITS.get(row["Split_Set"])
    if split is None:
        errors.append(f"Split_Set {row['Split_Set']!r} is not one of {list(SPLITS)}")
    code = row["EmoClass"]
    if code and code not in EMOTIONS and code not in NO_CLASS:
        known = ", ".join(f"{k}={v}" for k, v in {**EMOTIONS, **NO_CLASS}.items())
        errors.append(f"unknown EmoClass {code!r} (expected one of {known})")
    dims: dict[str, float | None] = {}
    for column, name in DIMENSION_COLUMNS.items():
        dims[name], error = number_in(row[column], *SCALE) if row[column] else (None, None)
        if error:
            errors.append(f"{column} ({name}) {error}")
    audio = layout.audios.get(f"{uid}.wav")
    if uid and audio is None:
        errors.append(f"audio file not found: {layout.audio_dir / f'{uid}.wav'}")
    if errors:
        problems.extend(f"{where}: {e}; row skipped" for e in errors)
        return None
    speaker = row["SpkrID"]
    return Utterance(
        id=uid,
        audio=audio,
        text=None,
        label=EMOTIONS.get(code),
        speaker=None if speaker.lower() in ("", "unknown") else speaker,
        split=split,
        **dims,
    )


def _transcript(path: Path | None) -> tuple[str | None, str | None]:
    """(text, None), or (None, why there is no text) for a missing or empty transcript file."""
    if path is None:
        return None, "no transcript file"
    text = " ".join(read_text(path).split())
    return (text, None) if text else (None, "an empty transcript")


def _notes(layout: _Layout, unlabelled: Counter[str], no_text: dict[str, list[str]]) -> list[str]:
    """Notes (not errors) on the rows left out for having no labels, and on the audio-only rows."""
    notes = [
        f"{n} {split} rows of {layout.table.name} have no labels (withheld test set): left out"
        for split, n in sorted(unlabelled.items())
    ]
    notes += [
        f"{len(ids)} rows have {why} in {layout.transcript_dir} (e.g. {some(ids)}): audio only"
        for why, ids in no_text.items()
        if ids
    ]
    return notes
