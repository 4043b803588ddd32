"""Clients that would hold the service (issue 32, findings 4, 6 and 7), against a real uvicorn: sockets that send
headers and then nothing, uploads abandoned while they are worked on, a stop signal with connections open, live
windows beside uploads; and what held before (100 at once: 64 answered, 36 told to retry; nothing leaks)."""

import asyncio
import io
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from conftest import speechlike
from mamer.data.audio import resample
from mamer.data.espeak import EspeakSynthesizer
from mamer.workflows.inference import timeline as timeline_module
from mamer.workflows.service import live as live_module
from mamer.workflows.service.app import create_app
from mamer.workflows.service.limits import PendingLimit
from serving import live, raw_request, running

RATE = 16000
BOUNDARY = "B0UNDARY"


@pytest.fixture(scope="module")
def run(train_tiny, tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("clients_run"))


def wav(wave: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def upload_request(audio: bytes, host: str = "127.0.0.1") -> tuple[str, bytes]:
    """A POST /predict of `audio` as a multipart file: (request line and headers, body)."""
    part = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n\r\n'
    body = part.encode() + audio + f"\r\n--{BOUNDARY}--\r\n".encode()
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}"
    )
    return head, body


def pending_of(app) -> int:
    """How many requests the app's PendingLimit counts now."""
    layer = app.middleware_stack
    while not isinstance(layer, PendingLimit):
        layer = layer.app
    return layer.pending


# ---------------------------------------------------------------- finding 4: slow bodies


def test_sockets_that_send_no_body_lock_no_one_out_and_are_cut_off(run):
    """64 sockets send headers (and then nothing, or a byte every 0.3 s): a normal request is answered
    meanwhile, and each of them gets a 408 once `body_timeout` has passed. Before, they held all 64 places
    (503 for everyone) for as long as they stayed."""
    app = create_app(run, asr=None, body_timeout=2.0)
    head, body = upload_request(wav(speechlike(1.0)))
    answers: list[tuple[float, bytes]] = []
    sent = threading.Semaphore(0)

    def slow_client(trickle: bool) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(head.encode() + b"\r\n\r\n")
            sent.release()
            answer = bytearray()
            try:
                for byte in body[:20] if trickle else ():
                    if select.select([conn], [], [], 0.3)[0]:  # a byte every 0.3 s, until answered
                        break
                    conn.sendall(bytes([byte]))
                while data := conn.recv(65536):
                    answer.extend(data)
            except OSError:  # no answer in 30 s, or the connection reset
                pass
            answers.append((time.monotonic(), bytes(answer)))

    with running(app) as port:
        clients = [threading.Thread(target=slow_client, args=(i % 2 == 1,)) for i in range(64)]
        start = time.monotonic()
        for client in clients:
            client.start()
        for _ in clients:
            assert sent.acquire(timeout=30), "a client could not send its headers"
        normal = httpx.post(f"http://127.0.0.1:{port}/predict", data={"text": "fine"}, timeout=30)
        assert normal.status_code == 200, normal.text  # while all 64 are still there
        for client in clients:
            client.join(timeout=60)
        assert pending_of(app) == 0
    assert len(answers) == 64
    for ended, answer in answers:
        assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
        assert b"did not arrive within 2 s" in answer and b"--body-timeout" in answer
        assert ended - start < 25, f"a slow client was cut off after {ended - start:.0f} s"


# ---------------------------------------------------------------- finding 6: abandoned work, one stop signal


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """About 40 s of sentences (espeak) with pauses, at 16 kHz: a timeline of many segment groups."""
    tts = EspeakSynthesizer()
    words = ("We walked along the river until sunset.", "Please bring the papers to the office.")
    voices = [resample(tts.synthesize(s), tts.sample_rate, RATE) for s in words]
    parts = []
    while sum(len(p) for p in parts) < 40 * RATE:
        parts += [voices[len(parts) % 2], np.zeros(RATE, np.float32)]
    return np.concatenate(parts)


def test_an_abandoned_upload_stops_its_timeline(train_tiny, tmp_path_factory, speech, monkeypatch):
    """A long upload transcribed group by group: the client leaves during the first group, and the work stops
    there; the only worker is then free for the next upload. Before, the whole recording was transcribed
    (7 minutes of two busy cores for a 590 s upload) with no one waiting for it."""
    short = train_tiny(tmp_path_factory.mktemp("short_run"), "quickstart", "model.max_audio_tokens=16")
    monkeypatch.setattr(timeline_module, "ASR_SPAN", 5.0)  # groups of at most 5 s: 8 or more of them
    app = create_app(short, asr="whisper-tiny.en", workers=1)
    transcriber = app.state.recognizer.transcriber
    heard, transcribe = [], transcriber.transcribe

    def counted(*args, **kwargs):
        heard.append(args[0].shape[0] / RATE)
        return transcribe(*args, **kwargs)

    monkeypatch.setattr(transcriber, "transcribe", counted)
    head, body = upload_request(wav(speech))
    with running(app) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(head.encode() + b"\r\n\r\n" + body)
            deadline = time.monotonic() + 120
            while not heard:
                assert time.monotonic() < deadline, "the upload's transcription never started"
                time.sleep(0.02)
        left_at = len(heard)  # the client has gone
        later = httpx.post(
            f"http://127.0.0.1:{port}/predict",
            files={"audio": ("b.wav", wav(speechlike(1.0)), "audio/wav")},
            data={"transcribe": "false"},
            timeout=120,
        )
    assert later.status_code == 200, later.text
    assert len(heard) <= left_at + 1, f"{len(heard)} groups transcribed after the client left at {left_at}"
    assert sum(heard) < 15, f"{sum(heard):.0f} s of the 40 s recording were transcribed for no one"


