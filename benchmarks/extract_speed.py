"""Feature extraction speed: a naive per-utterance loop vs `extract_features`, and training steps from the cache.

On the same utterances (synthesised, or a manifest's), prints utterances/s and real-time factor (processing
time / audio time, lower is faster) for the installed Whisper presets and a WavLM-base-sized model with random
weights, then the training step time from the cache vs from in-memory tensors (the loader's overhead):
    python benchmarks/extract_speed.py --utterances 48 [--device cuda] [--manifest M] [--encoders wavlm-base]
With --batching it compares instead, interleaved over --repeats rounds (medians), the naive loop and
`extract_features` at each of --sizes (default 1,16,auto; what auto chose is printed), on real speech from
../shared/data (EmoDB + RAVDESS; --join K joins 1..K clips per utterance, for mixed lengths):
    python benchmarks/extract_speed.py --batching --threads 2 --utterances 32 --join 3 --repeats 3
`--smoke` shrinks WavLM to two 32-wide layers and the training and loading loops to one epoch and one round: it
checks that the script runs (the test suite does so), and its figures mean nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from mamer.data import extract
from mamer.data.audio import load_audio
from mamer.data.cache import Column, Shard, SplitFeatures, load_split
from mamer.data.dataset import EmotionDataset, Targets, collate
from mamer.data.extract import extract_features
from mamer.data.manifest import read_manifest, splits
from mamer.data.synthetic import generate_corpus
from mamer.encoders.packages import installed
from mamer.encoders.registry import load_audio_encoder, load_text_encoder

# --smoke: a WavLM small enough that the test suite can run the script in seconds
TINY_WAVLM = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7,
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
)  # fmt: skip


def save_wavlm(folder: Path, smoke: bool) -> None:
    """A WavLM-base-sized model (or `TINY_WAVLM`) with random weights, seeded, saved to `folder`."""
    from transformers import WavLMConfig, WavLMModel

    torch.manual_seed(0)
    WavLMModel(WavLMConfig(**TINY_WAVLM) if smoke else WavLMConfig()).save_pretrained(folder)


def naive_whisper(name: str, utterances, device) -> None:
    """What peer repositories do: feature extractor + HF WhisperEncoder on a 30 s-padded clip, one at a time."""
    from transformers import WhisperFeatureExtractor

    model = load_audio_encoder(name, device=device).model
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
    """The same features as in-memory float32 copies of the shards (no memory map, no float16)."""

    def column(c: Column) -> Column:
        return Column(
            [Shard(s.path, s.features.float().clone(), s.offsets.clone()) for s in c.shards], c.rows, c.dim
        )

    return SplitFeatures(cached.ids, column(cached.audio), column(cached.text), cached.skipped)


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


def extraction(
    work: Path, rows, encoders: list[str], device: str, batch_size: int, wavlm_layers: list[str], smoke: bool
) -> None:
    """Naive loop and `extract_features` per encoder, on the same utterances; WavLM-base once per layer choice
    in `wavlm_layers` (the naive loop runs the whole model whichever state is kept, as peer repositories do)."""
    audio_seconds = sum(len(load_audio(u.audio, 16000)) for u in rows) / 16000
    print(f"{len(rows)} utterances, {audio_seconds:.1f} s of audio")
    save_wavlm(work / "wavlm-base", smoke)
    text = load_text_encoder("hashed")
    for name in encoders:
        print(f"{name}{' (random weights)' if name == 'wavlm-base' else ''}:")
        if name == "wavlm-base":
            naive = timed(naive_hf, work / name, rows, device)
            name = str(work / name)
        else:
            naive = timed(naive_whisper, name, rows, device)
        report("naive loop (one utterance at a time)", naive, len(rows), audio_seconds)
        for layers in wavlm_layers if name.endswith("wavlm-base") else ["default"]:
            options = {} if layers == "default" else {"layers": int(layers)}
            encoder = load_audio_encoder(name, device=device, **options)
            cache = work / f"cache-{Path(name).name}-{layers}"
            fast = timed(extract_features, splits(rows), encoder, text, cache, batch_size, False)
            label = f"extract_features (batch {batch_size}, states {encoder.layers})"
            report(label, fast, len(rows), audio_seconds)
            print(f"  {'':34s} speed-up {naive / fast:.2f}x")


def loading_time(features: SplitFeatures, train_rows, batch_size: int = 16, epochs: int = 20) -> float:
    """Seconds per batch of the DataLoader alone (reading features, padding, collating)."""
    dataset = EmotionDataset(features, train_rows, Targets.fit(train_rows), max_frames=3000)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=collate)
    batches, start = 0, time.perf_counter()
    for _ in range(epochs):
        batches += sum(1 for _ in loader)
    return (time.perf_counter() - start) / batches


def loader_overhead(work: Path, rows, smoke: bool) -> None:
    """Training step time from the memory-mapped float16 cache vs in-memory float32 (best of 3, interleaved),
    and the batch loading alone: the only difference between the two, and one a loaded machine cannot blur."""
    rounds, step_epochs, load_epochs = (1, 1, 1) if smoke else (3, 5, 20)
    text = load_text_encoder("hashed")
    logmel = load_audio_encoder("logmel")
    folder = extract_features(splits(rows), logmel, text, work / "logmel", progress=False)
    train_rows = splits(rows)["train"]
    sources = {"cache": load_split(folder, "train")}
    sources["memory"] = in_memory(sources["cache"])
    # a warm-up run (thread pool, allocator), so that going first costs neither
    train_steps(sources["memory"], train_rows, epochs=step_epochs)
    steps, loads = {name: [] for name in sources}, {name: [] for name in sources}
    for _ in range(rounds):  # interleaved: a change in machine load hits both
        for name, features in sources.items():
            steps[name].append(train_steps(features, train_rows, epochs=step_epochs))
            loads[name].append(loading_time(features, train_rows, epochs=load_epochs))
    steps, loads = {k: min(v) for k, v in steps.items()}, {k: min(v) for k, v in loads.items()}
    print(f"training step, quickstart model, batch 16, {len(train_rows)} train utterances (logmel + hashed):")
    for name, label in (("cache", "the safetensors cache (mmap)"), ("memory", "in-memory float32 tensors")):
        print(
            f"  from {label:28s} {1000 * steps[name]:7.1f} ms/step, loading {1000 * loads[name]:5.1f} ms/batch"
        )
    extra = (loads["cache"] - loads["memory"]) / steps["memory"]
    print(f"  loader overhead (cache - memory loading, over a step)  {100 * extra:+.2f} %")


def real_corpus(work: Path, data: Path, n: int, join: int, seed: int = 0) -> Path:
    """A manifest of `n` utterances of real speech, half from EmoDB (2.0 s clips) and half from RAVDESS (2.39 s),
    alternating; each joins 1..`join` clips of one corpus (at random), written as 16 kHz WAV."""
    rng = random.Random(seed)
    clips = {}
    for corpus in ("emodb", "ravdess"):
        with open(data / corpus / "metadata.csv", newline="") as f:
            clips[corpus] = [data / corpus / row["audio"] for row in csv.DictReader(f)]
        rng.shuffle(clips[corpus])
    (work / "real").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        corpus = ("emodb", "ravdess")[i % 2]
        parts = [clips[corpus].pop() for _ in range(rng.randint(1, join))]
        path = work / "real" / f"{i:04d}.wav"
        sf.write(path, np.concatenate([load_audio(p, 16000) for p in parts]), 16000)
        lines.append(json.dumps({"id": f"{i:04d}", "audio": str(path), "text": "", "split": "train"}))
    (work / "real.jsonl").write_text("\n".join(lines) + "\n")
    return work / "real.jsonl"


def naive_loop(name: str, model, rows, device) -> None:
    """`naive_whisper` / `naive_hf` on a model built beforehand (`naive_model`), so that loading is not timed."""
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor() if name.startswith("whisper") else None
    for u in rows:
        wave = load_audio(u.audio, 16000)
        with torch.no_grad():
            if extractor is not None:
                mel = extractor(wave, sampling_rate=16000, return_tensors="pt").input_features
                model(mel.to(device), output_hidden_states=True)
            else:
                wave = torch.from_numpy(wave)
                wave = (wave - wave.mean()) / torch.sqrt(wave.var() + 1e-7)
                model(wave[None].to(device), output_hidden_states=True)


def naive_model(name: str, work: Path, device):
    """The whole model the naive loop runs: Whisper's encoder, or `AutoModel` of the WavLM folder."""
    from transformers import AutoModel

    if name == "wavlm-base":
        return AutoModel.from_pretrained(work / name).to(device).eval()
    return load_audio_encoder(name, device=device).model


