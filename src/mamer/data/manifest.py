"""The generic corpus manifest: one row per utterance, as JSON lines (``.jsonl``) or CSV (``.csv``).

Fields: ``id`` and ``split`` are required; ``audio`` (path relative to the manifest's folder), ``text``,
``label``, ``arousal``, ``valence``, ``dominance`` and ``speaker`` are optional (JSON ``null``, a missing
key or an empty CSV cell all mean missing), but each row needs audio or text. Unknown fields are ignored.

Reading never stops at a bad row: it is skipped, or kept with what is good in it, and the problem is named by
file and line. A line that is not UTF-8 is read as cp1252. A NaN (or a label "nan", "none" or "null") is a
missing value, never a class. A label that differs from a train class only in case or spaces is a likely typo:
the row is kept without a class. An audio file that exists but cannot be read (empty, a symlink loop, or what
`audio_check` rejects) leaves a text-only row when the row has text.
"""

from __future__ import annotations

import csv
import errno
import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mamer.atomic import atomic_write
from mamer.data.textfile import csv_records, decode_lines
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


def corpus_of(utterance_id: str) -> str:
    """The corpus an id names by its prefix (`meld/train_dia0_utt0` -> meld); "" for an id without one. Joined
    manifests (mamer-base's) name every id so; per-corpus scores and oversampling read it back."""
    return utterance_id.split("/", 1)[0] if "/" in utterance_id else ""


def read_manifest(
    path: Path,
    strict: bool = False,
    labels: Sequence[str] = (),
    train_split: str = "train",
    audio_check: Callable[[Path], object] | None = None,
) -> tuple[list[Utterance], list[str]]:
    """Read a ``.jsonl``/``.csv`` manifest; returns (valid utterances, problem messages).

    Rows with problems are skipped, or kept with what is good in them (see the module's doc); ``strict=True``
    raises :class:`ManifestError` listing every problem instead. Labels are checked against ``labels`` (a
    config's ``data.labels``) or, when none are given, the classes of the ``train_split`` rows.
    ``audio_check(path)`` may look into each audio file (raising ValueError with the reason if it is
    unreadable); without it only the file's existence and size are checked.
    """
    rows, problems = read_rows(path, labels, train_split, audio_check)
    if strict and problems:
        raise ManifestError(problems)
    return [u for _, u in rows], problems


def read_rows(
    path: Path,
    labels: Sequence[str] = (),
    train_split: str = "train",
    audio_check: Callable[[Path], object] | None = None,
) -> tuple[list[tuple[int, Utterance]], list[str]]:
    """`read_manifest` with each utterance's line number: ([(line, utterance)], problems)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    problems: list[str] = []
    rows: list[tuple[int, Utterance]] = []
    first_line: dict[str, int] = {}
    for line, raw in _raw_rows(path, problems):
        utt = _parse_row(raw, path, line, problems, audio_check)
        if utt is None:
            continue
        if utt.id in first_line:
            problems.append(
                f"{path}:{line}: duplicate id {utt.id!r} (first on line {first_line[utt.id]}); row skipped"
            )
            continue
        first_line[utt.id] = line
        rows.append((line, utt))
    rows = _check_labels(rows, path, labels, train_split, problems)
    return rows, sorted(problems, key=lambda message: _line_of(message, path))


def _line_of(message: str, path: Path) -> int:
    """The line a problem names ("path:12: ..."), 0 for the file as a whole: problems sort by line."""
    number = message.removeprefix(f"{path}:").partition(":")[0]
    return int(number) if number.isdigit() else 0


def _raw_rows(path: Path, problems: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, raw field dict) for each row of a JSONL or CSV file."""
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv"):
        raise ManifestError([f"{path}: unsupported manifest format {suffix!r}; use .jsonl or .csv"])
    lines = decode_lines(path, problems)
    if suffix == ".csv":
        try:
            yield from csv_records(path, lines, problems)
        except ValueError as err:  # an unreadable header: nothing in the file can be read
            raise ManifestError([str(err)]) from err
        return
    for line, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            problems.append(f"{path}:{line}: invalid JSON ({e.msg}); row skipped")
            continue
        if not isinstance(raw, dict):
            problems.append(f"{path}:{line}: expected a JSON object, got {type(raw).__name__}; row skipped")
            continue
        yield line, raw


