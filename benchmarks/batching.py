"""Training time of partially paired data batched mixed or by modality (`train.batching`), on random features.

A share of the rows has audio and text (mamer-base: EmoDB and RAVDESS clips with their sentences, 23% of the rows
drawn), the rest text alone. Mixed batches draw from all rows; by-modality batches (`ModalityBatches`) hold one
kind each, so text-only batches skip the audio passes. Prints seconds per 1,000 rows for each, alternating the
two so that a change in machine load hits both:
    python benchmarks/batching.py --rows 1280 --audio-share 0.23 --batch-size 64 --rounds 2
"""

from __future__ import annotations

import argparse
import time

import torch

from mamer.config import LossConfig, ModelConfig
from mamer.data.dataset import Batch
from mamer.data.sampling import ModalityBatches
from mamer.losses import SupervisedLoss
from mamer.model.heads import PretrainingHeads
from mamer.model.mamer import MAMER
from mamer.objective import Objective

A_DIM, T_DIM = 512, 384  # whisper-base, MiniLM


def make_batch(rows: list[int], has_audio: torch.Tensor, frames: int, words: int) -> Batch:
    """Random features for `rows`; audio rows get `frames` frames (2.0-2.4 s clips at 50 Hz), all `words` tokens."""
    b, audio = len(rows), has_audio[rows]
    any_audio = bool(audio.any())
    return Batch(
        ids=[str(i) for i in rows],
        audio=torch.randn(b, frames, A_DIM) if any_audio else None,
        audio_mask=audio[:, None].expand(b, frames).clone() if any_audio else None,
        text=torch.randn(b, words, T_DIM),
        text_mask=torch.ones(b, words, dtype=torch.bool),
        has_audio=audio,
        has_text=torch.ones(b, dtype=torch.bool),
        labels=torch.randint(0, 7, (b,)),
        dims=torch.randn(b, 3),
    )


def epoch_seconds(batching: str, has_audio: torch.Tensor, batch_size: int, frames: int, words: int) -> float:
    torch.manual_seed(0)
    config = ModelConfig(audio_downsample=4)
    model = MAMER(config, A_DIM, T_DIM, 7, 3)
    heads = PretrainingHeads(config.width, A_DIM, T_DIM, 4, config.contrastive_dim, 0.07)
    objective = Objective(LossConfig(), config.views, SupervisedLoss())
    optimizer = torch.optim.AdamW(list(model.parameters()) + list(heads.parameters()), lr=1e-4)
    if batching == "by_modality":
        batches = list(ModalityBatches(has_audio.tolist(), batch_size))
    else:
        order = torch.randperm(len(has_audio)).tolist()
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    inputs = [make_batch(rows, has_audio, frames, words) for rows in batches]
    started = time.perf_counter()
    for batch in inputs:
        loss = objective(model, heads, batch)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1280)
    parser.add_argument("--audio-share", type=float, default=0.23)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=110, help="audio frames of a clip (50 Hz)")
    parser.add_argument("--words", type=int, default=24, help="text tokens of a row")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    has_audio = torch.rand(args.rows, generator=torch.Generator().manual_seed(0)) < args.audio_share
    print(f"cpu, torch {torch.__version__}, threads {torch.get_num_threads()}; {args.rows} rows, "
          f"{int(has_audio.sum())} with audio, batch {args.batch_size}")  # fmt: skip
    times: dict[str, list[float]] = {"mixed": [], "by_modality": []}
    for _ in range(args.rounds):
        for batching in times:
            times[batching].append(
                epoch_seconds(batching, has_audio, args.batch_size, args.frames, args.words)
            )
    for batching, seconds in times.items():
        best = min(seconds)
        print(f"{batching:12s} {1000 * best / args.rows:6.2f} s per 1,000 rows (best of {args.rounds})")
    print(f"by_modality is {min(times['mixed']) / min(times['by_modality']):.2f}x as fast")


if __name__ == "__main__":
    main()
