"""A Ray cluster of three nodes simulated on this machine, and a job at scale on it: the work spreads over the
worker nodes, one worker node is killed mid-job, and nothing is lost.

    python benchmarks/scale_cluster.py --audio ../shared/data/emodb/audio --work /tmp/mamer_cluster
    python benchmarks/scale_cluster.py --smoke --model RUN --audio FOLDER --work DIR   # 8 clips, 1 per shard

Starts a head (`ray start --head --num-cpus 0`: it runs no actor, as a head node of a real cluster should not)
and two worker nodes, `node_a` and `node_b` (`ray start --address 127.0.0.1:PORT --num-cpus 1 --resources
'{"node_a": 1}'`), one after the other, each a process group of its own with its own raylet, object store and
workers: what separate machines would run, here on one (Ray advertises the machine's own address for them).
Every node and driver gets the cluster's token (`RAY_AUTH_MODE=token`, `RAY_AUTH_TOKEN_PATH`), as on a real
cluster. Then it submits the job as a driver of its own, `mamer predict --engine ray --ray-address
127.0.0.1:PORT --actors 2` (one actor of one CPU fits each worker node). Once the job has written `--kill-after`
shards, one of them at least by node_b, node_b is killed with SIGKILL (its raylet, object store and actor at
once, as a machine that loses power), and a replacement, `node_c`, joins after `--replace-after` seconds, as a
cluster's autoscaler would bring one up: Ray restarts the lost actor where it fits and retries the shards it held.
The job must end with every input in exactly one row or error, rows equal to the single-process loop's, and
shards made by both node_a and node_b. Prints one JSON line per step, the driver's summary, the shards each node
made, and the verdict.

The head's health checks are shortened (a node is declared dead after about 2 s, not 15-30 s) so the run is
short; everything else is Ray's defaults. Stops its own cluster at the end (`ray stop` would stop every Ray
on the machine: it is not used).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from mamer.workflows.inference.batch import Job, predict_jobs
from mamer.workflows.inference.recognizer import EmotionRecognizer
from mamer.workflows.scale.inputs import list_inputs
from mamer.workflows.scale.shards import OutputFolder

HEALTH = {
    "health_check_initial_delay_ms": 1000,
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 4,
}


# Every process of the cluster, and each driver, reads the cluster's token from here (set by `use_token`): Ray
# 2.60 turns token authentication on wherever a token exists (~/.ray/auth_token, written by any local ray.init),
# and a driver without the cluster's token is refused; with our own token the run does not depend on that file.
ENV: dict[str, str] = {}


def use_token(work: Path) -> None:
    """A token of 256 bits for this cluster alone, handed to its nodes and drivers as a real cluster's would be."""
    token = work / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    ENV.update(os.environ | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)})


def say(**fields) -> None:
    print(json.dumps({"t": round(time.perf_counter() - STARTED, 1)} | fields), flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """One `ray start --block` in a process group of its own: killing the group kills the node whole."""

    def __init__(self, name: str, args: list[str], log: Path) -> None:
        self.name, self.log = name, log
        command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--disable-usage-stats",
                   "--node-ip-address", "127.0.0.1", "--object-store-memory", str(100 << 20), *args]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True, env=ENV
        )

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


