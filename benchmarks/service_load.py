"""Load on `mamer serve` over loopback: latency at 1 and at N concurrent requests, and the server's memory.

    python benchmarks/service_load.py [--run RUN_DIR] [--requests 1000] [--concurrency 20] [--workers 2]
    python benchmarks/service_load.py --smoke    # the smallest run: a few requests, two short bombs

Without `--run` it first trains a small run on the synthetic corpus in a temporary folder (quickstart model,
1 epoch; `--encoders tiny` for log-mel + hashed text, `auto` for the installed defaults such as whisper-base).
It starts `mamer serve` in a subprocess on a free 127.0.0.1 port (`--server-env NAME=VALUE` adds to its
environment), sends good requests one at a time and then `--concurrency` at once (p50 / p95 latency), then
`--requests` mixed ones (text, short audio, audio + text, and some bad: not audio, empty text, too long, too
large, chunked too large) and prints the server's RSS before and after each quarter of them; last, `--bombs`
decompression bombs (an hour of silence as FLAC) while /health is polled. It stops the server when done, or
after `--deadline` seconds whatever happens. Nothing leaves the machine. `benchmarks/service_hostile.py` runs
hostile clients beside normal traffic on the same server.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

LIMITS = ("--max-upload-mb", "2", "--max-seconds", "30")  # what the mixed requests' bad ones break
TEXT = "I honestly did not expect the meeting to go this way, and I am still thinking about it."


def speechlike(seconds: float, seed: int = 0, sample_rate: int = 16000) -> np.ndarray:
    """A gliding harmonic tone with a syllable-rate envelope and a little noise."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    phase = 2 * np.pi * np.cumsum(140 + 30 * np.sin(2 * np.pi * 0.7 * t)) / sample_rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    noise = 0.005 * np.random.default_rng(seed).standard_normal(len(t))
    return (0.1 * voice + noise).astype(np.float32)


def wav(seconds: float, seed: int = 0) -> bytes:
    """`seconds` of speech-like audio as a 16 kHz WAV file."""
    buffer = io.BytesIO()
    sf.write(buffer, speechlike(seconds, seed), 16000, format="WAV")
    return buffer.getvalue()


def train_run(folder: Path, encoders: str) -> Path:
    """A 1-epoch quickstart run on a small synthetic corpus in `folder` (seconds with `tiny` encoders)."""
    from mamer.config import load_experiment
    from mamer.data.synthetic import generate_corpus
    from mamer.workflows.training.loop import train

    corpus = generate_corpus(folder / "corpus", n_speakers=4, utterances_per_speaker=8, seed=0,
                             split_speakers=(2, 1, 1), progress=False)  # fmt: skip
    chosen = ["data.audio_encoder=logmel", "data.text_encoder=hashed"] if encoders == "tiny" else []
    overrides = [f"data.manifest={corpus}", f"data.features={folder / 'features'}", f"run_dir={folder / 'run'}",
                 *chosen, "train.epochs=1", "train.progress=false"]  # fmt: skip
    return train(load_experiment("quickstart", overrides)[0])


