"""Feature cache: frozen-encoder features per split, in safetensors shards, keyed by a hash of what made them.

Layout under `<root>/<key>/`:
- `spec.json`: the encoders, their dims and frame rate; `key` hashes these specs and the utterances, so a
  stale cache is never mixed with a fresh one.
- `<split>-<k>.safetensors`: shard k, the split's utterances `k*S .. (k+1)*S - 1` (S = `shard_size`): `audio`
  (sum of frames, Da) and `text` (sum of tokens, Dt) as float16 with `*_offsets` (n + 1) into them (an
  utterance without a modality has an empty range).
- `<split>.json`: the index: shard size, and per finished shard its file, ids in row order and skipped items.
- `skipped.jsonl`: every skipped utterance of every split with the reason (one JSON object a line).

Every file is written to a temporary name and moved into place (`os.replace`), shard first, index second, so
a run killed at any moment leaves only whole shards; a rerun encodes just the shards its index lacks.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from mamer.atomic import atomic_write
from mamer.data.manifest import Utterance, read_manifest, splits
from mamer.encoders.audio_io import AudioLoadError, load_audio
from mamer.encoders.base import AudioEncoder, TextEncoder
from mamer.encoders.registry import build_encoders

log = logging.getLogger(__name__)

CACHE_FORMAT = 2  # bump when the layout changes: old caches then get a new key instead of being misread
SHARD_SIZE = 128


def cache_key(audio_spec: dict, text_spec: dict, utterances: Sequence[Utterance]) -> str:
    """Hash of the cache format, the encoders' specs and the utterances (ids, files, texts)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([CACHE_FORMAT, audio_spec, text_spec], sort_keys=True).encode())
    for u in utterances:
        digest.update(f"{u.id}\0{u.audio}\0{u.text}\n".encode())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------- reading


@dataclass
class Shard:
    """One shard's tensors: `audio` `(sum Ta, Da)`, `text` `(sum Tt, Dt)`, offsets `(n + 1,)` int64."""

    audio: torch.Tensor
    audio_offsets: torch.Tensor
    text: torch.Tensor
    text_offsets: torch.Tensor


@dataclass
class SplitFeatures:
    """One split's cached features, indexable by row across its shards."""

    ids: list[str]
    shards: list[Shard]
    starts: list[int]  # first row of each shard
    skipped: list[dict]

    def _locate(self, i: int) -> tuple[Shard, int]:
        if not 0 <= i < len(self.ids):
            raise IndexError(f"row {i} out of range for {len(self.ids)} utterances")
        k = bisect.bisect_right(self.starts, i) - 1
        return self.shards[k], i - self.starts[k]

    def audio_of(self, i: int) -> torch.Tensor | None:
        shard, row = self._locate(i)
        return _block(shard.audio, shard.audio_offsets, row)

    def text_of(self, i: int) -> torch.Tensor | None:
        shard, row = self._locate(i)
        return _block(shard.text, shard.text_offsets, row)

    @property
    def audio_dim(self) -> int:
        return self.shards[0].audio.shape[1]

    @property
    def text_dim(self) -> int:
        return self.shards[0].text.shape[1]


def _block(data: torch.Tensor, offsets: torch.Tensor, row: int) -> torch.Tensor | None:
    start, end = int(offsets[row]), int(offsets[row + 1])
    return data[start:end] if end > start else None


def _read_shard(path: Path) -> Shard:
    if not path.is_file():
        raise FileNotFoundError(f"feature shard {path} is listed in its index but missing; delete the folder")
    with safe_open(str(path), framework="pt") as f:  # memory-mapped: only what is read is paged in
        return Shard(
            **{name: f.get_tensor(name) for name in ("audio", "audio_offsets", "text", "text_offsets")}
        )


