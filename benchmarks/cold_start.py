"""How long a person waits: whole `mamer` processes, from the command to the answer, each started cold.

    python benchmarks/cold_start.py [--runs 5] [--cases text,clip,clip_asr,serve] [--model mamer-base]
        [--clip FILE] [--src DIR] [--smoke]

Each case runs `--runs` times as a fresh process (`python -m mamer ...`, page cache warm after the first) and
prints the min and median wall seconds and the peak memory (max RSS) of the child:
- `text`: `mamer predict MODEL --text "what a lovely surprise"`;
- `clip`: `mamer predict MODEL --audio CLIP --asr none` (default CLIP: EmoDB's 03a01Fa.flac, a 2.0 s German clip);
- `clip_asr`: the same with the default ASR (whisper-base, language detected);
- `serve`: `mamer serve MODEL --port P` until `GET /health` answers.
`--src DIR` times another checkout's `src` (e.g. `git archive HEAD | tar -x -C /tmp/before`) with this Python, so
that before and after run on the same machine at the same load. The load average is printed with the figures:
they mean little on a machine other jobs share. `--smoke`: one run of `text`.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CLIP = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "emodb" / "audio" / "03a01Fa.flac"


def environment(src: str | None) -> dict[str, str]:
    """This environment, offline, with `src` first on the path when given."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    if src:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(src).resolve()), env.get("PYTHONPATH", "")])
    return env


def timed(argv: list[str], env: dict[str, str], until=None) -> tuple[float, int]:
    """(wall seconds, max RSS in MB) of `python -m mamer ARGV`; with `until`, from the start until `until()` is
    true, then the process is stopped."""
    with tempfile.TemporaryFile("w+") as errors:
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "mamer", *argv], env=env, stdout=subprocess.DEVNULL,
                                 stderr=errors)  # fmt: skip
        while until is not None and not until():
            if child.poll() is not None:
                break
            time.sleep(0.05)
        ready = time.perf_counter() - started
        if until is not None and child.poll() is None:
            child.terminate()
        _, status, usage = os.wait4(child.pid, 0)
        wall = ready if until is not None else time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) not in (0, -15):
            errors.seek(0)
            raise RuntimeError(f"mamer {' '.join(argv)} failed: {errors.read()[-1500:]}")
    return wall, usage.ru_maxrss // 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(port: int):
    """A check that `GET /health` on `port` answers 200."""

    def check() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as answer:
                return answer.status == 200
        except OSError:
            return False

    return check


def run_case(case: str, model: str, clip: Path, env: dict[str, str]) -> tuple[float, int]:
    """One cold process of `case`."""
    if case == "text":
        return timed(["predict", model, "--text", "what a lovely surprise"], env)
    if case == "clip":
        return timed(["predict", model, "--audio", str(clip), "--asr", "none"], env)
    if case == "clip_asr":
        return timed(["predict", model, "--audio", str(clip)], env)
    if case == "serve":
        port = free_port()
        return timed(["serve", model, "--port", str(port)], env, until=healthy(port))
    raise ValueError(f"unknown case {case!r}: text, clip, clip_asr, serve")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--cases", default="text,clip,clip_asr,serve")
    p.add_argument("--model", default="mamer-base")
    p.add_argument("--clip", type=Path, default=CLIP)
    p.add_argument("--src", help="another checkout's src folder to time instead of the installed one")
    p.add_argument("--smoke", action="store_true", help="one run of the text case")
    args = p.parse_args()
    if args.smoke:
        args.runs, args.cases = 1, "text"
    env = environment(args.src)
    with tempfile.TemporaryDirectory() as tmp:
        clip = args.clip
        if not clip.is_file() and "clip" in args.cases:  # no EmoDB here: a 2 s tone stands in
            import numpy as np
            import soundfile as sf

            clip = Path(tmp) / "clip.wav"
            t = np.arange(32000) / 16000
            sf.write(clip, 0.1 * np.sin(2 * np.pi * 220 * t), 16000)
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores; "
              f"src: {args.src or 'installed'}")  # fmt: skip
        for case in args.cases.split(","):
            results = [run_case(case, args.model, clip, env) for _ in range(args.runs)]
            walls = [w for w, _ in results]
            print(
                f"{case:9s} min {min(walls):6.2f} s  median {statistics.median(walls):6.2f} s  "
                f"max RSS {max(r for _, r in results):5d} MB  ({args.runs} runs; load "
                f"{os.getloadavg()[0]:.2f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
