"""Content hashes of audio files, remembered by (path, size, mtime_ns) so that each file is read once.

The feature cache keys audio by content, so a corpus copied to another folder or machine (fresh paths and
mtimes: rsync, a job's scratch disk, a shared data folder laid down again) finds its features already encoded.
Hashing every file on every run would cost a read of the whole corpus, so `FileHashes` keeps each file's
SHA-256 in `<cache root>/file-hashes.jsonl` under its resolved path, size and mtime_ns: a later run only stats
the files, and a file rewritten in place (new size or mtime) is hashed again.

The file is append-only, one JSON line per hashed file, each written by a single `write` to a file opened for
appending, so concurrent writers do not interleave and a kill -9 loses at most the line being written (the
next save ends that line first). A line that does not parse is ignored: the file it named is hashed again.

Only the last line of each path counts (a file rewritten in place gets a new line). When a load finds at least
`COMPACT_AT` lines and at most half of them current, it rewrites the file atomically with the current lines only,
so a corpus re-encoded many times does not grow the listing without end. Lines another process appends between
that read and the rename are lost, which costs only a second hashing of their files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from mamer.atomic import atomic_write

log = logging.getLogger(__name__)

HASHES_FILE = "file-hashes.jsonl"
SAVE_EVERY = 256  # new hashes kept in memory before they are appended, so a killed run loses few
COMPACT_AT = 4096  # lines in the listing before a load may rewrite it with its current lines only


def entry(identity: tuple[str, int, int], sha256: str) -> str:
    """The listing's JSON line (without its newline) for a file's (path, size, mtime_ns) and hash."""
    path, size, mtime_ns = identity
    return json.dumps({"path": path, "size": size, "mtime_ns": mtime_ns, "sha256": sha256})


class FileHashes:
    """SHA-256 of files, read from and appended to `<root>/file-hashes.jsonl` (root None: kept in memory only)."""

    def __init__(self, root: str | Path | None = None):
        self.path = None if root is None else Path(root) / HASHES_FILE
        self._known: dict[tuple[str, int, int], str] = {}
        self._unsaved: list[str] = []
        self._warned = False
        if self.path is not None and self.path.is_file():
            self._load()

    def _load(self) -> None:
        latest: dict[str, tuple[tuple[str, int, int], str]] = {}  # path -> its last identity and hash
        count = 0
        with self.path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                count += 1
                try:
                    item = json.loads(line)
                    identity = (str(item["path"]), int(item["size"]), int(item["mtime_ns"]))
                    latest[identity[0]] = identity, str(item["sha256"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut by a kill: that file is hashed again
        self._known = dict(latest.values())
        if count >= COMPACT_AT and count >= 2 * len(self._known):
            self._compact()

    def _compact(self) -> None:
        """Rewrite the listing with one line per path; a cache root this process cannot write keeps it as is."""
        lines = [entry(identity, value) + "\n" for identity, value in self._known.items()]
        try:
            atomic_write(self.path, lambda tmp: tmp.write_text("".join(lines), encoding="utf-8"))
        except OSError as err:
            log.debug("cannot compact %s (%s)", self.path, err)

    def __len__(self) -> int:
        return len(self._known)

    def sha256(self, path: str | Path) -> str | None:
        """Hex SHA-256 of the file's bytes, or None where it cannot be read (missing, a folder, no permission)."""
        path = Path(path).resolve()
        try:
            stat = path.stat()
            identity = (str(path), stat.st_size, stat.st_mtime_ns)
            if identity in self._known:
                return self._known[identity]
            with path.open("rb") as content:
                value = hashlib.file_digest(content, "sha256").hexdigest()
        except OSError:
            return None
        self._known[identity] = value
        self._unsaved.append(entry(identity, value))
        if len(self._unsaved) >= SAVE_EVERY:
            self.save()
        return value

    def save(self) -> None:
        """Append the hashes not yet written (nothing without a root). A cache root this process cannot write
        (another user's shared cache) only costs the memory: the hashes are kept for this run and a warning says
        so once."""
        if self.path is None or not self._unsaved:
            return
        try:
            self._append()
        except OSError as err:
            if not self._warned:
                log.warning("cannot remember audio hashes in %s (%s): the next run hashes these files again",
                            self.path, err)  # fmt: skip
            self._warned = True
        self._unsaved.clear()

    def _append(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # 0o666 less the umask, the mode `mamer.atomic` gives every file, so a shared cache's group can append
        handle = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            size = os.fstat(handle).st_size
            if size and os.pread(handle, 1, size - 1) != b"\n":
                os.write(handle, b"\n")  # end a line a kill cut, so it does not swallow the next one
            for line in self._unsaved:
                os.write(handle, (line + "\n").encode())
        finally:
            os.close(handle)
