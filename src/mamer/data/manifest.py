"""The generic corpus manifest: one row per utterance, as JSON lines (``.jsonl``) or CSV (``.csv``).

Fields: ``id`` and ``split`` are required; ``audio`` (path relative to the manifest's folder), ``text``,
``label``, ``arousal``, ``valence``, ``dominance`` and ``speaker`` are optional (JSON ``null``, a missing
key or an empty CSV cell all mean missing), but each row needs audio or text. Unknown fields are ignored.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mamer.modality import DIMENSIONS

FIELDS = ("id", "audio", "text", "label", "arousal", "valence", "dominance", "speaker", "split")


class ManifestError(ValueError):
    """A manifest has problems; ``problems`` lists one message per problem (file:line: what)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in manifest:\n" + "\n".join(problems))


@dataclass(frozen=True)
class Utterance:
    """One manifest row; ``audio`` is an absolute (resolved) path, missing values are None."""

    id: str
    audio: Path | None
    text: str | None
    label: str | None
    arousal: float | None
    valence: float | None
    dominance: float | None
    speaker: str | None
    split: str


def read_manifest(path: Path, strict: bool = False) -> tuple[list[Utterance], list[str]]:
    """Read a ``.jsonl``/``.csv`` manifest; returns (valid utterances, problem messages).

    Rows with problems are skipped (an empty text is kept as "no text"); ``strict=True`` raises
    :class:`ManifestError` listing every problem instead.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    problems: list[str] = []
    utts: list[Utterance] = []
    first_line: dict[str, int] = {}
    for line, raw in _raw_rows(path, problems):
        utt = _parse_row(raw, path, line, problems)
        if utt is None:
            continue
        if utt.id in first_line:
            problems.append(
                f"{path}:{line}: duplicate id {utt.id!r} (first on line {first_line[utt.id]}); row skipped"
            )
            continue
        first_line[utt.id] = line
        utts.append(utt)
    if strict and problems:
        raise ManifestError(problems)
    return utts, problems


def _raw_rows(path: Path, problems: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, raw field dict) for each row of a JSONL or CSV file."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        with path.open(encoding="utf-8") as f:
            for line, text in enumerate(f, start=1):
                if not text.strip():
                    continue
                try:
                    raw = json.loads(text)
                except json.JSONDecodeError as e:
                    problems.append(f"{path}:{line}: invalid JSON ({e.msg}); row skipped")
                    continue
                if not isinstance(raw, dict):
                    problems.append(
                        f"{path}:{line}: expected a JSON object, got {type(raw).__name__}; row skipped"
                    )
                    continue
                yield line, raw
    elif suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            reader.fieldnames  # noqa: B018 - reads the header so line numbers start after it
            line = reader.line_num
            for raw in reader:
                start, line = line + 1, reader.line_num
                yield start, {k: v for k, v in raw.items() if k is not None and v not in ("", None)}
    else:
        raise ManifestError([f"{path}: unsupported manifest format {suffix!r}; use .jsonl or .csv"])


def _parse_row(raw: dict[str, Any], path: Path, line: int, problems: list[str]) -> Utterance | None:
    """Validate one raw row; append messages to ``problems`` and return None if it must be skipped."""
    where = f"{path}:{line}"
    errors = [f"{where}: missing required field {key!r}" for key in ("id", "split") if _blank(raw.get(key))]
    dims: dict[str, float | None] = {}
    for key in DIMENSIONS:
        dims[key], error = _number(raw.get(key))
        if error:
            errors.append(f"{where}: {key} {error}")
    text = raw.get("text")
    if text is not None and not str(text).strip():
        problems.append(f"{where}: empty text, treated as no text")
        text = None
    audio = None
    if not _blank(raw.get("audio")):
        audio = (path.parent / str(raw["audio"])).resolve()
        if not audio.is_file():
            errors.append(f"{where}: audio file not found: {audio} (paths are relative to {path.parent})")
    if audio is None and text is None and not any(e.startswith(f"{where}: audio") for e in errors):
        errors.append(f"{where}: row has neither audio nor text")
    if errors:
        problems.extend(e + "; row skipped" for e in errors)
        return None
    return Utterance(
        id=str(raw["id"]),
        audio=audio,
        text=None if text is None else str(text),
        label=None if _blank(raw.get("label")) else str(raw["label"]),
        speaker=None if _blank(raw.get("speaker")) else str(raw["speaker"]),
        split=str(raw["split"]),
        **dims,
    )


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _number(value: Any) -> tuple[float | None, str | None]:
    """Parse an optional finite number; returns (value, error message or None)."""
    if _blank(value):
        return None, None
    if isinstance(value, bool):
        return None, f"must be a number, got {value!r}"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None, f"must be a number, got {value!r}"
    if not math.isfinite(x):
        return None, f"must be finite, got {value!r}"
    return x, None


def write_manifest(rows: list[Utterance], path: Path) -> None:
    """Write utterances as a ``.jsonl`` (or ``.csv``) manifest, audio paths relative to its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [_record(u, path.parent) for u in rows]
    if path.suffix.lower() == ".csv":
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in records)
    else:
        with path.open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _record(u: Utterance, folder: Path) -> dict[str, Any]:
    audio = None
    if u.audio is not None:
        audio = Path(os.path.relpath(Path(u.audio).resolve(), folder.resolve())).as_posix()
    return {key: audio if key == "audio" else getattr(u, key) for key in FIELDS}


def splits(utts: list[Utterance]) -> dict[str, list[Utterance]]:
    """Group utterances by split name, keeping manifest order."""
    groups: dict[str, list[Utterance]] = {}
    for u in utts:
        groups.setdefault(u.split, []).append(u)
    return groups
