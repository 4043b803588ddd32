"""Hostile and broken requests against the service: each gets a named error in words (status and message), never
a traceback or an internal object, and the server stays healthy. Every request is built here; no fixture files.
"""

import asyncio
import io
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mamer.data import audio as audio_module
from mamer.workflows.service.app import create_app

LIMIT_MB = 0.5
LIMIT = int(LIMIT_MB * 1024 * 1024)
MAX_SECONDS = 8.0
CHUNK = 64 * 1024
PART_HEAD = b'--B\r\nContent-Disposition: form-data; name="audio"; filename="x.wav"\r\n\r\n'
MULTIPART = "multipart/form-data; boundary=B"
# the service answers to loopback names; a TestClient's own host, `testserver`, is refused
LOCAL = "http://localhost"


@pytest.fixture(scope="module")
def run(train_tiny, tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("fault_run"))


@pytest.fixture(scope="module")
def app(run) -> FastAPI:
    return create_app(run, max_upload_mb=LIMIT_MB, max_seconds=MAX_SECONDS, asr=None)


@pytest.fixture(scope="module")
def client(app) -> Iterator[TestClient]:
    # one event loop, as under uvicorn
    with TestClient(app, raise_server_exceptions=False, base_url=LOCAL) as client:
        yield client


def assert_named(client: TestClient, response, status: int, *words: str) -> str:
    """The response is `status` with a `detail` sentence holding `words`, nothing internal; /health still ok."""
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str), detail
    for word in words:
        assert word in detail, detail
    for internal in ("Traceback", "object at 0x", "BytesIO", "_file", "text=None", "{"):
        assert internal not in detail, detail
    assert client.get("/health").json() == {"status": "ok"}
    return detail


