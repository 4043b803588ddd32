"""Feature cache: frozen-encoder features per split, in safetensors, keyed by a hash of what made them.

Layout: `<root>/<key>/<split>.safetensors` holds `audio` (sum of frames, Da) and `text` (sum of tokens, Dt) as
float16 with `*_offsets` (N + 1) into them (an utterance without a modality has an empty range);
`<split>.json` lists the ids in row order and the items skipped with the reason. `<key>/spec.json` records the
encoders and the manifest the key was computed from, so a stale cache is never mixed with a fresh one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from mamer.data.manifest import Utterance
from mamer.encoders.audio_io import AudioLoadError, load_audio
from mamer.encoders.base import AudioEncoder, TextEncoder

log = logging.getLogger(__name__)


def cache_key(audio_spec: dict, text_spec: dict, utterances: Sequence[Utterance]) -> str:
    """Hash of the encoders' specs and the utterances (ids, files, texts) the features come from."""
    digest = hashlib.sha256()
    digest.update(json.dumps([audio_spec, text_spec], sort_keys=True).encode())
    for u in utterances:
        digest.update(f"{u.id}\0{u.audio}\0{u.text}\n".encode())
    return digest.hexdigest()[:16]


@dataclass
class SplitFeatures:
    """One split's cached features, indexable by row."""

    ids: list[str]
    audio: torch.Tensor  # (sum Ta, Da)
    audio_offsets: torch.Tensor  # (N + 1,)
    text: torch.Tensor  # (sum Tt, Dt)
    text_offsets: torch.Tensor  # (N + 1,)
    skipped: list[dict]

    def audio_of(self, i: int) -> torch.Tensor | None:
        start, end = self.audio_offsets[i].item(), self.audio_offsets[i + 1].item()
        return self.audio[start:end] if end > start else None

    def text_of(self, i: int) -> torch.Tensor | None:
        start, end = self.text_offsets[i].item(), self.text_offsets[i + 1].item()
        return self.text[start:end] if end > start else None

    @property
    def audio_dim(self) -> int:
        return self.audio.shape[1]

    @property
    def text_dim(self) -> int:
        return self.text.shape[1]


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _encode_split(
    utterances: Sequence[Utterance],
    audio_encoder: AudioEncoder,
    text_encoder: TextEncoder,
    batch_size: int,
    progress: bool,
    desc: str,
) -> tuple[list[str], list[torch.Tensor | None], list[torch.Tensor | None], list[dict]]:
    ids, audio, text, skipped = [], [], [], []
    bar = tqdm(total=len(utterances), desc=desc, unit="utt", disable=not progress)
    for start in range(0, len(utterances), batch_size):
        chunk = utterances[start : start + batch_size]
        waves = {}
        for u in chunk:
            if u.audio is None:
                continue
            try:
                waves[u.id] = load_audio(u.audio, audio_encoder.sample_rate)
            except AudioLoadError as err:
                skipped.append({"id": u.id, "audio": str(u.audio), "reason": str(err)})
        kept = [u for u in chunk if u.id in waves or (u.audio is None and u.text)]
        audio_feats = (
            dict(zip(waves, audio_encoder.encode(list(waves.values())), strict=True)) if waves else {}
        )
        with_text = [u for u in kept if u.text]
        text_feats = dict(
            zip([u.id for u in with_text], text_encoder.encode([u.text for u in with_text]), strict=True)
        )
        for u in kept:
            ids.append(u.id)
            audio.append(audio_feats.get(u.id))
            text.append(text_feats.get(u.id))
        bar.update(len(chunk))
    bar.close()
    return ids, audio, text, skipped


def _pack(blocks: list[torch.Tensor | None], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = [0 if b is None else len(b) for b in blocks]
    offsets = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int64)
    present = [b.to(torch.float16) for b in blocks if b is not None]
    data = torch.cat(present) if present else torch.zeros(0, dim, dtype=torch.float16)
    return data.contiguous(), offsets


def extract_features(
    splits: dict[str, list[Utterance]],
    audio_encoder: AudioEncoder,
    text_encoder: TextEncoder,
    root: Path,
    batch_size: int = 16,
    progress: bool = True,
) -> Path:
    """Encode every split once into `root/<key>/`; splits already cached under the same key are reused."""
    every = [u for name in sorted(splits) for u in splits[name]]
    key = cache_key(audio_encoder.spec(), text_encoder.spec(), every)
    folder = root / key
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "audio_encoder": audio_encoder.spec(),
        "text_encoder": text_encoder.spec(),
        "audio_dim": audio_encoder.dim,
        "text_dim": text_encoder.dim,
        "frame_rate": audio_encoder.frame_rate,
    }
    _atomic_write(folder / "spec.json", lambda p: p.write_text(json.dumps(spec, indent=2)))
    for name, utterances in splits.items():
        target = folder / f"{name}.safetensors"
        if target.exists() and (folder / f"{name}.json").exists():
            continue
        ids, audio, text, skipped = _encode_split(
            utterances, audio_encoder, text_encoder, batch_size, progress, f"features {name}"
        )
        audio_data, audio_offsets = _pack(audio, audio_encoder.dim)
        text_data, text_offsets = _pack(text, text_encoder.dim)
        tensors = {
            "audio": audio_data,
            "audio_offsets": audio_offsets,
            "text": text_data,
            "text_offsets": text_offsets,
        }
        _atomic_write(target, lambda p, t=tensors: save_file(t, str(p)))
        index = {"ids": ids, "skipped": skipped}
        _atomic_write(folder / f"{name}.json", lambda p, i=index: p.write_text(json.dumps(i, indent=1)))
        for item in skipped:
            log.warning("skipped %s (%s): %s", item["id"], item["audio"], item["reason"])
    return folder


def load_split(folder: Path, split: str) -> SplitFeatures:
    """Read one split of a feature cache folder written by `extract_features`."""
    path = folder / f"{split}.safetensors"
    if not path.exists():
        raise FileNotFoundError(
            f"no cached features for split {split!r} in {folder}; run feature extraction first"
        )
    tensors = load_file(str(path))
    index = json.loads((folder / f"{split}.json").read_text())
    return SplitFeatures(
        ids=index["ids"],
        audio=tensors["audio"],
        audio_offsets=tensors["audio_offsets"],
        text=tensors["text"],
        text_offsets=tensors["text_offsets"],
        skipped=index["skipped"],
    )


def load_spec(folder: Path) -> dict:
    return json.loads((folder / "spec.json").read_text())
