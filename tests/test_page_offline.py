"""The page's API documentation and its live region in a real browser that can reach nothing but the server
(issue 37, items 7 and 8): `/docs` and `/redoc` show the operations with every other host unresolvable, and
live mode announces a change of label, not every second's answer. Skipped as tests/test_page_browser.py is."""

import os
import re

import pytest

from test_page_browser import CHROMIUM, DRIVER, WAIT, files, missing, model, server  # noqa: F401 - fixtures

pytestmark = pytest.mark.skipif(bool(missing), reason=f"no headless browser: {', '.join(missing)} not found")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def offline(files, tmp_path_factory):  # noqa: F811 - the fixture imported above
    """Headless Chromium for which every host but 127.0.0.1 does not exist (no CDN, no fonts), with a fake
    microphone that plays `files["microphone"]`."""
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--window-size=1000,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium_offline')}",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={files['microphone']}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(DRIVER)), options=options)
    yield driver
    driver.quit()


def test_the_api_pages_show_the_operations_offline(offline, server):  # noqa: F811
    offline.get(f"{server}/docs")
    WebDriverWait(offline, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    paths = {e.text for e in offline.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/predict", "/health", "/info", "/card"} <= {p.replace("\u200b", "") for p in paths}
    offline.get(f"{server}/redoc")
    WebDriverWait(offline, WAIT).until(lambda d: "/predict" in d.find_element(By.TAG_NAME, "body").text)
    assert "Predict" in offline.find_element(By.TAG_NAME, "body").text


WATCH = """
window.spoken = [];  // what each live region said, in order
for (const region of document.querySelectorAll('[aria-live], [role=status], [role=alert]')) {
  new MutationObserver(() => window.spoken.push([region.id, region.textContent]))
    .observe(region, { childList: true, characterData: true, subtree: true });
}
window.shown = [];  // what #live-now showed, in order
new MutationObserver(() => window.shown.push(document.getElementById('live-now').textContent))
  .observe(document.getElementById('live-now'), { childList: true, characterData: true, subtree: true });
"""


def test_live_mode_announces_changes_of_label_only(offline, server):  # noqa: F811
    offline.get(server)
    WebDriverWait(offline, WAIT).until(lambda d: d.find_element(By.ID, "model-name").text)
    live_now = offline.find_element(By.ID, "live-now")
    assert live_now.get_attribute("aria-live") is None and live_now.get_attribute("role") is None
    offline.execute_script(WATCH)
    offline.find_element(By.ID, "record").click()
    WebDriverWait(offline, WAIT).until(
        lambda d: int(d.find_element(By.ID, "live-panel").get_attribute("data-windows") or 0) >= 4
    )
    offline.find_element(By.ID, "record").click()
    spoken = [
        text for region, text in offline.execute_script("return window.spoken") if region == "live-announce"
    ]
    labels = [m.group(1) for text in offline.execute_script("return window.shown")
              if (m := re.match(r"[\d:.]+: (\w+) ", text))]  # fmt: skip
    changes = [b for a, b in zip([None, *labels], labels, strict=False) if a != b]
    assert len(labels) >= 4 and [s for s in spoken if s] == [f"Now {label}" for label in changes]
    others = [
        region for region, _ in offline.execute_script("return window.spoken") if region != "live-announce"
    ]
    assert len(others) < len(labels)  # no other live region follows the answers


def test_an_upload_shows_its_progress_outside_the_live_regions(offline, server, files):  # noqa: F811
    offline.get(server)
    WebDriverWait(offline, WAIT).until(lambda d: d.find_element(By.ID, "model-name").text)
    offline.execute_script("""
      window.progress = [];
      new MutationObserver(() => window.progress.push(document.getElementById('progress-text').textContent))
        .observe(document.getElementById('progress-text'), { childList: true, characterData: true, subtree: true });
    """)
    offline.find_element(By.ID, "file").send_keys(str(files["long"]))
    offline.find_element(By.ID, "predict").click()
    WebDriverWait(offline, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#segments button"))
    shown = offline.execute_script("return window.progress")
    assert any(text.startswith("Sending the audio") for text in shown), shown
    assert any("so far" in text for text in shown), shown  # the server's part, timed
    assert not offline.find_element(By.ID, "progress-row").is_displayed()
    row = offline.find_element(By.ID, "progress-row")
    assert row.get_attribute("aria-live") is None and row.get_attribute("role") is None