def wav_bytes(wave: np.ndarray, sample_rate: int = 16000, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(wave, np.float32), sample_rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def silent_flac(seconds: float, hide_length: bool = False) -> bytes:
    """`seconds` of 48 kHz stereo silence as FLAC (a few hundred bytes a minute); `hide_length` zeroes the
    STREAMINFO total-sample count, so the header states no duration."""
    buffer, block = io.BytesIO(), np.zeros((48000 * 10, 2), np.float32)
    with sf.SoundFile(buffer, "w", 48000, 2, format="FLAC", subtype="PCM_16") as out:
        for _ in range(int(seconds // 10)):
            out.write(block)
    data = bytearray(buffer.getvalue())
    if hide_length:  # "fLaC", a 4-byte block header, then STREAMINFO: its bytes 13-17 end in 36 bits of count
        data[8 + 13] &= 0xF0
        data[8 + 14 : 8 + 18] = bytes(4)
    return bytes(data)


# ---------------------------------------------------------------- bodies over the limit


def chunked_body(total: int) -> Iterator[bytes]:
    """A multipart audio part of `total` zero bytes, in 64 KB chunks."""
    yield PART_HEAD
    for _ in range(total // CHUNK):
        yield bytes(CHUNK)
    yield b"\r\n--B--\r\n"


SCOPE = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
         "scheme": "http", "path": "/predict", "raw_path": b"/predict", "query_string": b"", "root_path": "",
         "headers": [(b"content-type", MULTIPART.encode()), (b"transfer-encoding", b"chunked")],
         "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}  # fmt: skip


async def send_in_chunks(app: FastAPI, chunks: Iterator[bytes]) -> tuple[int, dict, bytes, int]:
    """POST /predict straight through ASGI, the body in chunks and no Content-Length (as `curl -T -` sends it):
    (status, headers, body, bytes the app had taken when it answered)."""
    scope = dict(SCOPE)
    taken, sent, answered_at, ended = 0, [], None, False

    async def receive() -> dict:
        nonlocal taken, ended
        chunk = next(chunks, None)
        if chunk is None:
            if ended:  # as a server does: nothing more comes until the client leaves (it never does here)
                await asyncio.Event().wait()
            ended = True
            return {"type": "http.request", "body": b"", "more_body": False}
        taken += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict) -> None:
        nonlocal answered_at
        answered_at = taken if answered_at is None else answered_at
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, body, answered_at


def test_chunked_upload_is_cut_off_at_the_limit(app, client):
    """64 MB without Content-Length: 413 once the limit has arrived, not after the whole body is spooled."""
    status, headers, body, taken = asyncio.run(send_in_chunks(app, chunked_body(64 << 20)))
    assert status == 413 and b"at most 0.5 MB" in body, body
    assert taken <= LIMIT + 64 * 1024 + 2 * CHUNK, f"read {taken} bytes of the body before answering"
    assert headers.get("connection") == "close"
    assert client.get("/health").json() == {"status": "ok"}


def test_only_requests_whose_body_is_in_take_a_pending_place(run):
    """A request still sending its body holds no place; with the only place taken by a request that is being
    answered, the next whose body is in gets 503 with Retry-After (issue 32, finding 4: before, a socket that
    sent headers and nothing took a place)."""
    app = create_app(run, max_upload_mb=LIMIT_MB, asr=None, max_pending=1)

    async def arriving_answered_then_another():
        arrived, release = asyncio.Event(), asyncio.Event()

        async def slow_receive() -> dict:  # a first chunk, then nothing until released
            if not arrived.is_set():
                arrived.set()
                return {"type": "http.request", "body": PART_HEAD, "more_body": True}
            await release.wait()
            return {"type": "http.disconnect"}

        async def ignore(message: dict) -> None:
            pass

        sending = asyncio.create_task(app(dict(SCOPE), slow_receive, ignore))
        await arrived.wait()
        text = b'--B\r\nContent-Disposition: form-data; name="text"\r\n\r\nfine\r\n--B--\r\n'
        while_sending = await send_in_chunks(app, iter([text]))  # the place is free: answered
        model_busy = asyncio.Event()
        batch = app.state.recognizer.predict_batch

        def blocked(items, *args, **kwargs):  # the model holds the one answered request until released
            model_busy.set()
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result()
            return batch(items, *args, **kwargs)

        loop = asyncio.get_running_loop()
        app.state.recognizer.predict_batch = blocked
        answering = asyncio.create_task(send_in_chunks(app, iter([text])))
        await model_busy.wait()
        busy = await send_in_chunks(app, iter([text]))
        release.set()
        answered = await asyncio.wait_for(answering, 30)
        await asyncio.wait_for(sending, 10)
        del app.state.recognizer.predict_batch
        return while_sending, busy, answered

    while_sending, busy, answered = asyncio.run(arriving_answered_then_another())
    assert while_sending[0] == 200 and answered[0] == 200, (while_sending, answered)
    status, headers, body, _ = busy
    assert status == 503 and headers["retry-after"] == "1", (status, headers)
    assert b"the service is busy: 1 requests are being answered" in body and b"--max-pending" in body
    with TestClient(app, base_url=LOCAL) as client:  # the place is free again
        assert client.post("/predict", data={"text": "fine"}).status_code == 200


def test_chunked_upload_over_a_real_socket(app):
    """The same through uvicorn: the 413 arrives while the client is still sending, and the server hangs up."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        answer, sent = post_chunked(port, 64 << 20)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"at most 0.5 MB" in answer
    assert sent < 32 << 20, f"the client sent {sent >> 20} MB before the server stopped it"


def post_chunked(port: int, total: int) -> tuple[bytes, int]:
    """Send a chunked POST of `total` bytes over a raw socket until the server answers or hangs up:
    (what it answered, bytes sent)."""
    answer, sent = bytearray(), 0
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:

        def read() -> None:
            try:
                while data := conn.recv(65536):
                    answer.extend(data)
            except OSError:
                pass

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        head = f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {MULTIPART}\r\nTransfer-Encoding: chunked\r\n\r\n"
        try:
            conn.sendall(head.encode())
            for chunk in chunked_body(total):
                if answer:
                    break
                conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
            conn.sendall(b"0\r\n\r\n")
        except OSError:  # the server hung up: what it answered is in `answer`
            pass
        reader.join(timeout=10)
    return bytes(answer), sent


def test_stated_length_over_the_limit_is_refused_unread(client):
    response = client.post("/predict", files={"audio": ("big.wav", bytes(LIMIT + 100_000), "audio/wav")})
    assert_named(client, response, 413, "at most 0.5 MB")


# ---------------------------------------------------------------- decompression bombs


def test_bomb_stating_its_length_is_refused_from_the_header(client):
    bomb = silent_flac(300)  # 5 minutes of 48 kHz stereo silence, ~60 KB
    assert len(bomb) < LIMIT
    response = client.post("/predict", files={"audio": ("bomb.flac", bomb, "audio/flac")})
    assert_named(
        client, response, 422, "bomb.flac", "longer than the limit of 8 s", "300.0 s stated by its header"
    )


def test_bomb_hiding_its_length_stops_decoding_at_the_limit(client, monkeypatch):
    """A header that states no duration: decoding stops just past `max_seconds`, never decodes the 5 minutes,
    and /health answers while bombs are being decoded."""
    decoded = []
    chunks = audio_module._decoded_chunks

    def counted(*args, **kwargs):
        for chunk in chunks(*args, **kwargs):
            decoded.append(len(chunk))
            yield chunk

    monkeypatch.setattr(audio_module, "_decoded_chunks", counted)
    bomb = silent_flac(300, hide_length=True)
    upload = {"audio": ("hidden.flac", bomb, "audio/flac")}
    with ThreadPoolExecutor(4) as pool:
        bombs = [pool.submit(client.post, "/predict", files=upload) for _ in range(3)]
        health = [client.get("/health").status_code for _ in range(3)]
        for bomb_response in bombs:
            assert_named(client, bomb_response.result(), 422, "hidden.flac", "longer than the limit of 8 s")
    assert health == [200] * 3
    assert sum(decoded) <= 3 * (MAX_SECONDS + 1) * 16000, f"decoded {sum(decoded) / 16000:.0f} s of audio"


# ---------------------------------------------------------------- malformed forms and inputs


def test_text_sent_as_a_file_is_named_not_dumped(client):
    response = client.post("/predict", files={"text": ("note.txt", b"I am happy", "text/plain")})
    assert_named(client, response, 422, "field `text` must be a form field, not a file")


def test_audio_sent_as_a_text_field(client):
    response = client.post("/predict", data={"audio": "hello.wav"})
    assert_named(client, response, 422, "field `audio` must be a file upload")


def test_bad_boolean(client):
    response = client.post("/predict", data={"text": "fine", "transcribe": "maybe"})
    assert_named(client, response, 422, "field `transcribe` must be true or false", "'maybe'")


def test_unreadable_upload_names_its_file(client):
    upload = {"audio": ("voice memo.m4a", b"\x00\x01 certainly not audio " * 40, "audio/mp4")}
    assert_named(client, client.post("/predict", files=upload), 422, "voice memo.m4a", "not an audio file")
    truncated = wav_bytes(np.zeros(16000))[:30]
    upload = {"audio": ("cut.wav", truncated, "audio/wav")}
    assert_named(client, client.post("/predict", files=upload), 422, "cut.wav")


@pytest.mark.parametrize("text", ["", "   ", "\u200b", "\x00\x01", "\ufeff\n"])
def test_empty_text_answers_in_plain_words(client, text):
    response = client.post("/predict", data={"text": text})
    assert_named(client, response, 422, "the `text` field is empty", "type some text")


def test_empty_text_beside_audio_is_left_out(client):
    wave = 0.1 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 220)
    files = {"audio": ("a.wav", wav_bytes(wave), "audio/wav")}
    response = client.post("/predict", data={"text": "\u200b"}, files=files)
    assert response.status_code == 200 and response.json()["view"] == "audio", response.text


def test_audio_too_short_or_out_of_range(client):
    blip = {"audio": ("blip.wav", wav_bytes(np.zeros(30)), "audio/wav")}
    assert_named(client, client.post("/predict", files=blip), 422, "blip.wav", "only 0.002 s long")
    loud = {"audio": ("loud.wav", wav_bytes(np.full(16000, 1e30), subtype="FLOAT"), "audio/wav")}
    assert_named(client, client.post("/predict", files=loud), 422, "loud.wav", "far outside -1..1")


def test_not_multipart_at_all(client):
    response = client.post("/predict", content=b"garbage", headers={"Content-Type": MULTIPART})
    assert response.status_code == 400 and "Traceback" not in response.text
    assert client.get("/health").json() == {"status": "ok"}


# ---------------------------------------------------------------- failures inside the model


def test_an_internal_failure_is_a_500_in_words(app, client, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internal state")

    monkeypatch.setattr(app.state.recognizer, "predict_batch", broken)
    response = client.post("/predict", data={"text": "hello"})
    detail = assert_named(client, response, 500, "internal error (RuntimeError)", "server log")
    assert "secret" not in detail


def test_one_failing_request_does_not_fail_its_batch(app, client, monkeypatch):
    """Requests batched together: the one the model cannot read gets a 422, its neighbours their answers."""
    batch = app.state.recognizer.predict_batch

    def picky(items, *args, **kwargs):
        if any(item["text"] == "poison" for item in items):
            raise ValueError("this text cannot be read")
        return batch(items, *args, **kwargs)

    monkeypatch.setattr(app.state.recognizer, "predict_batch", picky)
    texts = ["calm", "poison", "happy", "sad", "angry", "so so"] * 2
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda t: client.post("/predict", data={"text": t}), texts))
    for text, response in zip(texts, responses, strict=True):
        if text == "poison":
            assert_named(client, response, 422, "cannot predict from this input", "this text cannot be read")
        else:
            assert response.status_code == 200 and response.json()["view"] == "text", response.text
