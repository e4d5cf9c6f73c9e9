"""Video Depth Anything: the network, its checkpoints, offline windows and streaming, checked
against the official code (../shared/reference/video-depth-anything) with the same random weights.

The official model is built with random weights (tests/vda_reference.py), saved as a ``.pth``
the way the released checkpoints are, and loaded by localdepth strictly; both then see the same
frames in fp32. Two architectures: the real Small (ViT-S/14 + its head) at a tiny input size,
and a tiny one of the same family for the long runs.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import warnings
import weakref
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import vda_reference as ref  # noqa: E402
from tolerance import correlated, within  # noqa: E402

import localdepth  # noqa: E402
from localdepth import registry, weights  # noqa: E402
from localdepth.errors import ChecksumError, WeightsError  # noqa: E402
from localdepth.networks.vda import SIZES  # noqa: E402
from localdepth.video import ImageSequenceReader, process_clip  # noqa: E402
from localdepth.video.readers import Frame  # noqa: E402
from localdepth.video.temporal import WindowedDepth, video_input_size  # noqa: E402

INPUT_SIZE = 42  # network input 42 x 56 for 4:3 frames: a 3 x 4 patch grid
FRAME_SIZE = (72, 54)  # (width, height) of the test clips


def pan_frames(photo: Path, n: int, size=FRAME_SIZE, exposure: bool = True) -> np.ndarray:
    """``(n, H, W, 3)`` uint8 RGB: a pan across a real photo, with a brightness pulse."""
    img = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    cw, ch = int(w * 0.6), int(h * 0.8)
    frames = []
    for i in range(n):
        x0 = int((w - cw) * i / max(1, n - 1))
        frame = cv2.resize(img[(h - ch) // 2:(h - ch) // 2 + ch, x0:x0 + cw], size, interpolation=cv2.INTER_AREA)
        if exposure:
            frame = np.clip(frame * (1.0 + 0.2 * np.sin(i * 1.3)), 0, 255).astype(np.uint8)
        frames.append(frame)
    return np.stack(frames)


def as_frames(rgbs) -> list[Frame]:
    return [Frame(i, i / 24, rgb, f"f{i:03d}") for i, rgb in enumerate(rgbs)]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


def load_vda(path: Path, name: str = "video-depth-anything-small", input_size: int | None = INPUT_SIZE):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # licence warnings of the non-commercial entries
        return localdepth.load(name, weights=path, device="cpu", input_size=input_size)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: these networks run on tiny inputs, where a second thread only adds
    synchronisation, and on a loaded machine (this one is shared) OpenMP's waiting made the
    streaming test 30x slower with two threads than with one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def photo(shared_images) -> Path:
    return shared_images / "demo01.jpg"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The official Small architecture with random weights, and its ``.pth``."""
    model = ref.build("small", seed=0)
    return model, ref.save_checkpoint(model, tmp_path_factory.mktemp("vda-small") / "video_depth_anything_vits.pth")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model = ref.build("tiny", seed=3)
    return model, ref.save_checkpoint(model, tmp_path_factory.mktemp("vda-tiny") / "video_depth_anything_vits.pth")


# ----------------------------------------------------------------------------- the network

def test_full_size_small_window_matches_the_official_network(small, photo):
    """A 32-frame window through the real Small architecture, loaded strictly from the .pth."""
    model, path = small
    est = load_vda(path)
    ours = est.backend.model
    assert set(ours.state_dict()) == set(model.state_dict())  # the official names, all of them
    assert ours.config == SIZES["vits"]
    frames = pan_frames(photo, 32)
    x = torch.from_numpy(np.stack([est.preprocess(f) for f in frames]))[None]  # (1, 32, 3, 42, 56)
    assert tuple(x.shape) == (1, 32, 3, 42, 56)
    with torch.no_grad():
        want = model(x)
        got = ours(x)["depth"]
        alone = ours(x[0])["depth"]  # the same frames as 32 independent images
    assert got.shape == want.shape == (1, 32, 42, 56)
    within(float((got - want).abs().max() / want.abs().max()), 1e-4, "max error / max depth")
    # the comparison exercises the temporal attention: without it the maps are far apart
    assert float((alone - want[0]).abs().max() / want.abs().max()) > 1e-2