def compare_batching(
    work: Path, rows, encoders: list[str], device: str, sizes: list, repeats: int, layers: str, smoke: bool
):
    """Naive loop vs `extract_features` at each of `sizes`, interleaved `repeats` times: medians."""
    seconds = sum(len(load_audio(u.audio, 16000)) for u in rows) / 16000
    lengths = sorted(len(load_audio(u.audio, 16000)) / 16000 for u in rows)
    print(f"{len(rows)} utterances, {seconds:.1f} s of audio, {lengths[0]:.2f}-{lengths[-1]:.2f} s each")
    save_wavlm(work / "wavlm-base", smoke)
    text, plans = load_text_encoder("hashed"), []
    made = extract.batch_plan
    extract.batch_plan = lambda *a: plans.append(made(*a)) or plans[-1]  # to report what "auto" chose
    for name in encoders:
        options = {"layers": int(layers)} if name == "wavlm-base" and layers != "default" else {}
        encoder = load_audio_encoder(
            str(work / name) if name == "wavlm-base" else name, device=device, **options
        )
        encoder.encode([load_audio(rows[0].audio, 16000)])  # load the weights before any timing
        model = naive_model(name, work, device)
        ways = {"naive loop": lambda c, m=model, n=name: naive_loop(n, m, rows, device)}
        for size in sizes:
            ways[f"extract_features, batch {size}"] = lambda c, e=encoder, s=size: extract_features(
                splits(rows), e, text, c, s, False
            )
        times, chosen = {way: [] for way in ways}, []
        for r in range(repeats):  # interleaved: a change in machine load hits every way alike
            for k, (way, run) in enumerate(ways.items()):
                first = len(plans)
                times[way].append(timed(run, work / f"cache-{name}-{r}-{k}"))
                if way.endswith("auto"):
                    chosen.append(plans[first].chosen)  # the run's first plan is the audio one
            print(
                f"  round {r + 1}: " + ", ".join(f"{len(rows) / t[-1]:.2f}" for t in times.values()),
                flush=True,
            )
        print(f"{name}{' (random weights)' if name == 'wavlm-base' else ''}, states {encoder.layers}:")
        for way, values in times.items():
            rates = ", ".join(f"{len(rows) / v:.2f}" for v in values)
            print(f"  {way:34s} median {len(rows) / statistics.median(values):6.2f} utt/s  ({rates})")
        if chosen:
            print(f"  auto chose batch {chosen} (per round)", flush=True)
    extract.batch_plan = made


