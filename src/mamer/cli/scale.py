"""`mamer predict --engine ray`: its options, and the call of the Ray engine (`mamer.workflows.scale`)."""

from __future__ import annotations

import argparse
import importlib.util
import sys


def add_ray_arguments(p: argparse.ArgumentParser) -> None:
    """--engine and the Ray engine's options, on the `predict` parser."""
    p.add_argument(
        "--engine", choices=("local", "ray"), default="local",
        help="local: this process (default); ray: an actor pool over Ray Data, --out a folder of Parquet "
        "shards, resumable (pip install 'mamer[scale]'; docs/scale.md)",
    )  # fmt: skip
    ray = p.add_argument_group("--engine ray")
    ray.add_argument(
        "--ray-address",
        help="join a Ray cluster: auto, or ray://HOST:10001 (default: start Ray on this machine)",
    )
    ray.add_argument(
        "--actors", type=int, help="actors, each with the model loaded (default: as many as fit)"
    )
    ray.add_argument(
        "--threads-per-actor", type=int, default=1, help="CPU threads (and CPUs reserved) per actor"
    )
    ray.add_argument("--gpus-per-actor", type=float, default=0.0, help="GPUs per actor (default 0: CPU only)")
    ray.add_argument(
        "--shard-size", type=int, default=64,
        help="inputs per output shard: the unit of work, retry and resume (default 64; lower it for long files)",
    )  # fmt: skip


def predict_on_ray(args: argparse.Namespace, model: str) -> None:
    """Run `predict` on Ray from parsed arguments; print the summary; ValueError if shards were left undone."""
    if importlib.util.find_spec("ray") is None:
        raise ValueError("--engine ray needs Ray: pip install 'mamer[scale]'")
    from mamer.workflows.inference.batch import Options
    from mamer.workflows.scale.engine import RayOptions
    from mamer.workflows.scale.engine import predict_on_ray as run

    if not args.audio or not args.out:
        raise ValueError(
            "--engine ray reads --audio (a folder, .tar shard or CSV/JSONL manifest) into --out FOLDER"
        )
    refused = [flag for flag, value in (("--text", args.text), ("--plot", args.plot)) if value]
    if refused or args.device != "cpu":
        raise ValueError(
            f"--engine ray takes no {', '.join(refused) or '--device'}: give texts by --transcripts or the "
            "manifest, GPUs by --gpus-per-actor; segments are rows with start and end"
        )
    asr = None if args.asr.lower() == "none" else args.asr
    labels = [k.strip() for k in args.labels.split(",") if k.strip()] if args.labels else None
    options = Options(
        transcribe=asr is not None, language=args.language, segment=args.segment, window=args.window,
        hop=args.hop, top_k=args.top_k, labels=labels, embeddings=args.embeddings,
    )  # fmt: skip
    scale = RayOptions(
        address=args.ray_address, actors=args.actors, threads=args.threads_per_actor, gpus=args.gpus_per_actor,
        shard_size=args.shard_size, batch_size=args.batch_size,
    )  # fmt: skip
    summary = run(
        model, args.audio, args.out, options, scale, args.transcripts, asr or "whisper-base",
        args.transcript_languages,
    )  # fmt: skip
    print(summary.text(), file=sys.stderr)
    print(f"rows in {args.out}/predictions, errors in {args.out}/errors (Parquet)")
    if summary.shards_failed:
        shown = ", ".join(map(str, summary.shards_failed[:10]))
        raise ValueError(
            f"{len(summary.shards_failed)} shard(s) were not written ({shown}): their worker died on every try; "
            "rerun the same command to retry them (Ray's logs under /tmp/ray/session_latest/logs say why)"
        )
