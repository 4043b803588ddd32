import io
import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

import mamer
from mamer.data.manifest import read_manifest
from mamer.workflows.inference.recognizer import EmotionRecognizer
from mamer.workflows.service.app import create_app

# the service answers to loopback names; a TestClient's own host, `testserver`, is refused
LOCAL = "http://localhost"


@pytest.fixture(scope="module")
def runs(train_tiny, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("serve_runs")
    return {
        "unified": train_tiny(folder),
        "text_only": train_tiny(folder, "quickstart_text_only"),
    }


@pytest.fixture(scope="module")
def client(runs):
    # One event loop for every request, as in uvicorn (a bare TestClient starts one per request).
    app = create_app(runs["unified"], max_upload_mb=0.5, max_seconds=8.0, asr=None)
    with TestClient(app, base_url=LOCAL) as client:
        yield client


@pytest.fixture(scope="module")
def utterances(tiny_corpus):
    return [u for u in read_manifest(tiny_corpus)[0] if u.split == "test"]


def wav_bytes(seconds: float, sample_rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    sf.write(buffer, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sample_rate, format="WAV")
    return buffer.getvalue()


def test_health_info_and_openapi(client):
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/info").json()
    assert info["labels"] == ["angry", "happy", "neutral", "sad"] and info["task"] == "categorical"
    assert info["views"] == ["audio", "text", "audio+text"] and info["mamer_version"] == mamer.__version__
    assert info["encoders"]["audio"]["name"] == "logmel" and info["encoders"]["text"]["name"] == "hashed"
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_predict_each_view_matches_the_python_api(client, runs, utterances):
    recognizer = EmotionRecognizer.load(runs["unified"])
    u = utterances[0]
    for data, files in (
        ({"text": u.text}, None),
        ({}, {"audio": (u.audio.name, u.audio.read_bytes(), "audio/wav")}),
        ({"text": u.text}, {"audio": (u.audio.name, u.audio.read_bytes(), "audio/wav")}),
    ):
        response = client.post("/predict", data=data, files=files)
        assert response.status_code == 200, response.text
        body = response.json()
        expected = recognizer.predict(audio=u.audio if files else None, text=data.get("text"))
        assert body["view"] == expected.view
        # uploads go through PyAV's resampler, files through libsndfile + resample_poly: close, not identical
        np.testing.assert_allclose(
            list(body["probabilities"].values()), list(expected.probabilities.values()), atol=5e-3
        )


def test_rejections(client, runs):
    cases = [
        ({}, None, 422, "send an `audio` file, a `text` field, or both"),
        ({"text": "  "}, None, 422, "send an `audio` file"),
        ({}, {"audio": ("x.wav", b"not audio at all", "audio/wav")}, 422, "x.wav: not an audio file"),
        (
            {},
            {"audio": ("long.wav", wav_bytes(10.0, 8000), "audio/wav")},
            422,
            "long.wav: audio is longer than the limit of 8 s (10.0 s stated by its header)",
        ),
        ({}, {"audio": ("big.wav", wav_bytes(20.0), "audio/wav")}, 413, "at most 0.5 MB"),
    ]
    for data, files, status, message in cases:
        response = client.post("/predict", data=data, files=files)
        assert response.status_code == status, response.text
        assert message in response.json()["detail"]
    text_only = TestClient(create_app(runs["text_only"]), base_url=LOCAL)
    response = text_only.post("/predict", files={"audio": ("a.wav", wav_bytes(1.0), "audio/wav")})
    assert response.status_code == 422 and "trained without audio" in response.json()["detail"]
    assert text_only.get("/info").json()["views"] == ["text"]


def test_webm_opus_upload_is_decoded_and_transcribed(runs):
    av = pytest.importorskip("av")
    from mamer.data.espeak import EspeakSynthesizer

    tts = EspeakSynthesizer()
    wave = tts.synthesize("The weather was lovely this morning.")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="webm") as out:  # what a browser's MediaRecorder sends
        stream = out.add_stream("libopus", rate=48000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(
            np.round(np.clip(wave, -1, 1) * 32767).astype(np.int16)[None], format="s16", layout="mono"
        )
        frame.sample_rate = tts.sample_rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    upload = {"audio": ("recording.webm", buffer.getvalue(), "audio/webm")}
    with TestClient(create_app(runs["unified"], asr="whisper-tiny.en"), base_url=LOCAL) as client:
        answer = client.post("/predict", files=upload)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["view"] == "audio+text" and body["asr_model"] == "whisper-tiny.en"
        assert "lovely" in body["transcript"].lower()
        quiet = client.post("/predict", files=upload, data={"transcribe": "false"}).json()
        assert quiet["view"] == "audio" and "transcript" not in quiet


def test_concurrent_requests_do_not_mix(client, utterances):
    """Each of many simultaneous requests gets the answer it gets alone."""
    requests = [(u.text, u.audio.read_bytes() if i % 2 else None) for i, u in enumerate(utterances)]

    def send(request):
        text, audio = request
        files = {"audio": ("a.wav", audio, "audio/wav")} if audio else None
        return client.post("/predict", data={"text": text}, files=files).json()

    alone = [send(r) for r in requests]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(send, requests * 3))
    for i, body in enumerate(together):
        expected = alone[i % len(requests)]
        assert body["view"] == expected["view"]
        np.testing.assert_allclose(
            list(body["probabilities"].values()), list(expected["probabilities"].values()), atol=1e-5
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_uvicorn_process(runs):
    port = free_port()
    command = [sys.executable, "-m", "mamer", "serve", str(runs["unified"]), "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stdout.read().decode()
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not come up within 60 s"
            time.sleep(0.2)
        response = httpx.post(f"{url}/predict", data={"text": "I am really happy"}, timeout=30)
        assert response.status_code == 200 and response.json()["view"] == "text"
        assert json.loads(response.text)["label"] in ("angry", "happy", "neutral", "sad")
    finally:
        server.terminate()
        server.wait(timeout=20)
