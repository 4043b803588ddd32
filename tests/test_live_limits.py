"""Live mode against clients that would stall it (issue 32, findings 3, 5 and 12), through a real uvicorn: a frame
costs its own length, audio arrives at most a little faster than real time, idle streams are closed, answers are
never NaN, and what held before (the 16 MB frame cap, the 9th stream refused) keeps holding."""

import json
import time
import tracemalloc
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed

from conftest import speechlike
from mamer.workflows.service import live as live_module
from mamer.workflows.service import stream as stream_module
from mamer.workflows.service.app import create_app
from mamer.workflows.service.stream import MIN_FRAME_SECONDS, RateCap, Stream
from serving import live, running

RATE = 16000


@pytest.fixture(scope="module")
def run(train_tiny, tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("live_limits_run"))


@pytest.fixture(scope="module")
def port(run):
    with running(create_app(run, asr=None)) as port:
        yield port


def strict(text: str) -> dict:
    """A message parsed as JSON proper: NaN and Infinity are not JSON, and a browser's JSON.parse throws on them."""
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in a live answer: {text[:200]}"))


def until(ws, kinds: tuple[str, ...] = ("end", "error"), timeout: float = 30) -> list[dict]:
    """Messages up to the first of `kinds` (or the server closing); fails if none comes within `timeout`."""
    out = []
    while True:
        try:
            out.append(strict(ws.recv(timeout=timeout)))
        except ConnectionClosed:
            return out
        if out[-1]["type"] in kinds:
            return out


def f32(wave: np.ndarray) -> bytes:
    return np.asarray(wave, "<f4").tobytes()


# ---------------------------------------------------------------- finding 3: frames cost their own length


def test_a_small_frame_costs_its_own_length_not_the_windows(port, monkeypatch):
    """With a 30 s window full, 100 frames of 10 ms allocate about what they hold themselves (64 KB, queued as
    they arrive). Before, every frame copied the whole window (2 MB at 30 s, the old copy still alive: a client
    sending 4-byte frames froze the server)."""
    monkeypatch.setattr(stream_module, "BURST_SECONDS", 1e6)  # this test is about memory, not the rate cap
    wave = speechlike(31.0, seed=3)
    with live(port, "window=30&hop=10") as ws:
        assert strict(ws.recv(timeout=10))["type"] == "ready"
        for at in range(0, 30 * RATE, RATE):
            ws.send(f32(wave[at : at + RATE]))
        while strict(ws.recv(timeout=30)).get("t") != 30.0:  # the window at 30 s: the model is done
            pass
        tracemalloc.start()
        try:
            for at in range(30 * RATE, 31 * RATE, 160):  # 1 s more: no window comes due before 40 s
                ws.send(f32(wave[at : at + 160]))
            ws.send("not the end")  # answered with an error once every frame before it is read; no window
            error = until(ws)[-1]
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert error["type"] == "error" and "not the end" in error["detail"], error
    window_bytes = 30 * RATE * 4
    assert peak < window_bytes / 2, f"100 frames of 10 ms allocated up to {peak / 1e6:.2f} MB at once"


def test_a_stream_of_tiny_frames_is_closed_in_words(port):
    """Frames shorter than 10 ms: a few pass (a recording's last), a flood is closed before it piles up in the
    WebSocket layer. Before, 4-byte frames in a loop were all taken, at a copy of the window each."""
    with live(port, "window=30") as ws:
        assert strict(ws.recv(timeout=10))["type"] == "ready"
        try:
            for _ in range(100):
                ws.send(bytes(4))
        except ConnectionClosed:  # the server closed the stream before all 100 were sent: the point of it
            pass
        error = until(ws)[-1]
    assert error["type"] == "error" and "at least 10 ms" in error["detail"], error
    assert "sent 21 shorter ones" in error["detail"], error


def test_the_ring_buffer_holds_the_last_window_whatever_the_frames():
    """Frames of every length, shorter and longer than the window, wrapping round: the window is always the
    last `window` seconds in order."""
    stream = Stream(window=0.01, hop=10.0)  # 160 samples
    sent = np.arange(2000, dtype=np.float32)
    at = 0
    for length in (1, 7, 160, 3, 159, 161, 400, 1, 0, 90):
        stream.push(sent[at : at + length])
        at += length
        np.testing.assert_array_equal(stream.latest(), sent[max(0, at - 160) : at])
    assert stream.received == at


def test_audio_may_arrive_at_most_twice_real_time_after_a_burst():
    now = [0.0]
    cap = RateCap(rate=2.0, burst=10.0, clock=lambda: now[0])
    assert cap.charge(10 * RATE) == 0  # a burst of 10 s at once: read at once
    assert cap.charge(RATE) == pytest.approx(0.5)  # 1 s more at once: wait until 2x real time allows it
    now[0] = 30.0
    assert cap.charge(40 * RATE) == 0  # 51 s in 30 s: within 10 + 2 x 30
    tiny = RateCap(rate=2.0, burst=1.0, clock=lambda: now[0])
    waits = [tiny.charge(1) for _ in range(1000)]  # one sample each, charged as MIN_FRAME_SECONDS
    assert waits[-1] == pytest.approx((1000 * MIN_FRAME_SECONDS - 1.0) / 2.0) and tiny.short == 1000


