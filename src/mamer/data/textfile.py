"""User text files (manifests, transcripts) line by line: UTF-8, and cp1252 for a line that is not, said so."""

from __future__ import annotations

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
