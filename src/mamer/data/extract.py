"""Feature extraction: encode what the cache lacks, in shards written atomically, and index a manifest's splits.

The layout is described in `mamer.data.cache`. Every file is written to a temporary name and renamed, so a run
killed at any moment leaves whole shards only, and a rerun encodes just the items no shard holds. Under torchrun
each rank encodes its share of the missing items into its own shards; after a barrier rank 0 writes the index.
A shard that cannot be read back (truncated, corrupt, gone) is removed and what it held is encoded again, even
for a folder already complete. An utterance whose audio cannot be read keeps its text (and the reverse).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm import tqdm

from mamer.atomic import atomic_write, write_json
from mamer.config import RunConfig
from mamer.data.audio import AudioLoadError, audio_duration, load_audio
from mamer.data.batching import BatchPlan, batch_plan, forward_batch, parse_batch_size
from mamer.data.cache import (
    CACHE_FORMAT,
    REEXTRACT,
    CacheError,
    Catalog,
    Row,
    damaged_shards,
    digest,
    manifest_rows,
    read_catalog,
    set_key,
    store_name,
)
from mamer.data.file_hashes import FileHashes
from mamer.data.manifest import Utterance, read_manifest, splits
from mamer.device import resolve_device
from mamer.distributed import barrier, rank_device, rank_world
from mamer.encoders.base import AudioEncoder, TextEncoder
from mamer.encoders.choice import EncoderChoice
from mamer.modality import MODALITIES

log = logging.getLogger(__name__)

SHARD_SIZE = 128  # items per shard


FLOAT16_MAX = float(torch.finfo(torch.float16).max)


def _pack(blocks: list[torch.Tensor], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = [len(b) for b in blocks]
    offsets = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int64)
    present = [b.to(torch.float16) for b in blocks if len(b)]
    data = torch.cat(present) if present else torch.zeros(0, dim, dtype=torch.float16)
    return data.contiguous(), offsets


def _write_shard(store: Path, encoded: dict[str, torch.Tensor], failed: dict[str, str], dim: int) -> None:
    """One shard of `encoded` items (key -> `(T, dim)`) and failed ones (key -> reason), written atomically."""
    keys = list(encoded)
    data, offsets = _pack([encoded[k] for k in keys], dim)
    metadata = {"keys": json.dumps(keys), "failed": json.dumps(failed), "rank": str(rank_world()[0])}
    path = store / f"{digest([keys, sorted(failed)])}.safetensors"
    atomic_write(path, lambda p: save_file({"features": data, "offsets": offsets}, str(p), metadata=metadata))


def _precision(encoder) -> contextlib.AbstractContextManager:
    """bf16 (or fp16) autocast when the encoder runs on CUDA; nothing on CPU, where it would be slower."""
    device = torch.device(getattr(encoder, "device", "cpu"))
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


@dataclass
class ItemSource:
    """How one modality's items are read and encoded: `load(source)` may raise AudioLoadError."""

    name: str
    encoder: AudioEncoder | TextEncoder
    load: Callable
    size: Callable  # source -> a length to sort by (seconds, characters)


def _audio_seconds(path: Path) -> float:
    try:
        return audio_duration(path) or 0.0
    except AudioLoadError:  # unreadable: it fails, and is reported, when loaded
        return 0.0


def _modalities(audio_encoder: AudioEncoder, text_encoder: TextEncoder) -> list[ItemSource]:
    return [
        ItemSource(
            "audio", audio_encoder, lambda p: load_audio(p, audio_encoder.sample_rate), _audio_seconds
        ),
        ItemSource("text", text_encoder, str, len),
    ]


def _encode_chunk(keys: list[str], sources: dict, modality: ItemSource, plan: BatchPlan) -> tuple[dict, dict]:
    """Load and encode `keys` (sorted by length, so batches pad little) in the batches `plan` sizes (and times)
    -> (key -> features, key -> reason)."""
    inputs, failed = {}, {}
    for key in keys:
        try:
            inputs[key] = modality.load(sources[key])
        except AudioLoadError as err:
            failed[key] = str(err)
            log.warning("skipped: %s", err)
    order, encoded, begin = list(inputs), {}, 0
    while begin < len(order):
        size = plan.next_size()
        batch, begin = order[begin : begin + size], begin + size
        start = time.perf_counter()
        with (
            torch.inference_mode(),
            _precision(modality.encoder),
            forward_batch(modality.encoder, size),
        ):
            encoded |= dict(zip(batch, modality.encoder.encode([inputs[k] for k in batch]), strict=True))
        plan.record(len(batch), time.perf_counter() - start, sum(len(inputs[k]) for k in batch))
    for key in list(encoded):
        problem = _unstorable(encoded[key])
        if problem:
            del encoded[key]
            failed[key] = f"{sources[key]}: {problem}"
            log.warning("skipped: %s", failed[key])
    return encoded, failed


