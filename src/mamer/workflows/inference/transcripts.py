"""Transcripts files for `mamer predict --transcripts`: CSV or JSON lines, a text per audio file or id."""

from __future__ import annotations

import csv
import json
from pathlib import Path


def read_transcripts(path: str | Path) -> list[dict[str, str]]:
    """Rows of a CSV/JSONL transcripts file: a `text` column and an `id`, `file` or `audio` column."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"transcripts file not found: {path}")
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
        try:
            rows = [json.loads(line) for line in lines if line.strip()]
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not JSON lines ({err}); use .csv for a CSV file") from err
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not row.get("text") or not any(row.get(k) for k in _KEYS):
            raise ValueError(f"{path}: row {number} needs a text and one of the columns {', '.join(_KEYS)}")
    return rows


_KEYS = ("id", "file", "audio")


def transcript_index(rows: list[dict[str, str]]) -> dict[str, str]:
    """Lookup keys (id, file name, file stem) -> text."""
    index = {}
    for row in rows:
        for key in _KEYS:
            if row.get(key):
                name = Path(str(row[key])).name
                index |= {str(row[key]): row["text"], name: row["text"], Path(name).stem: row["text"]}
    return index
