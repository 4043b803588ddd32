"""The output folder of `mamer predict --engine ray`, without Ray: plan, resume checks, atomic shards (issue 36)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mamer.workflows.scale.inputs import InputRow
from mamer.workflows.scale.shards import ERROR_SCHEMA, OutputFolder, record, row_schema

PLAN = {"model": "mamer-base", "asr": None, "shard_size": 2, "segment": "auto"}
INPUTS = [InputRow(f"c{i}", f"clips/c{i}.wav", f"/data/clips/c{i}.wav") for i in range(5)]
SCHEMA = row_schema("categorical", ["angry", "sad"])


def rows_of(folder: OutputFolder, shard: int) -> pa.Table:
    rows = []
    for i in folder.shard_inputs(shard):
        row = {
            "id": "x",
            "file": "y",
            "view": "audio",
            "label": "sad",
            "probabilities": {"angry": 0.25, "sad": 0.75},
        }
        rows.append(record(row, i, INPUTS[i].source, INPUTS[i].id))
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def test_inputs_map_to_the_same_shards_and_a_rerun_resumes(tmp_path):
    """Shards cover fixed blocks of inputs; a rerun with the same plan finds the finished ones; a rerun
    with other settings or other inputs is refused, naming what differs."""
    folder = OutputFolder(tmp_path / "out")
    folder.open(PLAN, INPUTS)
    assert folder.shard_count == 3 and list(folder.shard_inputs(2)) == [4]
    assert pq.read_table(tmp_path / "out" / "inputs.parquet").column("source").to_pylist() == [
        r.source for r in INPUTS
    ]
    folder.write_shard(1, rows_of(folder, 1), ERROR_SCHEMA.empty_table(), {"files": 2, "audio_seconds": 3.5})
    again = OutputFolder(tmp_path / "out")
    again.open(PLAN, INPUTS)
    assert again.done() == {1}
    assert again.stats() == [{"shard": 1, "files": 2, "audio_seconds": 3.5}]
    written = pq.read_table(tmp_path / "out" / "predictions")
    assert written.column("input_row").to_pylist() == [2, 3]
    assert written.column("probabilities").to_pylist()[0] == {"angry": 0.25, "sad": 0.75}
    with pytest.raises(ValueError, match=r"other settings \(segment: 'auto' there, 'vad' now\)"):
        OutputFolder(tmp_path / "out").open(PLAN | {"segment": "vad"}, INPUTS)
    moved = [*INPUTS[:3], InputRow("new", "clips/new.wav", "/data/clips/new.wav"), INPUTS[4]]
    with pytest.raises(ValueError, match="the first to differ is input 3: clips/c3.wav"):
        OutputFolder(tmp_path / "out").open(PLAN, moved)
    with pytest.raises(ValueError, match="5 inputs there, 6 now"):
        OutputFolder(tmp_path / "out").open(PLAN, [*INPUTS, InputRow("c5", "clips/c5.wav")])


def test_a_shard_is_written_whole_and_its_errors_follow_it(tmp_path):
    """Temporaries a killed run left are removed; a rerun of a shard that now has no errors leaves no stale
    errors file; the rows file carries the shard's figures."""
    folder = OutputFolder(tmp_path / "out")
    folder.open(PLAN, INPUTS)
    stale = tmp_path / "out" / "predictions" / ".part-00000.parquet.4242.tmp"
    stale.write_bytes(b"half a file")
    errors = pa.Table.from_pylist(
        [{"input_row": 0, "id": "c0", "source": "clips/c0.wav", "error": "not an audio file"}],
        schema=ERROR_SCHEMA,
    )
    folder.write_shard(0, rows_of(folder, 0).slice(1), errors, {"errors": 1})
    assert pq.read_table(tmp_path / "out" / "errors").column("error").to_pylist() == ["not an audio file"]
    OutputFolder(tmp_path / "out").open(PLAN, INPUTS)
    assert not stale.exists()
    folder.write_shard(0, rows_of(folder, 0), ERROR_SCHEMA.empty_table(), {"errors": 0})
    assert not (tmp_path / "out" / "errors" / "part-00000.parquet").exists()
    meta = pq.read_schema(tmp_path / "out" / "predictions" / "part-00000.parquet").metadata
    assert json.loads(meta[b"mamer.shard"]) == {"shard": 0, "errors": 0}


def test_a_folder_that_is_not_ours_is_never_written(tmp_path):
    """A non-empty folder without a plan (the user's) and a file are refused, and left as they were."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="already holds notes.txt and is no MAMER output folder"):
        OutputFolder(mine).open(PLAN, INPUTS)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    (tmp_path / "file.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="is a file"):
        OutputFolder(tmp_path / "file.csv").open(PLAN, INPUTS)
    assert (tmp_path / "file.csv").read_text() == "a,b\n"


def test_row_schema_follows_the_task_and_the_extras():
    """Categories: label + one probability field per label; dimensions: A/V/D; always transcript and the
    segment's start/end; top_k and embedding only when asked for."""
    both = row_schema("both", ["a", "b"], top_k=True, embeddings=True)
    assert both.names == [
        "input_row", "id", "source", "view", "label", "probabilities", "arousal", "valence", "dominance",
        "transcript", "language", "asr_model", "text_skipped", "start", "end", "top_k", "embedding",
    ]  # fmt: skip
    assert both.field("probabilities").type == pa.struct([("a", pa.float64()), ("b", pa.float64())])
    assert "label" not in row_schema("dimensional", []).names
    assert "arousal" not in SCHEMA.names and "top_k" not in SCHEMA.names
