"""What ASR costs per language, and what a transcript in another language than the text encoder's does to the model.

    python benchmarks/asr_languages.py [--clips 20] [--corpora de,pl,en,ur,hi] [--views] [--smoke]

(a) Speed and word error rate of whisper-base (int8, beam 1, language detected) on `--clips` clips per corpus:
EmoDB (German), nEMO (Polish), RAVDESS (English), and Urdu and Hindi sentences synthesised by espeak-ng (robotic
voices whisper-base knows poorly: a stand-in for the real Urdu speech of issue 37, which we do not have). Each
clip is transcribed as MAMER did before (`before`: faster-whisper's temperature fallback, word times, the first
30 s encoded twice when the language is detected) and as it does now (`now`: temperature 0 only, no word times
for a single clip, one encoding). Printed per corpus: seconds of wall time per clip, WER, how many windows fell
back to sampling, and the languages detected.
(b) With `--views`: mamer-base's audio view against its audio+text view with the ASR transcript, with
Whisper's English translation of the clip (`task="translate"`, the detected language given) and with the gold
transcript, on the same EmoDB and nEMO clips (UAR over the classes mamer-base has; EmoDB's boredom left
out, nEMO's `surprised` is surprise). Neither corpus's text carries emotion (one sentence set spoken in every
emotion), and MiniLM, the text encoder, reads English.
(c) With `--recording MINUTES --out FILE`: only writes a recording of the first corpus's clips in a shuffled
order with pauses of 0.5-1.5 s, to time `mamer predict` on (docs/recordings.md).
`--smoke`: one German clip, both parts; for the test suite.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from asr_wer import edit_distance, normalise  # noqa: E402

from mamer.data.audio import load_audio, resample  # noqa: E402

SR = 16000
DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
URDU = [
    "میں آج بہت خوش ہوں۔",
    "مجھے یہ بات بالکل پسند نہیں آئی۔",
    "تم نے میرے ساتھ ایسا کیوں کیا؟",
    "کل بارش ہوگی اور ہم گھر پر رہیں گے۔",
    "یہ کتاب میز پر رکھی ہے۔",
    "مجھے اندھیرے سے بہت ڈر لگتا ہے۔",
    "ہم سب شام کو بازار جائیں گے۔",
    "اس نے مجھے ایک خط لکھا تھا۔",
    "میرا بھائی لاہور میں کام کرتا ہے۔",
    "آپ کا بہت شکریہ، آپ بہت مہربان ہیں۔",
]
HINDI = [
    "मैं आज बहुत खुश हूँ।",
    "मुझे यह बात बिल्कुल पसंद नहीं आई।",
    "तुमने मेरे साथ ऐसा क्यों किया?",
    "कल बारिश होगी और हम घर पर रहेंगे।",
    "यह किताब मेज़ पर रखी है।",
    "मुझे अंधेरे से बहुत डर लगता है।",
    "हम सब शाम को बाज़ार जाएंगे।",
    "उसने मुझे एक चिट्ठी लिखी थी।",
    "मेरा भाई दिल्ली में काम करता है।",
    "आपका बहुत धन्यवाद, आप बहुत दयालु हैं।",
]
RENAMED = {"surprised": "surprise"}  # nEMO's name for surprise


def corpus_clips(code: str, count: int, data: Path) -> list[tuple[np.ndarray, str, str | None]]:
    """`count` clips of corpus `code`, spread over its rows: (16 kHz wave, transcript, emotion or None)."""
    if code in ("ur", "hi"):
        from mamer.data.espeak import EspeakSynthesizer

        tts = EspeakSynthesizer()
        texts = (URDU if code == "ur" else HINDI)[:count]
        return [(resample(tts.synthesize(t, voice=code), tts.sample_rate, SR), t, None) for t in texts]
    folder, audio_key = {"de": ("emodb", "audio"), "pl": ("nemo", "file"), "en": ("ravdess", "audio")}[code]
    with open(data / folder / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    step = max(1, len(rows) // count)
    chosen = rows[::step][:count]
    return [(load_audio(data / folder / r[audio_key], SR), r["text"], r["emotion"]) for r in chosen]


def write_recording(code: str, minutes: float, data: Path, out: Path, seed: int = 0) -> float:
    """Clips of corpus `code` in a shuffled order with 0.5-1.5 s pauses, until `minutes`, as a 16 kHz WAV."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    folder, audio_key = {"de": ("emodb", "audio"), "pl": ("nemo", "file"), "en": ("ravdess", "audio")}[code]
    with open(data / folder / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    parts, total = [], 0
    for i in rng.permutation(len(rows)):
        wave = load_audio(data / folder / rows[i][audio_key], SR)
        parts += [wave, np.zeros(int(rng.uniform(0.5, 1.5) * SR), np.float32)]
        total += len(parts[-2]) + len(parts[-1])
        if total > minutes * 60 * SR:
            break
    sf.write(out, np.concatenate(parts), SR)
    return total / SR


def transcribe_as(transcriber, wave: np.ndarray, how: str):
    """(text, language, windows that fell back to sampling) of one clip, `how` = "before" or "now"."""
    model = transcriber.model
    if how == "now":
        heard = transcriber.transcribe(wave)
        return heard.text, heard.language, 0
    kept, model.encode = model.encode, model.encode.encode  # faster-whisper's own encode, unkept
    try:
        pieces, info = model.transcribe(
            wave, beam_size=1, vad_filter=False, word_timestamps=True, condition_on_previous_text=False
        )
        pieces = list(pieces)
    finally:
        model.encode = kept
    text = " ".join(p.text.strip() for p in pieces)
    return text, info.language, sum(p.temperature > 0 for p in pieces)


def speed_and_wer(transcriber, clips, code: str, hows: tuple[str, ...]) -> list:
    """Print (a) for one corpus; returns the `now` transcripts and languages."""
    kept = {}
    for how in hows:
        errors = words = fallbacks = 0
        languages: dict[str, int] = {}
        texts = []
        started = time.perf_counter()
        for wave, truth, _ in clips:
            text, language, fell_back = transcribe_as(transcriber, wave, how)
            reference = normalise(truth)
            errors, words = errors + edit_distance(reference, normalise(text)), words + len(reference)
            fallbacks += fell_back
            languages[language] = languages.get(language, 0) + 1
            texts.append((text, language))
        per_clip = (time.perf_counter() - started) / len(clips)
        seconds = sum(len(w) for w, _, _ in clips) / SR / len(clips)
        found = ", ".join(f"{k} {v}" for k, v in sorted(languages.items(), key=lambda kv: -kv[1]))
        print(
            f"{code}  {how:6s}  {len(clips):3d} clips of {seconds:4.1f} s  {per_clip:5.2f} s/clip  "
            f"WER {100 * errors / max(words, 1):5.1f}%  fallbacks {fallbacks:3d}  detected: {found}",
            flush=True,
        )
        kept[how] = texts
    return kept["now"]


def uar(true: list[str], predicted: list[str]) -> float:
    """Unweighted average recall over the classes present in `true`."""
    classes = sorted(set(true))
    return float(
        np.mean([np.mean([p == c for t, p in zip(true, predicted, strict=True) if t == c]) for c in classes])
    )


def views(recognizer, transcriber, clips, heard, code: str) -> None:
    """Print (b) for one corpus: UAR of audio, audio + ASR text, audio + Whisper's English translation, audio +
    gold text, and the translation's seconds per clip."""
    keep = [i for i, (_, _, e) in enumerate(clips) if RENAMED.get(e, e) in recognizer.labels]
    true = [RENAMED.get(clips[i][2], clips[i][2]) for i in keep]
    started = time.perf_counter()
    english = [transcriber.transcribe(clips[i][0], language=heard[i][1], task="translate").text for i in keep]
    per_clip = (time.perf_counter() - started) / max(len(keep), 1)
    print(f"{code}  translated to English: {per_clip:5.2f} s/clip; e.g. {english[:2]}", flush=True)
    for name, texts in (
        ("audio", [None] * len(keep)),
        ("audio + ASR text", [heard[i][0] or None for i in keep]),
        ("audio + translation", [t or None for t in english]),
        ("audio + gold text", [clips[i][1] for i in keep]),
    ):
        items = [
            {"audio": clips[i][0], "sample_rate": SR, "text": t} for i, t in zip(keep, texts, strict=True)
        ]
        labels = [p.label for p in recognizer.predict_batch(items)]
        print(f"{code}  {name:19s} UAR {uar(true, labels):.3f} ({len(keep)} clips)", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=20, help="clips per corpus")
    p.add_argument("--corpora", default="de,pl,en,ur,hi")
    p.add_argument("--views", action="store_true", help="also part (b), on de and pl")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--asr", default="whisper-base")
    p.add_argument("--now-only", action="store_true", help="skip the `before` pass (for part b)")
    p.add_argument("--recording", type=float, metavar="MINUTES", help="only write a recording (part c)")
    p.add_argument("--out", type=Path, help="where --recording writes")
    p.add_argument("--smoke", action="store_true", help="one German clip, both parts")
    args = p.parse_args()
    if args.smoke:
        args.clips, args.corpora, args.views = 1, "de", True
    if args.recording:
        seconds = write_recording(args.corpora.split(",")[0], args.recording, args.data, args.out)
        print(f"{args.out}: {seconds:.1f} s")
        return

    from mamer.workflows.inference.asr import load_transcriber

    transcriber = load_transcriber(args.asr)
    started = time.perf_counter()
    transcriber.model  # noqa: B018 - load now, to time it apart
    print(f"{args.asr} loaded in {time.perf_counter() - started:.1f} s")
    recognizer = None
    if args.views:
        from mamer import EmotionRecognizer

        recognizer = EmotionRecognizer.load("mamer-base")
    for code in args.corpora.split(","):
        clips = corpus_clips(code, args.clips, args.data)
        heard = speed_and_wer(transcriber, clips, code, ("now",) if args.now_only else ("before", "now"))
        if recognizer is not None and code in ("de", "pl"):
            views(recognizer, transcriber, clips, heard, code)


if __name__ == "__main__":
    main()
