"""`mamer` subcommands: using a trained model: predictions, the HTTP service, export."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mamer.cli.scale import add_ray_arguments, predict_on_ray


def model_of(args: argparse.Namespace) -> str:
    """The model the command names first (`mamer predict MODEL ...`); mamer-base when it names none."""
    from mamer.workflows.inference.pretrained import DEFAULT_MODEL

    if args.model_option:  # before 0.2 the model could also be named with --model: one way now
        raise ValueError(
            f"name the model first, without --model: mamer {args.command} {args.model_option} ..."
        )
    return args.model or DEFAULT_MODEL


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The model a command uses: its first argument, MODEL (mamer-base when none is given)."""
    p.add_argument(
        "model", nargs="?", metavar="MODEL",
        help="built-in name (mamer-base, the default), run or model folder, or Hugging Face Hub id",
    )  # fmt: skip
    p.add_argument("--model", dest="model_option", help=argparse.SUPPRESS)


def _predict(args: argparse.Namespace) -> None:
    if args.engine == "ray":  # an actor pool over Ray Data, writing Parquet shards: mamer.cli.scale
        if args.one_source:
            raise ValueError("--one-source reads every file before predicting any: not with --engine ray")
        return predict_on_ray(args, model_of(args))
    from mamer.workflows.inference.batch import Options, make_jobs, predict_jobs, source_statistics
    from mamer.workflows.inference.prediction import check_labels
    from mamer.workflows.inference.predictions_file import PredictionsFile
    from mamer.workflows.inference.recognizer import EmotionRecognizer

    asr = None if args.asr.lower() == "none" else args.asr
    jobs = make_jobs(args.audio, args.text, args.transcripts, transcribe=asr is not None)
    labels = [k.strip() for k in args.labels.split(",") if k.strip()] if args.labels else None
    options = Options(
        transcribe=asr is not None, language=args.language, segment=args.segment, window=args.window,
        hop=args.hop, top_k=args.top_k, labels=labels, embeddings=args.embeddings,
    )  # fmt: skip
    out = None
    if args.out:  # refused before the model loads: an input as --out, a file that is not ours, other settings
        languages = {} if args.transcript_languages == "auto" else {"transcripts": args.transcript_languages}
        made = {k: v for k, v in vars(options).items() if k != "timelines"}
        one_source = {"one_source": True} if args.one_source else {}
        settings = {"model": model_of(args), "asr": asr} | languages | made | one_source
        inputs = [args.transcripts, *(job.audio for job in jobs)]
        out = PredictionsFile(args.out, inputs, settings, overwrite=args.overwrite)
        if out.done:
            print(
                f"{args.out}: {len(out.done)} input(s) already predicted; predicting the rest",
                file=sys.stderr,
            )
    todo = [job for job in jobs if out is None or job.id not in out.done]
    recognizer = EmotionRecognizer.load(
        model_of(args), args.device, asr=asr or "whisper-base", language=args.language,
        transcript_languages=args.transcript_languages,
    )  # fmt: skip
    check_labels(labels, recognizer.labels)  # before any encoder loads, not as every input skipped
    needed = {"audio" for job in todo if job.audio} | {"text" for job in todo if job.text}
    for modality in sorted(needed):  # fail once, before the loop, if the model or its encoders cannot
        try:
            recognizer.encoder(modality)
        except ModuleNotFoundError as err:
            raise ValueError(str(err)) from err
    statistics = None  # of the source's frames, with --one-source
    if args.one_source and recognizer.model.config.audio_normalise != "speaker":
        print(f"--one-source: {model_of(args)} reads each clip alone (it was not trained with audio normalised "
              "per speaker): nothing to standardise by the source", file=sys.stderr)  # fmt: skip
    elif args.one_source:  # every file of the call, those predicted before a resume too: one source's frames
        statistics = source_statistics(recognizer, jobs, options, args.batch_size)
    rows, skipped = predict_jobs(
        recognizer, todo, args.batch_size, progress=len(todo) > 1, options=options,
        on_done=None if out is None else lambda job, made: out.add(job.id, made), source=statistics,
    )  # fmt: skip
    for source, reason in skipped:
        print(f"skipped {source}: {reason}", file=sys.stderr)
    if out is not None:
        written = out.finish(job.id for job in jobs)
        if written:
            print(f"{len(written)} predictions in {args.out}")
    else:
        if (sys.stdout.encoding or "").lower().replace("-", "") != "utf8":  # JSON is UTF-8 whatever the
            sys.stdout.reconfigure(encoding="utf-8")  # locale: an ASCII one must not stop on Urdu words
        print("\n".join(json.dumps(row, ensure_ascii=False) for row in rows))
    _timeline_outputs(options.timelines, args)
    if skipped:
        print(f"{len(skipped)} of {len(jobs)} inputs skipped (reasons above)", file=sys.stderr)
    if not rows and not (out is not None and out.done):
        raise ValueError(
            "no input could be predicted" + (f"; {args.out} is left as it was" if args.out else "")
        )


