"""The uploads' worker threads (`mamer serve --workers`), handed out shortest job first, within a bound.

At most `workers` uploads are decoded, transcribed or read as a timeline at once. The next free worker does not go
to the job that came first: jobs wait in order of their arrival time plus `PATIENCE` seconds per second of audio
they hold (before decoding, estimated from the upload's bytes), so a 4 s clip that arrives behind a queue of
two-minute uploads goes first, while a long upload is passed only by jobs arriving at most `PATIENCE` times its
length after it, never for ever. Timelines (audio beyond the model's window: seconds to minutes each) hold at most
all workers but one (`timelines`), so a clip never waits for a timeline to finish. Hostile clients that upload long
audio over and over (and hang up) made a normal 4 s upload wait 0.6 s at the median when workers went first come,
first served (docs/service.md).
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from typing import TypeVar

import anyio

T = TypeVar("T")

PATIENCE = 0.05  # seconds a waiting job may be passed by later, shorter ones, per second of its audio
PCM_BYTES_PER_SECOND = 32000  # 16 kHz 16-bit mono: an upload's seconds before decoding (compressed: more)


class UploadWorkers:
    """`workers` threads for the uploads' heavy steps; `await run(work, seconds)` on the event loop."""

    def __init__(self, workers: int) -> None:
        self._free = workers
        # a heap of (turn key, arrival order, wake-up); the key: arrival time + PATIENCE x seconds of audio
        self._waiting: list[tuple[float, int, anyio.Event]] = []
        self._order = itertools.count()
        self._threads = anyio.CapacityLimiter(workers)  # never waited on: `run` admits at most `workers`
        self.timelines = anyio.CapacityLimiter(max(1, workers - 1))  # held around a timeline's `run`

    async def run(self, work: Callable[[], T], seconds: float) -> T:
        """`work()` in a worker thread once a worker is free for it; `seconds`: the audio it handles (its cost).
        Cancelled while waiting (the client left), it gives up its turn; a worker it was just handed goes on."""
        await self._acquire(time.monotonic() + PATIENCE * max(0.0, seconds))
        try:
            return await anyio.to_thread.run_sync(work, limiter=self._threads)
        finally:
            self._release()

    @property
    def waiting(self) -> int:
        """Jobs waiting for a worker now."""
        return len(self._waiting)

    async def _acquire(self, key: float) -> None:
        if self._free and not self._waiting:
            self._free -= 1
            return
        turn = anyio.Event()
        entry = (key, next(self._order), turn)
        heapq.heappush(self._waiting, entry)
        try:
            await turn.wait()
        except BaseException:  # cancelled: the client left while its job waited
            if turn.is_set():  # the worker was handed over just as it was cancelled: pass it on
                self._release()
            else:
                self._waiting.remove(entry)
                heapq.heapify(self._waiting)
            raise

    def _release(self) -> None:
        if self._waiting:
            heapq.heappop(self._waiting)[2].set()  # the worker passes straight to the first job in turn
        else:
            self._free += 1
