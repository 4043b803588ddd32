"""How fast can a speech encoder's arithmetic run on this machine? The ceiling on any extraction speed-up.

Counts the floating-point operations of one forward pass of a WavLM-base-sized model (random weights) with
torch's FlopCounterMode, times it one clip at a time (the naive loop) and as a batch of equal-length clips, and
times a large float32 matrix product (the best rate this machine's BLAS reaches). The last line is the most any
batching, loader or scheduling change can gain over the naive loop with the same float32 arithmetic:
    python benchmarks/cpu_ceiling.py [--seconds 2.5] [--batch 16] [--threads N]
`--smoke` shrinks the model to one 64-wide layer on 32-channel convolutions and the product to 256^2: it checks
that the script runs (the test suite does so), and its figures mean nothing.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode


def best_seconds(fn, repeats: int) -> float:
    """Fastest of `repeats` timed calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_rate(size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a float32 (size x size) @ (size x size) product: near the machine's float32 peak."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / best_seconds(lambda: a @ b, repeats) / 1e9


def forward_flops(model: torch.nn.Module, wave: torch.Tensor) -> float:
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(wave)
    return float(counter.get_total_flops())


def main() -> None:
    from transformers import WavLMConfig, WavLMModel

    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.5, help="clip length")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes: the script runs, the figures mean nothing"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    small = dict(
        num_hidden_layers=1, hidden_size=64, num_attention_heads=2, intermediate_size=128, conv_dim=(32,) * 7
    )
    model = WavLMModel(WavLMConfig(**small) if args.smoke else WavLMConfig()).eval()
    # the positional convolution's weight norm as a plain weight (same values): FlopCounterMode cannot trace it
    torch.nn.utils.parametrize.remove_parametrizations(model.encoder.pos_conv_embed.conv, "weight")
    one = torch.randn(1, int(args.seconds * 16000))
    batch = one.repeat(args.batch, 1)

    flops = forward_flops(model, one)
    with torch.inference_mode():
        single = best_seconds(lambda: model(one), 3)
        batched = best_seconds(lambda: model(batch), 2) / args.batch
    size = 256 if args.smoke else 2048
    peak = matmul_rate(size)
    shape = "tiny (--smoke)" if args.smoke else "WavLM-base size"
    print(f"torch {torch.__version__}, {args.threads} thread(s); {shape}, {args.seconds} s clips")
    print(
        f"  forward pass: {flops / 1e9:.1f} GFLOP per clip ({flops / args.seconds / 1e9:.1f} per audio second)"
    )
    print(f"  one clip at a time (naive): {1000 * single:7.1f} ms/clip  {flops / single / 1e9:6.1f} GFLOP/s")
    print(
        f"  batch of {args.batch:3d}:               {1000 * batched:7.1f} ms/clip  {flops / batched / 1e9:6.1f} GFLOP/s"
    )
    print(f"  float32 {size}^3 matmul:      {peak:6.1f} GFLOP/s (about this machine's float32 peak)")
    print(f"  most any float32 speed-up over the naive loop can reach: {peak * 1e9 / (flops / single):.2f}x")


if __name__ == "__main__":
    main()
