"""What every corpus adapter returns, and the CSV reading and row checks they share."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mamer.data.manifest import Utterance
from mamer.data.textfile import decode_lines

# C1 control characters that stand for their cp1252 glyphs in files saved through a cp1252 round trip
# (MELD has "\x92" for a right quote); mapping them back keeps the transcript readable.
_C1_TO_CP1252 = {c: bytes([c]).decode("cp1252", errors="ignore") or None for c in range(0x80, 0xA0)}


@dataclass
class Prepared:
    """An adapter's output: valid rows, problems (each 'file:line: what; row skipped'), and notes that are
    not errors (e.g. media that must be converted first)."""

    rows: list[Utterance] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    where: dict[str, str] = field(default_factory=dict)  # row id -> "file:line", where the adapter knows it
    audio_checked: bool = False  # the adapter already looked into every audio file (`check_readable`)


class CorpusError(ValueError):
    """A corpus has problems and ``--strict`` was asked; ``problems`` lists one message per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in corpus:\n" + "\n".join(problems))


def read_text(path: Path) -> str:
    """A text file as str, line by line UTF-8 with a cp1252 fallback (files that mix the two are common; the
    corpus readers take the fallback silently, so the problems `decode_lines` names are dropped)."""
    return "".join(decode_lines(Path(path), [])).translate(_C1_TO_CP1252)  # byte-order mark already dropped


def csv_rows(
    path: Path, required: tuple[str, ...], delimiter: str = ","
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (1-based line, row dict with stripped values) of a CSV (or a TSV: ``delimiter="\\t"``); a missing
    column is an error naming it."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"corpus file not found: {path}")
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""), delimiter=delimiter)
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; the header has {reader.fieldnames}")
    line = reader.line_num
    for raw in reader:
        start, line = line + 1, reader.line_num
        yield start, {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}


def number_in(value: str, low: float, high: float) -> tuple[float | None, str | None]:
    """Parse a finite number within [low, high]; returns (value, error message or None)."""
    try:
        x = float(value)
    except ValueError:
        return None, f"must be a number, got {value!r}"
    if not math.isfinite(x) or not low <= x <= high:
        return None, f"{value} is out of range [{low:g}, {high:g}]"
    return x, None


def check_audio(path: Path, where: str, problems: list[str]) -> bool:
    """True if the audio file exists; otherwise records a problem naming the row."""
    if Path(path).is_file():
        return True
    problems.append(f"{where}: audio file not found: {path}; row skipped")
    return False


def rows_of_table(
    table: Path,
    required: tuple[str, ...],
    read_row: Callable[[dict[str, str], Path, str, list[str]], Utterance | None],
) -> Prepared:
    """The utterances of a CSV table, one `read_row(row, table, "table:line", problems)` per row; a row it
    returns None for is skipped (its reason in `problems`)."""
    out = Prepared()
    for line, row in csv_rows(table, required):
        utt = read_row(row, table, f"{table}:{line}", out.problems)
        if utt is not None:
            out.rows.append(utt)
    return out


def acted_clip(
    uid: str, audio: Path, text: str | None, emotion: str, speaker: str, split: str = ""
) -> Utterance:
    """A row of an acted speech corpus: a clip, its (fixed) sentence and an emotion class, no A/V/D ratings."""
    return Utterance(uid, audio.resolve(), text, emotion, None, None, None, speaker, split)


def folder_files(folder: Path, suffix: str) -> dict[str, Path]:
    """File name -> absolute path of the ``suffix`` files directly in ``folder``, from one listing (a corpus has
    up to ~10^5 files: no stat per row); empty if the folder does not exist. Hidden files (``._x``) are left out."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    folder = folder.resolve()
    return {
        entry.name: folder / entry.name
        for entry in os.scandir(folder)
        if entry.name.lower().endswith(suffix) and not entry.name.startswith(".")
    }


def some(items: list[str], n: int = 3) -> str:
    """The first ``n`` items for a message: ``a, b, c, ...``."""
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")
