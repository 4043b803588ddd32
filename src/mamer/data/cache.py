"""Feature cache: frozen-encoder features in content-addressed safetensors shards that every manifest shares.

Layout under `root`:
- `audio-<key>/` and `text-<key>/`: one store per encoder, `key` hashing CACHE_FORMAT and the encoder's spec
  (name, weights, layers, options), so features of different encoders or layers never mix. A store holds
  `spec.json` and shards `<hash>.safetensors`: `features` (sum of frames, D) float16 with `offsets` (n + 1)
  into it, and in the header's metadata the keys of its n items in row order, the items that failed
  (key -> reason) and the rank that wrote it. An item's key names its input: for audio the hash of the file's
  bytes (a copy of the corpus elsewhere finds its features; `file-hashes.jsonl` remembers each file's hash by
  path, size and mtime_ns, so a file is read once and a later run only stats it: `mamer.data.file_hashes`),
  for text the text itself. So an item is encoded once per encoder, whatever manifest, speaker fold, split or
  copy of the corpus uses it.
- `<key>/`, the folder `extract_manifest` returns (`key` hashes both stores and the manifest's utterances,
  with their item keys and splits): `<split>.json` per split (ids; per modality the store, its shard files
  and each utterance's `[shard, row]`; the skipped utterances, and the partial ones: kept with one modality
  because the other failed), `skipped.jsonl` (every skipped or partial utterance and why; a partial one says
  what it `kept`) and `spec.json` (encoders, dims, frame rate), written last: it marks the folder complete.

A shard that cannot be read back (truncated, corrupt) is a `CacheError` naming it when features are loaded;
extraction leaves it out of its store (removing it) and encodes again what it held.

Every file is written to a temporary name and renamed (`os.replace`), so a run killed at any moment (kill -9)
leaves whole shards only, and a rerun encodes just the items that no shard holds. Under torchrun each rank
encodes its share of the missing items into its own shards; after a barrier rank 0 writes the index.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from mamer.atomic import BrokenFileError
from mamer.data.file_hashes import FileHashes
from mamer.data.manifest import Utterance

log = logging.getLogger(__name__)

CACHE_FORMAT = 3  # bump when the layout changes: old caches then get new keys instead of being misread
INDEX_FORMAT = 2  # bump when what a manifest's folder holds changes: it is re-indexed, nothing is re-encoded
REEXTRACT = "run `mamer extract` (or `mamer train`) again: it encodes again what the shard held"
REEXTRACT_DELETED = f"delete it, then {REEXTRACT}"  # damage that only reading the data shows


class CacheError(BrokenFileError):
    """A feature-cache file (a shard, an index) is truncated or corrupt; the message names it."""


def digest(value) -> str:
    """A short stable hash of a JSON-serialisable value."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def store_name(modality: str, spec: dict) -> str:
    """Folder name of the store of one encoder's features: `<modality>-<hash of format and spec>`."""
    return f"{modality}-{digest([CACHE_FORMAT, spec])}"


def audio_key(path: str | Path, hashes: FileHashes | None = None) -> str:
    """Key of an audio file: hash of its bytes (looked up in `hashes`), or, where it cannot be read, of its path."""
    content = (FileHashes() if hashes is None else hashes).sha256(path)
    return digest(["unreadable", str(Path(path).resolve())] if content is None else ["sha256", content])


def text_key(text: str) -> str:
    """Key of a text: hash of the text."""
    return digest(text)


@dataclass(frozen=True)
class Row:
    """One utterance of a manifest and the keys of its inputs (None where it has no audio or no text)."""

    utterance: Utterance
    audio: str | None
    text: str | None


def manifest_rows(
    split_utterances: dict[str, Sequence[Utterance]], hashes: FileHashes | None = None
) -> dict[str, list[Row]]:
    """Each split's utterances with their audio and text keys (new file hashes are saved in `hashes`)."""
    hashes = FileHashes() if hashes is None else hashes

    def row(u: Utterance) -> Row:
        audio = None if u.audio is None else audio_key(u.audio, hashes)
        return Row(u, audio, text_key(u.text) if u.text else None)

    rows = {name: [row(u) for u in utterances] for name, utterances in split_utterances.items()}
    hashes.save()
    return rows


def set_key(stores: dict[str, str], rows: dict[str, list[Row]]) -> str:
    """Hash of the two stores and every split's ids and item keys: names the folder of one manifest."""
    listing = {name: [[r.utterance.id, r.audio, r.text] for r in split] for name, split in rows.items()}
    return digest([CACHE_FORMAT, INDEX_FORMAT, stores, listing])


# ---------------------------------------------------------------- reading


