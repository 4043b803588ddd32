"""Live mode's latency: real speech streamed at real time over `WS /live`, answer time per window.

    python benchmarks/live_latency.py [--model mamer-base] [--seconds 60] [--window 3] [--hop 1] [--asr NAME ...]

Starts `mamer serve` (uvicorn, in a thread of this process) on a free loopback port, then streams real speech
(EmoDB clips from ../shared/data/emodb, one after another; --audio: any file or folder of clips) in 100 ms
frames at real time, as the page does: once without ASR, then once per --asr recogniser, each after an unmeasured warm-up stream (the first
window would pay for loading Whisper). Prints, in milliseconds, p50/p95/max of the server's `latency_ms` (from
the arrival of a window's last sample to its answer being sent) and of the client's (from sending that frame to
receiving the answer), and how many windows were dropped because the one before was still being answered.

The default model, mamer-base, is quickstart-size: the shared transformer of `mamer quickstart` (width 128,
depth 3) on the same frozen encoders (whisper-base hidden states 2-3, all-MiniLM-L6-v2); --model takes a
quickstart run directory too.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import uvicorn
from websockets.sync.client import connect

from mamer.data.audio import load_audio
from mamer.workflows.service.app import create_app

RATE, FRAME = 16000, 0.1
EMODB = Path(__file__).resolve().parents[2] / "shared" / "data" / "emodb" / "audio"


def speech(seconds: float, source: Path) -> np.ndarray:
    """`seconds` of speech at 16 kHz from a file, or a folder's clips one after another (looped if short)."""
    files = [source] if source.is_file() else sorted(source.rglob("*.flac")) + sorted(source.rglob("*.wav"))
    if not files:
        raise SystemExit(f"no audio in {source}: pass --audio FILE or FOLDER")
    parts, total = [], 0
    for path in files[:: max(1, len(files) // 40)]:  # clips spread over the corpus (speakers, emotions)
        parts.append(load_audio(path, RATE))
        total += len(parts[-1])
        if total >= seconds * RATE:
            break
    wave = np.concatenate(parts)
    return np.tile(wave, int(np.ceil(seconds * RATE / len(wave))))[: int(seconds * RATE)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stream(url: str, wave: np.ndarray, speed: float) -> dict:
    """Send `wave` in 100 ms frames at `speed` x real time; collect every answer with its client latency."""
    step = int(RATE * FRAME)
    sent_at: dict[int, float] = {}  # stream position after a frame -> when it was sent
    answers = []
    with connect(url, max_size=None) as ws:
        ready = json.loads(ws.recv())
        if ready.get("type") != "ready":
            raise SystemExit(f"the server refused the stream: {ready}")

        def send() -> None:
            start = time.perf_counter()
            for i, at in enumerate(range(0, len(wave), step)):
                delay = start + i * FRAME / speed - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                frame = wave[at : at + step]
                sent_at[at + len(frame)] = time.perf_counter()
                ws.send(frame.astype("<f4").tobytes())
            ws.send(json.dumps({"type": "end"}))

        sender = threading.Thread(target=send)
        sender.start()
        while True:
            message = json.loads(ws.recv())
            if message["type"] == "end":
                break
            if message["type"] == "window":
                end = round(message["end"] * RATE)
                message["client_ms"] = 1000 * (time.perf_counter() - sent_at[end])
                answers.append(message)
            elif message["type"] == "error":
                raise SystemExit(f"the server answered an error: {message['detail']}")
        sender.join()
    return {"ready": ready, "answers": answers, "end": message}


def percentiles(values: list[float]) -> str:
    p50, p95 = np.percentile(values, [50, 95])
    return f"{p50:.0f} | {p95:.0f} | {max(values):.0f}"


def start_server(model: str, asr: str) -> tuple[uvicorn.Server, int]:
    """`mamer serve` for `model` with `asr`, in a daemon thread; returns the server and its port."""
    port = free_port()
    config = uvicorn.Config(create_app(model, asr=asr), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, port


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="mamer-base", help="a model name, release folder or run directory")
    parser.add_argument("--audio", type=Path, default=EMODB, help="a speech file or a folder of clips")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds streamed per measured run")
    parser.add_argument("--window", type=float, default=3.0)
    parser.add_argument("--hop", type=float, default=1.0)
    parser.add_argument("--speed", type=float, default=1.0, help="times real time the audio is sent at")
    parser.add_argument(
        "--asr", nargs="+", default=["whisper-base"], help="speech recognisers to measure (a server each)"
    )
    args = parser.parse_args()

    wave = speech(args.seconds, args.audio)
    print(
        f"model {args.model}, audio {args.audio}, window {args.window:g} s, hop {args.hop:g} s, "
        f"{args.seconds:g} s of speech at {args.speed:g}x real time, {os.cpu_count()} CPU cores, "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    print(
        "| ASR | windows | dropped | server p50 | server p95 | server max | client p50 | client p95 | client max |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n, name in enumerate(args.asr):
        server, port = start_server(args.model, name)
        for asr in ("off", "on") if n == 0 else ("on",):
            url = f"ws://127.0.0.1:{port}/live?window={args.window}&hop={args.hop}&asr={asr}"
            stream(url, wave[: 3 * RATE], args.speed)  # warm-up: encoders' first call, Whisper's loading
            result = stream(url, wave, args.speed)
            answers, ready = result["answers"], result["ready"]
            label = f"on ({name})" if ready["transcribe"] else "off"
            server_ms = percentiles([a["latency_ms"] for a in answers])
            client_ms = percentiles([a["client_ms"] for a in answers])
            print(f"| {label} | {len(answers)} | {result['end']['dropped']} | {server_ms} | {client_ms} |")
        server.should_exit = True


if __name__ == "__main__":
    main()