def load_split(folder: Path, split: str) -> SplitFeatures:
    """Read one split of a feature cache folder written by `extract_features`."""
    folder = Path(folder)
    index = _read_index(folder, split)
    if index is None or not index.get("complete"):
        state = "incomplete (extraction was interrupted)" if index else "missing"
        raise FileNotFoundError(
            f"cached features for split {split!r} in {folder} are {state}; run feature extraction "
            "(mamer extract, or mamer train) to finish them"
        )
    ids, shards, starts, skipped = [], [], [], []
    for entry in _ordered_shards(index):
        starts.append(len(ids))
        ids += entry["ids"]
        skipped += entry["skipped"]
        shards.append(_read_shard(folder / entry["file"]))
    return SplitFeatures(ids=ids, shards=shards, starts=starts, skipped=skipped)


def load_spec(folder: Path) -> dict:
    """The cache folder's `spec.json`: audio_encoder, text_encoder, audio_dim, text_dim, frame_rate."""
    return json.loads((Path(folder) / "spec.json").read_text())


def cache_summary(folder: Path) -> dict:
    """`{split: {"utterances": kept, "skipped": n, "complete": bool}}` from the indices of a cache folder."""
    summary = {}
    for path in sorted(Path(folder).glob("*.json")):
        if path.name == "spec.json":
            continue
        index = json.loads(path.read_text())
        entries = _ordered_shards(index)
        summary[path.stem] = {
            "utterances": sum(len(e["ids"]) for e in entries),
            "skipped": sum(len(e["skipped"]) for e in entries),
            "complete": bool(index.get("complete")),
        }
    return summary


def _read_index(folder: Path, split: str) -> dict | None:
    path = folder / f"{split}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _ordered_shards(index: dict) -> list[dict]:
    return [index["shards"][k] for k in sorted(index["shards"], key=int)]


# ---------------------------------------------------------------- writing


def _write_json(path: Path, value) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(value, indent=1)))


def _pack(blocks: list[torch.Tensor | None], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = [0 if b is None else len(b) for b in blocks]
    offsets = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int64)
    present = [b.to(torch.float16) for b in blocks if b is not None]
    data = torch.cat(present) if present else torch.zeros(0, dim, dtype=torch.float16)
    return data.contiguous(), offsets


def _precision(encoder) -> contextlib.AbstractContextManager:
    """bf16 (or fp16) autocast when the encoder runs on CUDA; nothing on CPU, where it would be slower."""
    device = torch.device(getattr(encoder, "device", "cpu"))
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def _load_waves(chunk: Sequence[Utterance], sample_rate: int) -> tuple[dict[str, np.ndarray], list[dict]]:
    waves, skipped = {}, []
    for u in chunk:
        if u.audio is None:
            continue
        try:
            waves[u.id] = load_audio(u.audio, sample_rate)
        except AudioLoadError as err:
            skipped.append({"id": u.id, "audio": str(u.audio), "reason": str(err)})
    return waves, skipped


def _encode_audio(waves: dict[str, np.ndarray], encoder: AudioEncoder, batch_size: int) -> dict:
    """Length-bucketed: sorted by duration so each batch pads little; returns id -> `(T, Da)`."""
    order = sorted(waves, key=lambda i: len(waves[i]))
    out = {}
    for begin in range(0, len(order), batch_size):
        batch = order[begin : begin + batch_size]
        with torch.inference_mode(), _precision(encoder):
            out |= dict(zip(batch, encoder.encode([waves[i] for i in batch]), strict=True))
    return out


def _encode_text(utterances: list[Utterance], encoder: TextEncoder, batch_size: int) -> dict:
    order = sorted(utterances, key=lambda u: len(u.text))
    out = {}
    for begin in range(0, len(order), batch_size):
        batch = order[begin : begin + batch_size]
        with torch.inference_mode(), _precision(encoder):
            out |= dict(zip([u.id for u in batch], encoder.encode([u.text for u in batch]), strict=True))
    return out


def _encode_chunk(
    chunk: Sequence[Utterance], audio_encoder: AudioEncoder, text_encoder: TextEncoder, batch_size: int
) -> tuple[list[str], dict[str, torch.Tensor], list[dict]]:
    """Encode one shard's utterances; returns (kept ids in order, shard tensors, skipped items)."""
    waves, skipped = _load_waves(chunk, audio_encoder.sample_rate)
    kept = [u for u in chunk if u.id in waves or (u.audio is None and u.text)]
    audio = _encode_audio(waves, audio_encoder, batch_size)
    text = _encode_text([u for u in kept if u.text], text_encoder, batch_size)
    audio_data, audio_offsets = _pack([audio.get(u.id) for u in kept], audio_encoder.dim)
    text_data, text_offsets = _pack([text.get(u.id) for u in kept], text_encoder.dim)
    tensors = {
        "audio": audio_data,
        "audio_offsets": audio_offsets,
        "text": text_data,
        "text_offsets": text_offsets,
    }
    return [u.id for u in kept], tensors, skipped


