"""Feature cache: frozen-encoder features in content-addressed safetensors shards that every manifest shares.

Layout under `root`:
- `audio-<key>/` and `text-<key>/`: one store per encoder, `key` hashing CACHE_FORMAT and the encoder's spec
  (name, weights, layers, options), so features of different encoders or layers never mix. A store holds
  `spec.json` and shards `<hash>.safetensors`: `features` (sum of frames, D) float16 with `offsets` (n + 1)
  into it, and in the header's metadata the keys of its n items in row order, the items that failed
  (key -> reason) and the rank that wrote it. An item's key names its input: for audio the resolved path,
  size and mtime_ns (the make/rsync test: rewriting a file changes its key, and a cache hit only stats the
  files, where a content hash would read all the audio on every run), for text the text itself. So an item
  is encoded once per encoder, whatever manifest, speaker fold or split uses it.
- `<key>/`, the folder `extract_manifest` returns (`key` hashes both stores and the manifest's utterances,
  with their item keys and splits): `<split>.json` per split (ids; per modality the store, its shard files
  and each utterance's `[shard, row]`; the skipped utterances), `skipped.jsonl` (every skipped utterance and
  why) and `spec.json` (encoders, dims, frame rate), written last: it marks the folder complete.

Every file is written to a temporary name and renamed (`os.replace`), so a run killed at any moment (kill -9)
leaves whole shards only, and a rerun encodes just the items that no shard holds. Under torchrun each rank
encodes its share of the missing items into its own shards; after a barrier rank 0 writes the index.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from mamer.data.manifest import Utterance

log = logging.getLogger(__name__)

CACHE_FORMAT = 3  # bump when the layout changes: old caches then get new keys instead of being misread


def digest(value) -> str:
    """A short stable hash of a JSON-serialisable value."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def store_name(modality: str, spec: dict) -> str:
    """Folder name of the store of one encoder's features: `<modality>-<hash of format and spec>`."""
    return f"{modality}-{digest([CACHE_FORMAT, spec])}"


def audio_key(path: str | Path) -> str:
    """Key of an audio file: hash of its resolved path, size and mtime_ns (a missing file has its own)."""
    path = Path(path).resolve()
    try:
        stat = path.stat()
        identity = [str(path), stat.st_size, stat.st_mtime_ns]
    except OSError:
        identity = [str(path), None, None]
    return digest(identity)


def text_key(text: str) -> str:
    """Key of a text: hash of the text."""
    return digest(text)


@dataclass(frozen=True)
class Row:
    """One utterance of a manifest and the keys of its inputs (None where it has no audio or no text)."""

    utterance: Utterance
    audio: str | None
    text: str | None


def manifest_rows(split_utterances: dict[str, Sequence[Utterance]]) -> dict[str, list[Row]]:
    """Each split's utterances with their audio and text keys."""
    return {
        name: [
            Row(u, None if u.audio is None else audio_key(u.audio), text_key(u.text) if u.text else None)
            for u in utterances
        ]
        for name, utterances in split_utterances.items()
    }


def set_key(stores: dict[str, str], rows: dict[str, list[Row]]) -> str:
    """Hash of the two stores and every split's ids and item keys: names the folder of one manifest."""
    listing = {name: [[r.utterance.id, r.audio, r.text] for r in split] for name, split in rows.items()}
    return digest([CACHE_FORMAT, stores, listing])


# ---------------------------------------------------------------- reading


@dataclass
class Shard:
    """One shard's tensors: `features` `(sum T, D)` float16 and `offsets` `(n + 1,)` int64 into it."""

    features: torch.Tensor
    offsets: torch.Tensor

    def block(self, row: int) -> torch.Tensor | None:
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        return self.features[start:end] if end > start else None


@dataclass
class Column:
    """One modality of a split: `rows` `(n, 2)` int64 = (shard, row) per utterance, -1 where it has none."""

    shards: list[Shard]
    rows: np.ndarray
    dim: int

    def __getitem__(self, i: int) -> torch.Tensor | None:
        shard, row = self.rows[i]
        return None if shard < 0 else self.shards[shard].block(int(row))


