"""Concurrent requests answered in batches: whatever waits for the model while it is busy goes through together.

The recognizer's lock lets one call at a time run the encoders and the model, so under concurrent load requests
queue for it. `Batcher` keeps that queue itself: one thread takes every request waiting (up to `max_batch`) and
answers them with one `predict_batch` call, which pads them into one batch per view. On 2 CPU cores this
answered about twice as many requests per second as one call per request (docs/service.md). A batch that fails
is answered again request by request, so one bad request never fails the others.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass

from mamer.workflows.inference.recognizer import EmotionRecognizer, Prediction


@dataclass
class _Job:
    """One request's input (a `predict_batch` item) and where its answer goes."""

    item: dict
    answer: Future


class Batcher:
    """Runs `recognizer.predict_batch` in its own thread over the requests waiting; `await predict(item)`."""

    def __init__(self, recognizer: EmotionRecognizer, max_batch: int = 16) -> None:
        self.recognizer, self.max_batch = recognizer, max_batch
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()

    async def predict(self, item: dict) -> Prediction:
        """The prediction for `item` (keys as in `predict_batch`), or the exception its input raised."""
        self._ensure_thread()
        job = _Job(item, Future())
        self._jobs.put(job)
        return await asyncio.wrap_future(job.answer)  # a client gone cancels it, and its batch skips it

    def close(self) -> None:
        """Stop the thread once the requests already queued are answered."""
        with self._start:
            if self._thread is not None:
                self._jobs.put(None)
                self._thread.join(timeout=30)
                self._thread = None

    def _ensure_thread(self) -> None:
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="mamer-batcher", daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        """The thread: answer batches until `close`."""
        while (batch := self._next_batch()) is not None:
            self._answer([job for job in batch if job.answer.set_running_or_notify_cancel()])

    def _next_batch(self) -> list[_Job] | None:
        """The next job (waiting for one) and every job queued behind it, up to `max_batch`; None on close."""
        first = self._jobs.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:  # close: answer this batch, then stop
                self._jobs.put(None)
                break
            batch.append(job)
        return batch

    def _answer(self, batch: list[_Job]) -> None:
        """One `predict_batch` call for the whole batch; request by request when it fails."""
        if not batch:
            return
        try:
            results = self.recognizer.predict_batch([job.item for job in batch])
        except Exception as err:
            if len(batch) == 1:
                batch[0].answer.set_exception(err)
                return
            for job in batch:  # find which one failed; the others get their answers
                self._answer([job])
            return
        for job, result in zip(batch, results, strict=True):
            job.answer.set_result(result)
