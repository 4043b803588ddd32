"""A small, deterministic, SYNTHETIC audio+text emotion corpus spoken by espeak-ng.

Nothing here is real emotional speech. Each utterance gets a class (happy, angry, sad, neutral, laid on
the arousal x valence quadrants) and dimensional labels (class centre + jitter, 1-5 scale); the text is
filled from templates and word lists, the audio is espeak-ng reading that text with prosody (pitch level
and range, rate, volume, pauses) set from the utterance's own arousal plus speaker offsets and noise.
By construction the audio carries mostly arousal (high vs low) and the text mostly valence (positive vs
negative; ~30% of sentences are uninformative), so each modality alone is only moderately accurate and
the two together are much better.

What it can show: that a pipeline runs end to end on real waveforms and text, that fusion uses both
modalities, that a missing modality degrades gracefully, and that arousal is regressable from audio.
What it cannot show: anything about real emotion recognition accuracy, natural prosody, real speakers,
or acoustic cues beyond the few prosodic knobs of a formant synthesiser.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from mamer.data.espeak import EspeakSynthesizer
from mamer.data.manifest import Utterance, write_manifest

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1  # bump when the design changes so old corpora are regenerated
CLASSES = ("happy", "angry", "sad", "neutral")
# Class centres (arousal, valence, dominance) on a 1-5 scale.
CENTRES = {
    "happy": (4.0, 4.3, 3.5),
    "angry": (4.3, 1.7, 4.2),
    "sad": (1.8, 1.8, 1.8),
    "neutral": (2.2, 3.2, 3.0),
}
JITTER = 0.35  # per-utterance std of A/V/D around the class centre
P_UNINFORMATIVE = 0.3  # neutral factual sentence, same for every class
P_SPECIFIC = 0.3  # words specific to the class (the rest use words shared by the valence pair)

VOICES = ("en-us", "en-gb-x-rp", "en", "en-029", "en-gb-scotland", "en-us-nyc")
VARIANTS = ("f1", "m1", "f2", "m2", "f3", "m3", "f4", "m4", "f5", "m5", "m6", "m7")

# Word pools: "feel" adjectives describe the speaker, "eval" adjectives describe a thing.
# Shared pools are drawn identically by both classes of a valence pair, so they cannot separate arousal.
WORDS = {
    "happy": {
        "feel": ["thrilled", "overjoyed", "delighted", "ecstatic", "so excited", "elated"],
        "eval": ["amazing", "fantastic", "wonderful", "brilliant", "incredible", "superb"],
    },
    "positive": {
        "feel": ["glad", "content", "pleased", "comfortable", "satisfied", "grateful"],
        "eval": ["good", "nice", "pleasant", "lovely", "fine", "decent"],
    },
    "neutral": {
        "feel": ["calm", "relaxed", "settled", "at ease", "peaceful", "steady"],
        "eval": ["ordinary", "normal", "okay", "routine", "quiet", "reasonable"],
    },
    "negative": {
        "feel": ["upset", "unhappy", "hurt", "disappointed", "troubled", "let down"],
        "eval": ["bad", "awful", "terrible", "wrong", "unfair", "horrible"],
    },
    "angry": {
        "feel": ["furious", "livid", "outraged", "enraged", "fed up", "sick of it"],
        "eval": ["outrageous", "ridiculous", "infuriating", "unacceptable", "insulting", "absurd"],
    },
    "sad": {
        "feel": ["heartbroken", "lonely", "miserable", "hopeless", "gloomy", "empty inside"],
        "eval": ["tragic", "heartbreaking", "bleak", "dreary", "depressing", "so sad"],
    },
}
SHARED = {"happy": "positive", "neutral": "positive", "angry": "negative", "sad": "negative"}

THINGS = [
    "the meeting", "the trip", "the results", "the new job", "the weekend", "the phone call",
    "the interview", "the dinner", "the report", "the move", "the news", "the visit", "the game",
    "the exam", "the project", "the party", "the letter", "the concert",
]  # fmt: skip
TIMES = [
    "on Monday",
    "this morning",
    "last night",
    "at noon",
    "next week",
    "on Friday",
    "after lunch",
    "today",
]
PLACES = ["the office", "the station", "the library", "the kitchen", "the park", "the hotel", "the school"]

EVAL_TEMPLATES = [
    "I think {thing} was {eval}.",
    "Honestly, {thing} turned out {eval}.",
    "The way {thing} went was {eval}.",
    "Everyone said {thing} was {eval}.",
    "Well, {thing} {time} was {eval}.",
    "You know, {thing} at {place} was {eval}.",
    "I have to say that {thing} was really {eval}.",
    "So {thing} ended up being {eval}.",
    "What happened with {thing} was {eval}.",
    "It was {eval}, the whole thing with {thing}.",
    "I told them {thing} was {eval}.",
    "After all that, {thing} was {eval}.",
    "This time {thing} felt {eval} to me.",
    "The news about {thing} is {eval}.",
    "Looking back, {thing} {time} was {eval}.",
]
FEEL_TEMPLATES = [
    "I feel {feel} about {thing}.",
    "Right now I am {feel}.",
    "I was {feel} after {thing}.",
    "I am {feel} about what happened {time}.",
    "Since {thing}, I have been {feel}.",
    "To be honest, I am {feel} today.",
    "We were all {feel} at {place}.",
    "I came home {feel} {time}.",
    "I am just {feel} about {thing}.",
    "When I heard about {thing}, I felt {feel}.",
    "Sitting in {place}, I felt {feel}.",
    "After {thing} {time}, I was {feel}.",
]
NEUTRAL_TEMPLATES = [
    "{thing} is scheduled {time}.",
    "We talked about {thing} at {place}.",
    "I need to check the time for {thing}.",
    "The bus stops near {place} every ten minutes.",
    "They moved {thing} to {place}.",
    "I will send you the details about {thing} {time}.",
    "The list for {thing} has twelve names on it.",
    "Please bring the papers to {place} {time}.",
    "The window in {place} faces the street.",
    "Someone mentioned {thing} {time}.",
    "There are three chairs by the door of {place}.",
    "I read about {thing} in the paper.",
]


@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker: an espeak-ng voice plus offsets added to every utterance's prosody."""

    id: str
    voice: str
    pitch: float  # offset on espeak's 0-100 pitch scale
    rate: float  # offset in words per minute
    volume: float  # offset on espeak's 0-200 volume scale
    pitch_range: float  # offset on espeak's 0-100 range scale


