"""WebDataset-style `.tar` shards of audio: members grouped by key, read from memory, never extracted.

A WebDataset shard is a plain (uncompressed) tar whose members are named `<key>.<extension>`: the key is the
member's path up to the first dot of its file name (`clips/a01.flac` and `clips/a01.txt` share the key
`clips/a01`). Each audio member (`.flac`, `.wav`, `.mp3`, ...: `AUDIO_SUFFIXES`) is one input; a `.txt`
member with the same key is its transcript. Members are listed once, by their headers, and later read by
offset (`read_member`): an actor seeks to the bytes it needs, so a shard is never unpacked on disk and no
member name ever becomes a path. Links, devices and folders inside a tar are ignored, and an archive that
stops halfway keeps the members before the damage and reports the rest.
"""

from __future__ import annotations

import logging
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from mamer.data.audio import AUDIO_SUFFIXES

log = logging.getLogger(__name__)

MAX_MEMBER_BYTES = (
    1 << 30
)  # an audio member beyond this is reported, not read (it would be decoded in memory)
MAX_TEXT_BYTES = 1 << 20  # a transcript member beyond this is ignored (said so)
_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # WebDataset's own split: the key, then every extension


@dataclass(frozen=True)
class Member:
    """One audio member of a tar: where its bytes lie, and its transcript if the shard carries one."""

    key: str
    name: str  # the member's name inside the tar
    offset: int  # of its data, in bytes from the start of the tar file
    size: int  # bytes
    text: str | None = None
    error: str | None = None  # set when the member cannot be read (named in the errors table)


def list_members(path: str | Path) -> tuple[list[Member], list[str]]:
    """The audio members of tar shard `path` in archive order, and what is wrong with the archive itself (not a
    tar, a damaged header): reasons, without the file's name."""
    path = Path(path)
    audio: list[tarfile.TarInfo] = []
    texts: dict[str, str] = {}
    problems: list[str] = []
    size = path.stat().st_size
    try:
        with tarfile.open(
            path, mode="r:"
        ) as tar:  # "r:": uncompressed only, so members can be read by offset
            for info in _headers(tar, problems):
                _sort_member(tar, info, audio, texts, path)
    except tarfile.TarError as err:
        problems.append(f"not an uncompressed tar archive ({err}); use .tar shards (no .tar.gz)")
    members = [_member(info, texts, size, path) for info in audio]
    return members, problems


def _headers(tar: tarfile.TarFile, problems: list[str]):
    """The archive's members one by one; a damaged header ends the listing (with a problem)."""
    while True:
        try:
            info = tar.next()
        except tarfile.TarError as err:  # the members before the damage are kept
            last = f"member {tar.members[-1].name}" if tar.members else "its start"
            problems.append(f"damaged or cut short after {last} ({err})")
            return
        if info is None:
            return
        yield info


def _sort_member(
    tar: tarfile.TarFile, info: tarfile.TarInfo, audio: list, texts: dict[str, str], path: Path
) -> None:
    """File an audio member in `audio`, a transcript member's text in `texts` (by key); skip the rest."""
    match = _KEY.match(info.name)
    if (
        match is None or not info.isfile() or Path(info.name).name.startswith(".")
    ):  # ._x: macOS resource forks
        if not info.isdir():
            log.debug("%s: member %s skipped (not a regular file with an extension)", path, info.name)
        return
    key, extension = match.groups()
    if Path(info.name).suffix.lower() in AUDIO_SUFFIXES:
        audio.append(info)
    elif extension.lower() == "txt":
        if info.size > MAX_TEXT_BYTES:
            log.warning("%s: transcript %s is over %d bytes; ignored", path, info.name, MAX_TEXT_BYTES)
            return
        raw = tar.extractfile(info).read()  # a regular member: bytes from the archive, nothing on disk
        text = raw.decode("utf-8", errors="replace").strip()
        if "\ufffd" in text:
            log.warning("%s: transcript %s is not valid UTF-8; unreadable bytes replaced", path, info.name)
        texts[key] = text


def _member(info: tarfile.TarInfo, texts: dict[str, str], file_size: int, path: Path) -> Member:
    """A Member of an audio header; its error says why it cannot be read, when it cannot."""
    key = _KEY.match(info.name).group(1)
    error = None
    if info.offset_data + info.size > file_size:
        error = f"the archive ends before this member's {info.size} bytes (a truncated shard)"
    elif info.size == 0:
        error = "empty file (0 bytes)"
    elif info.size > MAX_MEMBER_BYTES:
        error = f"member of {info.size / 2**20:.0f} MiB is over the {MAX_MEMBER_BYTES >> 20} MiB limit"
    return Member(key, info.name, info.offset_data, info.size, texts.get(key) or None, error)


def read_member(path: str | Path, offset: int, size: int) -> bytes:
    """The `size` bytes at `offset` of tar shard `path` (a member's data, as `list_members` located it)."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(size)
    if len(data) != size:
        raise OSError(f"{path}: {size} bytes expected at offset {offset}, {len(data)} read (file changed?)")
    return data
