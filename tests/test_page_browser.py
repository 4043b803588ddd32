"""The page in a real browser: headless Chromium against a real uvicorn server on a loopback port.

Typed text gets a prediction; an uploaded file longer than the model's limit gets a timeline; Chromium's fake
microphone, fed a WAV file, records and gets live updates over the WebSocket, then the recording (WebM/Opus)
is predicted through POST /predict. Skipped, with the reason, where Chromium, chromedriver or selenium is
missing (CI installs them: `.ci/run`).

`MAMER_SCREENSHOTS=docs/img` serves the shipped mamer-base model with ASR instead of a tiny test model and
saves page-text.png, page-file.png and page-live.png there (the docs' screenshots); nothing is written otherwise.
"""

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

CHROMIUM = Path(os.environ.get("MAMER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium")
DRIVER = Path(os.environ.get("MAMER_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver")
SCREENSHOTS = os.environ.get("MAMER_SCREENSHOTS")
WAIT = 60 if SCREENSHOTS else 30  # seconds any one step may take

missing = [str(p) for p in (CHROMIUM, DRIVER) if not p.is_file()]
pytestmark = pytest.mark.skipif(
    bool(missing),
    reason=f"no headless browser: {', '.join(missing)} not found (apt-get install chromium chromium-driver, "
    "or set MAMER_CHROMIUM / MAMER_CHROMEDRIVER)",
)
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed: pip install -e '.[dev]'"
)
uvicorn = pytest.importorskip("uvicorn", reason="uvicorn is not installed: pip install -e '.[serve]'")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from mamer.workflows.inference.recognizer import EmotionRecognizer  # noqa: E402
from mamer.workflows.service.app import create_app  # noqa: E402

SENTENCES = [
    "I am so happy to see you again, this is wonderful news.",
    "Why did you do that? I told you a hundred times to stop!",
    "I miss her every single day, and nothing feels the same.",
    "The meeting starts at ten and ends at noon.",
]


def speech(seconds: float) -> np.ndarray:
    """At least `seconds` of espeak-ng speech at 16 kHz, the sentences in turn with a pause between."""
    from mamer.data.audio import resample
    from mamer.data.espeak import EspeakSynthesizer

    tts, parts, total, i = EspeakSynthesizer(), [], 0, 0
    while total < seconds * 16000:
        wave = resample(tts.synthesize(SENTENCES[i % len(SENTENCES)]), tts.sample_rate, 16000)
        parts += [wave, np.zeros(12000, np.float32)]
        total, i = total + len(wave) + 12000, i + 1
    return np.concatenate(parts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model(train_tiny, tmp_path_factory) -> str:
    """mamer-base for the docs' screenshots; otherwise a tiny run whose limit is 5.12 s of audio."""
    if SCREENSHOTS:
        return "mamer-base"
    return str(train_tiny(tmp_path_factory.mktemp("browser_run"), "quickstart", "model.max_audio_tokens=128"))


@pytest.fixture(scope="module")
def server(model):
    """`mamer serve` on a free loopback port, in a thread of this process."""
    app = create_app(model, asr="whisper-base" if SCREENSHOTS else None)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="auto")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def files(tmp_path_factory, model) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("browser_files")
    limit = EmotionRecognizer.load(model).max_seconds
    out = {"microphone": folder / "microphone.wav", "long": folder / "conversation.wav"}
    sf.write(out["microphone"], speech(8.0), 16000, subtype="PCM_16")
    sf.write(out["long"], speech(limit + 3.0), 16000, subtype="PCM_16")
    out["broken"] = folder / "broken.mp3"
    out["broken"].write_bytes(b"this is not an mp3 file at all" * 20)
    return out


@pytest.fixture(scope="module")
def browser(files, tmp_path_factory):
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never try to download a driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=820,1000", "--hide-scrollbars",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium_profile')}",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={files['microphone']}",
        "--autoplay-policy=no-user-gesture-required",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(DRIVER)), options=options)
    yield driver
    driver.quit()


