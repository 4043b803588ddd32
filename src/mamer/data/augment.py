"""Augmented copies of a manifest's training clips: `mamer augment` (issue 35's "augmentation that matches real
input").

For every row of the chosen splits (default: train) that has audio, `copies` degraded copies are written as
16 kHz FLAC files under `OUT/audio/`, each through its own chain of `mamer.data.degrade` (speed, gain, a room,
noise or babble, the telephone band or a codec), drawn from a generator seeded by the seed, the row's id and
the copy's number: a rerun writes the same copies. `OUT/manifest.jsonl` holds every row of the source manifest
unchanged and after each augmented row its copies: id `<id>#aug<k>`, the same text, label, dimensions, speaker
and split. Since the feature cache keys audio by its bytes, the clean clips' features are reused and only the
copies are encoded. `OUT/augmentations.jsonl` says which chain made each copy; `OUT/skipped.jsonl` which rows
got no copy and why (a clip that cannot be read keeps its row; nothing is lost). Babble is drawn from the
clips of other speakers of the same splits. With `per_speaker`, a speaker's k-th copies share one chain (one
room, one line or codec, one noise level; the noise itself differs per clip) and are a speaker of their own,
`<speaker>#aug<k>`, as the clips of one recording session are: a model normalised per speaker then reads each
copy standardised among clips of its own condition, as it will read a group of clips from one source.

Each file is written to a temporary name and renamed, so a run killed at any moment resumes where it stopped:
copies already on disk are kept. `OUT/augment.json` records what was asked; a folder made with other settings
is refused unless `force` is given (which deletes its copies first), and the manifest is written last.

Training on the copies: every augmented row is drawn `copies + 1` times as often as before, so halve (for one
copy) `train.audio_oversample` and `train.corpus_oversample` to keep the epoch's number of clip draws.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from mamer.atomic import atomic_write, write_json
from mamer.data.audio import AudioLoadError, load_audio
from mamer.data.degrade import KINDS, SR, apply_chain, random_chain
from mamer.data.manifest import Utterance, corpus_of, read_manifest, write_manifest

SUFFIX = "#aug"  # an augmented row's id: <id>#aug<k>
BABBLE_POOL = 64  # clips of other speakers kept in memory for babble, drawn once by the seed
BABBLE_SECONDS = 10.0  # each babble clip cut to this much: a long clip costs no more than a short one
MAX_SECONDS = 60.0  # a clip longer than this gets no copies (reported): each copy's cost stays bounded


class AugmentError(ValueError):
    """The output folder holds another augmentation, or the arguments are wrong; the message says which."""


@dataclass
class AugmentResult:
    manifest: Path
    written: int = 0  # copies written by this call
    kept: int = 0  # copies already on disk from an earlier call
    skipped: dict[str, str] = field(default_factory=dict)  # row id -> why it got no copy
    problems: list[str] = field(default_factory=list)  # rows of the source manifest that could not be read


def augmented_id(utterance_id: str, copy: int) -> str:
    return f"{utterance_id}{SUFFIX}{copy}"


def source_id(utterance_id: str) -> str:
    """The id a copy was made from (an id that is no copy: itself)."""
    base, sep, number = utterance_id.rpartition(SUFFIX)
    return base if sep and number.isdigit() else utterance_id


def copy_path(out: Path, utterance_id: str, copy: int) -> Path:
    """Where a copy's FLAC goes: a name made safe from the id (no folders, no `..`), and its hash."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", utterance_id).strip("._")[:80]
    tag = hashlib.sha256(utterance_id.encode()).hexdigest()[:10]
    return out / "audio" / f"{safe}_{tag}_aug{copy}.flac"