def _parse_row(
    raw: dict[str, Any], path: Path, line: int, problems: list[str], audio_check: Callable | None
) -> Utterance | None:
    """Validate one raw row; append messages to ``problems`` and return None if it must be skipped."""
    where = f"{path}:{line}"
    errors = [f"{where}: missing required field {key!r}" for key in ("id", "split") if _blank(raw.get(key))]
    dims: dict[str, float | None] = {}
    for key in DIMENSIONS:
        dims[key], error = _number(raw.get(key))
        if error:
            errors.append(f"{where}: {key} {error}")
        elif _is_nan(raw.get(key)):
            problems.append(f"{where}: {key} {raw[key]!r} read as a missing value")
    text = raw.get("text")
    if isinstance(text, float) and math.isnan(text):  # the string "nan" may be a word: only JSON NaN
        problems.append(f"{where}: text NaN read as no text")
        text = None
    elif text is not None and not str(text).strip():
        problems.append(f"{where}: empty text, treated as no text")
        text = None
    label = _label(raw.get("label"), where, problems)
    audio, unreadable = None, None
    if not _blank(raw.get("audio")):
        audio, unreadable, error = _audio_file(path.parent / str(raw["audio"]), audio_check)
        if error:
            errors.append(f"{where}: {error} (paths are relative to {path.parent})")
    if unreadable and text is not None:
        problems.append(f"{where}: audio {audio}: {unreadable}; row kept as text only")
        audio = None
    elif unreadable:
        errors.append(f"{where}: audio {audio}: {unreadable}, and the row has no text")
    elif audio is None and text is None and not errors:
        errors.append(f"{where}: row has neither audio nor text")
    if errors:
        problems.extend(e + "; row skipped" for e in errors)
        return None
    return Utterance(
        id=str(raw["id"]),
        audio=audio,
        text=None if text is None else str(text),
        label=label,
        speaker=None if _blank(raw.get("speaker")) else str(raw["speaker"]),
        split=str(raw["split"]),
        **dims,
    )


def _audio_file(given: Path, audio_check: Callable | None) -> tuple[Path, str | None, str | None]:
    """(resolved path, why it cannot be read or None, an error that skips the row or None)."""
    try:
        audio = given.resolve()
        size = audio.stat().st_size
    except FileNotFoundError:
        return audio, None, f"audio file not found: {audio}"
    except (OSError, RuntimeError) as err:  # RuntimeError: pathlib's "Symlink loop" (Python < 3.13)
        loop = isinstance(err, RuntimeError) or err.errno == errno.ELOOP
        return given.absolute(), f"cannot be read ({'symlink loop' if loop else err.strerror})", None
    if audio.is_dir():
        return audio, "is a folder, not an audio file", None
    if size == 0:
        return audio, "empty file (0 bytes)", None
    if audio_check is not None:
        try:
            audio_check(audio)
        except ValueError as err:  # AudioLoadError: "path: reason"
            return audio, str(err).removeprefix(f"{audio}: "), None
    return audio, None, None


MISSING_LABELS = ("nan", "none", "null")  # label strings that mean "no label", never a class


def _label(value: Any, where: str, problems: list[str]) -> str | None:
    """The row's class, or None. NaN, a blank and the strings of MISSING_LABELS are missing values, said so
    (JSON null and an empty CSV cell are the usual way to say it, and pass silently)."""
    if value is None:
        return None
    if _is_nan(value) or not str(value).strip() or str(value).strip().casefold() in MISSING_LABELS:
        shown = "NaN" if isinstance(value, float) else repr(value)
        problems.append(f"{where}: label {shown} read as a missing value; row kept without a class")
        return None
    return str(value)


def _normal(label: str) -> str:
    return " ".join(label.split()).casefold()


