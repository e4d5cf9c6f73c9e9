"""http(s):// image inputs for `predict()` and `localdepth run`, from a test HTTP server bound to 127.0.0.1:
fetched and decoded like files; oversized, slow and missing URLs refused in one line each."""

from __future__ import annotations

import http.server
import json
import threading
import time

import numpy as np
import pytest
from PIL import Image

from localdepth.errors import FetchError
from localdepth.fetch import FetchLimits, fetch, url_filename

from conftest import rng_image


class _Handler(http.server.BaseHTTPRequestHandler):
    photo = b""
    other = b""  # a second picture, different from ``photo``
    requested: list[str] = []

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        self.requested.append(self.path)
        try:
            if self.path == "/photos/room%20one.png":
                self._send(self.photo)
            elif self.path in ("/a/internal.png", "/x/demo01.jpg"):
                self._send(self.photo)
            elif self.path == "/b/internal.png":
                self._send(self.other)
            elif self.path == "/drip-headers.png":  # the status line and headers, one byte every 0.2 s
                head = (f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {len(self.photo)}"
                        "\r\nX-Padding: " + "p" * 20 + "\r\n\r\n").encode()
                for byte in head:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.2)
                self.wfile.write(self.photo)
            elif self.path == "/big.png":  # honest Content-Length over the limit
                self._send(b"\0" * 300_000)
            elif self.path == "/big-chunked":  # no Content-Length: the limit must hold while reading
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()
                for _ in range(40):
                    self.wfile.write(b"\0" * 10_000)
            elif self.path == "/slow.png":  # headers at once, then one byte every 0.2 s
                self.send_response(200)
                self.send_header("Content-Length", str(len(self.photo)))
                self.end_headers()
                for byte in self.photo[:100]:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.2)
            elif self.path.startswith("/to-ftp/"):  # a redirect to another scheme, at a port the test listens on
                self.send_response(302)
                self.send_header("Location", f"ftp://127.0.0.1:{self.path.rsplit('/', 1)[-1]}/room.png")
                self.end_headers()
            elif self.path == "/to-http":  # a redirect that stays on HTTP is followed
                self.send_response(301)
                self.send_header("Location", "/photos/room%20one.png")
                self.end_headers()
            else:
                self.send_error(404, "Not Found")
        except (BrokenPipeError, ConnectionResetError):  # the client gave up, as it should
            pass

    def _send(self, body: bytes):
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    folder = tmp_path_factory.mktemp("web")
    Image.fromarray(rng_image(60, 80, seed=7)).save(folder / "room.png")
    Image.fromarray(rng_image(60, 80, seed=8)).save(folder / "other.png")
    _Handler.photo = (folder / "room.png").read_bytes()
    _Handler.other = (folder / "other.png").read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)  # loopback only
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder / "room.png"
    finally:
        server.shutdown()
        server.server_close()


def test_predict_takes_a_url_like_a_file(web, tiny_estimator):
    base, local = web
    from_url = tiny_estimator.predict(f"{base}/photos/room%20one.png")
    from_file = tiny_estimator.predict(local)
    assert from_url.source == f"{base}/photos/room%20one.png"
    np.testing.assert_array_equal(from_url.map, from_file.map)


def test_run_fetches_urls_beside_files_and_refuses_bad_ones_in_one_line(web, tiny_da_dir, tmp_path, capsys):
    from localdepth.cli.main import main as cli

    base, local = web
    code = cli(["run", f"{base}/photos/room%20one.png", f"{base}/big.png", f"{base}/missing.png", str(local),
                "--model", "depth-anything-v2-small", "--weights", str(tiny_da_dir), "--device", "cpu",
                "-f", "npy", "--outdir", str(tmp_path), "--url-max-mb", "0.1", "-q"])
    assert code == 1  # two bad inputs, the others done
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("localdepth: error:")]
    assert len(err) == 2
    assert f"{base}/big.png: over the limit of 104857 bytes" in err[0]
    assert f"{base}/missing.png: HTTP 404" in err[1]
    meta = json.loads((tmp_path / "room_one.json").read_text())  # named after the URL's last segment, made safe
    assert meta["source"] == f"{base}/photos/room%20one.png"
    np.testing.assert_array_equal(np.load(tmp_path / "room_one.npy"), np.load(tmp_path / "room.npy"))


def test_oversized_body_without_content_length_is_cut_off(web):
    base, _ = web
    with pytest.raises(FetchError, match="over the limit of 100000 bytes"):
        fetch(f"{base}/big-chunked", FetchLimits(max_bytes=100_000, timeout_s=10))
    assert len(fetch(f"{base}/big-chunked", FetchLimits(max_bytes=1_000_000, timeout_s=10))) == 400_000


def test_a_slow_url_is_refused_at_the_deadline(web):
    base, _ = web
    t0 = time.monotonic()
    with pytest.raises(FetchError, match=r"no complete answer within 1 s"):
        fetch(f"{base}/slow.png", FetchLimits(timeout_s=1.0))
    assert time.monotonic() - t0 < 3.0  # the whole transfer is bounded, not each read


