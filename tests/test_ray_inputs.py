"""Inputs of `mamer predict --engine ray`, listed without Ray: tar shards, manifests, folders (issue 36)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import speechlike
from mamer.data.audio import decode_bytes
from mamer.workflows.inference.batch import make_jobs
from mamer.workflows.scale.inputs import InputRow, list_inputs, manifest_inputs, tar_inputs
from mamer.workflows.scale.tar_shards import list_members, read_member

SR = 16000


def flac_bytes(seconds: float, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, speechlike(seconds, seed), SR, format="FLAC")
    return buffer.getvalue()


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shard(path: Path, members: list[tuple[str, bytes]], link: str | None = None) -> Path:
    """A WebDataset-style shard of `(name, bytes)` members (plus a folder, and a symlink to `link`)."""
    with tarfile.open(path, "w") as tar:
        folder = tarfile.TarInfo("clips")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, data in members:
            add(tar, name, data)
        if link:
            symlink = tarfile.TarInfo("clips/escape.wav")
            symlink.type, symlink.linkname = tarfile.SYMTYPE, link
            tar.addfile(symlink)
    return path


def test_tar_members_are_grouped_by_key_and_read_from_memory(tmp_path):
    """Audio members by WebDataset key, `<key>.txt` their transcript; links, folders, files without an
    extension and hidden files are not inputs; a member's bytes come back by offset, exactly."""
    first, second = flac_bytes(1.0, 1), flac_bytes(1.5, 2)
    shard = write_shard(
        tmp_path / "shard-000.tar",
        [("clips/a01.flac", first), ("clips/a01.txt", b"what a day\n"), ("clips/b02.seg.flac", second),
         ("clips/README", b"not an input"), ("clips/._a01.flac", b"macOS resource fork"),
         ("clips/c03.wav", b""), ("clips/d04.txt", b"\xff\xfe broken utf-8")],
        link="/etc/passwd",
    )  # fmt: skip
    members, problems = list_members(shard)
    assert problems == []
    assert [(m.key, m.name, m.text, m.error) for m in members] == [
        ("clips/a01", "clips/a01.flac", "what a day", None),
        ("clips/b02", "clips/b02.seg.flac", None, None),
        ("clips/c03", "clips/c03.wav", None, "empty file (0 bytes)"),
    ]
    assert read_member(shard, members[0].offset, members[0].size) == first
    assert read_member(shard, members[1].offset, members[1].size) == second
    np.testing.assert_allclose(
        decode_bytes(read_member(shard, members[0].offset, members[0].size), SR),
        speechlike(1.0, 1),
        atol=1e-4,
    )


def test_damaged_shards_keep_what_precedes_the_damage(tmp_path):
    """A shard cut inside a member's data: the members before it are inputs, the cut one an error; a file
    that is no tar at all is one error naming it. Nothing is silently dropped."""
    whole = write_shard(
        tmp_path / "whole.tar", [("x1.flac", flac_bytes(1.0)), ("x2.flac", flac_bytes(1.0, 3))]
    )
    members, _ = list_members(whole)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole.read_bytes()[: members[1].offset + 100])
    rows = tar_inputs(cut)
    assert [(r.id, r.error) for r in rows] == [
        ("x1", None), ("x2", f"the archive ends before this member's {members[1].size} bytes (a truncated shard)"),
        ("cut", "damaged or cut short after member x2.flac (unexpected end of data)"),
    ]  # fmt: skip
    assert rows[0].source == f"{cut}:x1.flac" and rows[0].path == str(cut.resolve())
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 8)  # a gzip magic number, then noise
    [row] = tar_inputs(garbage)
    assert row.source == str(garbage) and "not an uncompressed tar archive" in row.error


def test_manifest_rows_resolve_paths_and_report_bad_rows(tmp_path):
    """Paths relative to the manifest; id defaults to the stem; a row without a path or text, a row the csv
    module cannot parse and a line that is not JSON each become an input with its error (file:line)."""
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "a.wav", speechlike(1.0), SR)
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(
        "id,audio,text\nfirst,audio/a.wav,hello there\n,audio/a.wav,\nalone,,just a text\nnothing,,\n"
        f'nul,"audio/\0b.wav",x\nhuge,"{"y" * 200_000}",x\nlast,audio/a.wav,\n'
    )
    rows = manifest_inputs(csv_file)
    folder = tmp_path / "audio"
    assert rows[:3] == [
        InputRow("first", str(folder / "a.wav"), str((folder / "a.wav").resolve()), text="hello there"),
        InputRow("a", str(folder / "a.wav"), str((folder / "a.wav").resolve())),
        InputRow("alone", f"{csv_file}:4", text="just a text"),
    ]
    assert rows[3] == InputRow(
        "nothing", f"{csv_file}:5", error="no audio path (audio, file, path column) and no text"
    )
    assert rows[4] == InputRow("nul", f"{csv_file}:6", text="x", error="the audio path holds a NUL byte")
    [huge] = [r for r in rows if r.source == f"{csv_file}:7"]
    assert huge.error.startswith("malformed CSV (field larger than field limit")
    assert [r.id for r in rows if r.error is None][-1] == "last"  # the rows after a bad one are read
    jsonl = tmp_path / "list.jsonl"
    jsonl.write_text(json.dumps({"file": str(folder / "a.wav")}) + "\n{oops\n[1, 2]\n")
    rows = manifest_inputs(jsonl)
    assert [r.error for r in rows] == [None, "not JSON (Expecting property name enclosed in double quotes)",
                                       "not a JSON object"]  # fmt: skip
    assert rows[0].source == str(folder / "a.wav")  # absolute paths stay as written


def test_a_folder_lists_files_as_mamer_predict_then_shards_in_order(tmp_path):
    """Audio files get the ids and transcripts `mamer predict` gives them (stems; a shared stem: the path),
    then every shard's members; listing twice gives the same inputs in the same order."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.wav", "a.flac", "sub/a.wav"):
        sf.write(folder / name, speechlike(1.0), SR)
    write_shard(folder / "sub" / "s1.tar", [("k1.flac", flac_bytes(1.0))])
    write_shard(folder / "s0.tar", [("k0.flac", flac_bytes(1.0))])
    transcripts = tmp_path / "t.csv"
    transcripts.write_text("id,text\nb,bee\n")
    rows = list_inputs(folder, transcripts)
    jobs = make_jobs(folder, None, transcripts)
    assert [(r.id, r.source, r.text) for r in rows[:3]] == [(j.id, str(j.audio), j.text) for j in jobs]
    assert [r.id for r in rows] == ["a.flac", "b", "sub/a.wav", "k0", "k1"]
    assert rows == list_inputs(folder, transcripts)
    with pytest.raises(ValueError, match="carries its own texts"):
        list_inputs(folder / "s0.tar", transcripts)
    with pytest.raises(FileNotFoundError, match="no such audio file, folder, shard or manifest"):
        list_inputs(tmp_path / "missing")
