"""Extraction batching: "auto" or N items per encode call gives the features of one clip at a time, and "auto"
picks per device what the rule says (batched on CUDA; on a CPU by measurement). No timings are asserted."""

from __future__ import annotations

import argparse
import json

import pytest
import soundfile as sf
import torch

from conftest import speechlike
from mamer.cli.data import add_commands
from mamer.config import load_config
from mamer.data import batching
from mamer.data.audio import load_audio
from mamer.data.batching import (
    CPU_BATCH,
    GPU_BATCH,
    RECHECK,
    BatchPlan,
    MeasuredPlan,
    batch_plan,
    parse_batch_size,
)
from mamer.data.cache import load_split
from mamer.data.extract import extract_features
from mamer.data.manifest import read_manifest, splits
from mamer.encoders import registry
from mamer.encoders.text import HashedTextEncoder
from test_encoders import save_tiny_speech_model  # a tiny random-init wav2vec2-style model


def test_parse_batch_size():
    assert [parse_batch_size(v) for v in ("auto", " AUTO ", "8", 8, 1)] == ["auto", "auto", 8, 8, 1]
    for bad in (0, -2, "0", "x", "", None, True, 1.5):
        with pytest.raises(ValueError, match="'auto' or an integer >= 1"):
            parse_batch_size(bad)


def test_config_and_command_line_take_auto_or_a_number():
    assert load_config(None).data.extract_batch_size == "auto"
    assert load_config(None, ["data.extract_batch_size=4"]).data.extract_batch_size == 4
    for bad in ("0", "big", "2.5"):
        with pytest.raises(ValueError, match="data.extract_batch_size must be 'auto' or an integer >= 1"):
            load_config(None, [f"data.extract_batch_size={bad}"])
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    extract = ["extract", "--manifest", "m.jsonl", "--out", "features"]
    assert parser.parse_args(extract).batch_size == "auto"
    assert parser.parse_args([*extract, "--batch-size", "12"]).batch_size == 12
    with pytest.raises(SystemExit):
        parser.parse_args([*extract, "--batch-size", "0"])


def test_auto_is_batched_on_cuda_measured_on_cpu_and_a_number_is_kept():
    assert batch_plan("auto", "cuda").next_size() == GPU_BATCH == batch_plan("auto", "cuda:1").chosen
    assert isinstance(batch_plan("auto", "cpu"), MeasuredPlan) and batch_plan("auto", "cpu").chosen is None
    for device in ("cpu", "cuda"):
        plan = batch_plan(5, device)
        assert type(plan) is BatchPlan and plan.next_size() == 5 == plan.chosen


def drive(plan: MeasuredPlan, groups: int, cost) -> list[int]:
    """Run `groups` groups of `plan.batch` items through `plan`, an encode call of n items of 100 units taking
    `cost(n, group)` seconds per unit; returns the way (1 or the batch) each group ran."""
    plan.next_size()
    plan.record(1, 99.0, 100)  # the first call loads the model: it must not count
    ways = []
    for group in range(groups):
        way = plan.next_size()
        ways.append(way)
        for _ in range(plan.batch if way == 1 else 1):
            assert plan.next_size() == way
            plan.record(way, cost(way, group) * 100 * way, 100 * way)
    return ways


@pytest.mark.parametrize("faster", [1, CPU_BATCH])
def test_measured_plan_runs_each_way_once_then_the_cheaper_rechecking_the_other(faster):
    slower = CPU_BATCH + 1 - faster
    plan = MeasuredPlan()
    ways = drive(plan, 200, lambda n, group: 1.0 if n == faster else 1.25)
    assert ways[:2] == [1, CPU_BATCH] and plan.chosen == faster
    rechecks = [g for g, way in enumerate(ways) if way == slower and g >= 2]
    # the other way again after RECHECK groups, then after twice as many each time it stays the dearer
    gaps = [b - a - 1 for a, b in zip([1, *rechecks], rechecks, strict=False)]
    assert gaps[:4] == [RECHECK, 2 * RECHECK, 4 * RECHECK, 8 * RECHECK]
    assert len(rechecks) / len(ways) < 0.05


