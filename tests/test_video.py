"""Video, image sequences and webcams: streaming readers, stable depth, outputs, interruption.

The clips are made here at test time from a real photo in ../shared/data/images (a slow pan
and zoom with an AAC tone), and the model is the real PyDNet++ (fast, and its raw output
flickers: see pan_zoom_frames).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

av = pytest.importorskip("av")

from localdepth.video import (  # noqa: E402
    DepthVideoWriter, FlickerMeter, FrameFilesWriter, ImageSequenceReader, Position, Selection, Stabilizer,
    VideoFileReader, WebcamReader, process_clip,
)
from localdepth.video.writers import read_exr  # noqa: E402
from conftest import INTERRUPTIBLE_LOCALDEPTH  # noqa: E402
from tolerance import within  # noqa: E402

N_FRAMES, FPS, SIZE = 48, 24, (256, 192)


def pan_zoom_frames(photo: Path, n: int = 48, size: tuple[int, int] = (256, 192), exposure: bool = True):
    """``n`` RGB frames of a slow pan (left to right) and zoom (1.0 -> 1.25x) over a photo.

    With ``exposure``, the brightness pulses from frame to frame (gain 0.75..1.3), as
    auto-exposure does in real footage. PyDNet++'s disparity follows brightness (measured on
    demo01 at 256x170: a 1.4x brighter frame has a 21% lower mean and a 30% smaller 1st-99th
    percentile spread), so the model's own output then pulses the way per-frame normalised
    depth video does; that is what --stabilize align has to remove. (Without the pulse it
    flickers by itself too, less: see docs/video.md.)
    """
    bgr = cv2.imread(str(photo))
    img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    out_w, out_h = size
    gains = 1.0 + 0.28 * np.sin(np.arange(n) * 2.1) * (np.arange(n) % 3 != 0)
    for i in range(n):
        t = i / max(1, n - 1)
        zoom = 1.0 + 0.25 * t
        cw, ch = int(w * 0.7 / zoom), int(h * 0.7 / zoom)
        x0 = int((w - cw) * (0.2 + 0.6 * t))
        y0 = (h - ch) // 2
        frame = cv2.resize(img[y0:y0 + ch, x0:x0 + cw], (out_w, out_h), interpolation=cv2.INTER_AREA)
        if exposure:
            frame = np.clip(frame.astype(np.float32) * gains[i], 0, 255).astype(np.uint8)
        yield frame


def make_clip(path: Path, photo: Path, n: int = 48, fps: int = 24, size: tuple[int, int] = (256, 192),
              audio: bool = True, exposure: bool = True) -> Path:
    """An H.264 MP4 of :func:`pan_zoom_frames` with (optionally) a 440 Hz AAC tone as long as the video."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "20", "preset": "veryfast"}
        sound = None
        if audio:
            sound = out.add_stream("aac", rate=44100, layout="mono")
        for i, rgb in enumerate(pan_zoom_frames(photo, n, size, exposure)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            samples = int(44100 * n / fps)
            tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / 44100)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = tone[start:start + 1024][None, :]
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                af.sample_rate = 44100
                af.pts = start
                af.time_base = Fraction(1, 44100)
                for packet in sound.encode(af):
                    out.mux(packet)
            for packet in sound.encode(None):
                out.mux(packet)
    return path


