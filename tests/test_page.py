"""The browser page without a browser: `/`, its static files, `/card`, and the `WS /live` protocol."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from conftest import speechlike
from mamer.workflows.inference.pretrained import builtin_folder
from mamer.workflows.inference.recognizer import EmotionRecognizer
from mamer.workflows.service.app import create_app
from mamer.workflows.service.page import STATIC, SYNTHETIC_NOTE, released_card
from test_release_card import card_score


@pytest.fixture(scope="module")
def runs(train_tiny, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("page_runs")
    return {"unified": train_tiny(folder), "text_only": train_tiny(folder, "quickstart_text_only")}


@pytest.fixture(scope="module")
def client(runs):
    with TestClient(create_app(runs["unified"], asr=None, allow_hosts=["testserver"])) as client:
        yield client


def frames(wave: np.ndarray, seconds: float = 0.1) -> list[bytes]:
    step = int(16000 * seconds)
    return [wave[i : i + step].astype("<f4").tobytes() for i in range(0, len(wave), step)]


def live_messages(ws) -> list[dict]:
    """Every message up to the server's `end` (or its closing)."""
    out = []
    while True:
        try:
            message = ws.receive_json()
        except WebSocketDisconnect:
            return out
        out.append(message)
        if message["type"] in ("end", "error"):
            return out


def test_the_page_and_its_files_are_served_from_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css"), ("capture.js", "javascript")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
        assert response.text == (STATIC / name).read_text()
    # self-contained: every script, style sheet and module the page loads comes from this server
    linked = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert linked and all(u.startswith(("/", "#")) for u in linked), linked
    for name in ("index.html", "app.js", "style.css", "capture.js"):  # no CDN, no web font, no remote URL
        assert not re.search(r"(https?:)?//[\w-]+\.[\w.-]+", (STATIC / name).read_text()), name
    assert client.get("/static/nothing.js").status_code == 404


def test_the_card_of_a_run(client):
    card = client.get("/card").json()
    assert card["name"] == "unified" and card["labels"] == ["angry", "happy", "neutral", "sad"]
    assert card["dimensions"] == [] and card["views"] == ["audio", "text", "audio+text"]
    assert card["training_data"] == ["synthetic quickstart corpus"] and card["summary"] == SYNTHETIC_NOTE
    assert card["encoders"] == {"audio": "logmel", "text": "hashed"} and card["transcription"] is False
    assert card["max_seconds"] > 0 and card["params"] > 0


def test_the_card_of_the_released_model():
    card = released_card((builtin_folder("mamer-base") / "README.md").read_text())
    assert card["name"] == "mamer-base" and card["licence"] == "cc-by-nc-sa-4.0"
    assert card["training_data"] == ["EmoDB", "RAVDESS", "MELD", "GoEmotions", "EmoBank"]
    uar = card_score("EmoDB", "uar")  # the card's own figure, which test_release_card recomputes
    assert {"data": "EmoDB", "split": "test_emodb", "metric": "uar", "value": uar} in card["scores"]
    assert card["summary"].startswith("One emotion model that takes speech, its transcript, or both")
    assert card["summary"].endswith("It ships inside the `mamer` package and works offline.")
    assert released_card("no header here") == {"training_data": [], "scores": [], "summary": "no header here"}


def test_live_round_trip_matches_the_python_api(client, runs):
    wave = speechlike(3.0, seed=1)
    with client.websocket_connect("/live?window=2&hop=0.5") as ws:
        ready = ws.receive_json()
        assert ready["type"] == "ready" and ready["window"] == 2 and ready["hop"] == 0.5
        assert ready["sample_rate"] == 16000 and ready["transcribe"] is False
        for frame in frames(wave):
            ws.send_bytes(frame)
        ws.send_text(json.dumps({"type": "end"}))
        messages = live_messages(ws)
    windows, end = messages[:-1], messages[-1]
    assert end == {"type": "end", "windows": len(windows), "dropped": end["dropped"]}
    assert len(windows) + end["dropped"] >= 6  # a window every 0.5 s of 3 s of audio (some may be dropped)
    assert [m["t"] for m in windows] == sorted(m["t"] for m in windows) and windows[-1]["t"] == 3.0
    for m in windows:
        assert m["type"] == "window" and m["view"] == "audio" and m["latency_ms"] >= 0
        assert abs(sum(m["probabilities"].values()) - 1) < 1e-4 and m["label"] in m["probabilities"]
        assert m["end"] - m["start"] <= 2.0 and "transcript" not in m
    expected = EmotionRecognizer.load(runs["unified"]).predict(audio=wave[-32000:], sample_rate=16000)
    np.testing.assert_allclose(
        list(windows[-1]["probabilities"].values()), list(expected.probabilities.values()), atol=1e-5
    )


def test_live_protocol_errors_are_answered_in_words(client, runs):
    cases = [
        ("/live?window=abc", None, "window='abc' is not a number of seconds"),
        ("/live?window=100", None, "window=100 s is out of range: use 0.5 to 30 s"),
        ("/live?asr=maybe", None, "asr='maybe': use asr=on or asr=off"),
        ("/live", b"\x00" * 7, "this one has 7 bytes, not a multiple of 4"),
        ("/live", np.full(4, np.nan, "<f4").tobytes(), "NaN or infinite samples"),
        ("/live", np.zeros(16000 * 6, "<f4").tobytes(), "at most 5 s (80000 samples at 16 kHz)"),
        ("/live", "hello", 'the text frame {"type": "end"}'),
    ]
    for url, frame, words in cases:
        with client.websocket_connect(url) as ws:
            if frame is not None:
                assert ws.receive_json()["type"] == "ready"
                ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_text(frame)
            messages = live_messages(ws)
        assert messages[-1]["type"] == "error" and words in messages[-1]["detail"], (url, words, messages)
    with client.websocket_connect("/live?asr=on") as ws:  # a service without ASR says so and goes on
        ready = ws.receive_json()
        assert ready["transcribe"] is False and "without speech recognition" in ready["note"]
    with TestClient(create_app(runs["text_only"], asr=None, allow_hosts=["testserver"])) as text_only:
        with text_only.websocket_connect("/live") as ws:
            assert "trained without audio" in live_messages(ws)[-1]["detail"]


def test_live_takes_the_services_own_page_and_refuses_other_sites(client):
    own = {"origin": "http://testserver"}  # the TestClient's Host is `testserver`
    with client.websocket_connect("/live", headers=own) as ws:
        assert ws.receive_json()["type"] == "ready"
    with client.websocket_connect("/live", headers={"origin": "https://elsewhere.example"}) as ws:
        detail = live_messages(ws)[-1]["detail"]
    assert "the page at https://elsewhere.example is another site" in detail and "--allow-origin" in detail


def test_live_streams_are_capped_and_an_allowed_origin_gets_in(runs):
    origins, hosts = ["https://lab.example/"], ["testserver"]
    app = create_app(runs["unified"], asr=None, max_live=1, allow_origins=origins, allow_hosts=hosts)
    with TestClient(app) as client:
        with client.websocket_connect("/live", headers={"origin": "https://lab.example"}) as first:
            assert first.receive_json()["type"] == "ready"
            with client.websocket_connect("/live") as second:
                detail = live_messages(second)[-1]["detail"]
            assert "already serves 1 streams" in detail and "try again later" in detail
        with client.websocket_connect("/live") as third:  # the first has left: room again
            assert third.receive_json()["type"] == "ready"