def test_a_stream_sending_faster_than_the_cap_is_read_more_slowly(port, monkeypatch):
    """3 s of audio sent at once with a 0.5 s burst: the server takes (3 - 0.5) / 2 s at least to read it (a
    lower bound: a loaded machine only makes it longer). Before, any speed was read at once."""
    monkeypatch.setattr(stream_module, "BURST_SECONDS", 0.5)
    wave = speechlike(3.0, seed=4)
    with live(port, "window=1&hop=1") as ws:
        assert strict(ws.recv(timeout=10))["type"] == "ready"
        start = time.monotonic()
        for at in range(0, len(wave), RATE // 10):
            ws.send(f32(wave[at : at + RATE // 10]))
        ws.send(json.dumps({"type": "end"}))
        messages = until(ws)
        took = time.monotonic() - start
    assert messages[-1]["type"] == "end", messages[-1]
    assert took >= 1.0, f"3 s of audio were read in {took:.2f} s, faster than twice real time allows"


# ---------------------------------------------------------------- finding 5: idle streams


def test_an_idle_stream_is_closed_and_frees_its_place(run):
    """A stream that sends nothing is closed in words after `live_idle` seconds; its place is free again.
    Before, eight idle streams held live mode for ever."""
    with running(create_app(run, asr=None, max_live=1, live_idle=0.5)) as port:
        with live(port) as idle:
            assert strict(idle.recv(timeout=10))["type"] == "ready"
            with live(port) as refused:
                assert "already serves 1 streams" in until(refused)[-1]["detail"]
            error = until(idle, timeout=20)[-1]
            assert error["type"] == "error" and "behind real time" in error["detail"], error
            assert "--live-idle" in error["detail"]
        with live(port) as next_one:
            assert strict(next_one.recv(timeout=10))["type"] == "ready"


def test_a_stream_sending_at_real_time_is_not_idle(run):
    """Frames of 0.1 s every 0.1 s for 1.5 s with live_idle=1 s: never closed."""
    wave = speechlike(1.5, seed=5)
    with running(create_app(run, asr=None, live_idle=1.0)) as port, live(port, "window=1&hop=0.5") as ws:
        assert strict(ws.recv(timeout=10))["type"] == "ready"
        for at in range(0, len(wave), RATE // 10):
            ws.send(f32(wave[at : at + RATE // 10]))
            time.sleep(0.1)
        ws.send(json.dumps({"type": "end"}))
        messages = until(ws)
    assert messages[-1]["type"] == "end" and not [m for m in messages if m["type"] == "error"], messages


# ---------------------------------------------------------------- finding 12: never NaN


def test_samples_far_outside_the_range_are_refused_in_words(port):
    """Samples of 1e30 once gave `"probabilities": {"angry": NaN}`, which a page cannot parse."""
    with live(port, "window=1&hop=0.5") as ws:
        assert strict(ws.recv(timeout=10))["type"] == "ready"
        ws.send(f32(np.full(RATE, 1e30)))
        error = until(ws)[-1]
    assert error["type"] == "error" and "far outside -1..1" in error["detail"], error


def test_a_window_without_valid_numbers_is_an_error_frame(port, monkeypatch):
    """Whatever the model answers, a live message is JSON: NaN becomes an error frame, and the stream goes on."""

    def nan_answer(recognizer, audio, transcribe):
        return {"view": "audio", "label": "angry", "probabilities": {"angry": float("nan")}}

    monkeypatch.setattr(live_module, "predict_window", nan_answer)
    with live(port, "window=1&hop=0.5") as ws:
        assert strict(ws.recv(timeout=10))["type"] == "ready"
        ws.send(f32(speechlike(1.0, seed=6)))
        ws.send(json.dumps({"type": "end"}))
        messages = until(ws, ("end",))
    errors = [m for m in messages if m["type"] == "error"]
    assert errors and all("no valid numbers" in m["detail"] for m in errors), messages
    assert messages[-1]["type"] == "end"


# ---------------------------------------------------------------- what held, and must keep holding


def test_frames_over_16_mb_are_refused_by_the_server(port):
    """uvicorn's own cap (16 MiB a message) closes the connection before the app sees the frame (with 1009, or
    abruptly when the client is still sending as it closes); frames over 5 s are refused by live mode in words,
    with 1009 too."""
    with live(port) as ws:
        assert strict(ws.recv(timeout=10))["type"] == "ready"
        try:
            ws.send(bytes(17 << 20))
        except (ConnectionClosed, OSError):  # closed while the frame was still going out
            pass
        assert until(ws) == []  # no answer, no error in words: the server hung up
    assert ws.close_code in (1009, 1006), ws.close_code
    with live(port) as ws:
        assert strict(ws.recv(timeout=10))["type"] == "ready"
        ws.send(f32(np.zeros(6 * RATE)))
        assert "at most 5 s" in until(ws)[-1]["detail"]
        until(ws)
    assert ws.close_code == 1009, ws.close_code


def test_the_ninth_stream_is_refused_with_1013(port):
    with ExitStack() as streams:
        for _ in range(8):
            assert strict(streams.enter_context(live(port)).recv(timeout=10))["type"] == "ready"
        with live(port) as ninth:
            detail = until(ninth)[-1]["detail"]
            until(ninth)  # the close that follows
    assert "already serves 8 streams" in detail and ninth.close_code == 1013, (detail, ninth.close_code)
