"""The web page in a real browser: Debian's Chromium, driven by Playwright, against `localdepth serve`."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from server_support import serve_in_thread

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # WebGL still works: Chromium falls back to SwiftShader
TOKEN = "browser-test-token"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (apt-get install chromium)")


@pytest.fixture(scope="module")
def server(tiny_estimator):
    pytest.importorskip("fastapi")
    from localdepth.server import ServerSettings, create_app

    # a real uvicorn on loopback, in this process (the load test runs `localdepth serve` itself)
    with serve_in_thread(create_app([tiny_estimator], ServerSettings(token=TOKEN))) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_upload_shows_depth_and_a_3d_point_cloud(server, browser, shared_images, tmp_path):
    photo = shared_images / "demo04.jpg"
    width, height = Image.open(photo).size
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(f"{server}/?token={TOKEN}")  # sets the token cookie and redirects to /
    assert page.url == f"{server}/"
    page.wait_for_function("document.body.dataset.state === 'idle'", timeout=30_000)
    assert "depth-anything-v2-small" in page.locator("#model").inner_text()

    page.set_input_files("#file", str(photo))
    page.wait_for_function("['ready', 'error'].includes(document.body.dataset.state)", timeout=120_000)
    assert page.evaluate("document.body.dataset.state") == "ready", page.text_content("#status")

    # single-image mode: the scene's GLB download is not shown (a display:flex rule beat `hidden`), nor is
    # anything else the page marks hidden
    assert page.locator("#download-glb").is_hidden() and page.locator("#scene-downloads").is_hidden()
    shown_though_hidden = page.evaluate("[...document.querySelectorAll('[hidden]')]"
                                        ".filter(e => getComputedStyle(e).display !== 'none').map(e => e.id || e.tagName)")
    assert shown_though_hidden == []

    # the colour-mapped depth, at the photo's size, over the photo with the comparison slider
    assert page.evaluate("document.getElementById('depth').naturalWidth") == width
    assert page.evaluate("document.getElementById('depth').naturalHeight") == height
    page.locator("#slider").fill("20")
    assert page.evaluate("getComputedStyle(document.getElementById('compare')).getPropertyValue('--pos')").strip() == "20%"

    # the 3D canvas holds a point cloud and is not blank
    points = int(page.get_attribute("#viewer", "data-points"))
    assert points > 10_000
    page.wait_for_timeout(300)  # a few animation frames
    shot = np.asarray(Image.open(io.BytesIO(page.locator("#viewer").screenshot())).convert("RGB")).astype(np.float32)
    assert shot.std() > 5.0, "the 3D canvas looks blank"
    assert len(np.unique(shot.reshape(-1, 3), axis=0)) > 500

    # it is interactive: dragging turns the view
    box = page.locator("#viewer").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] * 0.6, steps=8)
    page.mouse.up()
    page.wait_for_timeout(300)
    turned = np.asarray(Image.open(io.BytesIO(page.locator("#viewer").screenshot())).convert("RGB")).astype(np.float32)
    assert np.abs(turned - shot).mean() > 1.0, "dragging did not change the 3D view"

    # a new colour map brings a new picture
    before = page.get_attribute("#depth", "src")
    page.select_option("#cmap", "gray")
    page.wait_for_function(f"document.getElementById('depth').src !== {before!r} && document.body.dataset.state === 'ready'",
                           timeout=120_000)

    # downloads: a 16-bit PNG of the photo's size
    with page.expect_download(timeout=120_000) as download:
        page.click("button[data-format=png16]")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "demo04_depth16.png"
    png = cv2.imread(str(saved), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and png.shape == (height, width)
    assert errors == []
    page.close()


def test_the_3d_photo_plays_in_the_page_downloads_as_mp4_and_the_stereo_view_shows(server, browser, shared_images,
                                                                                      tmp_path):
    import av

    photo = tmp_path / "demo04.jpg"  # a smaller copy: rendering, not the page, would take the time
    Image.open(shared_images / "demo04.jpg").resize((640, 416)).save(photo, quality=95)
    width, height = 640, 416
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server}/?token={TOKEN}")
    page.wait_for_function("document.body.dataset.state === 'idle'", timeout=30_000)
    page.set_input_files("#file", str(photo))
    page.wait_for_function("['ready', 'error'].includes(document.body.dataset.state)", timeout=180_000)
    assert page.evaluate("document.body.dataset.state") == "ready", page.text_content("#status")

    # the preview plays: its time runs and what it shows changes (frames drawn on a canvas a moment apart)
    page.wait_for_function("document.getElementById('photo3d').readyState >= 2 && "
                           "document.getElementById('photo3d').currentTime > 0", timeout=30_000)
    grab = """() => {
        const video = document.getElementById('photo3d');
        const canvas = document.createElement('canvas');
        canvas.width = video.videoWidth; canvas.height = video.videoHeight;
        const context = canvas.getContext('2d');
        context.drawImage(video, 0, 0);
        return [video.currentTime, Array.from(context.getImageData(0, 0, canvas.width, canvas.height).data)];
    }"""
    t0, first = page.evaluate(grab)
    page.wait_for_timeout(700)
    t1, later = page.evaluate(grab)
    assert t1 != t0, "the 3D photo does not play"
    assert np.abs(np.array(first, float) - np.array(later, float)).mean() > 0.5, "the frames do not change"
    assert page.evaluate("document.getElementById('photo3d').videoHeight") == height  # 480 asked, at most the photo's
    frames = int(page.get_attribute("#photo3d", "data-frames"))
    assert frames == 60  # 3 s at 20 fps, the page's request

    # the MP4 downloads: the same video, every frame
    with page.expect_download(timeout=60_000) as download:
        page.click("#download-photo3d")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "demo04_3d.mp4"
    with av.open(str(saved)) as container:
        stream = container.streams.video[0]
        decoded = [f for f in container.decode(stream)]
        assert stream.codec_context.name == "h264" and len(decoded) == frames
        assert (decoded[0].height, decoded[0].width) == (height, width)

    # the stereo view: a red-cyan anaglyph at the photo's size (under the server's render size), then the pair
    assert page.evaluate("document.getElementById('stereo').naturalWidth") == width
    page.select_option("#stereo-format", "sbs")
    page.wait_for_function(f"document.getElementById('stereo').naturalWidth === {2 * width} && "
                           "document.body.dataset.state === 'ready'", timeout=120_000)
    assert page.evaluate("document.getElementById('stereo').naturalHeight") == height
    assert errors == []
    page.close()


def test_the_page_needs_the_token(server, browser):
    page = browser.new_page()
    response = page.goto(f"{server}/")
    assert response.status == 401
    page.close()


def test_api_docs_render_offline(server, browser):
    page = browser.new_page()
    external = []
    page.on("request", lambda r: external.append(r.url) if not r.url.startswith(server) else None)
    page.goto(f"{server}/?token={TOKEN}")
    page.goto(f"{server}/docs")
    page.wait_for_selector("#operations-default-depth_v1_depth_post, .opblock-post", timeout=30_000)
    assert "/v1/depth" in page.inner_text(".swagger-ui")
    assert [u for u in external if not u.startswith(("data:", "blob:"))] == []
    page.close()


@pytest.fixture(scope="module")
def scene_server(tiny_estimator):
    pytest.importorskip("fastapi")
    pytest.importorskip("open3d")
    pytest.importorskip("trimesh")
    from scene_support import ServedPlaneViews

    from localdepth.server import ServerSettings, create_app

    models = [ServedPlaneViews(tiny_estimator), tiny_estimator]
    with serve_in_thread(create_app(models, ServerSettings(token=TOKEN))) as base:
        yield base


def test_several_photos_make_a_scene_with_its_cameras(scene_server, browser, shared_images, tmp_path):
    photos = [str(shared_images / name) for name in ("demo01.jpg", "demo04.jpg", "demo08.jpg")]
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{scene_server}/?token={TOKEN}")
    page.wait_for_function("document.body.dataset.state === 'idle'", timeout=30_000)

    # a single-image model refuses several photos in one line, before any request
    page.select_option("#model", "depth-anything-v2-small")
    page.set_input_files("#file", photos)
    assert "a scene needs an any-view model" in page.text_content("#status")

    page.select_option("#model", "plane-views")  # the photos wait for an any-view model
    page.wait_for_function("['ready', 'error'].includes(document.body.dataset.state)", timeout=120_000)
    assert page.evaluate("document.body.dataset.state") == "ready", page.text_content("#status")
    assert page.get_attribute("#viewer", "data-cameras") == "3"
    assert int(page.get_attribute("#viewer", "data-points")) > 1000
    assert page.locator("#flat").is_hidden() and page.locator("#download-glb").is_visible()
    page.wait_for_timeout(300)
    shot = np.asarray(Image.open(io.BytesIO(page.locator("#viewer").screenshot())).convert("RGB")).astype(np.float32)
    assert shot.std() > 5.0, "the 3D canvas looks blank"

    with page.expect_download(timeout=120_000) as download:
        page.click("#download-glb")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "scene.glb" and saved.read_bytes()[:4] == b"glTF"
    page.screenshot(path=str(tmp_path / "scene_page.png"))
    assert errors == []
    page.close()