def test_measured_plan_follows_a_change_in_load():
    # batched is cheaper until group 40, then one at a time is (as under heavy load vs an idle machine)
    plan = MeasuredPlan(batch=4)
    ways = drive(
        plan, 120, lambda n, group: (1.0 if n == 4 else 1.5) if group < 40 else (2.0 if n == 4 else 1.0)
    )
    assert ways[2:40].count(4) > 30 and plan.chosen == 1 and ways[-20:].count(1) >= 19


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """Ten clips of 0.20-0.65 s (all lengths different), written as WAV, in one split."""
    folder = tmp_path_factory.mktemp("clips")
    lines = []
    for i in range(10):
        sf.write(folder / f"{i}.wav", speechlike(0.2 + 0.05 * i, seed=i), 16000)
        lines.append(json.dumps({"id": f"u{i}", "audio": f"{i}.wav", "split": "train"}))
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    utterances, problems = read_manifest(folder / "manifest.jsonl")
    assert not problems
    return splits(utterances)


@pytest.mark.parametrize("kind", ["group", "layer", "whisper-tiny.en"])
def test_batched_and_auto_extraction_equal_the_one_clip_loop(corpus, tmp_path, monkeypatch, kind):
    """Clips of different lengths batched give their one-at-a-time features: WavLM-base style (group norm: the
    first conv layer clip by clip) and -large style (layer norm) under the attention mask, and Whisper."""
    if kind.startswith("whisper"):
        if not registry.installed(kind):
            pytest.skip(f"{kind} weights are not installed")
        encoder = registry.load_audio_encoder(kind)
    else:
        encoder = registry.load_audio_encoder(str(save_tiny_speech_model(tmp_path, feat_extract_norm=kind)))
    lengths = {u.id: len(load_audio(u.audio, 16000)) for u in corpus["train"]}
    loop = {u.id: encoder.encode([load_audio(u.audio, 16000)])[0] for u in corpus["train"]}  # the naive loop
    sizes, masks = [], []
    encode_batch = encoder._encode_batch
    encoder._encode_batch = lambda waves: sizes.append(len(waves)) or encode_batch(waves)
    if not kind.startswith("whisper"):
        forward = encoder.model.forward

        def spy(input_values, **kwargs):  # each row is masked to its own samples, the rest is zero
            mask = kwargs["attention_mask"].bool()
            assert mask.shape == input_values.shape and not input_values[~mask].any()
            masks.append(mask.sum(1).tolist())
            return forward(input_values, **kwargs)

        encoder.model.forward = spy
    monkeypatch.setattr(batching, "CPU_BATCH", 4)  # "auto" on a CPU: 1 untimed, 4 one at a time, a batch of 4
    text = HashedTextEncoder(dim=8)
    for size in (1, 5, "auto"):
        sizes.clear(), masks.clear()
        cache = extract_features(corpus, encoder, text, tmp_path / f"cache-{size}", size, False)
        cached = load_split(cache, "train")
        for k, key in enumerate(cached.ids):  # float16 in the cache
            torch.testing.assert_close(
                cached.audio_of(k).float(), loop[key].half().float(), atol=2e-3, rtol=2e-3
            )
        assert (
            sizes[: {1: 10, 5: 2, "auto": 6}[size]]
            == {
                1: [1] * 10,
                5: [5, 5],
                "auto": [1, 1, 1, 1, 1, 4],
            }[size]
        )
        ordered = sorted(lengths.values())
        if masks:  # the rows of each forward pass: clips of different lengths, shortest first
            assert [n for batch in masks for n in batch] == ordered
            assert any(len(set(batch)) > 1 for batch in masks) == (size != 1)
    assert encoder.batch_size == 8  # the encoder's own setting is back
