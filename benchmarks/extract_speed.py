"""Feature extraction speed: a naive per-utterance loop vs `extract_features`, and training steps from the cache.

On the same synthesised utterances, prints utterances/s and real-time factor (processing time / audio time,
lower is faster) for whisper-base (if installed) and a WavLM-base-sized model with random weights:
    python benchmarks/extract_speed.py --utterances 48 [--device cuda]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from mamer.data.dataset import EmotionDataset, Targets, collate
from mamer.data.features import Shard, SplitFeatures, extract_features, load_split
from mamer.data.manifest import read_manifest, splits
from mamer.data.synthetic import generate_corpus
from mamer.encoders.audio_io import load_audio
from mamer.encoders.registry import installed, load_audio_encoder, load_text_encoder


def naive_whisper(utterances, device) -> None:
    """What peer repositories do: feature extractor + HF WhisperEncoder on a 30 s-padded clip, one at a time."""
    from transformers import WhisperFeatureExtractor

    model = load_audio_encoder("whisper-base", device=device).model
    extractor = WhisperFeatureExtractor()
    for u in utterances:
        mel = extractor(load_audio(u.audio, 16000), sampling_rate=16000, return_tensors="pt").input_features
        with torch.no_grad():
            model(mel.to(device), output_hidden_states=True)


def naive_hf(folder: Path, utterances, device) -> None:
    """One utterance at a time through `AutoModel`, normalised as its feature extractor does."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder).to(device).eval()
    for u in utterances:
        wave = torch.from_numpy(load_audio(u.audio, 16000))
        wave = (wave - wave.mean()) / torch.sqrt(wave.var() + 1e-7)
        with torch.no_grad():
            model(wave[None].to(device), output_hidden_states=True)


def timed(fn, *args) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def report(label: str, seconds: float, n: int, audio_seconds: float) -> None:
    print(
        f"  {label:34s} {seconds:7.2f} s  {n / seconds:7.1f} utt/s  RTF {seconds / audio_seconds:.4f} "
        f"({audio_seconds / seconds:6.1f}x real time)",
        flush=True,
    )


def in_memory(cached: SplitFeatures) -> SplitFeatures:
    """The same features as one contiguous in-memory float32 copy per shard."""
    shards = [
        Shard(*(t.clone().float() if t.is_floating_point() else t.clone() for t in vars(s).values()))
        for s in cached.shards
    ]
    return SplitFeatures(cached.ids, shards, cached.starts, cached.skipped)


def train_steps(features: SplitFeatures, train_rows, batch_size: int = 16, epochs: int = 5) -> float:
    """Seconds per training step (batching + forward + backward) of the quickstart-sized model."""
    from mamer.config import LossConfig, ModelConfig
    from mamer.losses import SupervisedLoss
    from mamer.model.heads import PretrainingHeads
    from mamer.model.mamer import MAMER
    from mamer.objective import Objective

    torch.manual_seed(0)
    targets = Targets.fit(train_rows)
    dataset = EmotionDataset(features, train_rows, targets, max_frames=3000)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=collate)
    config = ModelConfig(audio_downsample=4)
    a_dim, t_dim = features.audio_dim, features.text_dim
    model = MAMER(config, a_dim, t_dim, len(targets.labels), 0)
    heads = PretrainingHeads(config.width, a_dim, t_dim, 4, config.contrastive_dim, 0.07)
    objective = Objective(LossConfig(), config.views, SupervisedLoss())
    optimizer = torch.optim.AdamW([*model.parameters(), *heads.parameters()], lr=1e-4)
    steps, start = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            loss = objective(model, heads, batch)["total"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--utterances", type=int, default=48, help="multiple of 12 (4 speakers)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mamer-bench-"))
    manifest = generate_corpus(
        work / "corpus", 4, args.utterances // 4, seed=0, split_speakers=(2, 1, 1), progress=False
    )
    rows, _ = read_manifest(manifest)
    audio_seconds = sum(len(load_audio(u.audio, 16000)) for u in rows) / 16000
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(
        f"{len(rows)} utterances, {audio_seconds:.1f} s of audio; device {name}, threads {torch.get_num_threads()}"
    )

    from transformers import WavLMConfig, WavLMModel

    torch.manual_seed(0)
    WavLMModel(WavLMConfig()).save_pretrained(work / "wavlm-base-random")
    text = load_text_encoder("hashed")
    candidates = [("whisper-base", "whisper-base")] if installed("whisper-base") else []
    candidates.append(("wavlm-base (random)", str(work / "wavlm-base-random")))
    for label, encoder_name in candidates:
        print(f"{label}:")
        if encoder_name == "whisper-base":
            naive = timed(naive_whisper, rows, args.device)
        else:
            naive = timed(naive_hf, Path(encoder_name), rows, args.device)
        report("naive loop (one utterance at a time)", naive, len(rows), audio_seconds)
        encoder = load_audio_encoder(encoder_name, device=args.device)
        fast = timed(
            extract_features, splits(rows), encoder, text, work / f"cache-{label[:5]}", args.batch_size, False
        )
        report(f"extract_features (batch {args.batch_size})", fast, len(rows), audio_seconds)

    folder = extract_features(
        splits(rows), load_audio_encoder("logmel"), text, work / "cache-logmel", progress=False
    )
    train_rows = splits(rows)["train"]
    cached = load_split(folder, "train")
    print(f"training step, quickstart model, batch 16, {len(train_rows)} train utterances (logmel + hashed):")
    print(f"  from the safetensors cache (mmap)  {1000 * train_steps(cached, train_rows):7.1f} ms/step")
    print(
        f"  from in-memory float32 tensors     {1000 * train_steps(in_memory(cached), train_rows):7.1f} ms/step"
    )


if __name__ == "__main__":
    main()