def make_speakers(n: int, rng: np.random.Generator) -> list[Speaker]:
    """``n`` speakers cycling through English voices and variants, with random prosody offsets."""
    return [
        Speaker(
            id=f"spk{i:02d}",
            voice=f"{VOICES[i % len(VOICES)]}+{VARIANTS[i % len(VARIANTS)]}",
            pitch=float(rng.normal(0, 6)),
            rate=float(rng.normal(0, 12)),
            volume=float(rng.normal(0, 6)),
            pitch_range=float(rng.normal(0, 5)),
        )
        for i in range(n)
    ]


def make_text(label: str, rng: np.random.Generator) -> str:
    """A sentence for ``label``: uninformative, valence-pair shared, or class specific."""
    slots = {"thing": _pick(rng, THINGS), "time": _pick(rng, TIMES), "place": _pick(rng, PLACES)}
    u = rng.random()
    if u < P_UNINFORMATIVE:
        template = _pick(rng, NEUTRAL_TEMPLATES)
    else:
        pool = WORDS[label if u < P_UNINFORMATIVE + P_SPECIFIC else SHARED[label]]
        kind = "feel" if rng.random() < 0.5 else "eval"
        template = _pick(rng, FEEL_TEMPLATES if kind == "feel" else EVAL_TEMPLATES)
        slots[kind] = _pick(rng, pool[kind])
    text = template.format(**slots)
    return text[0].upper() + text[1:]


def prosody(arousal: float, valence: float, speaker: Speaker, rng: np.random.Generator) -> dict[str, int]:
    """espeak-ng parameters from the utterance's arousal (mostly) and valence (a weak range cue)."""
    z = (arousal - 3.0) / 2.0  # about -1 (calm) .. +1 (aroused)
    return {
        "pitch": round(50 + 28 * z + speaker.pitch + rng.normal(0, 4)),
        "pitch_range": round(50 + 35 * z + 6 * (valence - 3.0) + speaker.pitch_range + rng.normal(0, 5)),
        "rate": round(170 + 65 * z + speaker.rate + rng.normal(0, 8)),
        "volume": round(100 + 55 * z + speaker.volume + rng.normal(0, 5)),
        "word_gap": max(0, round(-6 * z + rng.normal(0, 1.0))),
    }


