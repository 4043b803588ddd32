"""User text files (manifests, transcripts) line by line: UTF-8, and cp1252 for a line that is not, said so;
their CSV rows with the line each starts on."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path


def decode_lines(path: Path, problems: list[str]) -> list[str]:
    """The lines of `path` (ends kept; a UTF-8 byte-order mark dropped). A line that is not valid UTF-8 is read
    as cp1252 (the usual other encoding of such files) and `problems` gets 'file:line: ...' naming the byte."""
    path = Path(path)
    lines = []
    for number, raw in enumerate(path.read_bytes().splitlines(keepends=True), start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            text = raw.decode("cp1252", errors="replace")
            problems.append(
                f"{path}:{number}: not UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1}); "
                f"the line was read as cp1252: {text.strip()[:80]!r}"
            )
            lines.append(text)
    if lines:
        lines[0] = lines[0].removeprefix("\ufeff")
    return lines


def csv_records(path: Path, lines: list[str], problems: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(1-based line a row starts on, its cells without the empty ones) for each CSV row of `lines` (of file
    `path`). A row the csv module cannot parse (e.g. a NUL byte) is skipped and named in `problems`; a header
    it cannot parse is a ValueError naming the file."""
    reader = csv.DictReader(io.StringIO("".join(lines), newline=""))
    try:
        reader.fieldnames  # noqa: B018 - reads the header so line numbers start after it
    except csv.Error as e:
        raise ValueError(f"{path}:1: malformed CSV header ({e})") from e
    line = reader.line_num
    while True:
        try:
            raw = next(reader)
        except StopIteration:
            return
        except csv.Error as e:  # that row is lost, the reader goes on with the next line
            start, line = line + 1, reader.line_num
            problems.append(f"{path}:{start}: malformed CSV ({e}); row skipped")
            continue
        start, line = line + 1, reader.line_num
        yield start, {k: v for k, v in raw.items() if k is not None and v not in ("", None)}
