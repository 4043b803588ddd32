"""Files MAMER derives from installed weight packages once and keeps between runs: `$MAMER_CACHE`, else
`~/.cache/mamer` (a leaf module).

A cached file's name carries what it was made from (package versions), so an upgrade makes a new one instead of
reading a stale one; it is written to a temporary file and renamed, so a reader (or a run killed half-way) sees
a whole file or none. Where the cache cannot be written (a read-only home), callers read the packages directly.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from mamer.atomic import atomic_write

log = logging.getLogger(__name__)

_lock = threading.Lock()  # one writer per process (the temporary file is named by the process id)


def cache_root() -> Path:
    """Where MAMER keeps derived files: `$MAMER_CACHE`, else `~/.cache/mamer`."""
    return Path(os.environ.get("MAMER_CACHE") or Path.home() / ".cache" / "mamer")


def cached_file(relative: str, make: Callable[[Path], object]) -> Path | None:
    """`cache_root() / relative`, made by `make(path)` first if it is not there; None if it cannot be written."""
    path = cache_root() / relative
    if path.is_file():
        return path
    with _lock:
        if path.is_file():  # another thread made it meanwhile
            return path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, make)
        except OSError as err:
            log.warning("cannot keep %s in the cache (%s); reading the source each time", path, err)
            return None
    log.info("made %s (once)", path)
    return path
