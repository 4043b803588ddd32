"""Tests for the remembered content hashes of audio files (the feature cache's audio keys)."""

from __future__ import annotations

import hashlib
import os

from mamer.data import file_hashes
from mamer.data.file_hashes import HASHES_FILE, FileHashes


def test_hash_is_of_the_bytes_and_remembered_by_path_size_and_mtime(tmp_path):
    clip = tmp_path / "a.wav"
    clip.write_bytes(b"first content")
    hashes = FileHashes(tmp_path / "cache")
    assert hashes.sha256(clip) == hashlib.sha256(b"first content").hexdigest()
    assert not (tmp_path / "cache" / HASHES_FILE).exists()  # appended on save
    hashes.save()
    stat = os.stat(clip)
    clip.write_bytes(b"other content")  # same size; the old mtime put back: a later run only stats the file
    os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert FileHashes(tmp_path / "cache").sha256(clip) == hashlib.sha256(b"first content").hexdigest()
    os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # touched: hashed again
    assert FileHashes(tmp_path / "cache").sha256(clip) == hashlib.sha256(b"other content").hexdigest()


def test_a_line_cut_by_a_kill_is_ignored_and_its_file_hashed_again(tmp_path):
    clips = [tmp_path / f"{i}.wav" for i in range(3)]
    for i, clip in enumerate(clips):
        clip.write_bytes(bytes([i]) * 100)
    first = FileHashes(tmp_path)
    for clip in clips:
        first.sha256(clip)
    first.save()
    listing = tmp_path / HASHES_FILE
    lines = listing.read_text().splitlines(keepends=True)
    listing.write_text(lines[0] + lines[1] + lines[2][:30])  # the last line cut mid-way
    again = FileHashes(tmp_path)
    assert len(again) == 2
    assert again.sha256(clips[2]) == hashlib.sha256(bytes([2]) * 100).hexdigest()
    again.save()
    assert len(FileHashes(tmp_path)) == 3


def test_two_writers_append_to_one_listing(tmp_path):
    """Ranks or concurrent jobs share a cache root: each appends its own lines, and a reader sees them all."""
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    one, two = FileHashes(tmp_path), FileHashes(tmp_path)
    one.sha256(a)
    two.sha256(b)
    one.save()
    two.save()
    assert len(FileHashes(tmp_path)) == 2


def test_unreadable_paths_have_no_hash(tmp_path):
    hashes = FileHashes(tmp_path)
    assert hashes.sha256(tmp_path / "missing.wav") is None
    assert hashes.sha256(tmp_path) is None  # a folder
    hashes.save()
    assert not (tmp_path / HASHES_FILE).exists()


def test_a_cache_root_that_cannot_be_written_only_costs_the_memory(tmp_path, caplog):
    """Another user's read-only cache: hashing goes on, the hashes are not remembered, a warning says so once."""
    clip = tmp_path / "a.wav"
    clip.write_bytes(b"a")
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")  # a file where the cache root should be: appending fails, as on a read-only root
    hashes = FileHashes(blocked)
    assert hashes.sha256(clip) == hashlib.sha256(b"a").hexdigest()
    hashes.save()
    hashes.sha256(tmp_path)  # nothing new
    (tmp_path / "b.wav").write_bytes(b"b")
    hashes.sha256(tmp_path / "b.wav")
    hashes.save()
    assert len(hashes) == 2
    assert len([r for r in caplog.records if "cannot remember audio hashes" in r.message]) == 1


def test_a_listing_of_mostly_old_lines_is_compacted_on_load(tmp_path, monkeypatch):
    """A file rewritten in place again and again: each rewrite appends a line, and a load that finds most lines
    superseded keeps one line per path."""
    monkeypatch.setattr(file_hashes, "COMPACT_AT", 6)
    clip, other = tmp_path / "a.wav", tmp_path / "b.wav"
    other.write_bytes(b"b")
    for i in range(5):
        clip.write_bytes(bytes([i]) * 10)
        os.utime(clip, ns=(0, 10**9 * (i + 1)))  # each rewrite a new mtime
        hashes = FileHashes(tmp_path)
        hashes.sha256(clip)
        hashes.sha256(other)
        hashes.save()
    listing = tmp_path / HASHES_FILE
    assert len(listing.read_text().splitlines()) == 6  # each load found fewer than COMPACT_AT lines
    hashes = FileHashes(tmp_path)
    assert len(hashes) == 2 and len(listing.read_text().splitlines()) == 2  # 6 lines, 2 current: compacted
    assert hashes.sha256(clip) == hashlib.sha256(bytes([4]) * 10).hexdigest()
    hashes.save()
    assert len(listing.read_text().splitlines()) == 2  # nothing new to append: the file was only stated
