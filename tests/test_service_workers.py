"""The uploads' workers (shortest job first, timelines never holding them all) and the decoding processes."""

from __future__ import annotations

import io
import os
import signal
import threading

import anyio
import numpy as np
import pytest
import soundfile as sf

from mamer.data.audio import AudioLoadError, AudioTooLong, decode_bytes
from mamer.workflows.service.decoding import Decoders
from mamer.workflows.service.workers import PATIENCE, UploadWorkers

SR = 16000


def wav_bytes(seconds: float) -> bytes:
    t = np.arange(int(seconds * SR)) / SR
    buffer = io.BytesIO()
    sf.write(buffer, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR, format="WAV")
    return buffer.getvalue()


async def queue_behind_a_busy_worker(workers: UploadWorkers, jobs: list[tuple[str, float]]) -> list[str]:
    """One job holds the only worker while `jobs` (name, seconds of audio) queue in that order; the order they
    then run in."""
    release, ran = threading.Event(), []
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(workers.run, lambda: release.wait(10), 0.0)
        await anyio.sleep(0.05)
        for name, seconds in jobs:
            tasks.start_soon(workers.run, lambda name=name: ran.append(name), seconds)
            await anyio.sleep(0.02)
        release.set()
    return ran


def test_a_short_upload_goes_before_long_ones_that_came_first():
    """Before: first come, first served, so a 4 s clip waited behind every two-minute upload queued (issue 32,
    finding 6: 0.6 s at the median while hostile clients uploaded long audio and hung up)."""
    order = anyio.run(
        queue_behind_a_busy_worker, UploadWorkers(1), [("long 1", 120.0), ("long 2", 120.0), ("clip", 4.0)]
    )
    assert order == ["clip", "long 1", "long 2"]


def test_a_long_upload_is_passed_only_by_jobs_arriving_within_its_patience():
    """A job of 0.2 s of audio yields to later jobs for PATIENCE x 0.2 s only: one arriving after that waits."""
    assert PATIENCE * 0.2 < 0.02  # the next job arrives 0.02 s later
    order = anyio.run(queue_behind_a_busy_worker, UploadWorkers(1), [("earlier", 0.2), ("later", 0.0)])
    assert order == ["earlier", "later"]


def test_a_job_cancelled_while_waiting_gives_up_its_turn_and_loses_no_worker():
    async def scenario() -> list[str]:
        workers, release, ran = UploadWorkers(1), threading.Event(), []
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(workers.run, lambda: release.wait(10), 0.0)
            await anyio.sleep(0.05)
            with anyio.move_on_after(0.05):  # the client leaves while its job waits
                await workers.run(lambda: ran.append("gone"), 1.0)
            assert workers.waiting == 0
            release.set()
        await workers.run(lambda: ran.append("next"), 1.0)  # the worker came back
        return ran

    assert anyio.run(scenario) == ["next"]


def test_timelines_hold_all_workers_but_one():
    async def scenario() -> int:
        workers, release, most, running = UploadWorkers(3), threading.Event(), [0], [0]

        def timeline() -> None:
            running[0] += 1
            most[0] = max(most[0], running[0])
            release.wait(10)
            running[0] -= 1

        async def one() -> None:
            async with workers.timelines:
                await workers.run(timeline, 300.0)

        async with anyio.create_task_group() as tasks:
            for _ in range(5):
                tasks.start_soon(one)
            await anyio.sleep(0.2)
            clip = []
            await workers.run(lambda: clip.append(True), 4.0)  # a clip still finds a worker
            assert clip == [True]
            release.set()
        return most[0]

    assert anyio.run(scenario) == 2


def test_decoding_processes_decode_as_the_server_would():
    decoders = Decoders(1)
    try:
        data = wav_bytes(1.5)
        np.testing.assert_array_equal(
            decoders.decode(data, SR, "clip.wav", 60.0), decode_bytes(data, SR, "clip.wav")
        )
        assert decoders.pids() and os.getpid() not in decoders.pids()
        with pytest.raises(AudioTooLong, match=r"long\.wav: audio is longer than the limit of 1 s"):
            decoders.decode(data, SR, "long.wav", 1.0)
        with pytest.raises(AudioLoadError, match=r"notes\.wav: .*not an audio file"):
            decoders.decode(b"ffconcat version 1.0\nfile private.wav\n", SR, "notes.wav", 60.0)
    finally:
        decoders.close()


def test_a_decoding_process_that_dies_costs_that_upload_only():
    """A decoder that crashes (as FFmpeg might on a crafted file) takes down its process, not the service: that
    upload is refused in words, and the next one is decoded by new processes."""
    decoders, data = Decoders(1), wav_bytes(1.0)
    try:
        decoders.decode(data, SR, "first.wav", 60.0)
        (pid,) = decoders.pids()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(AudioLoadError, match=r"crash\.wav: the decoder stopped while reading this file"):
            decoders.decode(data, SR, "crash.wav", 60.0)
        assert decoders.decode(data, SR, "next.wav", 60.0).shape == (SR,)
        assert pid not in decoders.pids()
    finally:
        decoders.close()


def test_a_decoding_that_outlasts_its_time_limit_is_stopped():
    """A decoding process that never answers (here stopped with SIGSTOP, as a demuxer caught in a loop would be)
    costs that upload only, after its time limit (which grows with the upload's size): its process is killed and
    the next upload is decoded by a new one."""
    decoders, data = Decoders(1, base_seconds=0.5, seconds_per_mb=0.0), wav_bytes(1.0)
    assert Decoders(1).time_limit(20 * 2**20) == 50.0  # the defaults: 10 s + 2 s per MB
    try:
        decoders.decode(data, SR, "first.wav", 60.0)
        (pid,) = decoders.pids()
        os.kill(pid, signal.SIGSTOP)
        with pytest.raises(
            AudioLoadError, match=r"stuck\.wav: decoding took longer than 0\.5 s and was stopped"
        ):
            decoders.decode(data, SR, "stuck.wav", 60.0)
        assert decoders.decode(data, SR, "next.wav", 60.0).shape == (SR,)
        assert pid not in decoders.pids()
    finally:
        decoders.close()
