"""Uploads decoded in processes of their own (`mamer serve --workers` of them), not in the server's threads.

Decoding runs FFmpeg's demuxers and decoders through PyAV, a Python call per frame; in a thread of the server it
takes turns at the GIL with the event loop and the model, and each turn waits up to the interpreter's switch
interval: beside one busy Python thread, a 120 s WAV took 10 s to decode instead of 0.05 s, and a normal upload
waited behind it (docs/service.md). In processes of their own, decoding neither stalls the event loop nor is
stalled by it, and a decoder that crashes on a crafted file takes down one decoding process, not the service:
the processes start again and that upload is refused in words (any upload being decoded at that moment with it).
A decoding that outlasts its time limit (an FFmpeg demuxer caught in a loop by a crafted file), which grows with
the upload's size, is stopped the same way: its processes are killed and the upload is refused.
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor, TimeoutError  # not the builtin one before Python 3.11
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from mamer.data.audio import AudioLoadError, decode_bytes

# forkserver: the server's threads (torch, the event loop) are never forked; each process imports only what
# decoding needs (numpy, PyAV, soundfile: about 0.2 s and 60 MB), the first time an upload needs one
START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


class Decoders:
    """`processes` processes that decode uploads; `decode` is called from the uploads' worker threads (one
    decoding each at most, so none waits for a process). A decoding may take `base_seconds` plus
    `seconds_per_mb` per MB of upload: 50 s for a 20 MB upload, where 600 s of Opus or MP3 (4-5 MB) takes 1-2 s."""

    def __init__(self, processes: int, base_seconds: float = 10.0, seconds_per_mb: float = 2.0) -> None:
        self.processes = processes
        self.base_seconds, self.seconds_per_mb = base_seconds, seconds_per_mb
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def time_limit(self, size: int) -> float:
        """Seconds a decoding of an upload of `size` bytes may take."""
        return self.base_seconds + self.seconds_per_mb * size / 2**20

    def decode(self, data: bytes, sample_rate: int, name: str, max_seconds: float) -> np.ndarray:
        """`decode_bytes(data, sample_rate, name, max_seconds)` in a decoding process (blocks its caller)."""
        pool = self._current()
        limit = self.time_limit(len(data))
        try:
            return pool.submit(decode_bytes, data, sample_rate, name, max_seconds).result(timeout=limit)
        except BrokenProcessPool:
            self._replace(pool)
            raise AudioLoadError(
                f"{name}: the decoder stopped while reading this file (a corrupt or crafted file, or the "
                "server ran out of memory); send it again, or as WAV or FLAC"
            ) from None
        except TimeoutError:
            self._replace(pool, kill=True)
            raise AudioLoadError(
                f"{name}: decoding took longer than {limit:.3g} s and was stopped (a corrupt or crafted file); "
                "send it as WAV or FLAC"
            ) from None

    def close(self) -> None:
        """Stop the processes (when the service stops); decodings not yet started are cancelled."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def pids(self) -> list[int]:
        """The decoding processes running now (none before the first upload)."""
        pool = self._pool
        return [] if pool is None else [p.pid for p in _processes_of(pool)]

    def _current(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                context = multiprocessing.get_context(START_METHOD)
                self._pool = ProcessPoolExecutor(self.processes, mp_context=context)
            return self._pool

    def _replace(self, broken: ProcessPoolExecutor, kill: bool = False) -> None:
        """After a process died (or, `kill`, one is stuck: its processes are killed first, since a running
        decoding cannot be cancelled): a new pool for the next upload (once, whichever thread saw it first)."""
        with self._lock:
            if self._pool is broken:
                self._pool = None
        if kill:
            for process in _processes_of(broken):
                process.kill()
        broken.shutdown(wait=False, cancel_futures=True)


def _processes_of(pool: ProcessPoolExecutor) -> list[multiprocessing.Process]:
    """The pool's processes now (`ProcessPoolExecutor` keeps them in a private dict; none once it is shut down)."""
    return list((getattr(pool, "_processes", None) or {}).values())