def _timeline_outputs(timelines: dict, args: argparse.Namespace) -> None:
    """Each timeline's whole-file summary (stderr, and `<out>.summary.json`), and `--plot` figures."""
    from mamer.atomic import atomic_write

    summaries = {name: t.summary() for name, t in timelines.items()}
    for name, summary in summaries.items():
        print(f"{name}: {json.dumps(summary, ensure_ascii=False)}", file=sys.stderr)
    if args.out and summaries:  # merged into the summaries of an earlier run of the same --out
        path = Path(args.out).with_suffix(".summary.json")
        earlier = {}
        if path.is_file() and not args.overwrite:
            earlier = json.loads(path.read_text(encoding="utf-8"))
        text = json.dumps(earlier | summaries, indent=1, ensure_ascii=False) + "\n"
        atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
    if args.plot and timelines:
        from mamer.workflows.evaluation.timeline_plot import plot_timeline

        plot = Path(args.plot)
        for name, t in timelines.items():
            tag = name.replace("/", "_")  # an id may be a path under the folder (files sharing a stem)
            out = plot if len(timelines) == 1 else plot.with_name(f"{plot.stem}_{tag}{plot.suffix}")
            print(f"timeline plot in {plot_timeline(t, out, title=name)}", file=sys.stderr)


def _serve(args: argparse.Namespace) -> None:
    try:
        from mamer.workflows.service.app import serve
    except ModuleNotFoundError as err:
        raise ValueError(f"serving needs {err.name}: pip install 'mamer[serve]'") from err

    serve(
        model_of(args),
        args.host,
        args.port,
        max_upload_mb=args.max_upload_mb,
        max_seconds=args.max_seconds,
        workers=args.workers,
        threads=args.threads,
        asr=None if args.asr.lower() == "none" else args.asr,
        language=args.language,
        max_live=args.max_live,
        allow_origins=args.allow_origin,
        device=args.device,
        max_pending=args.max_pending,
        allow_hosts=args.allow_host,
        body_timeout=args.body_timeout,
        live_idle=args.live_idle,
        live_workers=args.live_workers,
        transcript_languages=args.transcript_languages,
    )


def _export(args: argparse.Namespace) -> None:
    import importlib.util

    from mamer.workflows.export import export_onnx

    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing and args.onnx:
        raise ValueError(f"ONNX export needs {', '.join(missing)}: pip install 'mamer[export]'")

    if not (args.onnx or args.pretrained):
        raise ValueError("give --onnx OUT.onnx and/or --pretrained DIR")
    if args.pretrained:
        from mamer.workflows.inference.pretrained import push_to_hub, resolve_model, save_pretrained

        folder = save_pretrained(resolve_model(args.run_dir), args.pretrained, overwrite=args.overwrite)
        print(f"config.json, model.safetensors and README.md in {folder}")
        if args.push_to_hub:
            print(push_to_hub(folder, args.push_to_hub))
    if args.onnx:
        for view, path in export_onnx(args.run_dir, args.onnx, overwrite=args.overwrite).items():
            print(f"{view:10s} {path}")


def add_asr_arguments(p: argparse.ArgumentParser) -> None:
    """--asr and --language: how audio without a transcript gets one (models that read text only)."""
    p.add_argument(
        "--asr", default="whisper-base",
        help="speech recogniser for audio without a transcript: whisper-base (default), whisper-tiny.en, a "
        "CTranslate2 Whisper folder, or none (audio only); loaded only when needed",
    )  # fmt: skip
    p.add_argument("--language", help="ASR language code (en, de, ...); default: detected")