def _unstorable(block: torch.Tensor) -> str | None:
    """Why features cannot go into the float16 cache (NaN/inf, or values beyond float16's range), or None."""
    if not torch.isfinite(block).all():
        return "the encoder's features hold NaN or inf values"
    peak = float(block.abs().max()) if block.numel() else 0.0
    if peak > FLOAT16_MAX:
        return (
            f"the encoder's features reach {peak:.3g}, beyond the float16 cache's range ({FLOAT16_MAX:.0f}): "
            "normalise the encoder's output"
        )
    return None


def _my_share(sources: dict, catalog: Catalog, modality: ItemSource) -> list[str]:
    """This rank's part of the items no shard holds: sorted by length and dealt round-robin over the ranks,
    so every rank gets a similar amount of audio and its shards hold clips of similar lengths."""
    missing = [k for k in sources if k not in catalog.rows and k not in catalog.failed]
    sizes = {k: modality.size(sources[k]) for k in missing}
    rank, world = rank_world()
    return sorted(missing, key=lambda k: (sizes[k], k))[rank::world]


def _fill_store(
    store: Path,
    keys: list[str],
    sources: dict,
    modality: ItemSource,
    plan: BatchPlan,
    shard_size: int,
    bar: tqdm,
) -> None:
    """Encode `keys` into shards of `shard_size` items, each written as soon as it is done."""
    for begin in range(0, len(keys), shard_size):
        chunk = keys[begin : begin + shard_size]
        encoded, failed = _encode_chunk(chunk, sources, modality, plan)
        _write_shard(store, encoded, failed, modality.encoder.dim)
        bar.update(len(chunk))


def _column_entry(store: Path, keys: list[str | None], catalog: Catalog) -> dict:
    """Index entry of one modality: the store, its shard files in use, and `[shard, row]` (or None) per row."""
    files = sorted({catalog.rows[k][0] for k in keys if k is not None})
    number = {file: i for i, file in enumerate(files)}
    rows = [None if k is None else [number[catalog.rows[k][0]], catalog.rows[k][1]] for k in keys]
    return {"store": store.name, "files": files, "rows": rows}


def _split_index(rows: list[Row], stores: dict[str, Path], catalogs: dict[str, Catalog]) -> dict:
    """One split's index: an utterance whose every input failed is skipped; one whose audio (or text) failed
    but not the other keeps the other and is listed as partial; the others are kept whole."""
    kept, skipped, partial = [], [], []
    for r in rows:
        reasons = {}
        for modality in MODALITIES:
            key, catalog = getattr(r, modality), catalogs[modality]
            if key is not None and key not in catalog.rows and key not in catalog.failed:
                raise CacheError(
                    stores[modality],
                    f"the {modality} store (it lacks {r.utterance.id}'s features)",
                    REEXTRACT,
                )
            if key is not None and key in catalog.failed:
                reasons[modality] = (
                    catalog.failed[key] if modality == "audio" else f"text {catalog.failed[key]}"
                )
        audio = None if r.utterance.audio is None else str(r.utterance.audio)
        item = {"id": r.utterance.id, "audio": audio, "reason": "; ".join(reasons.values())}
        left = [m for m in MODALITIES if getattr(r, m) is not None and m not in reasons]
        if reasons and not left:
            skipped.append(item)
            continue
        if reasons:
            partial.append(item | {"kept": left[0]})
            r = dataclasses.replace(r, **{m: None for m in reasons})
        kept.append(r)
    index = {"ids": [r.utterance.id for r in kept], "skipped": skipped, "partial": partial}
    for modality in MODALITIES:
        keys = [getattr(r, modality) for r in kept]
        index[modality] = _column_entry(stores[modality], keys, catalogs[modality])
    return index


def _write_index(folder: Path, rows: dict[str, list[Row]], stores: dict[str, Path], spec: dict) -> None:
    """The split indices, `skipped.jsonl`, and `spec.json` last (it marks the folder complete)."""
    folder.mkdir(parents=True, exist_ok=True)
    catalogs = {m: read_catalog(stores[m]) for m in MODALITIES}
    report = []
    for name, split in rows.items():
        index = _split_index(split, stores, catalogs)
        write_json(folder / f"{name}.json", index)
        report += [json.dumps({"split": name, **item}) for item in index["skipped"] + index["partial"]]
    atomic_write(folder / "skipped.jsonl", lambda p: p.write_text("".join(line + "\n" for line in report)))
    write_json(folder / "spec.json", spec)


def extract_features(
    splits: dict[str, list[Utterance]],
    audio_encoder: AudioEncoder,
    text_encoder: TextEncoder,
    root: Path,
    batch_size: int | str = "auto",
    progress: bool = True,
    shard_size: int = SHARD_SIZE,
) -> Path:
    """Encode what the stores under `root` lack and index every split; returns the manifest's folder.

    `batch_size`: items per `encode` call, or "auto": batched on CUDA, and on a CPU batched or one at a time,
    whichever measures faster (`mamer.data.batching`).

    Under torchrun every rank calls this: each encodes its share, and all return once rank 0 has written
    the index. A folder that is already complete is returned at once, without encoding anything, once the
    headers of its shards read; a damaged shard is removed and what it held encoded again.
    """
    batch_size = parse_batch_size(batch_size)
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    modalities = _modalities(audio_encoder, text_encoder)
    stores = {m.name: Path(root) / store_name(m.name, m.encoder.spec()) for m in modalities}
    rows = _keyed_rows(splits, Path(root))
    folder = Path(root) / set_key({m: s.name for m, s in stores.items()}, rows)
    complete = (folder / "spec.json").is_file()
    damaged = _damaged(folder) if complete else {}
    barrier()  # every rank has looked at the folder before rank 0 repairs it
    if not complete or damaged:
        if damaged and rank_world()[0] == 0:
            _discard(damaged, folder)
        barrier()
        _encode_missing(modalities, stores, rows, batch_size, shard_size, progress)
        barrier()
        if rank_world()[0] == 0:
            _write_index(folder, rows, stores, _spec(audio_encoder, text_encoder, stores))
        barrier()
    return folder