def test_streaming_matches_the_official_streaming_model(small, photo, tmp_path):
    """48 frames one at a time (past the 42 cached entries where the official window starts
    dropping its second entry), through `process_clip(streaming=True)`."""
    _, offline_stream = ref.reference()
    model, path = small
    official = offline_stream.VideoDepthAnything(**ref.SMALL)
    official.load_state_dict(torch.load(path, weights_only=True), strict=True)
    official.eval()
    rgbs = pan_frames(photo, 48)
    want = [official.infer_video_depth_one(f, input_size=INPUT_SIZE, device="cpu", fp32=True) for f in rgbs]
    seq = tmp_path / "seq"
    seq.mkdir()
    for i, rgb in enumerate(rgbs):
        cv2.imwrite(str(seq / f"{i:03d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    got = []
    summary = process_clip(ImageSequenceReader([str(seq)]), load_vda(path), [], streaming=True, progress=False,
                           on_frame=lambda k, f, d: got.append(d))
    assert summary.frames == 48 and len(got) == 48
    assert summary.stabilization["mode"] == "off"  # the video model's default
    assert summary.temporal["mode"] == "streaming" and summary.temporal["latency_ms"]["frames"] == 48
    assert "latency per frame" in summary.line()
    for k, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape == (FRAME_SIZE[1], FRAME_SIZE[0])
        within(float(np.abs(g - w).max() / np.abs(w).max()), 1e-4, "max error / max depth", at=f"frame {k}")


def test_a_pipe_on_standard_input_streams_with_its_latency(tiny, photo, tmp_path):
    """`localdepth video -` reads a stream from a pipe (MPEG-TS, as ffmpeg writes to stdout) and
    streams it by default: one frame at a time, latency per frame printed and recorded."""
    av = pytest.importorskip("av")
    _, path = tiny
    ts = tmp_path / "clip.ts"
    with av.open(str(ts), "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = FRAME_SIZE[0], FRAME_SIZE[1], "yuv420p"
        for rgb in pan_frames(photo, 12):
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    video = tmp_path / "live.mp4"
    r = subprocess.run([sys.executable, "-m", "localdepth", "video", "-", "-o", str(video), "-m", "vda-small",
                        "--weights", str(path), "--input-size", str(INPUT_SIZE), "-q"], input=ts.read_bytes(),
                       capture_output=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    stderr = r.stderr.decode()
    assert r.returncode == 0, stderr
    assert "12 frames written" in stderr and "latency per frame: median" in stderr
    meta = json.loads(video.with_suffix(".json").read_text())
    assert meta["source"]["name"] == "stdin" and meta["temporal"]["mode"] == "streaming"
    assert meta["temporal"]["latency_ms"]["frames"] == 12 and meta["mapping"]["how"].startswith("running")


def test_images_are_independent_clips_of_one_frame(tiny, photo):
    """4-D batches are independent images (so batching unrelated photos is safe), each the
    same as a clip of one frame."""
    _, path = tiny
    est = load_vda(path)
    frames = pan_frames(photo, 2)
    x = torch.from_numpy(np.stack([est.preprocess(f) for f in frames]))
    with torch.no_grad():
        both = est.backend.model(x)["depth"]
        first = est.backend.model(x[:1, None])["depth"][:, 0]
    # not bit for bit: oneDNN picks its convolution kernels by batch size (the head's first stride-2
    # convolution, resize_layers.3, is the first layer to differ: 6e-7), and the motion modules and
    # fusions amplify that. Measured (max |difference| / max depth): 6.8e-6 with AMX and without,
    # 1.1e-5 with oneDNN at AVX2, 7.6e-6 with ATen at AVX2; the batches are both within 5e-6 of
    # float64. It was 1e-6 absolute (1.5e-7 of the max), a bound only some CPUs' kernels met.
    within(float((both[:1] - first).abs().max() / first.abs().max()), 1e-4, "max |batch - alone| / max depth")
    result = est.predict(frames[0])
    assert result.map.shape == frames[0].shape[:2] and result.kind == "disparity"


# ----------------------------------------------------------------------------- offline windows

def test_video_command_matches_official_infer_video_depth(tiny, photo, tmp_path):
    """`localdepth video` on a 70-frame clip (windows at frames 0, 22, 44 and 66, the last
    padded) against the official `infer_video_depth`, frame by frame."""
    pytest.importorskip("av")  # the video command's extra
    model, path = tiny
    rgbs = pan_frames(photo, 70)
    with torch.no_grad():
        want, _ = model.infer_video_depth(rgbs, 24, input_size=INPUT_SIZE, device="cpu", fp32=True)
    seq, out = tmp_path / "seq", tmp_path / "out"
    seq.mkdir()
    for i, rgb in enumerate(rgbs):
        cv2.imwrite(str(seq / f"{i:03d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    r = subprocess.run([sys.executable, "-m", "localdepth", "video", str(seq), "--format", "npz", "--outdir", str(out),
                        "-m", "video_depth_anything_small", "--weights", str(path), "--input-size", str(INPUT_SIZE),
                        "-q"], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "clip.json").read_text())
    assert meta["frames"] == 70 and meta["stabilization"]["mode"] == "off"
    assert meta["temporal"]["mode"] == "windows" and meta["temporal"]["windows"] == 4
    for i in range(70):
        got = np.load(out / f"{i:03d}.npz")["depth"]
        assert got.shape == want[i].shape
        correlated(got, want[i], 0.9999, at=f"frame {i}")
        within(float(np.abs(got - want[i]).max() / np.abs(want[i]).max()), 1e-3, "max error / max depth",
               at=f"frame {i}")


def test_metric_windows_and_the_wide_frame_rule_match_the_official_code(photo, tmp_path):
    """Metric checkpoints are not aligned between windows (metres already); frames wider than
    16:9 get a smaller input size. 3:1 frames, input size 84 -> 56 (the official rule)."""
    model = ref.build("tiny", metric=True, seed=5, lift_size=(28, 84))
    path = ref.save_checkpoint(model, tmp_path / "metric_video_depth_anything_vits.pth")
    rgbs = pan_frames(photo, 40, size=(120, 40))
    assert video_input_size(40, 120, 84) == 56
    with torch.no_grad():
        want, _ = model.infer_video_depth(rgbs, 24, input_size=84, device="cpu", fp32=True)
    est = load_vda(path, "metric-video-depth-anything-small", input_size=84)
    assert est.kind == "depth"
    predictor = WindowedDepth(est)
    got = [d for _, d, _ in predictor(as_frames(rgbs))]
    assert len(got) == 40 and predictor.scales == [1.0]  # two windows, the second not rescaled
    for i, (g, w) in enumerate(zip(got, want)):
        within(float(np.abs(g - w).max() / np.abs(w).max()), 1e-4, "max error / max depth", at=f"frame {i}")


def test_video_model_output_goes_through_the_writers_with_audio_and_stacked_stabilisation(tiny, photo, tmp_path):
    """An MP4 with sound through the windows into a side-by-side depth video: every frame
    written at the source's timing, the audio copied, and `align+ema` stacked on top."""
    pytest.importorskip("av")
    from test_video import make_clip, probe

    from localdepth.video import DepthVideoWriter, VideoFileReader

    _, path = tiny
    clip = make_clip(tmp_path / "clip.mp4", photo, n=30, size=FRAME_SIZE)
    source = VideoFileReader(clip)
    out = tmp_path / "depth.mp4"
    writer = DepthVideoWriter(out, source.output_fps, mode="side", audio_from=source.audio_path)
    summary = process_clip(source, load_vda(path), [writer], stabilize="align+ema", progress=False)
    assert summary.frames == 30 and summary.stabilization["mode"] == "align+ema"
    assert summary.temporal["mode"] == "windows" and summary.temporal["windows"] == 2
    info = probe(out)
    assert info["frames"] == 30 and info["width"] == 2 * FRAME_SIZE[0] and info["audio"]
    assert info["end"] == pytest.approx(probe(clip)["end"], abs=1e-6)


def test_input_path_is_pinned_to_the_official_transform(tiny, photo, monkeypatch):
    """Channel order, normalisation, interpolation and size rule: localdepth's input equals the
    official transform's, and a pipeline fed BGR (or resizing bilinearly) would fail the
    per-frame comparison above, so those tests guard the input path."""
    import dataclasses

    import localdepth.video.temporal as temporal

    offline, _ = ref.reference()
    from video_depth_anything.util.transform import NormalizeImage, PrepareForNet, Resize

    pre = registry.get("video-depth-anything-small").preprocessing
    for rgb, size in ((pan_frames(photo, 1)[0], INPUT_SIZE), (pan_frames(photo, 1, size=(101, 57))[0], 70)):
        official = Resize(width=size, height=size, resize_target=False, keep_aspect_ratio=True, ensure_multiple_of=14,
                          resize_method="lower_bound", image_interpolation_method=cv2.INTER_CUBIC)
        want = PrepareForNet()(NormalizeImage(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])(
            official({"image": rgb.astype(np.float32) / 255.0})))["image"]
        got = temporal.preprocess(rgb, pre, size)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)

    model, path = tiny
    rgbs = pan_frames(photo, 40)
    with torch.no_grad():
        want, _ = model.infer_video_depth(rgbs, 24, input_size=INPUT_SIZE, device="cpu", fp32=True)
    est, original = load_vda(path), temporal.preprocess
    mutations = {
        "BGR": lambda rgb, p, s: original(np.ascontiguousarray(rgb[..., ::-1]), p, s),
        "bilinear": lambda rgb, p, s: original(rgb, dataclasses.replace(p, interpolation="bilinear"), s),
    }
    for name, mutation in mutations.items():
        monkeypatch.setattr(temporal, "preprocess", mutation)
        got = [d for _, d, _ in WindowedDepth(est)(as_frames(rgbs))]
        assert min(pearson(g, w) for g, w in zip(got, want)) < 0.9999, name


# ----------------------------------------------------------------------------- window logic, memory

class _FakeNetwork:
    """Cheap stand-in for the network: a frame's map is a function of its input and of its slot
    in the window, and every window gets its own scale and shift, so windows disagree in more
    than scale and shift (as a real model's do): which frames are keyframes, the fit and the
    blend all change the result. The official code and localdepth see the same values."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:  # (T, 3, h, w) -> (T, h, w)
        self.calls += 1
        scale, shift = 1.0 + 0.3 * np.sin(self.calls), 0.2 * np.cos(self.calls)
        base = 1.0 + np.abs(x.mean(axis=1) + 0.5 * x[:, 0] - 0.25 * x[:, 2])
        slot = np.arange(len(x), dtype=np.float32)[:, None, None] / len(x)
        return (scale * base + shift + 0.3 * slot * base ** 2).astype(np.float32)


class _FakeEstimator:
    """The parts of an estimator WindowedDepth uses, with the registry's VDA preprocessing."""

    def __init__(self, network):
        self.network, self.spec, self.kind, self.input_size = network, registry.get("vda-small"), "disparity", 28

    def run_network(self, batch):
        return type("Out", (), {"depth": self.network(batch[0])[None]})()


def test_window_logic_matches_the_official_on_a_long_clip_in_bounded_memory():
    """600 frames: the windows, keyframes, alignment and blending match the official
    `infer_video_depth` (run with the same stand-in network), and the predictor never holds
    more than a window and a half of frames, whatever the clip's length."""
    offline, _ = ref.reference()
    rng = np.random.default_rng(0)
    n = 600
    walk = np.cumsum(rng.normal(0, 6, (n, 1, 1, 3)), axis=0)
    rgbs = np.clip(rng.integers(0, 256, (1, 24, 32, 3)) * 0.5 + 64 + walk, 0, 255).astype(np.uint8)

    official_net = _FakeNetwork()
    stub = type("Stub", (), {"metric": False,
                             "forward": lambda self, x: torch.from_numpy(official_net(x[0].numpy()))[None]})()
    with torch.no_grad():
        want, _ = offline.VideoDepthAnything.infer_video_depth(stub, rgbs, 24, input_size=28, device="cpu", fp32=True)

    alive = set()

    def frames():
        for i in range(n):
            frame = Frame(i, i / 24, rgbs[i], f"f{i}")
            alive.add(i)
            weakref.finalize(frame, alive.discard, i)
            yield frame

    predictor, peak, got = WindowedDepth(_FakeEstimator(_FakeNetwork())), 0, []
    for frame, depth, _ in predictor(frames()):
        peak = max(peak, len(alive))
        got.append((frame.index, depth))
        del frame
    assert [i for i, _ in got] == list(range(n))
    assert predictor.windows == len(range(0, n, 22))
    for i, depth in got:
        correlated(depth, want[i], 0.9999, at=f"frame {i}")
        # float32 arithmetic (the official fit sums in float32): measured at most 6.6e-6 of the
        # map's maximum; a wrong keyframe or blend is off by about half of it
        within(float(np.abs(depth - want[i]).max() / np.abs(want[i]).max()), 5e-5, "max error / max depth",
               at=f"frame {i}")
    # one window (32) plus what is waiting to be blended (8) and handed out: not the clip
    assert peak <= 32 + 10, peak


# ----------------------------------------------------------------------------- checkpoints

def _cli(*args):
    return subprocess.run([sys.executable, "-m", "localdepth", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


class _Payload:
    """A pickle that would create a file if unpickled: it must never be."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pth_with_anything_but_tensors_is_refused_in_one_line(tmp_path):
    marker = tmp_path / "unpickled"
    evil2, evil4 = tmp_path / "evil2.pth", tmp_path / "evil4.pth"
    evil2.write_bytes(pickle.dumps({"pretrained.cls_token": _Payload(marker)}, protocol=2))
    evil4.write_bytes(pickle.dumps({"pretrained.cls_token": _Payload(marker)}, protocol=4))
    note = tmp_path / "note.pth"
    torch.save({"pretrained.cls_token": torch.zeros(1, 1, 4), "note": "not a tensor"}, note)
    beyond = "Python objects beyond tensors"
    r = _cli("models", "add", "video-depth-anything-small", evil2)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and beyond in lines[0] and "refusing" in lines[0], r.stderr
    for bad, why in ((evil2, beyond), (evil4, beyond), (note, "not tensors")):
        with pytest.raises(WeightsError, match=why) as caught:
            weights.add(registry.get("video-depth-anything-small"), bad)
        assert "refusing" in str(caught.value) and "\n" not in str(caught.value)
        with pytest.raises(WeightsError, match=why):
            load_vda(bad)
    assert not marker.exists(), "the checkpoint was unpickled"
    assert not weights.model_dir(registry.get("video-depth-anything-small")).exists()


def test_models_add_writes_safetensors_once_and_loads_strictly(tiny, small, photo, tmp_path):
    model, path = tiny
    spec = registry.get("video-depth-anything-small")
    stored = weights.add(spec, path)
    assert stored.name == "video_depth_anything_vits.safetensors"
    assert sorted(p.name for p in stored.parent.iterdir()) == [stored.name]
    found = weights.resolve(spec)
    assert found.origin == "cache" and found.path == stored
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cached = localdepth.load("video-depth-anything-small", device="cpu", input_size=INPUT_SIZE)
    x = torch.from_numpy(np.stack([cached.preprocess(f) for f in pan_frames(photo, 4)]))[None]
    with torch.no_grad():
        torch.testing.assert_close(cached.backend.model(x)["depth"], model(x), rtol=1e-5, atol=1e-5)
    # strict: one tensor missing, or a checkpoint of another released size, is refused in one line
    state = torch.load(path, weights_only=True)
    del state["head.scratch.output_conv1.bias"]
    torch.save(state, tmp_path / "short.pth")
    with pytest.raises(WeightsError, match="'head.scratch.output_conv1.bias' is missing"):
        load_vda(tmp_path / "short.pth")
    with pytest.raises(WeightsError, match="holds a vits checkpoint.*--model video-depth-anything-small"):
        load_vda(small[1], "video-depth-anything-base")


def test_single_file_hub_entry_is_downloaded_verified_and_converted(tiny, tmp_path, monkeypatch):
    from test_weights import _fake_hub_cache

    _, path = tiny
    spec = registry.get("video-depth-anything-small")
    hf_home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_home / "hub"))
    snapshot = _fake_hub_cache(hf_home, spec.repo_id, {spec.files[0].filename: path.read_bytes()})
    found = weights.resolve(spec)
    assert found.origin == "hf-cache" and found.path == snapshot / spec.files[0].filename

    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo, **kw: str(snapshot) if repo == spec.repo_id else None)
    stored = weights.pull(spec)
    assert stored == weights.model_dir(spec) / "video_depth_anything_vits.safetensors"
    assert weights.resolve(spec).path == stored
    # a blob whose content is not its address is refused before anything is stored
    bad = _fake_hub_cache(tmp_path / "hf2", spec.repo_id, {spec.files[0].filename: path.read_bytes()},
                          lie_about=spec.files[0].filename)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo, **kw: str(bad))
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        weights.pull(spec)


def test_registry_rows_sources_and_licences():
    for size, arch in (("small", "vits"), ("base", "vitb"), ("large", "vitl")):
        rel, met = registry.get(f"video_depth_anything_{size}"), registry.get(f"metric-video-depth-anything-{size}")
        assert rel.format == met.format == "vda" and rel.temporal and rel.architecture == met.architecture == arch
        assert rel.files[0].filename == f"video_depth_anything_{arch}.pth"
        assert met.files[0].filename == f"metric_video_depth_anything_{arch}.pth"
        assert rel.repo_id == f"depth-anything/Video-Depth-Anything-{size.capitalize()}"
        assert met.repo_id == f"depth-anything/Metric-Video-Depth-Anything-{size.capitalize()}"
        assert (rel.output, met.output) == ("disparity", "depth")
        # the cards: Small apache-2.0 (relative and metric), relative Base/Large cc-by-nc-4.0; the metric
        # Base/Large cards could not be read, so they stay unverified and non-commercial
        assert rel.commercial_use == met.commercial_use == (size == "small")
        assert (rel.licence, met.licence) == (("apache-2.0",) * 2 if size == "small" else ("cc-by-nc-4.0", "unverified"))
        assert rel.layout == "file" and not registry.get("depth-anything-v2-small").temporal
    assert registry.get("depth-anything/Video-Depth-Anything-Small").name == "video-depth-anything-small"