def _pick(rng: np.random.Generator, items: list[str] | tuple[str, ...]) -> str:
    return items[int(rng.integers(len(items)))]


def _labels(n: int, offset: int, rng: np.random.Generator) -> list[str]:
    """``n`` balanced class labels in random order; ``offset`` rotates which classes get the remainder."""
    labels = [CLASSES[(k + offset) % len(CLASSES)] for k in range(n)]
    return [labels[i] for i in rng.permutation(n)]


def _dims(label: str, rng: np.random.Generator) -> tuple[float, float, float]:
    a, v, d = (float(np.clip(c + rng.normal(0, JITTER), 1.0, 5.0)) for c in CENTRES[label])
    return round(a, 3), round(v, 3), round(d, 3)


def generate_corpus(
    out_dir: Path,
    n_speakers: int = 12,
    utterances_per_speaker: int = 50,
    seed: int = 0,
    split_speakers: tuple[int, int, int] = (8, 2, 2),
    progress: bool = True,
) -> Path:
    """Write ``out_dir/audio/<id>.wav`` and ``out_dir/manifest.jsonl``; returns the manifest path.

    Splits are by speaker: ``split_speakers`` = (train, dev, test) speaker counts, summing to
    ``n_speakers``. Deterministic for a seed (identical bytes); an existing corpus generated with the
    same parameters is reused.
    """
    if sum(split_speakers) != n_speakers or min(split_speakers) < 0:
        raise ValueError(f"split_speakers {split_speakers} must be non-negative and sum to {n_speakers}")
    out_dir = Path(out_dir)
    manifest, info = out_dir / "manifest.jsonl", out_dir / "corpus.json"
    params = {
        "generator_version": GENERATOR_VERSION,
        "n_speakers": n_speakers,
        "utterances_per_speaker": utterances_per_speaker,
        "seed": seed,
        "split_speakers": list(split_speakers),
    }
    if manifest.is_file() and not info.is_file():
        raise FileExistsError(
            f"{manifest} exists but was not written by generate_corpus; choose another out_dir"
        )
    if manifest.is_file():
        if json.loads(info.read_text()).get("parameters") == params:
            log.info("reusing synthetic corpus in %s", out_dir)
            return manifest
        shutil.rmtree(out_dir / "audio", ignore_errors=True)  # ours (corpus.json exists): stale files go
        manifest.unlink()
    info.unlink(missing_ok=True)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    speakers = make_speakers(n_speakers, rng)
    order = rng.permutation(n_speakers)
    names = ["train"] * split_speakers[0] + ["dev"] * split_speakers[1] + ["test"] * split_speakers[2]
    split_of = {speakers[int(i)].id: name for i, name in zip(order, names, strict=True)}

    tts = EspeakSynthesizer()
    rows: list[Utterance] = []
    jobs = [
        (speaker, k, label)
        for i, speaker in enumerate(speakers)
        for k, label in enumerate(_labels(utterances_per_speaker, i, rng))
    ]
    for speaker, k, label in tqdm(jobs, desc="synthetic corpus", disable=not progress):
        arousal, valence, dominance = _dims(label, rng)
        text = make_text(label, rng)
        audio = tts.synthesize(text, voice=speaker.voice, **prosody(arousal, valence, speaker, rng))
        uid = f"{speaker.id}_{k:03d}"
        wav = out_dir / "audio" / f"{uid}.wav"
        sf.write(wav, np.round(audio * 32768).astype(np.int16), tts.sample_rate, subtype="PCM_16")
        rows.append(
            Utterance(uid, wav, text, label, arousal, valence, dominance, speaker.id, split_of[speaker.id])
        )
    write_manifest(rows, manifest)
    speakers_info = [dict(vars(s), split=split_of[s.id]) for s in speakers]
    summary = {"parameters": params, "sample_rate": tts.sample_rate, "speakers": speakers_info}
    info.write_text(json.dumps(summary, indent=1))
    return manifest


def quickstart_corpus(
    folder: Path, speakers: int = 12, utterances_per_speaker: int = 48, progress: bool = True
) -> Path:
    """The quickstart corpus in `folder` (reused when already there): speakers split by 2/3, 1/6, 1/6."""
    test_speakers = max(1, speakers // 6)
    return generate_corpus(
        folder,
        speakers,
        utterances_per_speaker,
        seed=0,
        split_speakers=(speakers - 2 * test_speakers, test_speakers, test_speakers),
        progress=progress,
    )
