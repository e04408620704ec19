"""The web page at / in a real headless Chromium (Debian's, driven by Playwright) against the real server,
with the built-in simulated detector sending."""

from __future__ import annotations

import io
import re
import shutil

import numpy as np
import pytest
import requests
from conftest import wait_for
from PIL import Image

CHROMIUM = "/usr/bin/chromium"


def start_built_in_simulator(daq, rate_hz: float) -> None:
    """POST with a JSON body where the server takes it, else GET with query parameters (the original API)."""
    answer = requests.post(daq.url + "/simulation/start", json={"rate_hz": rate_hz}, timeout=10)
    if answer.status_code >= 400:
        answer = requests.get(daq.url + "/simulation/start", params={"rate_hz": rate_hz}, timeout=10)
    assert answer.json()["status"] == "ok", answer.text


@pytest.fixture
def browser_page():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.fail("chromium is not installed: run `sh scripts/system-packages.sh test` (make test does)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page
        browser.close()
        assert not errors, f"the page's script failed: {errors}"


def frame_number(page) -> int | None:
    match = re.search(r"frame (\d+)", page.text_content("#frame") or "")
    return int(match.group(1)) if match else None


def test_latest_image_endpoint_scales_and_numbers_frames(sending):
    wait_for(lambda: requests.get(sending.url + "/daq/live/latest.png", timeout=5).headers["X-Frame-Number"])
    linear = requests.get(sending.url + "/daq/live/latest.png", params={"scale": "linear"}, timeout=5)
    log = requests.get(sending.url + "/daq/live/latest.png", params={"scale": "log"}, timeout=5)
    for answer in (linear, log):
        assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/png"
        assert int(answer.headers["X-Frame-Number"]) >= 19001
        assert float(answer.headers["X-Scale-Min"]) < float(answer.headers["X-Scale-Max"])
        image = Image.open(io.BytesIO(answer.content))
        assert image.mode == "RGB" and image.size == (512, 512)  # 1024 x 1024 strided to 512 a side
        assert len(np.unique(np.asarray(image).reshape(-1, 3), axis=0)) > 16  # a colour map, not grey
    bad = requests.get(sending.url + "/daq/live/latest.png", params={"scale": "cubic"}, timeout=5)
    assert bad.status_code == 400 and "linear, log" in bad.json()["message"]


def test_page_shows_state_rates_log_and_a_live_image(daq, browser_page):
    page = browser_page
    answer = requests.get(daq.url + "/", timeout=5)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/html")

    page.goto(daq.url + "/")
    page.wait_for_function("document.getElementById('writer-state').textContent === 'READY'", timeout=10_000)
    assert "JF-test (jungfrau, 1024 x 1024, 16 bit)" in page.text_content("#detector")
    assert page.text_content("#frame") == "(no image yet)"

    start_built_in_simulator(daq, rate_hz=20)
    page.wait_for_function("/frame \\d+/.test(document.getElementById('frame').textContent)", timeout=10_000)
    first_frame, first_shot = frame_number(page), page.locator("#latest").screenshot()
    wait_for(lambda: (frame_number(page) or 0) > first_frame, timeout=10)
    wait_for(lambda: page.locator("#latest").screenshot() != first_shot, timeout=10)
    page.wait_for_function("parseFloat(document.getElementById('det-rate').textContent) > 5", timeout=10_000)

    with page.expect_request(lambda request: "latest.png?scale=log" in request.url, timeout=5_000):
        page.check("input[name=scale][value=log]")

    output = daq.data_root / "from_page_test.h5"
    daq.client.start_writer_async({"output_file": str(output), "n_images": 40})
    page.wait_for_function("document.getElementById('writer-state').textContent === 'WRITING'", timeout=10_000)
    page.wait_for_function("document.getElementById('log').textContent.includes('from_page_test.h5')", timeout=20_000)
    assert page.text_content("#writer-state") == "READY"
    assert "40 / 40" in page.text_content("#log")
