"""Training throughput of the unified model (three views + contrastive + MAE) on random frozen features.

Prints steps/s and utterances/s per model size and precision, on CPU or CUDA, eager and/or compiled:
    python benchmarks/train_step.py --device cpu --sizes quickstart
    python benchmarks/train_step.py --device cpu --sizes quickstart,quickstart-wide --batch-size 64
    python benchmarks/train_step.py --device cuda --sizes quickstart,gpu-base,gpu-large --precision fp32,bf16
    python benchmarks/train_step.py --device cuda --sizes gpu-large --precision bf16 --compile eager,compiled
"""

from __future__ import annotations

import argparse
import time

import torch

from mamer.config import LossConfig, ModelConfig
from mamer.data.dataset import Batch
from mamer.losses import SupervisedLoss
from mamer.model.heads import PretrainingHeads
from mamer.model.mamer import MAMER, count_parameters
from mamer.objective import Objective

SIZES = {  # width, depth, heads; audio/text feature dims of the encoders each size is meant for
    "quickstart": (dict(width=128, depth=3, heads=4), 512, 384),  # whisper-base + MiniLM
    "quickstart-wide": (dict(width=192, depth=4, heads=4), 512, 384),  # mamer-base's untried bigger size
    "gpu-base": (dict(width=384, depth=6, heads=6), 768, 768),  # WavLM-base / RoBERTa-base
    "gpu-large": (dict(width=768, depth=8, heads=12), 1024, 1024),  # WavLM-large / RoBERTa-large
}


def random_batch(
    b: int, seconds: float, frame_rate: float, words: int, a_dim: int, t_dim: int, device
) -> Batch:
    ta, tt = int(seconds * frame_rate), words
    lengths = torch.randint(ta // 2, ta + 1, (b,))
    return Batch(
        ids=[str(i) for i in range(b)],
        audio=torch.randn(b, ta, a_dim),
        audio_mask=torch.arange(ta)[None] < lengths[:, None],
        text=torch.randn(b, tt, t_dim),
        text_mask=torch.ones(b, tt, dtype=torch.bool),
        has_audio=torch.ones(b, dtype=torch.bool),
        has_text=torch.ones(b, dtype=torch.bool),
        labels=torch.randint(0, 4, (b,)),
        dims=torch.randn(b, 3),
    ).to(device)


def measure(size: str, precision: str, mode: str, device: torch.device, batch_size: int, steps: int) -> None:
    shape, a_dim, t_dim = SIZES[size]
    config = ModelConfig(**shape, audio_downsample=4)
    model = MAMER(config, a_dim, t_dim, 4, 0).to(device)
    if mode == "compiled":
        model.compile()  # as train.compile=true does
    heads = PretrainingHeads(config.width, a_dim, t_dim, 4, config.contrastive_dim, 0.07).to(device)
    objective = Objective(LossConfig(), config.views, SupervisedLoss())
    params = list(model.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    batch = random_batch(batch_size, 6.0, 50.0, 24, a_dim, t_dim, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def step():
        with autocast:
            loss = objective(model, heads, batch)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):  # warm-up, compilation included
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    per_step = (time.perf_counter() - started) / steps
    print(
        f"{size:11s} {count_parameters(model) / 1e6:6.2f}M {precision:5s} {mode:8s} batch {batch_size:4d} "
        f"(6 s audio, 24 words): {1 / per_step:7.2f} steps/s  {batch_size / per_step:8.1f} utterances/s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", default="quickstart")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--compile", default="eager", help="eager, compiled, or both: eager,compiled")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(
        f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}"
    )
    for size in args.sizes.split(","):
        for precision in args.precision.split(","):
            for mode in args.compile.split(","):
                measure(size, precision, mode, device, args.batch_size, args.steps)


if __name__ == "__main__":
    main()