def _keyed_rows(splits: dict[str, list[Utterance]], root: Path) -> dict[str, list[Row]]:
    """The rows with their item keys; rank 0 hashes the new audio files first, the other ranks read its hashes."""
    first = rank_world()[0] == 0
    rows = manifest_rows(splits, FileHashes(root)) if first else None
    barrier()
    return rows if first else manifest_rows(splits, FileHashes(root))


def _damaged(folder: Path) -> dict[Path, str]:
    """The files of a complete folder that cannot be read back -> why: shards, or an index itself."""
    try:
        return damaged_shards(folder)
    except CacheError as err:
        return {err.path: "truncated or corrupt"}


def _discard(damaged: dict[Path, str], folder: Path) -> None:
    """Remove unreadable shards (their items are then encoded again) and mark `folder` incomplete."""
    for path, problem in damaged.items():
        log.warning("%s: %s; what it held is encoded again", path, problem)
        if path.parent != folder:  # a shard; an unreadable index is simply written again
            path.unlink(missing_ok=True)
    (folder / "spec.json").unlink(missing_ok=True)


def _encode_missing(
    modalities: list[ItemSource],
    stores: dict[str, Path],
    rows: dict[str, list[Row]],
    batch_size: int | str,
    shard_size: int,
    progress: bool,
) -> None:
    """Encode this rank's share of the items that no shard of the stores holds."""
    for m in modalities:
        stores[m.name].mkdir(parents=True, exist_ok=True)
        write_json(stores[m.name] / "spec.json", m.encoder.spec())
    catalogs = {m: read_catalog(stores[m]) for m in MODALITIES}
    barrier()  # every rank has listed the stores before any rank writes to them
    if rank_world()[0] == 0:
        for path, problem in [item for c in catalogs.values() for item in c.broken.items()]:
            log.warning("%s: %s; what it held is encoded again", path, problem)
            path.unlink(missing_ok=True)
    for m in modalities:
        sources = {getattr(r, m.name): getattr(r.utterance, m.name) for s in rows.values() for r in s}
        sources.pop(None, None)
        keys = _my_share(sources, catalogs[m.name], m)
        with tqdm(total=len(keys), desc=f"{m.name} features", unit="item",
                  disable=not progress or rank_world()[0] != 0) as bar:  # fmt: skip
            plan = batch_plan(batch_size, getattr(m.encoder, "device", "cpu"))
            _fill_store(stores[m.name], keys, sources, m, plan, shard_size, bar)


def _spec(audio_encoder: AudioEncoder, text_encoder: TextEncoder, stores: dict[str, Path]) -> dict:
    return {
        "format": CACHE_FORMAT,
        "audio_encoder": audio_encoder.spec(),
        "text_encoder": text_encoder.spec(),
        "audio_dim": audio_encoder.dim,
        "text_dim": text_encoder.dim,
        "frame_rate": audio_encoder.frame_rate,
        "stores": {m: s.name for m, s in stores.items()},
    }


def extract_manifest(
    manifest: Path,
    root: Path,
    audio: EncoderChoice,
    text: EncoderChoice,
    batch_size: int | str = "auto",
    device: str = "cpu",
    progress: bool = True,
    shard_size: int = SHARD_SIZE,
    labels: Sequence[str] = (),
    train_split: str = "train",
) -> Path:
    """Read a manifest (bad rows skipped with a warning; `labels` and `train_split` as `read_manifest` takes
    them) and extract or resume its feature cache under `root` with the `audio` and `text` encoders chosen."""
    utterances, problems = read_manifest(manifest, labels=labels, train_split=train_split)
    for problem in problems:
        log.warning(problem)
    device = str(rank_device(device))
    encoders = audio.build(device), text.build(device)
    return extract_features(splits(utterances), *encoders, root, batch_size, progress, shard_size)


def prepare_features(config: RunConfig, progress: bool = True) -> Path:
    """Extract (or reuse) the cached features of every split in the manifest; returns the cache folder."""
    root = Path(config.data.features or Path(config.data.manifest).parent / "features")
    return extract_manifest(
        Path(config.data.manifest),
        root,
        EncoderChoice.from_config(config.data, "audio"),
        EncoderChoice.from_config(config.data, "text"),
        config.data.extract_batch_size,
        device=str(resolve_device(config.train.device)),
        progress=progress,
        labels=config.data.labels,
        train_split=config.data.train_split,
    )
