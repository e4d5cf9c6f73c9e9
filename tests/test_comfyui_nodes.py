"""The ComfyUI nodes (comfyui/localdepth_nodes), called as ComfyUI calls a custom node, without ComfyUI:
the package's mappings, ``INPUT_TYPES()``, one instance per node, the method named by ``FUNCTION`` with
keyword arguments, a tuple matching ``RETURN_TYPES``. ComfyUI's types: ``IMAGE`` float32 ``(B, H, W, 3)``
in [0, 1], ``MASK`` float32 ``(B, H, W)``."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from tolerance import at_least, within

ROOT = Path(__file__).resolve().parents[1]
NODES = ROOT / "comfyui" / "localdepth_nodes"
H, W = 56, 84


def load_custom_nodes():
    """Import the folder the way ComfyUI imports a custom node: as a package from its path."""
    spec = importlib.util.spec_from_file_location("localdepth_nodes", NODES / "__init__.py",
                                                  submodule_search_locations=[str(NODES)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["localdepth_nodes"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def nodes():
    return load_custom_nodes()


def call(node, **inputs):
    """What ComfyUI's executor does: the FUNCTION with keyword inputs; the result is a tuple."""
    out = getattr(node, node.FUNCTION)(**inputs)
    assert isinstance(out, tuple) and len(out) == len(node.RETURN_TYPES)
    return out


def comfy_images(paths: list[Path]) -> torch.Tensor:
    """What ComfyUI's LoadImage gives: float32 RGB / 255, (B, H, W, 3)."""
    arrays = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0 for p in paths]
    return torch.from_numpy(np.stack(arrays))


@pytest.fixture
def two_photos(tmp_path) -> list[Path]:
    paths = []
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        rgb = cv2.resize(rng.integers(0, 256, (7, 10, 3), dtype=np.uint8), (W, H), interpolation=cv2.INTER_CUBIC)
        path = tmp_path / f"photo{seed}.png"
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def test_the_mappings_and_every_node_declare_what_comfyui_reads(nodes):
    assert set(nodes.NODE_CLASS_MAPPINGS) == set(nodes.NODE_DISPLAY_NAME_MAPPINGS)
    assert sorted(nodes.NODE_DISPLAY_NAME_MAPPINGS.values()) == ["localdepth: 3D photo", "localdepth: depth",
                                                                 "localdepth: stereo"]
    for cls in nodes.NODE_CLASS_MAPPINGS.values():
        spec = cls.INPUT_TYPES()
        assert set(spec) <= {"required", "optional"} and spec["required"]["image"] == ("IMAGE",)
        for name, declared in {**spec["required"], **spec.get("optional", {})}.items():
            kind = declared[0]
            assert isinstance(kind, list) or kind in ("IMAGE", "MASK", "INT", "FLOAT", "STRING"), (name, kind)
            if isinstance(kind, list):
                assert declared[1]["default"] in kind
        assert all(t in ("IMAGE", "MASK") for t in cls.RETURN_TYPES)
        assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES) and callable(getattr(cls, cls.FUNCTION))
        assert cls.CATEGORY == "localdepth"
    depth = nodes.NODE_CLASS_MAPPINGS["LocalDepthDepth"].INPUT_TYPES()["required"]
    assert "depth-anything-v2-small" in depth["model"][0] and "da3-small" in depth["model"][0]  # the registry
    assert {"auto", "torch", "openvino", "onnx", "tflite"} <= set(depth["backend"][0])


