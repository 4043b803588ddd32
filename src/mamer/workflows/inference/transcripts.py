"""Transcripts files for `mamer predict --transcripts`: CSV or JSON lines, a text per audio file or id.

A bad row is skipped with a warning naming file:line, and a line that is not UTF-8 is read as cp1252 (said
so); the other rows are kept. A row names its audio by a file (`x.wav`, `sub/x.wav`: that file only) or an
id (`x`: any file whose stem is `x`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from mamer.data.audio import AUDIO_SUFFIXES
from mamer.data.textfile import csv_records, decode_lines

log = logging.getLogger(__name__)

_KEYS = ("id", "file", "audio")


def read_transcripts(path: str | Path) -> list[dict[str, str]]:
    """Rows of a CSV/JSONL transcripts file: a `text` column and an `id`, `file` or `audio` column."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"transcripts file not found: {path}")
    problems: list[str] = []
    lines = decode_lines(path, problems)
    if path.suffix.lower() == ".csv":
        numbered = list(csv_records(path, lines, problems))
    else:
        numbered = _json_rows(path, lines, problems)
    rows, seen, clashes = [], {}, []  # seen: (column, value) -> (line, text) of the row that named it first
    for number, row in numbered:
        if not isinstance(row, dict) or not str(row.get("text") or "").strip():
            problems.append(f"{path}:{number}: no text; row skipped")
            continue
        named = [(k, str(row[k])) for k in _KEYS if row.get(k)]
        match = next((n for n in named if n in seen), None)
        if not named:
            problems.append(f"{path}:{number}: no {', '.join(_KEYS)} column to match it by; row skipped")
        elif match is None:
            seen |= {n: (number, str(row["text"])) for n in named}
            rows.append({k: str(v) for k, v in row.items() if k is not None and v is not None})
        elif seen[match][1] != str(row["text"]):
            clashes.append(
                f"{path}:{number}: {match[0]} {match[1]!r} has another text at line {seen[match][0]}"
            )
        else:
            problems.append(
                f"{path}:{number}: the same {match[0]} and text as line {seen[match][0]}; dropped"
            )
    for problem in problems:
        log.warning(problem)
    if clashes:  # which transcript is meant is unclear: the user decides, before anything is predicted
        more = f" (and {len(clashes) - 5} more)" if len(clashes) > 5 else ""
        raise ValueError(f"two transcripts for one input: {'; '.join(clashes[:5])}{more}; keep one row each")
    return rows


def _json_rows(path: Path, lines: list[str], problems: list[str]) -> list[tuple[int, object]]:
    numbered, bad = [], []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                numbered.append((number, json.loads(line)))
            except json.JSONDecodeError as err:
                bad.append(f"{path}:{number}: not JSON ({err.msg}); row skipped")
    if bad and not numbered:
        raise ValueError(f"{path}: not JSON lines ({bad[0]}); use .csv for a CSV file")
    problems += bad
    return numbered


def row_name(row: dict[str, str]) -> str:
    """How a message names a row: its id, file or audio."""
    return next(row[k] for k in _KEYS if row.get(k))


class TranscriptIndex:
    """Finds a file's transcript row: by its path or file name for rows that name a file, by its stem (or
    its job id) for rows that give an id; remembers which rows were used."""

    def __init__(self, rows: list[dict[str, str]]) -> None:
        self.rows, self.used = rows, set()
        self.by_file: dict[str, int] = {}
        self.by_id: dict[str, int] = {}
        for number, row in enumerate(rows):
            for value in (row[k] for k in _KEYS if row.get(k)):
                name = Path(value).name
                if Path(name).suffix.lower() in AUDIO_SUFFIXES:
                    self.by_file |= {value: number, Path(value).as_posix(): number, name: number}
                else:
                    self.by_id |= {value: number, name: number}

    def text(self, file: Path, relative: str, job_id: str) -> str | None:
        """The transcript of `file` (`relative`: its path under the folder given), or None."""
        for index, key in ((self.by_file, str(file)), (self.by_file, relative), (self.by_file, file.name),
                           (self.by_id, job_id), (self.by_id, file.stem)):  # fmt: skip
            if key in index:
                self.used.add(index[key])
                return self.rows[index[key]]["text"]
        return None

    def unused(self) -> list[str]:
        """The rows no file matched, by name."""
        return [row_name(row) for number, row in enumerate(self.rows) if number not in self.used]