def add_transcript_languages_argument(p: argparse.ArgumentParser, where: str) -> None:
    """--transcript-languages: which ASR transcripts go to the model; `where` says where a skipped one is told."""
    p.add_argument(
        "--transcript-languages", default="auto", metavar="auto|any|en,de,...",
        help="ASR transcripts in these languages go to the model; others leave the clip on the audio view, "
        f"{where} (auto: those the text encoder reads, English for mamer-base)",
    )  # fmt: skip


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register this module's subcommands."""
    p = sub.add_parser("predict", help="emotion of audio files and/or texts (default model: mamer-base)")
    add_model_arguments(p)
    p.add_argument(
        "--audio", help="an audio file or a folder of them (wav, flac, ogg, opus, mp3, m4a, webm, mp4)"
    )
    text = p.add_mutually_exclusive_group()
    text.add_argument("--text", help="the transcript of --audio FILE, or a text alone")
    text.add_argument("--transcripts", help="CSV/JSONL: a `text` and an `id`, `file` or `audio` column")
    p.add_argument(
        "--out", help="write rows to .jsonl or .csv as they are made (default: JSON lines on stdout); a rerun "
        "with the same --out skips the inputs already in it",
    )  # fmt: skip
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out (and an unfinished run's rows)"
    )
    add_asr_arguments(p)
    add_transcript_languages_argument(p, "said in the row's text_skipped")
    p.add_argument(
        "--segment", choices=("auto", "none", "vad", "window"), default="auto",
        help="long recordings: auto = none within the model's audio limit, vad beyond; none = one row "
        "(windows of the limit, pooled); vad = speech segments; window = fixed windows",
    )  # fmt: skip
    p.add_argument("--window", type=float, default=8.0, help="--segment window: window length (s)")
    p.add_argument("--hop", type=float, default=4.0, help="--segment window: hop between windows (s)")
    p.add_argument("--plot", help="PNG of each timeline: probabilities and A/V/D against time, with words")
    p.add_argument("--top-k", type=int, help="also list the k likeliest labels")
    p.add_argument("--labels", help="comma-separated labels to restrict to (probabilities renormalised)")
    p.add_argument("--embeddings", action="store_true", help="add the [CLS] output of the shared model")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--one-source", action="store_true",
        help="the audio files come from one source (a speaker, a session, a corpus): a model trained with audio "
        "normalised per speaker standardises every clip by all of their frames together (a first pass encodes "
        "them all) instead of each clip alone",
    )  # fmt: skip
    p.add_argument("--device", default="cpu")
    add_ray_arguments(p)
    p.set_defaults(func=_predict)

    p = sub.add_parser(
        "serve", help="the page at /, live mode (WS /live), POST /predict, GET /health, /info, /card, /docs"
    )
    add_model_arguments(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="larger uploads get 413")
    p.add_argument(
        "--max-seconds", type=float, default=600.0,
        help="longer audio gets 422; audio beyond the model's limit is answered with a timeline",
    )  # fmt: skip
    p.add_argument(
        "--workers", type=int, default=2,
        help="uploads decoded, transcribed or read as a timeline at once; the rest wait (live windows have "
        "--live-workers)",
    )  # fmt: skip
    p.add_argument(
        "--live-workers", type=int, default=None, help="live windows predicted at once (default 1)"
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: half the cores, at least one)"
    )
    p.add_argument(
        "--max-pending", type=int, default=None,
        help="POST /predict requests with their body in, answered or waiting at once (default 64); more get 503",
    )  # fmt: skip
    p.add_argument(
        "--body-timeout", type=float, default=None, metavar="SECONDS",
        help="a request's whole body must arrive within this (default 60); slower ones get 408",
    )  # fmt: skip
    p.add_argument(
        "--max-live",
        type=int,
        default=None,
        help="live streams (WS /live) at once (default 8); more are refused",
    )
    p.add_argument(
        "--live-idle", type=float, default=None, metavar="SECONDS",
        help="close a live stream this far behind real time, e.g. sending no audio (default 30)",
    )  # fmt: skip
    p.add_argument(
        "--allow-origin", action="append", default=[], metavar="ORIGIN",
        help="a page at another origin (scheme://host:port) that may call /predict and open live streams; "
        "repeatable",
    )  # fmt: skip
    p.add_argument(
        "--allow-host", action="append", default=[], metavar="NAME",
        help="a host name requests may name besides IP addresses, localhost and --host (e.g. the name of a "
        "reverse proxy); repeatable",
    )  # fmt: skip
    p.add_argument(
        "--device", default="cpu", help="where the model and encoders run: cpu (default), cuda, cuda:N"
    )
    add_asr_arguments(p)
    add_transcript_languages_argument(p, "said in the answer's text_skipped")
    p.set_defaults(func=_serve)

    p = sub.add_parser("export", help="ONNX files of the shared model, or a model folder in the Hub layout")
    p.add_argument("run_dir", help="a run folder (or a model name or folder, for --pretrained)")
    p.add_argument("--onnx", help="out.onnx: writes out.<view>.onnx and out.json")
    p.add_argument(
        "--pretrained", help="DIR: config.json + model.safetensors + README.md, as the Hub expects"
    )
    p.add_argument("--push-to-hub", help="with --pretrained: also upload DIR to this Hub repository id")
    p.add_argument(
        "--overwrite", action="store_true", help="replace files that --onnx or --pretrained would write"
    )
    p.set_defaults(func=_export)