@dataclass
class Shard:
    """One shard's tensors: `features` `(sum T, D)` float16 and `offsets` `(n + 1,)` int64 into it.

    Extraction stores only finite features, so a block with NaN or infinity was damaged on disk after its
    header was written (the header and offsets are checked when the shard is opened): a `CacheError` names it."""

    path: Path
    features: torch.Tensor
    offsets: torch.Tensor

    def block(self, row: int) -> torch.Tensor | None:
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        if end <= start:
            return None
        block = self.features[start:end]
        if not torch.isfinite(block).all():
            damage = ValueError(f"row {row} holds NaN or infinite features, which extraction never stores")
            raise CacheError(self.path, "the feature shard", REEXTRACT_DELETED, damage)
        return block


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
    partial: list[dict] = field(default_factory=list)  # kept with one modality: id, audio, reason, kept

    def audio_of(self, i: int) -> torch.Tensor | None:
        return self.audio[self._check(i)]

    def text_of(self, i: int) -> torch.Tensor | None:
        return self.text[self._check(i)]

    def has_audio(self, i: int) -> bool:
        """Whether row `i` has audio, from the index alone (its features are not read)."""
        return bool(self.audio.rows[self._check(i)][0] >= 0)

    def has_text(self, i: int) -> bool:
        """Whether row `i` has text, from the index alone."""
        return bool(self.text.rows[self._check(i)][0] >= 0)

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
        raise FileNotFoundError(f"feature shard {path} is listed in an index but missing; {REEXTRACT}")
    try:
        with safe_open(str(path), framework="pt") as f:  # memory-mapped: only what is read is paged in
            shard = Shard(path, f.get_tensor("features"), f.get_tensor("offsets"))
    except Exception as err:  # SafetensorError (a bare Exception subclass), OSError
        raise CacheError(path, "the feature shard", REEXTRACT, err) from err
    offsets = shard.offsets
    if (
        len(offsets) == 0
        or offsets[0] != 0
        or offsets[-1] != len(shard.features)
        or (offsets.diff() < 0).any()
    ):
        damage = ValueError(
            f"its offsets do not run from 0 to its {len(shard.features)} feature rows in order"
        )
        raise CacheError(path, "the feature shard", REEXTRACT, damage)
    return shard


def _shard_items(path: Path) -> tuple[list[str], dict[str, str]]:
    """A shard's item keys in row order and its failed items (key -> reason), from its header alone."""
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    return json.loads(metadata["keys"]), json.loads(metadata["failed"])


def shard_problem(path: Path) -> str | None:
    """Why a shard cannot be read back (missing, truncated, corrupt: its header tells), or None if it can."""
    try:
        _shard_items(path)
    except Exception as err:  # SafetensorError, OSError, JSON or key errors in the metadata
        return _broken(err)
    return None


def _broken(err: Exception) -> str:
    if isinstance(err, FileNotFoundError):
        return "missing"
    return f"truncated or corrupt ({type(err).__name__}: {str(err).strip()[:120]})"


def damaged_shards(folder: Path) -> dict[Path, str]:
    """The shards that a manifest's folder indexes but that cannot be read back -> why."""
    shards = set()
    for path in Path(folder).glob("*.json"):
        if path.name != "spec.json":
            index = _read_json(path)
            for modality in ("audio", "text"):
                store = Path(folder).parent / index[modality]["store"]
                shards.update(store / file for file in index[modality]["files"])
    return {path: problem for path in sorted(shards) if (problem := shard_problem(path))}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise CacheError(
            path, "the cache index", "run `mamer extract` (or `mamer train`) again: it rebuilds it", err
        ) from err


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
    index, spec = _read_json(path), load_spec(folder)
    if spec.get("format") != CACHE_FORMAT:
        raise FileNotFoundError(
            f"{folder} holds features in an older cache format; extract them again (mamer extract, or mamer "
            "train), which writes a new folder"
        )
    audio = _read_column(folder, index["audio"], spec["audio_dim"])
    text = _read_column(folder, index["text"], spec["text_dim"])
    return SplitFeatures(index["ids"], audio, text, index["skipped"], index.get("partial", []))


def load_spec(folder: Path) -> dict:
    """The cache folder's `spec.json`: audio_encoder, text_encoder, audio_dim, text_dim, frame_rate, stores."""
    return _read_json(Path(folder) / "spec.json")


def cache_summary(folder: Path) -> dict:
    """`{split: {"utterances": kept, "skipped": n, "partial": kept with one modality}}` from a folder's indices."""
    summary = {}
    for path in sorted(Path(folder).glob("*.json")):
        if path.name != "spec.json":
            index = _read_json(path)
            summary[path.stem] = {
                "utterances": len(index["ids"]),
                "skipped": len(index["skipped"]),
                "partial": len(index.get("partial", [])),
            }
    return summary


@dataclass
class Catalog:
    """What a store holds: item key -> (shard file, row), item key -> why it failed, and the shards that
    cannot be read back (their items count as missing) -> why."""

    rows: dict[str, tuple[str, int]]
    failed: dict[str, str]
    broken: dict[Path, str] = field(default_factory=dict)


def read_catalog(store: Path) -> Catalog:
    """The items of every shard in `store`, from the shards' header metadata (no features are read)."""
    rows, failed, broken = {}, {}, {}
    for path in sorted(Path(store).glob("*.safetensors")):
        try:
            keys, failures = _shard_items(path)
        except Exception as err:  # its items count as missing: extraction encodes them again
            broken[path] = _broken(err)
            continue
        rows |= {key: (path.name, row) for row, key in enumerate(keys)}
        failed |= failures
    return Catalog(rows, failed, broken)
