"""How many items feature extraction hands an encoder at once: a fixed number, or "auto", chosen per device.

On a GPU a batch runs in parallel, so "auto" batches (`GPU_BATCH`). On a CPU a batch only saves per-call
overhead while it pads and grows the working set, and which wins depends on the machine and its load: on 2
shared cores a batch of 16 WavLM-base clips ran at 0.8x (lightly loaded) to 2.5x (overloaded) the rate of one
clip at a time, Whisper's at 0.8x to 1.8x (docs/performance.md, "Extraction batching"). So
"auto" measures it on the items being encoded: a group of `CPU_BATCH` length-sorted items is encoded one at a
time, the next as one batch, and the way with the lower time per unit of input (audio samples, characters) is
used from then on; the other is timed again now and then (`MeasuredPlan`) so that a change in load can switch
it. Nothing is encoded twice: every timed item is kept. Features match either way within float
tolerance (an encoder gives a clip its unbatched features whatever it is batched with).
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque

import torch

log = logging.getLogger(__name__)

AUTO = "auto"
GPU_BATCH = 16  # "auto" on CUDA: 2-4x the one-at-a-time rate of WavLM-base on an H200 (docs/encoders.md)
CPU_BATCH = 8  # the batch "auto" tries on a CPU against one item at a time
RECHECK = 8  # groups run the chosen way before the other is timed again (doubling while it stays dearer)
MAX_RECHECK = 64  # the longest wait between rechecks, in groups
WINDOW = 2  # the most recent timed groups per way that the choice compares


def parse_batch_size(value: int | str) -> int | str:
    """`"auto"` or an integer >= 1 (a numeric string from the command line counts); ValueError otherwise."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number < 1 or (isinstance(value, float) and value != number):
        raise ValueError(f"the extraction batch size must be 'auto' or an integer >= 1, got {value!r}")
    return number


class BatchPlan:
    """The sizes of successive `encode` calls: `next_size()` before each, `record(...)` after it."""

    def __init__(self, batch_size: int | str, device: str | torch.device = "cpu"):
        size = parse_batch_size(batch_size)
        self.device = torch.device(device)
        self.fixed: int | None = size if size != AUTO else (GPU_BATCH if self.device.type == "cuda" else None)

    def next_size(self) -> int:
        return self.fixed if self.fixed is not None else 1

    def record(self, size: int, seconds: float, units: int) -> None:
        """`size` items (`units` of input in all: samples, characters) took `seconds` to encode."""

    @property
    def chosen(self) -> int | None:
        """The batch size in use: the fixed one, or what measurement picked (None: not yet measured)."""
        return self.fixed


class MeasuredPlan(BatchPlan):
    """The plan for "auto" on a CPU: a batch of `batch` items or `batch` items one at a time, by measurement.

    The first call (one item) is not timed: it loads the model. Then each group of `batch` items runs one way
    as a whole; a way's cost is its time per unit of input, the mean over its last `WINDOW` timed groups. After
    both ways are timed the cheaper runs, and the other is timed again after `RECHECK` groups, then after twice
    as many each time it stays the dearer (back to `RECHECK` when it wins): rechecks cost little when one way
    is much slower, and a change in load still switches the choice."""

    def __init__(self, batch: int = CPU_BATCH):
        if batch < 2:
            raise ValueError(
                f"a measured plan weighs a batch of at least 2 against one at a time, got {batch}"
            )
        super().__init__(batch)
        self.fixed, self.batch = None, batch
        self.costs: dict[int, deque[float]] = {1: deque(maxlen=WINDOW), batch: deque(maxlen=WINDOW)}
        self.warm, self.best, self.wait = False, None, RECHECK
        self.since = 0  # groups run the best way since the other was last timed
        self._way, self._calls_left, self._seconds, self._units = 1, 0, 0.0, 0

    def next_size(self) -> int:
        if not self.warm:
            return 1
        if self._calls_left == 0:
            self._way = self._pick()
            self._calls_left = self.batch if self._way == 1 else 1
        return self._way

    def record(self, size: int, seconds: float, units: int) -> None:
        if not self.warm:
            self.warm = True
            return
        self._seconds, self._units = self._seconds + seconds, self._units + units
        self._calls_left -= 1
        if self._calls_left == 0:
            self.costs[self._way].append(self._seconds / max(self._units, 1))
            self._seconds, self._units = 0.0, 0
            self._choose()

    def _pick(self) -> int:
        """The way the next group runs: each once, then the cheaper, and the other when a recheck is due."""
        untimed = [way for way, cost in self.costs.items() if not cost]
        if untimed:
            return untimed[0]
        if self.since >= self.wait:
            return self.batch if self.best == 1 else 1
        return self.best

    def _choose(self) -> None:
        if not all(self.costs.values()):
            return
        cost = {way: sum(c) / len(c) for way, c in self.costs.items()}
        best = min(cost, key=cost.__getitem__)
        if self.best is None:  # both ways have just been timed once
            pass
        elif best != self.best:  # switched: on a recheck, or as the chosen way got dearer
            self.since, self.wait = 0, RECHECK
        elif self._way != self.best:  # a recheck that kept the choice
            self.since, self.wait = 0, min(2 * self.wait, MAX_RECHECK)
        else:
            self.since += 1
        # the first choice is news; later switches are noise (cache hits cost microseconds and flip it often)
        if best != self.best:
            log.log(
                logging.INFO if self.best is None else logging.DEBUG,
                "extraction batch %d: %.3g s per unit one at a time, %.3g s batched by %d",
                best, cost[1], cost[self.batch], self.batch,
            )  # fmt: skip
        self.best = best

    @property
    def chosen(self) -> int | None:
        return self.best


def batch_plan(batch_size: int | str, device: str | torch.device = "cpu") -> BatchPlan:
    """The plan for `batch_size` ("auto" or N) on `device`: N; on CUDA `GPU_BATCH`; on a CPU by measurement."""
    plan = BatchPlan(batch_size, device)
    return MeasuredPlan(CPU_BATCH) if plan.fixed is None else plan


@contextlib.contextmanager
def forward_batch(encoder, size: int):
    """Let an encoder with a `batch_size` (its most clips or windows per forward pass) run `size` at once, so
    that a batch of `size` items is one forward pass and one item at a time is one window at a time."""
    cap = getattr(encoder, "batch_size", None)
    if cap is None:
        yield
        return
    encoder.batch_size = size
    try:
        yield
    finally:
        encoder.batch_size = cap
