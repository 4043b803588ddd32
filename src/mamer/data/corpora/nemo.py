"""nEMO (Christop, LREC-COLING 2024): acted Polish speech, 9 speakers, 6 classes, a transcript for every clip.

Two layouts under ``root``:

- the official distribution (amu-cai/nEMO): ``root/data.tsv`` with columns file_id, emotion, raw_text,
  normalized_text, speaker_id, gender, age, and the clips in ``root/samples/<file_id>`` (24 kHz WAV);
- a metadata table: ``root/metadata.csv`` with columns file (relative to root), id, emotion, speaker (and
  optionally gender, text), e.g. ``audio/WR0_surprised_64.opus,WR0_surprised_64,surprised,WR0,male,Ucho ...``
  (the copy in ../shared/data/nemo: 16 kHz Ogg/Opus, read as it is by `mamer.data.audio`).

Six classes, nEMO's own names: anger, fear, happiness, neutral, sadness, surprised. The 90 sentences are spoken
in every emotion, so the transcript carries no emotion. nEMO has no official split: `prepare` cuts
leave-speakers-out folds (`nemo_folds`, 3 by default), each with a dev split of train speakers.
"""

from __future__ import annotations

from pathlib import Path

from mamer.data.corpora.base import Prepared, acted_clip, check_audio, csv_rows
from mamer.data.corpora.train_dev import carve_dev, leave_speakers_out
from mamer.data.manifest import Utterance

EMOTIONS = ("anger", "fear", "happiness", "neutral", "sadness", "surprised")
FOLDS = 3  # 3 speakers tested per fold: every clip tested once, 6 speakers left to train and develop on


def read_nemo(root: Path) -> Prepared:
    """nEMO rows (split left empty for the folds to fill), from ``root/metadata.csv`` or ``root/data.tsv``."""
    root = Path(root)
    if (root / "metadata.csv").is_file():
        return _read(root / "metadata.csv", ("file", "id", "emotion", "speaker"), _metadata_row)
    if (root / "data.tsv").is_file():
        return _read(root / "data.tsv", ("file_id", "emotion", "speaker_id"), _official_row)
    raise FileNotFoundError(
        f"{root}: no nEMO found; expected the official layout ({root}/data.tsv and {root}/samples/*.wav) "
        f"or a table {root}/metadata.csv (file, id, emotion, speaker, text)"
    )


def nemo_folds(rows: list[Utterance], k: int) -> list[list[Utterance]]:
    """``k`` leave-speakers-out folds: fold i tests every k-th speaker from the i-th (sorted), the dev split is
    a fifth of the other speakers (at least one, `carve_dev`), the rest trains."""
    return [carve_dev(fold) for fold in leave_speakers_out(rows, k)]


def _read(table: Path, required: tuple[str, ...], read_row) -> Prepared:
    out = Prepared()
    for line, row in csv_rows(table, required, delimiter="\t" if table.suffix == ".tsv" else ","):
        utt = read_row(row, table, f"{table}:{line}", out.problems)
        if utt is not None:
            out.rows.append(utt)
    return out


def _metadata_row(row: dict[str, str], table: Path, where: str, problems: list[str]) -> Utterance | None:
    """One metadata.csv row (our copy's layout) as an utterance, or None (with the reason in ``problems``)."""
    return _row(
        row["id"], row["file"], row["emotion"], row["speaker"], row.get("text"), table, where, problems
    )


def _official_row(row: dict[str, str], table: Path, where: str, problems: list[str]) -> Utterance | None:
    """One data.tsv row (the official layout: clips in samples/) as an utterance, or None."""
    name = row["file_id"]
    return _row(Path(name).stem, f"samples/{name}", row["emotion"], row["speaker_id"], row.get("raw_text"),
                table, where, problems)  # fmt: skip


def _row(
    uid: str,
    file: str,
    emotion: str,
    speaker: str,
    text: str | None,
    table: Path,
    where: str,
    problems: list[str],
) -> Utterance | None:
    if not uid or not file or not speaker:
        problems.append(f"{where}: empty id, file or speaker; row skipped")
        return None
    if emotion.lower() not in EMOTIONS:
        problems.append(
            f"{where}: unknown emotion {emotion!r} (expected one of {list(EMOTIONS)}); row skipped"
        )
        return None
    audio = table.parent / file
    if not check_audio(audio, where, problems):
        return None
    return acted_clip(uid, audio, text or None, emotion.lower(), speaker)