def augment_manifest(
    manifest: Path,
    out: Path,
    copies: int = 1,
    kinds: Sequence[str] = KINDS,
    seed: int = 0,
    splits: Sequence[str] = ("train",),
    force: bool = False,
    per_speaker: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> AugmentResult:
    """Write `copies` degraded copies of each audio row of `splits` and `OUT/manifest.jsonl` with them. With
    `per_speaker`, a speaker's k-th copies share one chain (`_chains`) and are a speaker of their own."""
    if copies < 1:
        raise AugmentError(f"copies must be at least 1, got {copies}")
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise AugmentError(
            f"degradations must be some of {', '.join(KINDS)}; got {', '.join(kinds) or 'none'}"
        )
    manifest, out = Path(manifest), Path(out)
    rows, problems = read_manifest(manifest)
    settings = {
        "source": str(manifest.resolve()),
        "copies": copies,
        "kinds": list(kinds),
        "seed": seed,
        "splits": list(splits),
        "sample_rate": SR,
        "per_speaker": per_speaker,
    }
    _claim(out, settings, force)
    targets = [u for u in rows if u.split in splits and u.audio is not None]
    pool = _babble_pool(targets, seed)
    result = AugmentResult(manifest=out / "manifest.jsonl", problems=problems)
    chains: dict[str, list] = {}
    done = 0
    for u in targets:
        others = _others(pool, u)
        planned = _chains(u, copies, kinds, seed, bool(others), per_speaker)
        wave = None
        for k, chain in enumerate(planned, start=1):
            path = copy_path(out, u.id, k)
            chains[augmented_id(u.id, k)] = chain
            if path.is_file():
                result.kept += 1
                continue
            if wave is None:
                try:
                    wave = load_audio(u.audio, SR, max_seconds=MAX_SECONDS)
                except AudioLoadError as err:
                    result.skipped[u.id] = str(err)
                    break
            babble_from = list(others)
            np.random.default_rng([seed, zlib.crc32(u.id.encode()), k]).shuffle(babble_from)
            degraded = apply_chain(wave, chain, babble_from)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(
                path, lambda tmp, w=degraded: sf.write(str(tmp), w, SR, format="FLAC", subtype="PCM_16")
            )
            result.written += 1
        done += 1
        if progress is not None:
            progress(done, len(targets))
    _write_outputs(out, rows, copies, splits, chains, result, per_speaker)
    return result


def _chains(u: Utterance, copies: int, kinds: Sequence[str], seed: int, babble_ok: bool, per_speaker: bool):
    """The chains of `u`'s copies, seeded by `seed` and its id; with `per_speaker` (and a speaker), by its
    speaker instead, so that all its k-th copies pass one room, one phone line or codec, one kind of noise at
    one level, as a recording session would, each clip with noise and babble of its own."""
    if not per_speaker or u.speaker is None:
        rng = np.random.default_rng([seed, zlib.crc32(u.id.encode())])
        return [random_chain(rng, kinds, babble_ok) for _ in range(copies)]
    rng = np.random.default_rng([seed, zlib.crc32(_speaker(u).encode())])
    shared = [random_chain(rng, kinds, babble_ok) for _ in range(copies)]
    clip = np.random.default_rng([seed, zlib.crc32(u.id.encode())])
    return [
        [
            (kind, {**params, "seed": int(clip.integers(2**31))})
            if kind in ("noise", "babble")
            else (kind, params)
            for kind, params in chain
        ]  # fmt: skip
        for chain in shared
    ]


def _claim(out: Path, settings: dict, force: bool) -> None:
    """Record `settings` in OUT/augment.json; refuse a folder that holds another augmentation unless `force`."""
    spec = out / "augment.json"
    if spec.is_file():
        try:
            before = json.loads(spec.read_text())
        except (OSError, ValueError):
            before = None
        if before != settings:
            if not force:
                raise AugmentError(
                    f"{out} holds an augmentation made with other settings ({spec}); give another --out, or "
                    "--force to write this one over it"
                )
            shutil.rmtree(out / "audio", ignore_errors=True)  # its copies were made by the other settings
    elif out.exists() and any(out.iterdir()) and not force:
        raise AugmentError(f"{out} exists and is not an augmentation folder; give an empty or new --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json(spec, settings)


def _babble_pool(rows: list[Utterance], seed: int) -> list[tuple[str | None, np.ndarray]]:
    """Up to BABBLE_POOL clips of `rows` (speaker, first BABBLE_SECONDS), drawn by `seed`; unreadable ones left out."""
    order = np.random.default_rng(seed).permutation(len(rows))[: 2 * BABBLE_POOL]
    pool = []
    for i in order:
        u = rows[int(i)]
        try:
            wave = load_audio(u.audio, SR, max_seconds=MAX_SECONDS)
        except AudioLoadError:
            continue
        pool.append((_speaker(u), wave[: int(BABBLE_SECONDS * SR)]))
        if len(pool) == BABBLE_POOL:
            break
    return pool


def _speaker(u: Utterance) -> str | None:
    return None if u.speaker is None else f"{corpus_of(u.id)}/{u.speaker}"  # corpora may share a speaker "01"


def _others(pool: list[tuple[str | None, np.ndarray]], u: Utterance) -> list[np.ndarray]:
    """The pool's clips of other speakers than `u`'s (of another row, where speakers are unknown)."""
    me = _speaker(u)
    return [wave for speaker, wave in pool if me is None or speaker != me]


def _write_outputs(
    out: Path,
    rows: list[Utterance],
    copies: int,
    splits: Sequence[str],
    chains: dict,
    result: AugmentResult,
    per_speaker: bool = False,
) -> None:
    """OUT/augmentations.jsonl, OUT/skipped.jsonl, then OUT/manifest.jsonl (last: it marks the folder done)."""
    lines = [json.dumps({"id": i, "source": source_id(i), "chain": c}) + "\n" for i, c in chains.items()]
    atomic_write(out / "augmentations.jsonl", lambda tmp: tmp.write_text("".join(lines)))
    skipped = [json.dumps({"id": i, "reason": r}) + "\n" for i, r in result.skipped.items()]
    atomic_write(out / "skipped.jsonl", lambda tmp: tmp.write_text("".join(skipped)))
    joined: list[Utterance] = []
    for u in rows:
        joined.append(u)
        if u.split in splits and u.audio is not None and u.id not in result.skipped:
            for k in range(1, copies + 1):
                speaker = f"{u.speaker}{SUFFIX}{k}" if per_speaker and u.speaker is not None else u.speaker
                copy = dataclasses.replace(
                    u, id=augmented_id(u.id, k), audio=copy_path(out, u.id, k), speaker=speaker
                )
                joined.append(copy)
    write_manifest(joined, result.manifest)  # atomic