def _extract_split(
    folder: Path,
    name: str,
    utterances: Sequence[Utterance],
    encoders: tuple[AudioEncoder, TextEncoder],
    batch_size: int,
    shard_size: int,
    progress: bool,
) -> None:
    """Encode the shards of one split that its index lacks, each written atomically, then mark it complete."""
    index = _read_index(folder, name) or {
        "shard_size": shard_size,
        "num_utterances": len(utterances),
        "shards": {},
    }
    if index.get("complete"):
        return
    size = index["shard_size"]  # a resumed run keeps the shard boundaries it started with
    starts = range(0, len(utterances), size)
    todo = [k for k in range(len(starts)) if str(k) not in index["shards"]]
    bar = tqdm(total=len(utterances), desc=f"features {name}", unit="utt", disable=not progress)
    bar.update(len(utterances) - sum(len(utterances[k * size : (k + 1) * size]) for k in todo))
    for k in todo:
        chunk = utterances[k * size : (k + 1) * size]
        ids, tensors, skipped = _encode_chunk(chunk, *encoders, batch_size)
        file = f"{name}-{k}.safetensors"
        atomic_write(folder / file, lambda p, t=tensors: save_file(t, str(p)))
        index["shards"][str(k)] = {"file": file, "ids": ids, "skipped": skipped}
        _write_json(folder / f"{name}.json", index)
        for item in skipped:
            log.warning("skipped %s: %s", item["id"], item["reason"])
        bar.update(len(chunk))
    bar.close()
    index["complete"] = True
    _write_json(folder / f"{name}.json", index)


def _write_skipped_report(folder: Path, split_names: Sequence[str]) -> None:
    lines = []
    for name in split_names:
        for entry in _ordered_shards(_read_index(folder, name)):
            lines += [json.dumps({"split": name, **item}) for item in entry["skipped"]]
    atomic_write(folder / "skipped.jsonl", lambda p: p.write_text("".join(line + "\n" for line in lines)))


def extract_features(
    splits: dict[str, list[Utterance]],
    audio_encoder: AudioEncoder,
    text_encoder: TextEncoder,
    root: Path,
    batch_size: int = 16,
    progress: bool = True,
    shard_size: int = SHARD_SIZE,
) -> Path:
    """Encode every split into `root/<key>/`, resuming where an earlier run stopped; returns that folder."""
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size and shard_size must be >= 1, got {batch_size} and {shard_size}")
    every = [u for name in sorted(splits) for u in splits[name]]
    key = cache_key(audio_encoder.spec(), text_encoder.spec(), every)
    folder = Path(root) / key
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "audio_encoder": audio_encoder.spec(),
        "text_encoder": text_encoder.spec(),
        "audio_dim": audio_encoder.dim,
        "text_dim": text_encoder.dim,
        "frame_rate": audio_encoder.frame_rate,
    }
    _write_json(folder / "spec.json", spec)
    for name, utterances in splits.items():
        _extract_split(
            folder, name, utterances, (audio_encoder, text_encoder), batch_size, shard_size, progress
        )
    _write_skipped_report(folder, list(splits))
    return folder


def extract_manifest(
    manifest: Path,
    root: Path,
    audio_encoder: str = "auto",
    text_encoder: str = "auto",
    batch_size: int = 16,
    device: str = "cpu",
    progress: bool = True,
) -> Path:
    """Read a manifest (bad rows skipped with a warning) and extract or resume its feature cache under `root`."""
    utterances, problems = read_manifest(manifest)
    for problem in problems:
        log.warning(problem)
    audio, text = build_encoders(audio_encoder, text_encoder, device)
    return extract_features(splits(utterances), audio, text, root, batch_size, progress)
