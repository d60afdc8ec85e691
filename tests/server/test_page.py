"""The web page in a real browser: Debian's headless Chromium driven by Playwright (``executable_path``,
since ``playwright install`` cannot download browsers here). Open an image, click, and see mask pixels
on the canvas; the same for a short video with propagation. Screenshots are kept as test artifacts
(``SAM2EDGE_PAGE_SCREENSHOT=path`` also copies the image one there, e.g. docs/server-page.png)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.server.conftest import CLIP_FRAMES
from tests.video.clip import make_clip

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install chromium); .ci/run installs it", allow_module_level=True)

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
COUNT_MASK_PIXELS = """(id) => {
  const c = document.getElementById(id);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
  return n;
}"""


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1100, "height": 820})
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(server.url + "/")
        yield pg
        assert not errors, errors
        browser.close()


def test_image_click_draws_a_mask(page, photo, tmp_path):
    import cv2

    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), photo[:, :, ::-1])
    page.wait_for_function("document.getElementById('model-info').textContent.includes('onnxruntime')", timeout=30_000)
    assert page.evaluate(COUNT_MASK_PIXELS, "mask-canvas") == 0
    page.set_input_files("#image-file", str(path))
    page.wait_for_function("document.getElementById('image-status').textContent.startsWith('ready')", timeout=600_000)
    box = page.locator("#prompt-canvas").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.35)
    page.wait_for_function("document.getElementById('image-status').textContent.startsWith('mask')", timeout=300_000)
    status = page.text_content("#image-status")
    area = int(status.split()[1])
    drawn = page.evaluate(COUNT_MASK_PIXELS, "mask-canvas")
    print(f"image: {status}; {drawn} mask pixels on the {box['width']:.0f}x{box['height']:.0f} canvas")
    assert area > 0 and drawn > 0
    assert page.locator("#mask-list button").count() == 3  # the best mask and two alternatives with scores
    shot = tmp_path / "server-page.png"
    page.locator("body").screenshot(path=str(shot), type="png")
    assert shot.stat().st_size > 10_000
    target = os.environ.get("SAM2EDGE_PAGE_SCREENSHOT")
    if target:
        shutil.copy(shot, target)
    # a right click adds a negative point and re-segments
    page.mouse.click(box["x"] + box["width"] * 0.8, box["y"] + box["height"] * 0.8, button="right")
    page.wait_for_function(f"document.getElementById('image-status').textContent.startsWith('mask') && "
                           f"document.getElementById('image-status').textContent !== {status!r}", timeout=300_000)


def test_video_click_and_propagate(page, server, clip_file, tmp_path):
    clip = make_clip(num_frames=CLIP_FRAMES)
    page.click("button[data-tab=video]")
    page.set_input_files("#video-file", str(clip_file))
    page.wait_for_function("document.getElementById('video-status').textContent.includes('Click on an object')", timeout=120_000)
    box = page.locator("#vprompt-canvas").bounding_box()
    cx, cy = clip.center(1, 0)
    page.mouse.click(box["x"] + cx * box["width"] / 128, box["y"] + cy * box["height"] / 96)
    page.wait_for_function("document.getElementById('video-status').textContent.includes('mask')", timeout=300_000)
    page.click("#propagate")
    page.wait_for_function("document.getElementById('video-status').textContent.startsWith('done')", timeout=600_000)
    status = page.text_content("#video-status")
    assert f"{CLIP_FRAMES} frames" in status
    drawn = page.evaluate(COUNT_MASK_PIXELS, "vmask-canvas")
    print(f"video: {status}; {drawn} mask pixels on the last frame")
    assert drawn > 0
    page.locator("body").screenshot(path=str(tmp_path / "server-page-video.png"), type="png")
    with server.client() as c:  # free the session slot for the other tests
        assert c.delete(f"/video/sessions/{page.evaluate('vid.session')}").status_code == 200