def test_the_depth_node_takes_a_batch_of_two_and_gives_the_same_depth_as_run(nodes, tiny_da_dir, two_photos,
                                                                             tmp_path, monkeypatch):
    from localdepth.cli.main import main

    depth_node = nodes.NODE_CLASS_MAPPINGS["LocalDepthDepth"]()
    loads = []
    real_load = nodes.nodes.load
    monkeypatch.setattr(nodes.nodes, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    inputs = dict(image=comfy_images(two_photos), model="depth-anything-v2-small", backend="torch", device="cpu",
                  weights=str(tiny_da_dir), input_size=70)
    picture, mask = call(depth_node, **inputs)
    assert picture.shape == (2, H, W, 3) and picture.dtype == torch.float32
    assert mask.shape == (2, H, W) and mask.dtype == torch.float32
    assert float(picture.min()) == 0.0 and float(picture.max()) == 1.0 and float(mask.max()) == 1.0
    call(depth_node, **inputs)
    assert len(loads) == 1  # the model loads once per node instance

    # localdepth run on the same files: the node's mask is its map, normalised; its picture the controlnet format
    assert main(["run", *map(str, two_photos), "--weights", str(tiny_da_dir), "--device", "cpu", "--input-size", "70",
                 "-f", "npy,controlnet", "--outdir", str(tmp_path / "run"), "-q", "--no-pipeline"]) == 0
    for i, photo in enumerate(two_photos):
        disparity = np.load(tmp_path / "run" / f"{photo.stem}.npy").astype(np.float64)
        expected = (disparity - disparity.min()) / (disparity.max() - disparity.min())
        # measured: the batch of two differs from one image at a time by at most 7.3e-7 (1 and 2 threads;
        # ATEN_CPU_CAPABILITY=avx2 with ONEDNN_MAX_CPU_ISA=AVX2; ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16): float
        # noise of the batched convolutions
        np.testing.assert_allclose(mask[i].numpy(), expected, atol=5e-6)
        run_picture = cv2.cvtColor(cv2.imread(str(tmp_path / "run" / f"{photo.stem}_controlnet.png")),
                                   cv2.COLOR_BGR2RGB)
        diff = np.abs(np.rint(picture[i].numpy() * 255) - run_picture)
        # an 8-bit level where the noise crosses a step (measured: none, under every condition)
        within(diff.max(), 1, "picture vs run's controlnet (levels)")
        within((diff > 0).mean(), 0.01, "share of pixels a level off run's controlnet")
    meta = json.loads((tmp_path / "run" / "photo0.json").read_text())
    assert meta["model"]["model"] == "depth-anything-v2-small"


def test_the_3d_photo_node_renders_the_frames_of_every_image(nodes, two_photos):
    rng = np.random.default_rng(0)
    depth = torch.from_numpy(cv2.resize(rng.uniform(0, 1, (4, 6)), (W, H)).astype(np.float32)[None].repeat(2, 0))
    node = nodes.NODE_CLASS_MAPPINGS["LocalDepthPhoto3D"]()
    frames, filled = call(node, image=comfy_images(two_photos), depth=depth, path="swing", seconds=0.5, fps=8.0,
                          size=40, amplitude=0.05)
    assert frames.shape == (8, 40, 60, 3) and frames.dtype == torch.float32  # 2 images x 4 frames, short side 40
    assert filled.shape == (8, 40, 60) and filled.dtype == torch.float32
    assert 0.0 <= float(frames.min()) and float(frames.max()) <= 1.0
    # measured 0.039 and 0.27
    at_least(float((frames[0] - frames[1]).abs().mean()), 0.001, "frame 0 vs 1: the camera moves")
    at_least(float((frames[0] - frames[4]).abs().mean()), 0.01, "frame 0 vs 4: the second image follows")


def test_the_stereo_node_gives_the_pair_the_anaglyph_and_each_eye(nodes, two_photos):
    from localdepth.render import anaglyph

    depth = torch.linspace(0, 1, W).repeat(2, H, 1)
    node = nodes.NODE_CLASS_MAPPINGS["LocalDepthStereo"]()
    pair, glasses, left, right, filled = call(node, image=comfy_images(two_photos), depth=depth, budget=4.0)
    assert pair.shape == (2, H, 2 * W, 3) and glasses.shape == left.shape == right.shape == (2, H, W, 3)
    assert filled.shape == (2, H, 2 * W) and filled.dtype == torch.float32
    assert torch.equal(pair[:, :, :W], left) and torch.equal(pair[:, :, W:], right)
    to8 = lambda t: np.rint(t.numpy() * 255).astype(np.uint8)  # noqa: E731
    assert np.array_equal(to8(glasses[1]), anaglyph(to8(left[1]), to8(right[1])))
    at_least(float((left - right).abs().mean()), 0.001, "left vs right: the eyes differ")  # measured 0.066
