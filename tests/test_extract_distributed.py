"""`torchrun -m mamer extract` with 2 CPU processes (gloo): each rank encodes its share, rank 0 indexes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from safetensors import safe_open

from mamer.data.cache import load_split
from mamer.data.extract import extract_manifest
from mamer.data.manifest import read_manifest, splits
from mamer.encoders.choice import EncoderChoice

LOGMEL, HASHED = EncoderChoice("audio", "logmel"), EncoderChoice("text", "hashed")


def torchrun_extract(manifest, out, nproc: int = 2) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "mamer", "extract", "--manifest", str(manifest), "--audio-encoder", "logmel",
               "--text-encoder", "hashed", "--out", str(out), "--shard-size", "4"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def shard_metadata(root) -> dict[str, dict]:
    """File name -> header metadata of every audio shard under a cache root."""
    found = {}
    for path in root.glob("audio-*/*.safetensors"):
        with safe_open(str(path), framework="pt") as f:
            found[path.name] = f.metadata()
    return found


def test_two_ranks_equal_one_process_and_resume_per_rank(tiny_corpus, tmp_path):
    single = extract_manifest(tiny_corpus, tmp_path / "one", LOGMEL, HASHED, progress=False, shard_size=4)

    rows, _ = read_manifest(tiny_corpus)
    test_only = tmp_path / "test_only.jsonl"  # an earlier run that got through the test split only
    test_only.write_text("".join(json.dumps({"id": u.id, "audio": str(u.audio), "text": u.text,
                                             "split": u.split}) + "\n" for u in splits(rows)["test"]))  # fmt: skip
    extract_manifest(test_only, tmp_path / "two", LOGMEL, HASHED, progress=False, shard_size=4)
    before = shard_metadata(tmp_path / "two")

    result = torchrun_extract(tiny_corpus, tmp_path / "two")
    folder = tmp_path / "two" / single.name
    assert f"features in {folder}" in result.stdout and result.stdout.count("features in") == 1
    new = {name: meta for name, meta in shard_metadata(tmp_path / "two").items() if name not in before}
    assert {meta["rank"] for meta in new.values()} == {"0", "1"}  # both ranks wrote shards
    assert sum(len(json.loads(meta["keys"])) for meta in new.values()) == 24  # the 8 test clips were reused
    hashed = (tmp_path / "two" / "file-hashes.jsonl").read_text().splitlines()
    assert len(hashed) == len(rows) == 32  # each file hashed once: rank 0 first, rank 1 read its hashes

    for split in ("train", "dev", "test"):
        one, two = load_split(single, split), load_split(folder, split)
        assert one.ids == two.ids
        for i in range(len(one.ids)):
            assert torch.equal(one.audio_of(i), two.audio_of(i)) and torch.equal(
                one.text_of(i), two.text_of(i)
            )