def open_page(browser, server) -> None:
    browser.get(server)
    WebDriverWait(browser, WAIT).until(lambda d: d.find_element(By.ID, "model-name").text)


def visible_text(browser, element_id: str) -> str:
    element = browser.find_element(By.ID, element_id)
    return element.text if element.is_displayed() else ""


def screenshot(browser, name: str) -> None:
    """Save the whole page as `name` under $MAMER_SCREENSHOTS, when it is set."""
    if not SCREENSHOTS:
        return
    height = browser.execute_script("window.scrollTo(0, 0); return document.documentElement.scrollHeight")
    browser.set_window_size(820, min(int(height) + 20, 4000))
    time.sleep(0.3)
    Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(Path(SCREENSHOTS) / name))
    browser.set_window_size(820, 1000)


def test_typed_text_gets_a_prediction_and_the_card_is_shown(browser, server):
    open_page(browser, server)
    card = browser.find_element(By.ID, "card").text
    assert "Trained on" in card and "Licence" in card
    browser.find_element(By.ID, "text").send_keys("I am so happy to see you again, this is wonderful news!")
    browser.find_element(By.ID, "predict").click()
    WebDriverWait(browser, WAIT).until(lambda d: visible_text(d, "label"))
    assert browser.find_element(By.ID, "view").text == "read from: text"
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
    assert len(bars) == len(browser.execute_script("return state.card.labels"))
    screenshot(browser, "page-text.png")
    browser.set_window_size(390, 844)  # a phone's width: nothing may stick out sideways
    widths = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    browser.set_window_size(820, 1000)
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide in a {widths[1]} px window"


def test_an_unreadable_file_is_refused_in_words(browser, server, files):
    open_page(browser, server)
    browser.find_element(By.ID, "file").send_keys(str(files["broken"]))
    browser.find_element(By.ID, "predict").click()
    WebDriverWait(browser, WAIT).until(lambda d: visible_text(d, "error"))
    assert "could not use this input: broken.mp3" in browser.find_element(By.ID, "error").text


def test_an_uploaded_long_file_gets_a_timeline(browser, server, files):
    open_page(browser, server)
    browser.find_element(By.ID, "file").send_keys(str(files["long"]))
    browser.find_element(By.ID, "predict").click()
    WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#segments button"))
    assert browser.find_element(By.ID, "timeline").is_displayed()
    assert not browser.find_element(By.ID, "result").is_displayed()
    assert "segments" in browser.find_element(By.ID, "timeline-summary").text
    segments = browser.find_elements(By.CSS_SELECTOR, "#segments button")
    assert len(segments) >= 2 and len(browser.find_elements(By.CSS_SELECTOR, "#strip span")) == len(segments)
    segments[1].click()  # plays that stretch of the file
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return !$('player').paused"))
    assert "playing" in segments[1].get_attribute("class")
    screenshot(browser, "page-file.png")


def test_recording_gets_live_updates_then_a_prediction(browser, server):
    open_page(browser, server)
    browser.find_element(By.ID, "record").click()
    wanted = 6 if SCREENSHOTS else 2
    WebDriverWait(browser, WAIT).until(
        lambda d: int(d.find_element(By.ID, "live-panel").get_attribute("data-windows") or 0) >= wanted
    )
    assert "answered in" in browser.find_element(By.ID, "live-now").text
    assert browser.find_element(By.ID, "record").get_attribute("aria-pressed") == "true"
    assert not visible_text(browser, "error")
    screenshot(browser, "page-live.png")
    browser.find_element(By.ID, "record").click()  # stop: the WebM/Opus recording goes to POST /predict
    WebDriverWait(browser, WAIT).until(lambda d: visible_text(d, "label") or visible_text(d, "error"))
    assert not visible_text(browser, "error")
    assert browser.find_element(By.ID, "view").text.startswith("read from: audio")
