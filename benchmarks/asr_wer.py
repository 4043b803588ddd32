"""Word error rate of the offline ASR on real German speech (EmoDB) and on the synthetic quickstart corpus.

    python benchmarks/asr_wer.py [--emodb ../shared/data/emodb] [--per-sentence 5] [--model whisper-base]
        [--beam 1] [--corpus-dir DIR] [--synthetic-max N]

(a) EmoDB: `--per-sentence` clips of each of its ten sentences (or of the first `--sentences`), spread over
speakers and emotions, transcribed with the language fixed to "de" and again with the language detected (how
often German is detected is printed).
(b) The synthetic quickstart corpus's test split (English, espeak-ng), built into `--corpus-dir` or a temporary
folder (about a minute), or the test split of `--manifest`. Text is lowercased and stripped of punctuation before scoring; WER is the word-level
edit distance summed over clips, divided by the number of reference words.
"""

from __future__ import annotations

import argparse
import csv
import re
import tempfile
import time
from pathlib import Path

from mamer.data.audio import load_audio
from mamer.data.manifest import read_manifest
from mamer.data.synthetic import quickstart_corpus
from mamer.workflows.inference.asr import Transcriber, load_transcriber

SR = 16000


def normalise(text: str) -> list[str]:
    """Lowercase words with punctuation removed (letters of any script, digits and apostrophes kept)."""
    return re.sub(r"[^\w\s']|_", " ", text.lower()).split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions, insertions, deletions)."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
    return row[-1]


def emodb_subset(folder: Path, per_sentence: int, sentences: int | None = None) -> list[tuple[Path, str]]:
    """`per_sentence` clips of each EmoDB sentence (of the first `sentences`), evenly spaced over its rows sorted
    by speaker and id."""
    with open(folder / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    chosen = []
    for sentence in sorted({r["sentence"] for r in rows})[:sentences]:
        group = sorted((r for r in rows if r["sentence"] == sentence), key=lambda r: (r["speaker"], r["id"]))
        step = max(1, len(group) // per_sentence)
        chosen += [(folder / r["audio"], r["text"]) for r in group[::step][:per_sentence]]
    return chosen


def synthetic_test_split(
    folder: Path, limit: int | None, manifest: Path | None = None
) -> list[tuple[Path, str]]:
    """The test-split clips and texts of `manifest`, or of the quickstart corpus (built in `folder` if absent)."""
    rows, _ = read_manifest(manifest or quickstart_corpus(folder, progress=False))
    test = [(u.audio, u.text) for u in rows if u.split == "test"]
    return test[:limit]


def score(model: Transcriber, clips: list[tuple[Path, str]], language: str | None, beam: int) -> dict:
    """WER over `clips` with `language` fixed (None: detected), the languages found, and the times."""
    errors = words = 0
    languages, audio_seconds, started = [], 0.0, time.perf_counter()
    for path, text in clips:
        wave = load_audio(path, SR)
        audio_seconds += len(wave) / SR
        transcript = model.transcribe(wave, language=language, beam_size=beam)
        ref, hyp = normalise(text), normalise(transcript.text)
        errors, words = errors + edit_distance(ref, hyp), words + len(ref)
        languages.append(transcript.language)
    wall = time.perf_counter() - started
    return {
        "wer": errors / max(words, 1),
        "words": words,
        "audio_s": audio_seconds,
        "wall_s": wall,
        "langs": languages,
    }


def report(label: str, result: dict, expected_language: str) -> None:
    """Print one line of figures."""
    share = sum(lang == expected_language for lang in result["langs"]) / max(len(result["langs"]), 1)
    print(
        f"{label:<34} clips={len(result['langs']):>3} words={result['words']:>4} WER={100 * result['wer']:5.1f}% "
        f"lang={expected_language}:{100 * share:3.0f}%  audio={result['audio_s']:6.1f}s "
        f"wall={result['wall_s']:6.1f}s  ({result['audio_s'] / result['wall_s']:.1f}x real time)"
    )


def main() -> None:
    """Parse the arguments, transcribe both sets and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--emodb", type=Path, default=Path("../shared/data/emodb"))
    parser.add_argument("--per-sentence", type=int, default=5)
    parser.add_argument(
        "--sentences", type=int, default=None, help="only the first N of EmoDB's ten sentences"
    )
    parser.add_argument("--model", default="whisper-base")
    parser.add_argument("--beam", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--corpus-dir", type=Path, default=None, help="reuse or build the quickstart corpus here"
    )
    parser.add_argument(
        "--synthetic-max", type=int, default=None, help="at most this many synthetic test clips"
    )
    parser.add_argument(
        "--manifest", type=Path, help="a synthetic corpus's manifest to use instead of building one"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    model = load_transcriber(args.model, cpu_threads=args.threads)
    model.model  # noqa: B018 - load now, to time it apart
    print(f"model {args.model} (int8, beam {args.beam}): loaded in {time.perf_counter() - started:.1f} s")

    if (args.emodb / "metadata.csv").is_file():
        clips = emodb_subset(args.emodb, args.per_sentence, args.sentences)
        report("EmoDB (German), language=de", score(model, clips, "de", args.beam), "de")
        report("EmoDB (German), language detected", score(model, clips, None, args.beam), "de")
    else:
        print(f"EmoDB: no {args.emodb / 'metadata.csv'}; skipped")

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.corpus_dir or Path(tmp) / "quickstart"
        built = time.perf_counter()
        clips = synthetic_test_split(folder, args.synthetic_max, args.manifest)
        print(f"synthetic corpus ready in {time.perf_counter() - built:.1f} s ({args.manifest or folder})")
        report("synthetic quickstart test, en", score(model, clips, "en", args.beam), "en")
    print(f"total wall time {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