def test_one_sigterm_stops_the_server_with_connections_open(run):
    """SIGTERM once, with a socket mid-request (headers, no body) and a live stream open: the server exits
    within seconds. Before, it waited for the request to finish, which it never did: a second signal was
    needed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "mamer", "serve", str(run), "--port", str(port), "--asr", "none"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, server.stdout.read().decode()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        head, _ = upload_request(b"x" * 1000)
        with socket.create_connection(("127.0.0.1", port)) as hanging, live(port) as stream:
            hanging.sendall(head.encode() + b"\r\n\r\n")
            assert '"ready"' in stream.recv(timeout=10)
            stream.send(speechlike(0.5).astype("<f4").tobytes())
            time.sleep(0.3)
            stopped = time.monotonic()
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
            took = time.monotonic() - stopped
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert took < 20, f"one SIGTERM took {took:.1f} s to stop the server"


# ---------------------------------------------------------------- finding 7: live windows beside uploads


def test_live_windows_never_hold_the_uploads_workers(run, monkeypatch):
    """A live window stuck in the model holds a live worker, not an upload's: with one upload worker, an
    upload is still decoded and answered. Before, both drew on one budget, and 8 live streams with ASR made a
    plain upload wait 7.5-15.9 s."""
    release, started = threading.Event(), threading.Event()
    predict_window = live_module.predict_window

    def stuck(*args, **kwargs):
        started.set()
        release.wait(60)
        return predict_window(*args, **kwargs)

    monkeypatch.setattr(live_module, "predict_window", stuck)
    app = create_app(run, asr=None, workers=1, live_workers=1)
    try:
        with running(app) as port, live(port, "window=1&hop=1") as stream:
            assert '"ready"' in stream.recv(timeout=10)
            stream.send(speechlike(1.2).astype("<f4").tobytes())
            assert started.wait(30), "the live window never reached the model"
            upload = {"audio": ("a.wav", wav(speechlike(1.0)), "audio/wav")}
            answer = httpx.post(f"http://127.0.0.1:{port}/predict", files=upload, timeout=20)
            release.set()
    finally:
        release.set()
    assert answer.status_code == 200 and answer.json()["view"] == "audio", answer.text


# ---------------------------------------------------------------- what held, and must keep holding


def test_a_hundred_at_once_get_64_answers_and_36_retry_afters(run):
    """The model held until 36 have been refused: 64 requests wait with their place, 36 get 503 with
    Retry-After, and the 64 are then answered."""
    app = create_app(run, asr=None)
    release, batch = threading.Event(), app.state.recognizer.predict_batch

    def held(items, *args, **kwargs):
        release.wait(60)
        return batch(items, *args, **kwargs)

    app.state.recognizer.predict_batch = held

    async def hundred(port: int) -> list[httpx.Response]:
        url = f"http://127.0.0.1:{port}"
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            sent = [asyncio.create_task(client.post("/predict", data={"text": "fine"})) for _ in range(100)]
            deadline = time.monotonic() + 60
            while sum(t.done() for t in sent) < 36 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            release.set()
            return await asyncio.gather(*sent)

    try:
        with running(app) as port:
            answers = asyncio.run(hundred(port))
    finally:
        release.set()
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == 64 and statuses.count(503) == 36, sorted(statuses)
    assert all(a.headers["retry-after"] == "1" for a in answers if a.status_code == 503)


def test_nothing_leaks_over_hundreds_of_requests(run):
    """300 requests, good, bad and abandoned (mid-body and mid-answer): afterwards the pending count is 0 and
    the process holds no more sockets or threads than after the first few."""
    app = create_app(run, asr=None, max_upload_mb=0.5)
    good = {"audio": ("a.wav", wav(speechlike(1.0)), "audio/wav")}
    bad = {"audio": ("x.wav", b"not audio at all", "audio/wav")}
    head, body = upload_request(wav(speechlike(1.0)))

    def one(client: httpx.Client, i: int) -> None:
        if i % 10 == 7:  # leaves mid-body
            with socket.create_connection(("127.0.0.1", port)) as conn:
                conn.sendall(head.encode() + b"\r\n\r\n" + body[: len(body) // 2])
        elif i % 10 == 8:  # leaves before its answer
            with socket.create_connection(("127.0.0.1", port)) as conn:
                conn.sendall(head.encode() + b"\r\n\r\n" + body)
        elif i % 10 == 9:
            assert client.post("/predict", files=bad).status_code == 422
        elif i % 2:
            assert client.post("/predict", files=good).status_code == 200
        else:
            assert client.post("/predict", data={"text": f"request {i}"}).status_code == 200

    def counts() -> tuple[int, int]:
        return sum(1 for _ in os.scandir("/proc/self/fd")), threading.active_count()

    with running(app) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        for i in range(30):
            one(client, i)
        time.sleep(0.5)
        before = counts()
        for i in range(300):
            one(client, i)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # abandoned requests end as the server notices their clients left
            pending, after = pending_of(app), counts()
            if pending == 0 and after[0] <= before[0] + 4 and after[1] <= before[1] + 4:
                break
            time.sleep(0.1)
    assert pending == 0
    assert after[0] <= before[0] + 4 and after[1] <= before[1] + 4, f"(fds, threads) {before} -> {after}"


def test_a_request_naming_no_body_is_answered(run):
    """A GET of a route that takes POST, and a POST with an empty body: answered at once, not held."""
    with running(create_app(run, asr=None)) as port:
        assert raw_request(port, "GET /predict HTTP/1.1\r\nHost: 127.0.0.1").startswith(b"HTTP/1.1 405")
        answer = raw_request(port, "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0")
    assert answer.startswith(b"HTTP/1.1 422"), answer[:200]