@dataclass
class SplitFeatures:
    """One split's cached features: `audio_of(i)` `(Ta, Da)` / `text_of(i)` `(Tt, Dt)` float16, or None."""

    ids: list[str]
    audio: Column
    text: Column
    skipped: list[dict]

    def audio_of(self, i: int) -> torch.Tensor | None:
        return self.audio[self._check(i)]

    def text_of(self, i: int) -> torch.Tensor | None:
        return self.text[self._check(i)]

    def has_audio(self, i: int) -> bool:
        return self.audio_of(i) is not None

    def _check(self, i: int) -> int:
        if not 0 <= i < len(self.ids):
            raise IndexError(f"row {i} out of range for {len(self.ids)} utterances")
        return i

    @property
    def audio_dim(self) -> int:
        return self.audio.dim

    @property
    def text_dim(self) -> int:
        return self.text.dim


def _read_shard(path: Path) -> Shard:
    if not path.is_file():
        raise FileNotFoundError(f"feature shard {path} is listed in an index but missing; delete the folder")
    with safe_open(str(path), framework="pt") as f:  # memory-mapped: only what is read is paged in
        return Shard(f.get_tensor("features"), f.get_tensor("offsets"))


def _read_column(folder: Path, entry: dict, dim: int) -> Column:
    shards = [_read_shard(folder.parent / entry["store"] / file) for file in entry["files"]]
    rows = np.array([r if r is not None else [-1, -1] for r in entry["rows"]], dtype=np.int64).reshape(-1, 2)
    return Column(shards, rows, dim)


def load_split(folder: Path, split: str) -> SplitFeatures:
    """Read one split of the folder `extract_features` / `extract_manifest` returned."""
    folder = Path(folder)
    path = folder / f"{split}.json"
    if not (folder / "spec.json").is_file() or not path.is_file():
        state = "incomplete (extraction was interrupted)" if folder.is_dir() else "missing"
        raise FileNotFoundError(
            f"cached features for split {split!r} in {folder} are {state}; run feature extraction "
            "(mamer extract, or mamer train) to finish them"
        )
    index, spec = json.loads(path.read_text()), load_spec(folder)
    if spec.get("format") != CACHE_FORMAT:
        raise FileNotFoundError(
            f"{folder} holds features in an older cache format; extract them again (mamer extract, or mamer "
            "train), which writes a new folder"
        )
    audio = _read_column(folder, index["audio"], spec["audio_dim"])
    text = _read_column(folder, index["text"], spec["text_dim"])
    return SplitFeatures(index["ids"], audio, text, index["skipped"])


def load_spec(folder: Path) -> dict:
    """The cache folder's `spec.json`: audio_encoder, text_encoder, audio_dim, text_dim, frame_rate, stores."""
    return json.loads((Path(folder) / "spec.json").read_text())


def cache_summary(folder: Path) -> dict:
    """`{split: {"utterances": kept, "skipped": n}}` from the indices of a cache folder."""
    summary = {}
    for path in sorted(Path(folder).glob("*.json")):
        if path.name != "spec.json":
            index = json.loads(path.read_text())
            summary[path.stem] = {"utterances": len(index["ids"]), "skipped": len(index["skipped"])}
    return summary


@dataclass
class Catalog:
    """What a store holds: item key -> (shard file, row), and item key -> why it failed."""

    rows: dict[str, tuple[str, int]]
    failed: dict[str, str]


def read_catalog(store: Path) -> Catalog:
    """The items of every shard in `store`, from the shards' header metadata (no features are read)."""
    rows, failed = {}, {}
    for path in sorted(Path(store).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata()
        rows |= {key: (path.name, row) for row, key in enumerate(json.loads(metadata["keys"]))}
        failed |= json.loads(metadata["failed"])
    return Catalog(rows, failed)
