"""Training batches that hold one modality set each (`train.batching: by_modality`).

In a batch of partially paired data that mixes rows, one audio row pads every row's audio and the audio views
run over the whole batch; with a fifth of the rows audio, nearly every batch pays that. Batched apart, the
text-only rows run the text passes alone: the same rows an epoch, each drawn as often, in fewer costly batches.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterator, Mapping, Sequence

import torch
from torch.utils.data import Sampler


class ModalityBatches(Sampler[list[int]]):
    """Each epoch the rows are shuffled, grouped by `kinds` (e.g. which modalities a row has), cut into batches of
    `batch_size` (or the kind's own size) within each group (the last of a group may be shorter), and the batches
    shuffled together.

    The order is a function of (seed, epoch) alone, set by `set_epoch` as with DistributedSampler, so a resumed
    epoch draws the same batches. Under torchrun rank r takes batches r, r + W, ...; the list is first padded
    from its start to a multiple of the W ranks, so every rank steps as often.
    """

    def __init__(
        self,
        kinds: Sequence[Hashable],
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        sizes: Mapping[Hashable, int] | None = None,
    ):
        """`sizes`: a batch size of its own for some kinds (e.g. smaller batches of audio rows, so that they get
        as many optimizer steps as in mixed batches); the others take `batch_size`."""
        self.sizes = {kind: (sizes or {}).get(kind, batch_size) for kind in set(kinds)}
        if min(self.sizes.values(), default=batch_size) < 1 or batch_size < 1:
            raise ValueError(f"batch sizes must be >= 1, got {batch_size} and {dict(sizes or {})}")
        self.kinds, self.seed = list(kinds), seed
        self.rank, self.world_size, self.epoch = rank, world_size, 0
        rows = Counter(self.kinds)
        self.total_batches = sum(math.ceil(n / self.sizes[kind]) for kind, n in rows.items())

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def all_batches(self) -> list[list[int]]:
        """Every rank's batches of this epoch, in order."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        groups: dict[Hashable, list[int]] = defaultdict(list)
        for i in torch.randperm(len(self.kinds), generator=generator).tolist():
            groups[self.kinds[i]].append(i)
        batches = [
            rows[start : start + self.sizes[kind]]
            for kind, rows in groups.items()
            for start in range(0, len(rows), self.sizes[kind])
        ]
        order = torch.randperm(len(batches), generator=generator).tolist()
        batches = [batches[i] for i in order]
        padding = -len(batches) % self.world_size
        return batches + (batches * math.ceil(padding / max(1, len(batches))))[:padding]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.all_batches()[self.rank :: self.world_size]

    def __len__(self) -> int:
        return math.ceil(self.total_batches / self.world_size)