# ---------------------------------------------------------------- the server


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    run_dir: Path, port: int, workers: int, env: dict[str, str], log: Path, options: tuple[str, ...] = LIMITS
) -> subprocess.Popen:
    """`mamer serve` on 127.0.0.1:`port` with `options`, its output in `log`; returns once /health answers
    (or raises)."""
    command = [sys.executable, "-m", "mamer", "serve", str(run_dir), "--port", str(port), "--asr", "none",
               "--workers", str(workers), *options]  # fmt: skip
    server = subprocess.Popen(
        command,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=os.environ | {"HF_HUB_OFFLINE": "1"} | env,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited ({server.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the server did not answer /health within 120 s")


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it (the server's decoding processes), from Linux /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError):  # not a process, or one that just ended
            continue
    tree, grew = {pid}, True
    while grew:
        below = {child for child, parent in parents.items() if parent in tree} - tree
        tree, grew = tree | below, bool(below)
    return sorted(tree)


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` and the processes below it in MB (Linux /proc)."""
    total = 0.0
    for each in process_tree(pid):
        try:
            lines = Path(f"/proc/{each}/status").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) / 1024 for line in lines if line.startswith("VmRSS:"))
    return total


# ---------------------------------------------------------------- requests


async def chunked_zeros(size: int) -> AsyncIterator[bytes]:
    """A multipart body of `size` zero bytes as an audio file, sent without Content-Length."""
    yield b'--B\r\nContent-Disposition: form-data; name="audio"; filename="big.wav"\r\n\r\n'
    for _ in range(size // 65536):
        yield bytes(65536)
    yield b"\r\n--B--\r\n"


def mixed_requests() -> dict[str, dict]:
    """Named request kinds: keyword arguments of `httpx.AsyncClient.post`, each with the status it expects."""
    short, long_ = wav(2.0, 1), wav(40.0, 2)
    return {
        "text": {"data": {"text": TEXT}, "expect": 200},
        "audio": {"files": {"audio": ("a.wav", short, "audio/wav")}, "expect": 200},
        "audio+text": {
            "data": {"text": TEXT},
            "files": {"audio": ("a.wav", short, "audio/wav")},
            "expect": 200,
        },
        "not audio": {"files": {"audio": ("x.wav", b"not audio at all", "audio/wav")}, "expect": 422},
        "empty text": {"data": {"text": ""}, "expect": 422},
        "too long": {"files": {"audio": ("long.wav", long_, "audio/wav")}, "expect": 422},
        "too large": {"files": {"audio": ("big.wav", bytes(3 << 20), "audio/wav")}, "expect": 413},
        "chunked too large": {"chunked": 8 << 20, "expect": 413},
    }


# The mixed requests cycle through this: nine in ten good; one in 200 is also a chunked 8 MB upload.
MIX = ["text"] * 30 + ["audio"] * 30 + ["audio+text"] * 30 + ["not audio", "empty text", "too long"] * 3
MIX += ["too large"]
GOOD = ["text", "audio", "audio+text"]


async def send(client: httpx.AsyncClient, kind: dict) -> tuple[float, int]:
    """One request: (seconds it took, status, or 0 when the connection failed)."""
    start = time.perf_counter()
    try:
        if "chunked" in kind:
            headers = {"Content-Type": "multipart/form-data; boundary=B"}
            response = await client.post("/predict", content=chunked_zeros(kind["chunked"]), headers=headers)
        else:
            response = await client.post("/predict", data=kind.get("data"), files=kind.get("files"))
        status = response.status_code
    except httpx.TransportError:
        status = 0
    return time.perf_counter() - start, status


async def run_batch(url: str, kinds: list[dict], concurrency: int) -> list[tuple[float, int, int]]:
    """Send `kinds` with at most `concurrency` in flight; (seconds, status, expected status) per request."""
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def one(kind: dict) -> tuple[float, int, int]:
            async with gate:
                return (*await send(client, kind), kind["expect"])

        return await asyncio.gather(*(one(k) for k in kinds))


def percentiles(results: list[tuple[float, int, int]]) -> str:
    """'p50 X ms, p95 Y ms' of the request times."""
    times = sorted(r[0] for r in results)
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return f"p50 {1000 * statistics.median(times):.0f} ms, p95 {1000 * p95:.0f} ms"


def tally(results: list[tuple[float, int, int]]) -> str:
    """How many were answered, and with which status; how many got another status than expected."""
    statuses = Counter(r[1] for r in results)
    wrong = sum(r[1] != r[2] for r in results)
    counts = ", ".join(f"{n}x{s}" for s, n in sorted(statuses.items()))
    return f"{sum(n for s, n in statuses.items() if s)} of {len(results)} answered ({counts}); {wrong} unexpected"


def silent_flac(seconds: float, hide_length: bool) -> bytes:
    """A decompression bomb: `seconds` of 48 kHz stereo silence as FLAC (~11 KB a minute); `hide_length` zeroes
    the header's sample count, so only decoding can tell its length."""
    buffer, block = io.BytesIO(), np.zeros((480000, 2), np.float32)
    with sf.SoundFile(buffer, "w", 48000, 2, format="FLAC", subtype="PCM_16") as out:
        for _ in range(int(seconds // 10)):
            out.write(block)
    data = bytearray(buffer.getvalue())
    if (
        hide_length
    ):  # STREAMINFO (after "fLaC" and a 4-byte block header): bytes 13-17 end in the 36-bit count
        data[21] &= 0xF0
        data[22:26] = bytes(4)
    return bytes(data)


async def bombs_and_health(
    url: str, count: int, seconds: float = 3600
) -> tuple[list[tuple[float, int, int]], list[float]]:
    """`count` FLAC bombs of `seconds` (half stating their length, half hiding it), 4 at a time, while /health
    is asked every 50 ms: (the bombs' results, the /health times)."""
    hour = {hide: silent_flac(seconds, hide) for hide in (False, True)}
    kinds = [
        {"files": {"audio": ("bomb.flac", hour[i % 2 == 1], "audio/flac")}, "expect": 422}
        for i in range(count)
    ]
    health: list[float] = []
    done = asyncio.Event()

    async def poll() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            while not done.is_set():
                start = time.perf_counter()
                await client.get("/health")
                health.append(time.perf_counter() - start)
                await asyncio.sleep(0.05)

    poller = asyncio.create_task(poll())
    results = await run_batch(url, kinds, 4)
    done.set()
    await poller
    return results, health


# ---------------------------------------------------------------- the run


def measure(url: str, pid: int, args: argparse.Namespace) -> None:
    """The three phases: one at a time, `concurrency` at once, then the mixed `requests`."""
    kinds = mixed_requests()
    good = [kinds[GOOD[i % 3]] for i in range(min(60, 3 * args.concurrency))]
    asyncio.run(run_batch(url, good[:6], 1))  # warm-up: first calls build lazy state
    single = asyncio.run(run_batch(url, good[: len(good) // 2], 1))
    print(f"1 at a time:  {percentiles(single)}; {tally(single)}")
    started = time.perf_counter()
    loaded = asyncio.run(run_batch(url, good * 2, args.concurrency))
    rate = len(loaded) / (time.perf_counter() - started)
    print(f"{args.concurrency} at once:   {percentiles(loaded)}; {rate:.1f} requests/s; {tally(loaded)}")
    before = rss_mb(pid)
    print(f"server RSS after those {6 + len(single) + len(loaded)} requests: {before:.0f} MB")
    mixed = [
        kinds["chunked too large" if i % 200 == 199 else MIX[i % len(MIX)]] for i in range(args.requests)
    ]
    started, answered, memory = time.perf_counter(), [], []
    quarter = max(1, len(mixed) // 4)
    for at in range(0, len(mixed), quarter):  # in four parts, to see whether memory keeps growing
        answered += asyncio.run(run_batch(url, mixed[at : at + quarter], args.concurrency))
        memory.append(f"{rss_mb(pid):.0f}")
    seconds = time.perf_counter() - started
    print(f"{args.requests} mixed at {args.concurrency}: {tally(answered)}; {seconds:.0f} s")
    print(
        f"server RSS: {before:.0f} MB before the mixed requests; after each quarter {' / '.join(memory)} MB"
    )
    bombs, health = asyncio.run(bombs_and_health(url, args.bombs, args.bomb_seconds))
    print(
        f"{args.bombs} FLAC bombs of {args.bomb_seconds:g} s, 4 at a time: {percentiles(bombs)}; {tally(bombs)}"
    )
    print(f"/health meanwhile: {len(health)} answers, slowest {1000 * max(health):.0f} ms")
    print(f"server RSS after the bombs: {rss_mb(pid):.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", help="a run folder to serve (default: train a small one first)")
    parser.add_argument("--encoders", choices=("tiny", "auto"), default="tiny", help="for the trained run")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="the server's --workers")
    parser.add_argument("--server-env", action="append", default=[], help="NAME=VALUE for the server")
    parser.add_argument("--bombs", type=int, default=20, help="decompression bombs sent last")
    parser.add_argument("--bomb-seconds", type=float, default=3600, help="the length each bomb decodes to")
    parser.add_argument("--deadline", type=float, default=900, help="stop everything after this many seconds")
    parser.add_argument("--smoke", action="store_true", help="the smallest run: 40 requests, 2 short bombs")
    args = parser.parse_args()
    if args.smoke:
        args.requests, args.concurrency, args.bombs, args.bomb_seconds = 40, 4, 2, 60
    env = dict(item.split("=", 1) for item in args.server_env)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.run) if args.run else train_run(Path(tmp), args.encoders)
        port = free_port()
        server = start_server(run_dir, port, args.workers, env, Path(tmp) / "server.log")
        deadline = threading.Timer(args.deadline, server.kill)  # the client then fails fast and ends
        deadline.start()
        try:
            print(f"serving {run_dir} on 127.0.0.1:{port}, --workers {args.workers}, env {env or '-'}")
            print(f"server RSS after start: {rss_mb(server.pid):.0f} MB")
            measure(f"http://127.0.0.1:{port}", server.pid, args)
        finally:
            deadline.cancel()
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    main()
