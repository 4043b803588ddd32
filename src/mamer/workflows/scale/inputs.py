"""The inputs of a job at scale, listed once by the driver: audio files, manifest rows, tar shard members.

`list_inputs(path)` reads what `--audio` names:
- a folder: every audio file under it (recursively, as `mamer predict` finds them: same ids and transcripts),
  then the members of every `.tar` shard under it;
- a `.tar` shard (WebDataset style, see `tar_shards`);
- a manifest, `.csv` or `.jsonl`: one input per row, its audio in an `audio`, `file` or `path` column
  (relative paths are relative to the manifest), optional `id` (default: the file's stem) and `text`;
- one audio file.

The order is deterministic (sorted files, shards in name order, members in archive order), so a rerun lists
the same inputs in the same order and maps them to the same output shards. What is wrong with an input that
can already be seen here (a manifest row without a path, a damaged shard) becomes an input with its `error`
set, reported in the errors table like any bad file: nothing is dropped on the way.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mamer.data.textfile import csv_records, decode_lines
from mamer.workflows.inference.batch import make_jobs, some
from mamer.workflows.scale.tar_shards import list_members

log = logging.getLogger(__name__)

MANIFEST_SUFFIXES = (".csv", ".jsonl")
PATH_COLUMNS = ("audio", "file", "path")


@dataclass(frozen=True)
class InputRow:
    """One input: an audio file, a tar member or a text alone (`path` None); `error` when already unusable."""

    id: str
    source: str  # how rows and errors name it: the path as listed, `shard.tar:member`, or `manifest.csv:7`
    path: str | None = None  # absolute path of the audio file, or of the tar shard holding it
    offset: int | None = None  # a tar member's data: its offset and size in bytes within `path`
    size: int | None = None
    text: str | None = None  # the transcript, when one is given
    error: str | None = None


def list_inputs(
    audio: str | Path, transcripts: str | Path | None = None, transcribe: bool = False
) -> list[InputRow]:
    """Every input `audio` names (a folder, a `.tar` shard, a `.csv`/`.jsonl` manifest or an audio file).

    `transcripts` (a CSV/JSONL file, as for `mamer predict`) gives audio files their text; a manifest or a
    shard carries its own (`text` column, `<key>.txt` members).
    """
    path = Path(audio)
    if not path.exists():
        raise FileNotFoundError(f"no such audio file, folder, shard or manifest: {path}")
    suffix = path.suffix.lower()
    if transcripts and (suffix in MANIFEST_SUFFIXES or suffix == ".tar"):
        raise ValueError(
            f"--transcripts goes with audio files; {path} carries its own texts (a `text` column, `.txt` members)"
        )
    if path.is_dir():
        rows = _folder_inputs(path, transcripts, transcribe)
    elif suffix == ".tar":
        rows = tar_inputs(path)
    elif suffix in MANIFEST_SUFFIXES:
        rows = manifest_inputs(path)
    else:
        rows = [_file_input(job) for job in make_jobs(path, None, transcripts, transcribe)]
    _warn_shared_ids(rows)
    return rows


def _folder_inputs(folder: Path, transcripts: str | Path | None, transcribe: bool) -> list[InputRow]:
    """The audio files under `folder` (as `make_jobs` finds them), then the members of its `.tar` shards."""
    shards = sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".tar" and p.is_file())
    try:
        rows = [_file_input(job) for job in make_jobs(folder, None, transcripts, transcribe)]
    except FileNotFoundError:  # no audio files: fine when the folder holds shards
        if not shards:
            raise FileNotFoundError(f"no audio files and no .tar shards under {folder}") from None
        rows = []
    return rows + [row for shard in shards for row in tar_inputs(shard)]


def _file_input(job) -> InputRow:
    """The input of one `batch.Job` of an audio file (its id and transcript as `mamer predict` gives them)."""
    return InputRow(job.id, str(job.audio), str(Path(job.audio).resolve()), text=job.text)


def tar_inputs(shard: Path) -> list[InputRow]:
    """One input per audio member of `shard` (id: its WebDataset key), plus one per problem of the archive."""
    members, problems = list_members(shard)
    where = str(shard.resolve())
    rows = [InputRow(m.key, f"{shard}:{m.name}", where, m.offset, m.size, m.text, m.error) for m in members]
    rows += [InputRow(shard.stem, str(shard), where, error=problem) for problem in problems]
    for problem in problems:
        log.warning("%s: %s", shard, problem)
    return rows


def manifest_inputs(manifest: Path) -> list[InputRow]:
    """One input per row of a CSV/JSONL manifest; an unreadable row is an input with its error (file:line)."""
    warnings: list[str] = []
    lines = decode_lines(manifest, warnings)
    for warning in warnings:  # lines read as cp1252: kept, said so
        log.warning(warning)
    if manifest.suffix.lower() == ".csv":
        malformed: list[str] = []  # `file:line: reason; row skipped`, one per row the csv module cannot parse
        numbered = [(n, row, None) for n, row in csv_records(manifest, lines, malformed)]
        numbered += [_malformed_row(manifest, m) for m in malformed]
    else:
        numbered = [_json_row(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    rows = [
        _manifest_input(manifest, n, row, error) for n, row, error in sorted(numbered, key=lambda x: x[0])
    ]
    if not rows:
        raise ValueError(
            f"{manifest}: no rows; give one row per audio file ({'/'.join(PATH_COLUMNS)} column)"
        )
    return rows


def _json_row(number: int, line: str) -> tuple[int, dict, str | None]:
    """(line number, the row, None), or (line number, {}, why the line is not a JSON object)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        return number, {}, f"not JSON ({err.msg})"
    return (number, row, None) if isinstance(row, dict) else (number, {}, "not a JSON object")


def _malformed_row(manifest: Path, message: str) -> tuple[int, dict, str]:
    """(line number, {}, reason) of a `csv_records` message `<manifest>:<line>: <reason>; row skipped`."""
    number, _, reason = message.removeprefix(f"{manifest}:").partition(": ")
    return int(number), {}, reason.removesuffix("; row skipped")


def _manifest_input(manifest: Path, number: int, row: dict, error: str | None) -> InputRow:
    """The input of manifest row `number`: its audio (relative to the manifest), id and text."""
    where = f"{manifest}:{number}"
    audio = next((str(row[k]) for k in PATH_COLUMNS if row.get(k)), None)
    text = str(row["text"]).strip() if row.get("text") is not None else None
    if error is None and audio is None and not text:
        error = f"no audio path ({', '.join(PATH_COLUMNS)} column) and no text"
    if error is None and audio is not None and "\0" in audio:
        error = "the audio path holds a NUL byte"
    if error is not None or audio is None:
        return InputRow(str(row.get("id") or where), where, text=text or None, error=error)
    file = Path(audio).expanduser()
    file = file if file.is_absolute() else manifest.parent / file
    return InputRow(str(row.get("id") or file.stem), str(file), str(file.resolve()), text=text or None)


def _warn_shared_ids(rows: list[InputRow]) -> None:
    """Say so when inputs share an id (their rows stay apart by `source`)."""
    counts = Counter(r.id for r in rows)
    shared = sorted(i for i, n in counts.items() if n > 1)
    if shared:
        log.warning(
            "%d id(s) are shared by several inputs (%s): tell their rows apart by `source`",
            len(shared),
            some(shared),
        )
