"""The `--out` file of `mamer predict`: rows written as they are made, resumed after a kill, never clobbered.

While a job runs, each input's rows are appended to `<out>.partial.jsonl` (flushed and synced, one line per
input, so a kill leaves at most one torn last line, which is dropped). At the end `<out>` is written
atomically (JSON lines or CSV) from every row, and the partial file is removed. A rerun with the same `--out`
skips the inputs whose rows are already in `<out>` or in the partial file (a run killed midway, or one finished
before new files came), predicts the rest and writes the union: nothing is lost and each input appears once.

What is refused, before any prediction: an `--out` that is one of the inputs (an audio file, the transcripts
file), an existing `--out` that is not a predictions file of `mamer predict`, and a partial file made with
another model or other options, unless `overwrite` says to start over. A run that predicts nothing leaves an
existing `--out` as it was.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mamer.atomic import atomic_write

SUFFIXES = (".jsonl", ".json", ".csv")
FLOAT_COLUMNS = ("start", "end", "arousal", "valence", "dominance")
JSON_COLUMNS = ("top_k", "embedding")
PARTIAL = ".partial.jsonl"


class PredictionsFile:
    """The rows of one `--out` file: those already done (`done`, by input id), and what `add` appends."""

    def __init__(
        self, out: str | Path, inputs: Iterable[str | Path], settings: dict, overwrite: bool = False
    ) -> None:
        self.out = Path(out)
        self.partial = self.out.with_name(self.out.name + PARTIAL)
        self.settings = settings
        if self.out.suffix.lower() not in SUFFIXES:
            raise ValueError(f"--out {self.out}: use a .jsonl or .csv file name")
        _refuse_inputs(self.out, inputs)
        self.done: dict[str, list[dict]] = {}
        if overwrite:
            self.partial.unlink(missing_ok=True)
        else:
            if self.out.exists():
                self.done |= read_rows(self.out)
            if self.partial.exists():
                self.done |= self._read_partial()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._stream = None

    def _read_partial(self) -> dict[str, list[dict]]:
        """The inputs the partial file finished; ValueError when another model or other options made it."""
        lines = self.partial.read_text(encoding="utf-8").splitlines()
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # the line a kill tore: its input is predicted again
                continue
        header = records[0] if records and "settings" in records[0] else None
        if header is None or header["settings"] != self.settings:
            made = "an unknown run" if header is None else json.dumps(header["settings"], sort_keys=True)
            raise ValueError(
                f"{self.partial} holds rows of an unfinished run with other settings ({made}); rerun with those "
                "settings to resume it, or add --overwrite to start over"
            )
        return {r["id"]: r["rows"] for r in records[1:] if isinstance(r, dict) and "rows" in r}

    def add(self, key: str, rows: list[dict]) -> None:
        """Append one input's rows to the partial file, synced, so a kill loses at most this input."""
        if self._stream is None:
            fresh = not self.partial.exists() or self.partial.stat().st_size == 0
            self._stream = self.partial.open("a", encoding="utf-8")
            if fresh:
                self._stream.write(json.dumps({"settings": self.settings}) + "\n")
        self._stream.write(json.dumps({"id": key, "rows": rows}) + "\n")
        self._stream.flush()
        os.fsync(self._stream.fileno())
        self.done[key] = rows

    def finish(self, order: Iterable[str]) -> list[dict]:
        """Write `out` atomically with every row (inputs in `order`, then rows of earlier runs for inputs no
        longer given) and remove the partial file; returns the rows. With no rows at all, nothing is written."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        keys = list(dict.fromkeys([k for k in order if k in self.done] + list(self.done)))
        rows = [row for key in keys for row in self.done[key]]
        if rows:
            write_rows(rows, self.out)
            self.partial.unlink(missing_ok=True)
        return rows


def _refuse_inputs(out: Path, inputs: Iterable[str | Path]) -> None:
    """ValueError when `out` is one of the inputs (the same file by any path)."""
    target = out.resolve()
    for given in inputs:
        if given is not None and Path(given).resolve() == target:
            raise ValueError(f"--out {out} is one of the inputs ({given}); choose another output file")


def write_rows(rows: list[dict], out: str | Path) -> None:
    """Rows as JSON lines (.jsonl) or CSV (.csv; probabilities become `p_<label>` columns), atomically."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        flat = [_flatten(r) for r in rows]
        columns = list(dict.fromkeys(k for r in flat for k in r))

        def write(path: Path) -> None:
            with path.open("w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, columns)
                writer.writeheader()
                writer.writerows(flat)

    elif out.suffix.lower() in (".jsonl", ".json"):

        def write(path: Path) -> None:
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)  # words as written
            path.write_text(text, encoding="utf-8")

    else:
        raise ValueError(f"--out {out}: use a .jsonl or .csv file name")
    atomic_write(out, write)


def read_rows(path: str | Path) -> dict[str, list[dict]]:
    """The rows of a predictions file `write_rows` wrote, by input id; ValueError naming the file when it is
    not one (so that it is never overwritten by mistake)."""
    path = Path(path)
    refusal = (
        f"--out {path} exists and is not a predictions file of `mamer predict` ({{}}); it is left as it is: "
        "choose another --out, or add --overwrite to replace it"
    )
    if path.stat().st_size == 0:
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(refusal.format(type(err).__name__)) from err
    if path.suffix.lower() == ".csv":
        records = [_unflatten(r) for r in csv.DictReader(text.splitlines())]
    else:
        try:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise ValueError(refusal.format(f"line {err.lineno} is not JSON")) from err
    by_id: dict[str, list[dict]] = {}
    for number, row in enumerate(records, start=1):
        if not isinstance(row, dict) or not row.get("id") or "view" not in row:
            raise ValueError(refusal.format(f"row {number} has no `id` and `view`"))
        by_id.setdefault(str(row["id"]), []).append(row)
    return by_id


def _flatten(row: dict) -> dict:
    probabilities = row.get("probabilities") or {}
    flat = {
        k: json.dumps(v, ensure_ascii=False) if isinstance(v, list) else v
        for k, v in row.items()
        if k != "probabilities"
    }
    return flat | {f"p_{label}": p for label, p in probabilities.items()}  # top_k, embedding: JSON lists


def _unflatten(flat: dict[str, str]) -> dict[str, Any]:
    """A CSV row back into the row `_flatten` was given (numbers as floats, lists from JSON)."""
    row: dict[str, Any] = {}
    probabilities = {}
    for key, value in flat.items():
        if key is None:
            continue
        if key.startswith("p_"):
            probabilities[key[2:]] = float(value) if value else None
        elif key in FLOAT_COLUMNS:
            row[key] = float(value) if value else None
        elif key in JSON_COLUMNS:
            row[key] = json.loads(value) if value else None
        else:
            row[key] = value if value != "" else None
    if probabilities:
        row["probabilities"] = probabilities
    return row