def test_the_deadline_covers_the_response_headers(web):
    """A server dripping its headers one byte a second held a 5 s timeout for 66 s: each read
    waited at most the timeout, but the headers were read before any deadline was looked at.
    Here about 100 bytes at 0.2 s: 20 s of headers against a 1 s deadline."""
    base, _ = web
    t0 = time.monotonic()
    with pytest.raises(FetchError, match=r"drip-headers.png: no complete answer within 1 s"):
        fetch(f"{base}/drip-headers.png", FetchLimits(timeout_s=1.0))
    assert time.monotonic() - t0 < 4.0  # a correctness bound, generous for a loaded machine


def test_two_urls_of_one_name_keep_both_results(web, tiny_da_dir, tmp_path, capsys):
    from localdepth.cli.main import main as cli

    base, _ = web
    code = cli(["run", f"{base}/a/internal.png", f"{base}/b/internal.png", "--weights", str(tiny_da_dir),
                "--device", "cpu", "-f", "npy", "--outdir", str(tmp_path), "-q"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.glob("*.npy")) == ["internal.npy", "internal_2.npy"]
    assert not np.array_equal(np.load(tmp_path / "internal.npy"), np.load(tmp_path / "internal_2.npy"))
    assert json.loads((tmp_path / "internal_2.json").read_text())["input"] == {
        "source": f"{base}/b/internal.png", "name": "internal_2.png", "renamed_from": "internal.png",
        "why": "another input of this run has the same output name"}


class _RecordingViews:
    """An any-view stand-in that keeps the images it was given."""

    def __init__(self):
        from scene_support import PlaneViews

        self._planes = PlaneViews()
        self.spec, self.name, self.images = self._planes.spec, "recording", []

    def describe(self):
        return self._planes.describe()

    def predict_views(self, images, *, sources=None):
        self.images = [np.array(image) for image in images]
        return self._planes.predict_views(images, sources=sources)


def test_scene_fetches_a_url_and_never_reads_the_current_folder_instead(web, tmp_path, monkeypatch, capsys):
    """`scene http://…/x/demo01.jpg` sent no request and used ./demo01.jpg as that view."""
    pytest.importorskip("open3d", reason="the scene's point cloud is written through Open3D")
    pytest.importorskip("trimesh", reason="scene.glb is written through trimesh")
    from localdepth.cli import scene as scene_cli
    from localdepth.cli.main import main as cli

    base, served = web
    monkeypatch.chdir(tmp_path)
    Image.fromarray(rng_image(60, 80, seed=99)).save(tmp_path / "demo01.jpg", format="PNG")  # the decoy
    model = _RecordingViews()
    monkeypatch.setattr(scene_cli, "load_from_args", lambda args: model)
    _Handler.requested.clear()
    code = cli(["scene", f"{base}/x/demo01.jpg", f"{base}/slow.png", "--url-timeout", "1", "-o", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 1, err  # the slow URL is refused within its limit, in one line; the other view goes on
    assert [line for line in err.splitlines() if "error" in line] == [
        f"localdepth: error: {base}/slow.png: no complete answer within 1 s"]
    assert "/x/demo01.jpg" in _Handler.requested
    assert len(model.images) == 1
    np.testing.assert_array_equal(model.images[0], np.array(Image.open(served).convert("RGB")))
    views = json.loads((tmp_path / "s" / "cameras.json").read_text())["views"]
    assert views[0]["image"] == f"{base}/x/demo01.jpg"


def test_video_fetches_url_frames_and_never_reads_the_current_folder_instead(web, tiny_da_dir, tmp_path, monkeypatch):
    pytest.importorskip("av")
    from localdepth.cli.main import main as cli

    base, _ = web
    monkeypatch.chdir(tmp_path)
    (tmp_path / "internal.png").write_bytes(b"a decoy that is not an image")
    _Handler.requested.clear()
    assert cli(["video", f"{base}/a/internal.png", f"{base}/b/internal.png", "--format", "npz", "--outdir",
                str(tmp_path / "frames"), "--weights", str(tiny_da_dir), "--device", "cpu", "--input-size", "56",
                "-q"]) == 0
    assert {"/a/internal.png", "/b/internal.png"} <= set(_Handler.requested)
    assert sorted(p.name for p in (tmp_path / "frames").glob("*.npz")) == ["internal.npz", "internal_2.npz"]


def test_only_http_urls_and_safe_names():
    with pytest.raises(FetchError, match="not an http"):
        fetch("file:///etc/passwd")
    with pytest.raises(ValueError):
        FetchLimits(timeout_s=float("nan"))
    assert url_filename("https://example.org/a/b/../../x%2F..%2Fy.jpg?s=1") == "x_.._y.jpg"
    assert url_filename("https://example.org/") == "url_image"


def test_a_redirect_to_another_scheme_is_refused_without_connecting(web):
    """urllib follows redirects to ftp:// by default; a URL input must not leave HTTP(S): the redirect is
    refused in one line and the FTP address is never contacted (a socket listening there sees nothing)."""
    import socket

    base, _ = web
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    try:
        with pytest.raises(FetchError, match="redirected to a non-HTTP address, refused") as e:
            fetch(f"{base}/to-ftp/{port}")
        assert "\n" not in str(e.value)
        with pytest.raises(socket.timeout):
            listener.accept()[0].close()  # nobody connected
    finally:
        listener.close()
    assert fetch(f"{base}/to-http") == web[1].read_bytes()  # an HTTP redirect still works