def main() -> None:
    whisper = [name for name in ("whisper-base", "whisper-tiny.en") if installed(name)]
    parser = argparse.ArgumentParser()
    parser.add_argument("--utterances", type=int, default=48, help="multiple of 12 (4 speakers)")
    parser.add_argument("--manifest", help="use this manifest's utterances instead of a synthesised corpus")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--encoders", default=",".join([*whisper, "wavlm-base"]))
    parser.add_argument(
        "--wavlm-layers", default="-1,6", help="hidden states kept from WavLM-base, one extraction each"
    )
    parser.add_argument("--batching", action="store_true", help="compare batch sizes on real speech only")
    parser.add_argument("--data", default="../shared/data", help="with --batching: holds emodb/ and ravdess/")
    parser.add_argument("--join", type=int, default=1, help="with --batching: join 1..K clips per utterance")
    parser.add_argument("--repeats", type=int, default=3, help="with --batching: interleaved rounds")
    parser.add_argument("--sizes", default="1,16,auto", help="with --batching: the batch sizes compared")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes: the script runs, the figures mean nothing"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="mamer-bench-"))
    if args.batching:
        rows, _ = read_manifest(real_corpus(work, Path(args.data), args.utterances, args.join))
        print(f"device {args.device}, torch threads {torch.get_num_threads()}")
        layers = args.wavlm_layers.split(",")[0]
        encoders = args.encoders.split(",")
        sizes = [size if size == "auto" else int(size) for size in args.sizes.split(",")]
        compare_batching(work, rows, encoders, args.device, sizes, args.repeats, layers, args.smoke)
        return
    if args.manifest:
        manifest = Path(args.manifest)
    else:
        manifest = generate_corpus(
            work / "corpus", 4, args.utterances // 4, seed=0, split_speakers=(2, 1, 1), progress=False
        )
    rows, _ = read_manifest(manifest)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"device {name}, torch threads {torch.get_num_threads()}")
    if args.encoders:
        extraction(
            work, rows, args.encoders.split(","), args.device, args.batch_size, args.wavlm_layers.split(","),
            args.smoke,
        )  # fmt: skip
    loader_overhead(work, rows, args.smoke)


if __name__ == "__main__":
    main()
