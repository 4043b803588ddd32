"""One live stream's audio: the ring buffer of its last window, the window waiting to be answered, and the
rate at which its audio may arrive.

`Stream.push` writes a frame into a ring buffer of the last `window` seconds, so a frame costs time in
proportion to its own length, never the window's (a 30 s window used to be copied for every frame: a client
sending 4-byte frames in a loop froze the server); the window is copied out once per hop, when it is due.
`RateCap` says how long to wait before reading the next frame so that audio arrives at most `MAX_RATE` times
real time after a start of `BURST_SECONDS`, each frame counting as at least `MIN_FRAME_SECONDS`, and counts the
frames shorter than that: the WebSocket layer parses every frame a read brings before live mode sees the first
(a 256 KB read of 4-byte frames is 26,000 of them, about 0.2 s of a core), so a stream that keeps sending tiny
frames is closed after `SHORT_FRAMES` of them rather than slowed down while its backlog piles up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import numpy as np

SAMPLE_RATE = 16000  # live frames are 16 kHz mono float32
MAX_RATE = 2.0  # audio arrives at most this many times real time (once the burst is spent) ...
BURST_SECONDS = 10.0  # ... after this much audio at any speed (a client catching up after a network stall)
MIN_FRAME_SECONDS = 0.01  # a frame counts as at least this much audio against the rate ...
SHORT_FRAMES = 20  # ... and a stream may send this many shorter ones (a recording's last few), no more
MIN_LAST_SECONDS = 0.1  # a last window on less new audio than this is not worth an answer


@dataclass
class Window:
    audio: np.ndarray
    end: int  # stream position (samples) just after its last sample
    arrived: float  # time.perf_counter() when its last sample arrived


class Stream:
    """One connection's last `window` seconds (a ring buffer) and the window waiting to be answered; a window
    is due every `hop` seconds of audio."""

    def __init__(self, window: float, hop: float):
        self.size = round(window * SAMPLE_RATE)
        self.hop = round(hop * SAMPLE_RATE)
        self.ring = np.zeros(self.size, dtype=np.float32)  # sample i of the stream sits at i % size
        self.received = 0  # samples since the start
        self.next_due = self.hop  # stream position at which the next window is due
        self.answered_to = 0  # end of the last window handed out
        self.pending: Window | None = None
        self.windows = self.dropped = 0
        self.closed = False
        self._ready = anyio.Event()

    def push(self, samples: np.ndarray) -> None:
        """Append a frame (a cost in proportion to the frame, not the window); offer a window when it crosses
        the next hop boundary."""
        kept = samples[-self.size :]  # a frame longer than the window: only its end can be heard
        at = (self.received + len(samples) - len(kept)) % self.size
        first = min(len(kept), self.size - at)
        self.ring[at : at + first] = kept[:first]
        self.ring[: len(kept) - first] = kept[first:]  # the part that wraps round to the start
        self.received += len(samples)
        if self.received >= self.next_due:
            while self.next_due <= self.received:
                self.next_due += self.hop
            self.offer()

    def offer(self) -> None:
        """The last `window` seconds as the window to answer next, replacing one still waiting."""
        if self.pending is not None:
            self.dropped += 1
        self.pending = Window(self.latest(), self.received, time.perf_counter())
        self._ready.set()

    def latest(self) -> np.ndarray:
        """A copy of the last `window` seconds (fewer at the start), oldest sample first."""
        if self.received < self.size:
            return self.ring[: self.received].copy()
        at = self.received % self.size
        return np.concatenate([self.ring[at:], self.ring[:at]])

    def finish(self) -> None:
        """No more audio: offer a last window on audio not yet answered, then let `take` return None."""
        latest = self.pending.end if self.pending is not None else self.answered_to
        if (self.received - latest) / SAMPLE_RATE >= MIN_LAST_SECONDS:
            self.offer()
        self.closed = True
        self._ready.set()

    async def take(self) -> Window | None:
        """The next window to answer, waiting for one; None once finished and nothing is left."""
        while self.pending is None and not self.closed:
            await self._ready.wait()
            self._ready = anyio.Event()
        window, self.pending = self.pending, None
        if window is not None:
            self.answered_to, self.windows = window.end, self.windows + 1
        return window


class RateCap:
    """How fast a stream's audio may arrive: from its first frame, `burst` seconds at any speed, then `rate`
    times real time (None: `BURST_SECONDS`, `MAX_RATE`); each frame counts as at least `MIN_FRAME_SECONDS`.
    `clock`: seconds (time.monotonic; a test passes its own)."""

    def __init__(
        self,
        rate: float | None = None,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = MAX_RATE if rate is None else rate  # read when a stream starts (a test may change them)
        self.burst = BURST_SECONDS if burst is None else burst
        self.clock = clock
        self.start: float | None = None  # when the first frame came
        self.charged = 0.0  # seconds of audio counted so far
        self.short = 0  # frames shorter than MIN_FRAME_SECONDS so far

    def charge(self, samples: int) -> float:
        """Count a frame of `samples`; the seconds to wait before reading another so as to stay in the cap."""
        self.start = self.clock() if self.start is None else self.start
        self.charged += max(samples / SAMPLE_RATE, MIN_FRAME_SECONDS)
        self.short += samples < MIN_FRAME_SECONDS * SAMPLE_RATE
        allowed = self.burst + self.rate * (self.clock() - self.start)
        return max(0.0, (self.charged - allowed) / self.rate)