def probe(path: Path) -> dict:
    """Frame count (decoded), fps, durations and audio of a video file, all read back with PyAV.

    ``end``: when the last frame stops showing (its presentation time + one frame), which
    holds gaps the container's ``duration`` (a sum of decode-time steps) does not.
    """
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        pts = [f.pts for f in c.decode(v)]
        audio = [s for s in c.streams.audio]
        duration = float(v.duration * v.time_base) if v.duration else None
        audio_duration = (float(audio[0].duration * audio[0].time_base)
                          if audio and audio[0].duration else None)
        end = float((max(pts) - min(pts)) * v.time_base + 1 / v.average_rate) if pts else 0.0
        return {"frames": len(pts), "fps": float(v.average_rate), "duration": duration, "end": end,
                "audio": bool(audio), "audio_duration": audio_duration,
                "width": v.codec_context.width, "height": v.codec_context.height}


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "localdepth", "video", *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def clip(shared_images, tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", shared_images / "demo01.jpg", N_FRAMES, FPS, SIZE)


@pytest.fixture(scope="module")
def pydnet(pydnet_file):
    import warnings

    import localdepth

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # research-only licence warning
        return localdepth.load("pydnet", weights=pydnet_file)


class Replay:
    """The same model, each distinct frame predicted once: comparing stabilisation modes on
    one clip then costs one pass of the network instead of one per mode."""

    def __init__(self, estimator):
        self.estimator, self.kind, self._maps = estimator, estimator.kind, {}

    def predict_decoded(self, images):
        import hashlib

        results = []
        for rgb in images:
            key = hashlib.sha1(rgb.tobytes()).hexdigest()
            if key not in self._maps:
                self._maps[key] = self.estimator.predict_decoded([rgb])[0]
            results.append(self._maps[key])
        return results

    def describe(self) -> dict:
        return self.estimator.describe()


# ----------------------------------------------------------------------------- the tests

def test_side_video_keeps_frames_fps_duration_and_audio(clip, pydnet_file, tmp_path):
    out = tmp_path / "clip_depth.mp4"
    r = cli(clip, "--output", out, "--side", "--stabilize", "align", "-m", "pydnet", "--weights", pydnet_file, "-q")
    assert r.returncode == 0, r.stderr
    assert "flicker" in r.stderr and "48 frames written" in r.stderr
    src, dst = probe(clip), probe(out)
    assert dst["frames"] == src["frames"] == N_FRAMES
    assert dst["fps"] == pytest.approx(src["fps"]) == FPS
    assert dst["duration"] == pytest.approx(src["duration"], abs=1 / FPS)
    assert dst["end"] == pytest.approx(src["end"], abs=1e-6) == pytest.approx(N_FRAMES / FPS)
    assert (dst["width"], dst["height"]) == (2 * SIZE[0], SIZE[1])  # input | depth
    assert dst["audio"], "the audio stream was not copied"
    assert dst["audio_duration"] == pytest.approx(src["audio_duration"], abs=0.05)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["frames"] == N_FRAMES and meta["fps"] == FPS and meta["kind"] == "disparity"
    assert meta["stabilization"]["mode"] == "align" and meta["flicker"]["percent"] > 0
    assert meta["outputs"][0]["audio_copied"] is True
    assert meta["mapping"]["png16"]["scale"] > 0


def test_align_flickers_less_than_off(clip, pydnet):
    """The clip's brightness pulses (auto-exposure); PyDNet++'s raw disparity follows it, so
    unstabilised depth pulses. Aligning each frame to the previous must lower the flicker
    measure, and must do it without flattening the clip (a biased fit chained over frames
    shrinks the maps towards a constant, which would also read as 'no flicker')."""
    flicker, spreads = {}, {}
    model = Replay(pydnet)
    for mode in ("off", "align", "align+ema"):
        spread = []
        summary = process_clip(VideoFileReader(clip), model, [], stabilize=mode, progress=False,
                               on_frame=lambda k, f, d: spread.append(np.subtract(*np.percentile(d, [99, 1]))))
        assert summary.frames == N_FRAMES and summary.flicker is not None
        flicker[mode], spreads[mode] = summary.flicker, np.array(spread)
    assert flicker["align"] < 0.95 * flicker["off"], flicker
    assert flicker["align+ema"] < flicker["align"], flicker
    for mode in ("align", "align+ema"):  # contrast stays that of the first frame, within a factor 2
        ratio = spreads[mode] / spreads[mode][0]
        assert ratio.min() > 0.5 and ratio.max() < 2.0, (mode, ratio.min(), ratio.max())


def test_aligned_maps_stay_positive(shared_images, pydnet):
    """Aligned disparity stays a disparity: positive. The per-pixel affine fit of a moving clip,
    extrapolated to a frame's lowest values, went below zero: before the constrained fit, these
    pan-zoom clips through PyDNet++ (whose own maps are positive, minimum 0.008) came out of
    --stabilize align with minima of -1.00 (demo04) and -0.45 (demo11), negative from frames 5 and 1
    on; the first 12 frames of each are enough."""
    from itertools import islice

    for photo in ("demo04.jpg", "demo11.jpg"):
        frames = islice(pan_zoom_frames(shared_images / photo, N_FRAMES, SIZE), 12)
        raws = [pydnet.predict(rgb).map for rgb in frames]
        assert min(float(r.min()) for r in raws) > 0
        for mode in ("align", "align+ema"):
            stab = Stabilizer(mode)
            lowest = min(float(stab(r).min()) for r in raws)
            assert lowest > 0, (photo, mode, lowest)


def test_livingroom_sequence_has_one_16bit_mapping(rgbd_dir, pydnet_file, tmp_path):
    color = rgbd_dir / "livingroom" / "color"
    frames, video = tmp_path / "frames", tmp_path / "seq.mp4"
    r = cli(f"{color}/*.jpg", "--fps", "24", "--output", video, "--format", "npz,png16,exr", "--outdir", frames,
            "--max-res", "256", "-m", "pydnet", "--weights", pydnet_file, "-q")
    assert r.returncode == 0, r.stderr
    names = sorted(p.stem for p in color.glob("*.jpg"))
    assert len(names) == 5
    meta = json.loads((frames / "clip.json").read_text())
    assert meta["frames"] == 5 and meta["fps"] == 24
    png16 = meta["mapping"]["png16"]
    assert png16["scale"] > 0
    assert probe(video)["frames"] == 5 and probe(video)["fps"] == 24
    pngs = []
    for name in names:
        npz = np.load(frames / f"{name}.npz")
        depth = npz["depth"]
        png = cv2.imread(str(frames / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint16 and png.shape == depth.shape == (192, 256)
        # the sidecar's one mapping recovers every frame (within quantisation)
        decoded = png16["offset"] + png16["scale"] * png.astype(np.float64)
        assert np.abs(decoded - depth).max() <= png16["scale"] * 0.51 + 1e-5 * np.abs(depth).max()
        np.testing.assert_array_equal(read_exr(frames / f"{name}.exr"), depth)
        pngs.append(png)
    # one mapping for the clip, not a per-frame stretch to 0..65535: only the clip's extreme
    # frames touch the ends of the range
    lows, highs = [int(p.min()) for p in pngs], [int(p.max()) for p in pngs]
    assert min(lows) == 0 and max(highs) == 65535
    assert sum(lo == 0 for lo in lows) + sum(hi == 65535 for hi in highs) < 2 * len(pngs)


@pytest.mark.parametrize("normalize", ["clip", "running"])
def test_interrupt_leaves_a_shorter_playable_video(clip, pydnet, tmp_path, normalize):
    """Ctrl-C after 12 frames (a KeyboardInterrupt from the per-frame callback, where the
    signal would land): the video holds those frames, plays to the end, audio no longer."""
    out = tmp_path / "partial.mp4"
    source = VideoFileReader(clip)

    def stop(k, frame, depth):
        if k == 12:
            raise KeyboardInterrupt

    writer = DepthVideoWriter(out, source.output_fps, audio_from=source.audio_path)
    summary = process_clip(source, pydnet, [writer], normalize=normalize, warmup=4, progress=False,
                           on_frame=stop, sidecar_path=tmp_path / "partial.json")
    assert summary.interrupted and summary.frames == 12
    info = probe(out)  # decodes every frame
    assert info["frames"] == 12 and info["fps"] == FPS
    assert info["duration"] == pytest.approx(12 / FPS, abs=1e-6)
    assert info["audio"] and info["audio_duration"] <= 12 / FPS + 0.1
    assert json.loads((tmp_path / "partial.json").read_text())["interrupted"] is True


def test_ctrl_c_on_the_cli_leaves_a_playable_video(clip, pydnet_file, tmp_path):
    """A real SIGINT to `localdepth video` once 8 frames are done: exit 130, a shorter video
    that decodes to the end, the audio cut at the same point."""
    import signal

    out = tmp_path / "partial.mp4"
    p = subprocess.Popen([*INTERRUPTIBLE_LOCALDEPTH, "video", str(clip), "--output", str(out),
                          "-m", "pydnet", "--weights", str(pydnet_file)], stderr=subprocess.PIPE, text=True)
    seen = ""
    try:
        while "8/48" not in seen:  # the progress bar's count
            ch = p.stderr.read(1)
            assert ch, f"the run ended before it could be interrupted: {seen[-500:]}"
            seen += ch
        p.send_signal(signal.SIGINT)
        rest = p.communicate(timeout=120)[1]
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, rest
    assert "interrupted" in rest
    info = probe(out)
    assert 8 <= info["frames"] < N_FRAMES
    assert info["end"] == pytest.approx(info["frames"] / FPS, abs=1e-6)
    assert info["audio"] and info["audio_duration"] <= info["end"] + 0.05


# ----------------------------------------------------------------------------- readers, robustness

def test_corrupt_frame_is_skipped_and_counted(shared_images, tiny_estimator, tmp_path):
    seq = tmp_path / "seq"
    seq.mkdir()
    for i, rgb in enumerate(pan_zoom_frames(shared_images / "demo04.jpg", 6, (96, 64), exposure=False)):
        cv2.imwrite(str(seq / f"f{i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    (seq / "f3.png").write_bytes((seq / "f3.png").read_bytes()[:100])  # truncated
    source = ImageSequenceReader([str(seq)], fps=12)
    files = FrameFilesWriter(tmp_path / "out", ("png16",))
    video = DepthVideoWriter(tmp_path / "seq.mp4", source.output_fps)
    summary = process_clip(source, tiny_estimator, [files, video], progress=False)
    assert summary.skipped == 1 and summary.frames == 5 and not summary.interrupted
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"f{i}.png" for i in (0, 1, 2, 4, 5)]
    info = probe(tmp_path / "seq.mp4")
    assert info["frames"] == 5
    assert info["end"] == pytest.approx(6 / 12, abs=1e-6)  # the gap keeps the timing: f2 shows twice as long


def test_damaged_video_frames_are_skipped_and_counted(clip, tmp_path):
    """Garbage over three stretches of the H.264 data: decoding goes on, and every frame
    slot lost is counted as skipped."""
    data = bytearray(clip.read_bytes())
    rng = np.random.default_rng(1)
    for offset in (len(data) // 3, len(data) // 2, 2 * len(data) // 3):
        data[offset:offset + 3000] = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    source = VideoFileReader(damaged)
    indices = [f.index for f in source]
    assert source.skipped >= 1
    assert len(indices) + source.skipped == N_FRAMES
    assert indices == sorted(set(indices)) and indices[-1] == N_FRAMES - 1


def test_selection_stride_and_max_res(clip):
    sel = Selection(Position.parse("0.5"), Position.parse("40f"), stride=2)
    source = VideoFileReader(clip, sel, max_res=128)
    frames = list(source)
    assert [f.index for f in frames] == list(range(12, 40, 2))
    assert source.expected_frames == len(frames) == 14
    assert frames[0].rgb.shape == (96, 128, 3) and frames[0].time == pytest.approx(0.5)
    assert source.output_fps == Fraction(12)
    capped = list(VideoFileReader(clip, Selection(max_frames=5)))
    assert [f.index for f in capped] == [0, 1, 2, 3, 4]
    with pytest.raises(Exception, match="frame number"):
        Position.parse("soon")


def test_image_sequence_sorts_naturally(tmp_path):
    for name in ("f10.png", "f2.png", "f1.png"):
        cv2.imwrite(str(tmp_path / name), np.full((8, 8, 3), 100, np.uint8))
    reader = ImageSequenceReader([str(tmp_path / "*.png")], fps=10)
    assert [f.name for f in reader] == ["f1", "f2", "f10"]
    assert reader.expected_frames == 3


def test_webcam_reader_streams_from_opencv(clip):
    """OpenCV's VideoCapture behind --webcam opens files too: the same code path, no camera."""
    source = WebcamReader(str(clip), selection=Selection(max_frames=5))
    frames = list(source)
    source.close()
    assert len(frames) == 5 and frames[0].rgb.shape == (SIZE[1], SIZE[0], 3)
    assert source.fps == FPS


def test_preview_without_a_display_fails_in_one_line():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    r = cli("--webcam", "0", "--preview", env=env)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--preview" in lines[0], r.stderr


def test_missing_webcam_or_file_is_one_clear_line(tmp_path):
    r = cli("--webcam", "99")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == ["localdepth: error: cannot open webcam 99; "
                                                                   "check that it is connected and not in use"]
    r = cli(tmp_path / "absent.mp4")
    assert r.returncode == 2 and "no such video file" in r.stderr


# ----------------------------------------------------------------------------- stabilisation units

def test_align_recovers_the_first_frames_units():
    rng = np.random.default_rng(0)
    base = rng.random((48, 64)).astype(np.float32) + 0.5
    stab = Stabilizer("align")
    for k, (a, b) in enumerate([(1.0, 0.0), (2.0, 3.0), (0.5, -0.2), (3.0, 1.0)]):
        noisy = a * (base + 0.01 * rng.standard_normal(base.shape)) + b
        out = stab(noisy.astype(np.float32))
        # measured 8.2e-3 (the added noise, 1 % of the values, after the fit)
        within(np.abs(out - base).mean(), 0.03, "mean difference after alignment", at=f"step {k}")
    assert Stabilizer("off")(base * 2).max() == pytest.approx(base.max() * 2)


def test_flicker_measure():
    meter = FlickerMeter(0.0, 10.0)
    for _ in range(3):
        meter.update(np.full((4, 4), 5.0))
    assert meter.value == 0.0
    meter.update(np.full((4, 4), 6.0))  # one step of 10% of the range over 3 pairs
    assert meter.value == pytest.approx(10.0 / 3)


def test_metric_model_writes_millimetres(shared_images, tiny_metric_dir, tmp_path):
    import localdepth

    model = localdepth.load("depth-anything-v2-metric-indoor-small", weights=tiny_metric_dir, device="cpu")
    seq = tmp_path / "seq"
    seq.mkdir()
    for i, rgb in enumerate(pan_zoom_frames(shared_images / "demo08.jpg", 3, (64, 48), exposure=False)):
        cv2.imwrite(str(seq / f"{i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    files = FrameFilesWriter(tmp_path / "out", ("npz", "png16"))
    summary = process_clip(ImageSequenceReader([str(seq)]), model, [files], progress=False,
                           sidecar_path=tmp_path / "clip.json")
    meta = json.loads((tmp_path / "clip.json").read_text())
    assert summary.frames == 3 and meta["kind"] == "depth" and meta["units"] == "m"
    assert meta["mapping"]["png16"] == {**meta["mapping"]["png16"], "scale": 0.001, "offset": 0.0}
    for i in range(3):
        depth = np.load(tmp_path / "out" / f"{i}.npz")["depth"]
        png = cv2.imread(str(tmp_path / "out" / f"{i}.png"), cv2.IMREAD_UNCHANGED)
        within(np.abs(png * 0.001 - depth).max(), 0.0005 + 1e-6, "png16 max error (m)")


# ----------------------------------------------------------------------------- timing and completeness

def textured_frames(n: int, size: tuple[int, int] = (96, 64), seed: int = 0):
    """``n`` RGB frames of moving noise: each frame costs real bytes in H.264, so cutting the
    file at a fraction of its length cuts off about that fraction of the frames."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 256, (h, 2 * w, 3), dtype=np.uint8)
    for i in range(n):
        yield np.ascontiguousarray(np.roll(base, 3 * i, axis=1)[:, :w])


def write_clip(path: Path, times: list[float], *, faststart: bool = False, size: tuple[int, int] = (96, 64)) -> Path:
    """An H.264 MP4 with one frame at each of ``times`` (seconds), in a 1/1000 s time base, so the
    clip can have a variable frame rate. ``faststart`` puts the index (moov) before the data, as
    streaming encoders do: cutting the end off then keeps the index of every frame."""
    tb = Fraction(1, 1000)
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as out:
        video = out.add_stream("libx264", rate=24)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        video.time_base = video.codec_context.time_base = tb  # the encoder's too, or it re-times the frames
        video.options = {"crf": "20", "preset": "veryfast"}
        for t, rgb in zip(times, textured_frames(len(times), size)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = int(round(t * 1000)), tb
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
    return path


# one thread: a tiny model gains nothing from two, and on a busy machine OpenMP's spinning
# threads made each 56 px frame take 0.6 s instead of 0.01 s (measured on the shared 2-core VM)
def one_thread() -> dict:
    """The environment at call time (so conftest's isolated caches reach the subprocess), one thread."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def frame_times(path: Path) -> np.ndarray:
    """Presentation time of every decoded frame, seconds from the first."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        pts = np.array([f.pts for f in c.decode(v)], dtype=np.float64)
        return (pts - pts[0]) * float(v.time_base)


def test_variable_frame_rate_keeps_every_timestamp(tiny_da_dir, tmp_path):
    """20 frames at 30 fps then 20 at 10 fps (average rate about 14 fps). Re-timing them to the
    average rate put 0.6 s of drift into the depth video (the fast frames collided on the coarser
    grid and were pushed later; 0.9 s with 30 + 30 frames), and numbered frames by rounded time,
    so per-frame files of the fast part overwrote each other."""
    times = [k / 30 for k in range(20)] + [20 / 30 + k / 10 for k in range(20)]
    clip = write_clip(tmp_path / "vfr.mp4", times)
    source_times = frame_times(clip)
    np.testing.assert_allclose(source_times, times, atol=1e-3)  # the clip really is variable-rate
    out, frames = tmp_path / "vfr_depth.mp4", tmp_path / "frames"
    r = cli(clip, "--output", out, "--format", "npz", "--outdir", frames, "--weights", tiny_da_dir,
            "--device", "cpu", "--input-size", "56", "-q", env=one_thread())
    assert r.returncode == 0, r.stderr
    written = frame_times(out)
    assert len(written) == len(times)
    # the same timestamps (same time base), not re-timed
    within(np.abs(written - source_times).max(), 1e-4, "written vs source frame times (s)")
    npz = sorted(frames.glob("*.npz"))
    assert len(npz) == len(times), "per-frame files of a variable-rate clip overwrote each other"
    np.testing.assert_allclose(sorted(float(np.load(p)["time"]) for p in npz), source_times, atol=1e-4)


def test_truncated_video_reports_the_missing_frames(tiny_da_dir, tmp_path):
    """An MP4 whose index (moov) comes first, cut to 40% of its length: the demuxer just runs out
    of packets, with no decode error. The frames read are written, and the shortfall against the
    index's frame count is reported on one line, in the sidecar and by exit status 1; the whole
    clip still exits 0 with nothing missing."""
    n = 30
    whole = write_clip(tmp_path / "whole.mp4", [k / 24 for k in range(n)], faststart=True)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.4)])

    source = VideoFileReader(cut)
    read = len(list(source))
    assert source.expected_frames == n and 0 < read < n
    assert source.missing == n - read - source.skipped
    complete = VideoFileReader(whole)
    assert len(list(complete)) == n and complete.missing == 0

    out = tmp_path / "cut_depth.mp4"
    r = cli(cut, "--output", out, "--weights", tiny_da_dir, "--device", "cpu", "--input-size", "56", "-q",
            env=one_thread())
    assert r.returncode == 1, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("localdepth: error:")]
    assert len(errors) == 1 and f"of the {n} frames" in errors[0] and "missing" in errors[0], r.stderr
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["expected_frames"] == n
    assert meta["missing_frames"] == n - meta["frames"] - meta["skipped_frames"] > 0
    assert probe(out)["frames"] == meta["frames"]

    r = cli(whole, "--output", tmp_path / "whole_depth.mp4", "--weights", tiny_da_dir, "--device", "cpu",
            "--input-size", "56", "-q", env=one_thread())
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "whole_depth.json").read_text())["missing_frames"] == 0
