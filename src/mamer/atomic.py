"""Atomic file writes: a reader (or a rerun after kill -9) sees the old file or the new one, never half.

A written file gets the usual mode of a new file (0666 less the umask: 0644 under umask 022), whatever mode
the writer gave its temporary (safetensors writes 0600), so a shared cache or a service user can read it.
A file that is there but cannot be read back (truncated, corrupt) is a `BrokenFileError` naming it.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

_umask_lock = threading.Lock()


class BrokenFileError(ValueError):
    """A file MAMER wrote is truncated or corrupt; the message names it and what re-creates it."""

    def __init__(self, path: Path, what: str, remedy: str, cause: Exception | None = None) -> None:
        self.path = Path(path)
        reason = "" if cause is None else f" ({type(cause).__name__}: {str(cause).strip()[:200]})"
        super().__init__(f"{path}: {what} is truncated or corrupt{reason}; {remedy}")


def default_mode() -> int:
    """The mode a new file gets here: 0o666 less the process umask."""
    try:  # Linux states the umask without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp)` on a temporary file in the same folder, then rename it to `path` (mode: `default_mode`)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, value) -> None:
    """``value`` as indented JSON, written atomically (`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(value, indent=1)))