def train_classes(rows: Sequence[Utterance], train_split: str = "train") -> list[str]:
    """The classes of the train split; of labels differing only in case or spaces, the most frequent (then
    the one without outer spaces, then the first in sort order) stands for the others."""
    counts = Counter(u.label for u in rows if u.split == train_split and u.label is not None)
    order = sorted(counts, key=lambda label: (-counts[label], label != label.strip(), label))
    canonical: dict[str, str] = {}
    for label in order:
        canonical.setdefault(_normal(label), label)
    return sorted(canonical.values())


def _check_labels(
    rows: list[tuple[int, Utterance]],
    path: Path,
    labels: Sequence[str],
    train_split: str,
    problems: list[str],
) -> list[tuple[int, Utterance]]:
    """Labels that differ from a class only in case or spaces lose their class (a likely typo), named."""
    classes = list(labels) or train_classes([u for _, u in rows], train_split)
    source = "data.labels" if labels else f"the {train_split!r} split's class"
    by_normal = {_normal(c): c for c in classes}
    checked = []
    for line, u in rows:
        twin = None if u.label is None or u.label in classes else by_normal.get(_normal(u.label))
        if twin is not None:
            problems.append(
                f"{path}:{line}: label {u.label!r} differs from {source} {twin!r} only in case or spaces "
                "(a typo?); row kept without a class: fix the label to use it"
            )
            u = replace(u, label=None)
        checked.append((line, u))
    return checked


def unseen_classes(
    rows: Sequence[Utterance], classes: Sequence[str], where: Callable[[Utterance], str], train: str
) -> list[str]:
    """One message per row whose class is not in `classes` (those of `train`, named so): a model cannot
    predict it, and evaluation leaves the row out of its scores. `where(u)` names the row."""
    known = set(classes)
    return [
        f"{where(u)}: class {u.label!r} ({u.split}) is not in {train} ({', '.join(classes)}): a model "
        "cannot predict it; evaluation leaves the row out of its scores"
        for u in rows
        if u.label is not None and u.label not in known
    ]


def _blank(value: Any) -> bool:
    """None, JSON NaN or a blank string: a missing value."""
    if isinstance(value, float):
        return math.isnan(value)
    return value is None or (isinstance(value, str) and not value.strip())


def _is_nan(value: Any) -> bool:
    """A float NaN (JSON ``NaN``) or the string "nan" in any case: a missing value."""
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip().casefold() == "nan"


def _number(value: Any) -> tuple[float | None, str | None]:
    """Parse an optional finite number; returns (value, error message or None). NaN is a missing value."""
    if _blank(value) or _is_nan(value):
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
    """Write utterances as a ``.jsonl`` (or ``.csv``) manifest, audio paths relative to its folder; atomically,
    so a run killed while writing leaves the manifest that was there, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [_record(u, path.parent) for u in rows]
    as_csv = path.suffix.lower() == ".csv"

    def write(tmp: Path) -> None:
        if as_csv:
            with tmp.open("w", encoding="utf-8", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=FIELDS)
                writer.writeheader()
                writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in records)
        else:
            with tmp.open("w", encoding="utf-8") as f:
                f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)

    atomic_write(path, write)


def _record(u: Utterance, folder: Path) -> dict[str, Any]:
    audio = None
    if u.audio is not None:
        audio = Path(os.path.relpath(Path(u.audio).resolve(), folder.resolve())).as_posix()
    return {key: audio if key == "audio" else getattr(u, key) for key in FIELDS}


def few_per_class(rows: Sequence[Utterance], n: int) -> list[Utterance]:
    """The first ``n`` rows of each (split, class), in order: a manifest small enough for a smoke run."""
    taken: dict[tuple[str, str | None], int] = defaultdict(int)
    kept = []
    for u in rows:
        if taken[u.split, u.label] < n:
            taken[u.split, u.label] += 1
            kept.append(u)
    return kept


def splits(utts: list[Utterance]) -> dict[str, list[Utterance]]:
    """Group utterances by split name, keeping manifest order."""
    groups: dict[str, list[Utterance]] = {}
    for u in utts:
        groups.setdefault(u.split, []).append(u)
    return groups
