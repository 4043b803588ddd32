"""Cost of the feature cache's audio keys (content hashes, `mamer.data.file_hashes`) on a folder of audio files.

Times three passes over every audio file under FOLDER: the first run after a copy (each file read and hashed,
its hash appended to `file-hashes.jsonl`), a later run (the listing read back, each file only stat'ed), and a bare
`stat` of each file for reference (what keys by path, size and mtime cost). The first pass reads from the page
cache if the files were read recently (dropping that cache needs root), so say which case you measured.
    python benchmarks/audio_keys.py ../shared/data/emodb ../shared/data/ravdess
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from mamer.data.file_hashes import FileHashes

AUDIO = {".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    files = sorted(p for f in args.folders for p in f.rglob("*") if p.suffix.lower() in AUDIO)
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    print(f"{len(files)} audio files, {megabytes:.1f} MB")
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        first = FileHashes(root)
        for path in files:
            first.sha256(path)
        first.save()
        hashed = time.perf_counter() - start
        start = time.perf_counter()
        later = FileHashes(root)
        for path in files:
            later.sha256(path)
        remembered = time.perf_counter() - start
        listing = (Path(root) / "file-hashes.jsonl").stat().st_size / 1e6
    start = time.perf_counter()
    for path in files:
        os.stat(path.resolve())
    stat_only = time.perf_counter() - start
    print(f"first run (read + hash + append): {hashed:.3f} s, {megabytes / hashed:.0f} MB/s")
    print(f"later run (listing + stat):       {remembered:.3f} s ({listing:.2f} MB listing)")
    print(f"stat only (path/size/mtime keys): {stat_only:.3f} s")


if __name__ == "__main__":
    main()