def alive_nodes(address: str) -> dict[str, str]:
    """Node id -> its label (node_a, node_b, ... or head) of every node the cluster holds as alive, asked by a
    short-lived driver of its own (so this process never joins the cluster)."""
    code = (
        "import json, sys, ray; ray.init(address=sys.argv[1], logging_level='ERROR'); "
        "print(json.dumps({n['NodeID']: next((k for k in n['Resources'] if k.startswith('node_')), 'head') "
        "for n in ray.nodes() if n['Alive']}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, address], capture_output=True, text=True, timeout=120, env=ENV
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def wait_for_nodes(address: str, count: int, timeout: float = 120.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            nodes = alive_nodes(address)
            if len(nodes) == count:
                return nodes
        except (subprocess.SubprocessError, json.JSONDecodeError, IndexError):
            pass
        time.sleep(1)
    raise TimeoutError(f"the cluster at {address} did not reach {count} alive nodes in {timeout:.0f} s")


def parts(out: Path) -> int:
    """Shards written so far (0 before the job has made its output folder)."""
    return len(OutputFolder(out).done()) if (out / "predictions").is_dir() else 0


def check(out: Path, model: str, inputs: int, manifest: Path) -> dict:
    """Each input exactly once (rows or errors), the rows against the single-process loop's."""
    rows = pq.read_table(out / "predictions").to_pylist()
    errors = pq.read_table(out / "errors").to_pylist() if any((out / "errors").glob("part-*")) else []
    predicted = [r["input_row"] for r in rows if r["start"] is None or r["start"] == 0.0]
    failed = [e["input_row"] for e in errors]
    once = sorted(predicted + failed) == list(range(inputs))
    jobs = [Job(r.id, Path(r.path), r.text) for r in list_inputs(manifest)]
    loop, _ = predict_jobs(EmotionRecognizer.load(model), jobs, progress=False)
    by_file = {(r["file"], r.get("start")): r["probabilities"] for r in loop}
    worst = max(
        abs(p - by_file[(r["source"], r["start"])][k]) for r in rows for k, p in r["probabilities"].items()
    )
    return {"rows": len(rows), "errors": len(errors), "each_input_once": once, "max_abs_dp_vs_loop": worst}


def shards_by_node(out: Path, labels: dict[str, str]) -> dict[str, int]:
    """Shards written, by the label of the node whose actor made them (from each shard's metadata)."""
    if not (out / "predictions").is_dir():
        return {}
    return dict(Counter(labels.get(s["node"], s["node"][:8]) for s in OutputFolder(out).stats()))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--audio", type=Path, required=True, help="a folder of audio files")
    parser.add_argument("--model", default="mamer-base")
    parser.add_argument("--files", type=int, help="the first N files of the folder (default: all)")
    parser.add_argument("--shard-size", type=int, default=16)
    parser.add_argument("--kill-after", type=int, default=8, help="shards written before node_b is killed")
    parser.add_argument("--replace-after", type=float, default=5.0, help="seconds before node_c joins")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mamer_cluster"))
    parser.add_argument("--smoke", action="store_true", help="8 files, one per shard, killed after 2")
    args = parser.parse_args()
    if args.smoke:
        args.files, args.shard_size, args.kill_after, args.replace_after = 8, 1, 2, 0.0
    args.work.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in args.audio.rglob("*") if p.suffix.lower() in (".wav", ".flac", ".mp3", ".ogg"))
    manifest = args.work / "manifest.csv"
    manifest.write_text("audio\n" + "".join(f"{p.resolve()}\n" for p in files[: args.files]))
    inputs = len(list_inputs(manifest))
    out = args.work / "out"
    if out.exists():
        raise SystemExit(f"{out} exists: give a new --work folder")
    use_token(args.work)
    port = free_port()
    address = f"127.0.0.1:{port}"
    nodes: list[Node] = []
    try:
        head = ["--head", "--port", str(port), "--num-cpus", "0", "--include-dashboard", "false",
                "--system-config", json.dumps(HEALTH)]  # fmt: skip
        nodes.append(Node("head", head, args.work / "head.log"))
        wait_for_nodes(address, 1)
        for count, name in enumerate(("node_a", "node_b"), start=2):  # one at a time: two raylets starting
            worker = ["--address", address, "--num-cpus", "1", "--resources", json.dumps({name: 1})]
            nodes.append(Node(name, worker, args.work / f"{name}.log"))  # at once time out on 2 busy cores
            labels = wait_for_nodes(address, count)
        say(step="cluster up", address=address, nodes=sorted(labels.values()), inputs=inputs)
        driver = subprocess.Popen(
            [sys.executable, "-m", "mamer", "predict", args.model, "--engine", "ray", "--ray-address", address,
             "--audio", str(manifest), "--out", str(out), "--asr", "none", "--actors", "2",
             "--shard-size", str(args.shard_size)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
        )  # fmt: skip
        say(step="job submitted", shards=-(-inputs // args.shard_size))
        while driver.poll() is None:  # until kill_after shards are in, node_b's first among them
            made = shards_by_node(out, labels)
            if sum(made.values()) >= args.kill_after and made.get("node_b"):
                break
            time.sleep(0.1)
        written = parts(out)
        nodes[2].kill()
        say(step="node_b killed (SIGKILL to its process group)", shards_written_before=written)
        time.sleep(args.replace_after)
        nodes.append(
            Node("node_c", ["--address", address, "--num-cpus", "1", "--resources", '{"node_c": 1}'],
                 args.work / "node_c.log")
        )  # fmt: skip
        labels |= wait_for_nodes(address, 3)  # head, node_a and node_c alive; node_b dead
        say(step="node_c joined")
        stdout, stderr = driver.communicate(timeout=3600)
        say(step="job finished", exit_code=driver.returncode)
        summary = [
            line for line in stderr.splitlines() if not line.startswith(("[", "20"))
        ]  # Ray's log lines
        print("\n".join(summary[-3:]), flush=True)
        verdict = check(out, args.model, inputs, manifest) | {"shards_by_node": shards_by_node(out, labels)}
        say(step="checked", **verdict)
        made = verdict["shards_by_node"]
        if driver.returncode or not verdict["each_input_once"] or not {"node_a", "node_b"} <= set(made):
            raise SystemExit("the job lost or repeated inputs, failed, or did not spread over the nodes")
        if verdict["max_abs_dp_vs_loop"] > 1e-4:
            raise SystemExit(
                f"rows differ from the single-process loop's by {verdict['max_abs_dp_vs_loop']:.2g}"
            )
    finally:
        for node in reversed(nodes):
            node.kill()


STARTED = time.perf_counter()

if __name__ == "__main__":
    main()
