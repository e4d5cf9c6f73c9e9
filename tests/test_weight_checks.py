"""Checkpoints checked against their registry entry before anything is built or replaced.

The wrong checkpoint for an entry (relative weights as a metric entry, another size, another
maximum depth, another network), a checkpoint that describes a huge network (a million layers in
config.json, a few KB of empty tensors shaped like a 76 GB network), missing or unexpected
weights, and pickled Transformers folders: each is one line (exit 2), through `run --weights`,
`models add` and the other commands, and `models add` leaves the cache as it was.

References: the registry entry (kind, maximum depth, size, config type); the tiny checkpoints'
own tensors (what was removed or added); a victim cache folder compared byte for byte; memory
measured in a child process under ``resource.setrlimit``.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import localdepth
from localdepth import registry, weights
from localdepth.errors import WeightsError

torch = pytest.importorskip("torch")

#: the address space a child may take, and the peak it may reach. A tiny run measured 600 MB of
#: RSS under a 2 GB RLIMIT_AS on this machine; the refused bombs below peaked at 363 MB.
CHILD_ADDRESS_SPACE = 3_000_000_000
CHILD_PEAK_MB = 1500

_LIMITED = """
import resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from localdepth.cli.main import main
try:
    code = main(sys.argv[3:])
finally:
    with open(sys.argv[2], "w") as f:
        # VmHWM is this process's own peak: ru_maxrss keeps the peak of the (pytest) process it was forked from
        hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
        f.write(str(int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
sys.exit(code)
"""


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "localdepth", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def _limited_cli(tmp_path, *args, timeout=180):
    """The CLI in a child limited to CHILD_ADDRESS_SPACE; returns (process, its peak RSS in MB)."""
    peak = tmp_path / "peak.txt"
    proc = subprocess.run([sys.executable, "-c", _LIMITED, str(CHILD_ADDRESS_SPACE), str(peak), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)
    return proc, float(peak.read_text())


def _one_line(proc, *words) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _photo(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path)
    return path


def _load(name: str, folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # licence warnings of non-commercial entries
        return localdepth.load(name, weights=folder, device="cpu", backend="torch")


def _with_config(tmp_path: Path, source: Path, name: str, config: dict) -> Path:
    """``source``'s weights under another config.json."""
    folder = tmp_path / name
    shutil.copytree(source, folder)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _released_config(name: str) -> dict:
    from localdepth.bench.arch import architecture_config

    return architecture_config(registry.get(name)).to_dict()


# ----------------------------------------------------------------------------- the entry (issue 19, item 5)

def test_models_add_and_run_refuse_relative_weights_for_a_metric_entry(tiny_da_dir, tiny_metric_dir, tmp_path):
    """The repro: a relative Depth Anything added as depth-anything-v2-metric-indoor-small was
    written as metres (range 0 to 0.00018 m) after "verified". Now one line, with the entry to
    use; the metric weights added before stay exactly as they were."""
    spec = registry.get("depth-anything-v2-metric-indoor-small")
    assert _cli("models", "add", spec.name, tiny_metric_dir).returncode == 0
    victim = _snapshot(weights.model_dir(spec))
    proc = _cli("models", "add", spec.name, tiny_da_dir)
    line = _one_line(proc, "relative", "metres", "use --model depth-anything-v2-small")
    assert "verified" not in proc.stdout + line
    assert _snapshot(weights.model_dir(spec)) == victim
    out = tmp_path / "out"
    run = _cli("run", _photo(tmp_path), "--model", spec.name, "--weights", tiny_da_dir, "--outdir", out,
               "--backend", "torch", "-q")
    _one_line(run, "relative", "use --model depth-anything-v2-small")
    assert not out.exists() or not any(out.rglob("*.npy"))


@pytest.mark.parametrize(("entry", "checkpoint", "words"), [
    # a metric checkpoint of another maximum depth
    ("depth-anything-v2-metric-outdoor-small", "metric", ("up to 20 m", "80 m",
                                                          "use --model depth-anything-v2-metric-indoor-small")),
    # another network altogether
    ("midas-dpt-large", "relative", ("'depth_anything'", "'dpt'", "use --model depth-anything-v2-small")),
    # a released Base network as Small (4x larger), and a Small as Base (the licence would be wrong)
    ("depth-anything-v2-small", "base-config", ("97.5M", "use --model depth-anything-v2-base")),
    ("depth-anything-v2-base", "small-config", ("the size of depth-anything-v2-small",
                                                "use --model depth-anything-v2-small")),
])
def test_a_checkpoint_of_another_kind_size_or_range_is_refused(entry, checkpoint, words, tiny_da_dir,
                                                               tiny_metric_dir, tmp_path):
    folder = {"relative": tiny_da_dir, "metric": tiny_metric_dir}.get(checkpoint)
    if folder is None:  # the released architecture's config beside tiny weights: refused before they are read
        size = checkpoint.split("-")[0]
        folder = _with_config(tmp_path, tiny_da_dir, checkpoint, _released_config(f"depth-anything-v2-{size}"))
    with pytest.raises(WeightsError) as caught:
        _load(entry, folder)
    for word in words:
        assert word in str(caught.value)
    assert "\n" not in str(caught.value)
    proc = _cli("models", "add", entry, folder)
    _one_line(proc, *words)
    assert not weights.model_dir(registry.get(entry)).exists()


def test_the_released_architecture_of_the_entry_passes_the_checks(tiny_da_dir, tmp_path):
    """The checks compare with the entry, not with the tiny test models: the released Small
    architecture is accepted as depth-anything-v2-small (it then fails only on its tiny weights)."""
    folder = _with_config(tmp_path, tiny_da_dir, "small", _released_config("depth-anything-v2-small"))
    with pytest.raises(WeightsError, match="has shape"):  # past the config and size checks, at the weights
        _load("depth-anything-v2-small", folder)


def test_a_converted_model_made_from_another_entry_is_refused(tmp_path):
    """A `quantize --output` folder says in its report which model it was converted from."""
    folder = tmp_path / "da2b-int8"
    folder.mkdir()
    (folder / "model.xml").write_text("<net/>")
    (folder / "report.json").write_text(json.dumps({"model": "depth-anything-v2-base", "precision": "int8"}))
    with pytest.raises(WeightsError, match="converted from depth-anything-v2-base, not depth-anything-v2-small; "
                                           "use --model depth-anything-v2-base"):
        _load("depth-anything-v2-small", folder)


# ----------------------------------------------------------------------------- memory bombs (issue 20, item 14)

def test_a_config_with_a_million_layers_is_refused_before_building(tiny_da_dir, tmp_path):
    """It was still building after 300 s at 3.2 GB. Now refused from config.json, in a child
    limited to 3 GB of address space, well under its peak bound."""
    config = json.loads((tiny_da_dir / "config.json").read_text())
    config["backbone_config"]["num_hidden_layers"] = 1_000_000
    folder = _with_config(tmp_path, tiny_da_dir, "layers", config)
    proc, peak = _limited_cli(tmp_path, "run", _photo(tmp_path), "--weights", folder, "--outdir", tmp_path / "out",
                              "--backend", "torch", "-q")
    _one_line(proc, "backbone_config.num_hidden_layers = 1000000", "limits.py")
    assert peak < CHILD_PEAK_MB, peak


def test_a_config_describing_a_huge_network_is_refused_before_allocating(tiny_da_dir, tmp_path):
    """Twelve layers (within the layer ceiling) a million wide: 12 trillion parameters, counted on
    the meta device and refused before any weight is allocated."""
    config = json.loads((tiny_da_dir / "config.json").read_text())
    config["backbone_config"].update(hidden_size=1_000_000, num_hidden_layers=12)
    folder = _with_config(tmp_path, tiny_da_dir, "wide", config)
    proc, peak = _limited_cli(tmp_path, "models", "add", "depth-anything-v2-small", folder)
    _one_line(proc, "describes a network of", "limits.py")
    assert peak < CHILD_PEAK_MB, peak
    assert not weights.model_dir(registry.get("depth-anything-v2-small")).exists()


def tiny_vda_checkpoint(path: Path, seed: int = 0) -> Path:
    """A valid Video Depth Anything checkpoint of a tiny shape (12 blocks, 64 wide), saved the way
    the released ones are (a pickled state dict of tensors)."""
    from localdepth.networks.dinov2 import ViTConfig
    from localdepth.networks.vda import LAYERS_BY_DEPTH, VDAConfig, VideoDepthAnything

    torch.manual_seed(seed)
    vit = ViTConfig(embed_dim=64, depth=12, num_heads=1, mlp_hidden=128, patch_size=14, image_size=518)
    network = VideoDepthAnything(VDAConfig(vit, 32, (32, 32, 64, 64), LAYERS_BY_DEPTH[12]))
    torch.save(network.state_dict(), path)
    return path


def vda_bomb(path: Path, dim: int = 65536, features: int = 4096) -> Path:
    """A few KB of empty tensors whose shapes describe a Video Depth Anything about a trillion
    parameters large (the issue's repro tried to allocate 76.8 GB)."""
    empty = torch.zeros
    state = {"pretrained.pos_embed": empty(0, 1370, dim), "pretrained.patch_embed.proj.weight": empty(0, 3, 14, 14),
             "pretrained.blocks.0.mlp.fc1.weight": empty(4 * dim, 0), "pretrained.blocks.11.norm1.weight": empty(0),
             "head.scratch.refinenet1.out_conv.weight": empty(features, 0, 1, 1),
             "head.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe":
                 empty(0, 32, 1),
             **{f"head.projects.{i}.weight": empty(dim, 0, 1, 1) for i in range(4)}}
    torch.save(state, path)
    return path


def test_an_empty_checkpoint_describing_a_huge_video_network_allocates_nothing(tmp_path):
    """`run` tried to allocate 76.8 GB; `models add` accepted the file as verified and replaced
    the cached weights. Now both refuse it in one line, far below the memory bound, and the cached
    weights stay as they were."""
    bomb = vda_bomb(tmp_path / "video_depth_anything_vits.pth")
    assert bomb.stat().st_size < 8192
    spec = registry.get("video-depth-anything-small")
    assert _cli("models", "add", spec.name, tiny_vda_checkpoint(tmp_path / "good.pth")).returncode == 0
    victim = _snapshot(weights.model_dir(spec))
    proc, peak = _limited_cli(tmp_path, "run", _photo(tmp_path), "--model", spec.name, "--weights", bomb,
                              "--outdir", tmp_path / "out", "-q")
    _one_line(proc, "describes a network of", "parameters")
    assert peak < CHILD_PEAK_MB, peak
    proc, peak = _limited_cli(tmp_path, "models", "add", spec.name, bomb)
    _one_line(proc, "describes a network of")
    assert peak < CHILD_PEAK_MB, peak
    assert _snapshot(weights.model_dir(spec)) == victim


# ----------------------------------------------------------------------------- missing weights (issue 20, item 15)

def _families(request) -> dict[str, Path]:
    return {"depth-anything-v2-small": request.getfixturevalue("tiny_da_dir"),
            "depth-pro": request.getfixturevalue("tiny_depth_pro_dir"),
            "zoedepth-nyu": request.getfixturevalue("tiny_zoedepth_dir"),
            "prompt-depth-anything-vits": request.getfixturevalue("tiny_prompt_da_dir")}


def _save_state(tmp_path: Path, source: Path, name: str, state: dict) -> Path:
    from safetensors.torch import save_file

    folder = tmp_path / name
    shutil.copytree(source, folder)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


#: the unit the first DPT fusion layer never calls (released DPT checkpoints omit it; Transformers #28292);
#: DINOv2's mask token, read only in masked pretraining, is another weight no forward pass here reads
_NEVER_CALLED = ("neck.fusion_stage.layers.0.residual_layer1.", "fusion_stage.intermediate.0.residual_layer1.")


@pytest.mark.parametrize("entry", ["depth-anything-v2-small", "depth-pro", "zoedepth-nyu",
                                   "prompt-depth-anything-vits"])
def test_missing_or_unexpected_weights_are_refused_naming_the_first(entry, request, tmp_path):
    """Half the tensors gone ran as "1 ok" on randomly initialised layers. Now one line naming
    the first missing weight in the network's order, for every Transformers family; a tensor the
    network has no place for is refused too. Weights the forward pass never reads may be absent,
    as released DPT checkpoints have them (the map is then the full checkpoint's)."""
    from safetensors.torch import load_file

    source = _families(request)[entry]
    state = load_file(str(source / "model.safetensors"))
    order = list(_load(entry, source).backend.model.model.state_dict())
    # every other tensor, but for those a forward pass never reads (the excused ones, below)
    dropped = [k for i, k in enumerate(sorted(state)) if i % 2 == 0 and not k.startswith(_NEVER_CALLED)
               and not k.endswith("mask_token")]
    half = _save_state(tmp_path, source, "half", {k: v for k, v in state.items() if k not in dropped})
    with pytest.raises(WeightsError) as caught:
        _load(entry, half)
    # Transformers' own report of what is missing, under the network's names (some families rename
    # the checkpoint's keys on loading), the first in the network's order
    from transformers import AutoModelForDepthEstimation
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    _, info = AutoModelForDepthEstimation.from_pretrained(str(half), output_loading_info=True)
    first = next(k for k in order if k in info["missing_keys"])
    assert f"'{first}' is missing" in str(caught.value) and "\n" not in str(caught.value)

    extra = _save_state(tmp_path, source, "extra", {**state, "neck.spare.weight": torch.zeros(3)})
    with pytest.raises(WeightsError, match="'neck.spare.weight' is not a weight"):
        _load(entry, extra)

    unread = [k for k in state if k.startswith(_NEVER_CALLED)]
    assert unread, "the tiny checkpoint should hold the never-called unit"
    released = _save_state(tmp_path, source, "released", {k: v for k, v in state.items() if k not in unread})
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, 1536, 1536) if entry == "depth-pro"
                                                                   else (1, 3, 56, 70)).astype(np.float32))
    cond = {"prompt_depth": torch.rand(1, 1, 8, 8) + 1} if entry.startswith("prompt") else {}
    with torch.no_grad():
        got = _load(entry, released).backend.model(x, **cond)["depth"]
        want = _load(entry, source).backend.model(x, **cond)["depth"]
    assert torch.equal(got, want)


def test_run_with_half_the_weights_exits_2_instead_of_1_ok(tiny_da_dir, tmp_path):
    from safetensors.torch import load_file

    state = load_file(str(tiny_da_dir / "model.safetensors"))
    half = _save_state(tmp_path, tiny_da_dir, "half", {k: v for i, (k, v) in enumerate(sorted(state.items()))
                                                       if i % 2})
    run = _cli("run", _photo(tmp_path), "--weights", half, "--outdir", tmp_path / "out", "--backend", "torch", "-q")
    _one_line(run, "is missing", "random values")


def test_a_video_checkpoint_missing_weights_names_the_first(tmp_path):
    """The native networks (Video Depth Anything here; Depth Anything 3: tests/test_da3_parity.py)
    are checked the same way, before their memory is allocated."""
    from localdepth.networks.vda import VDAConfig, VideoDepthAnything

    good = tiny_vda_checkpoint(tmp_path / "good.pth")
    state = torch.load(good, weights_only=True)
    with torch.device("meta"):
        order = list(VideoDepthAnything(VDAConfig.from_state_dict(state)).state_dict())
    shaping = ("pretrained.pos_embed", "pretrained.patch_embed.proj.weight", "pretrained.blocks.0.mlp.fc1.weight",
               "head.scratch.refinenet1.out_conv.weight", "head.projects.", "pos_encoder.pe")
    dropped = [k for k in order[5::2] if not any(part in k for part in shaping)]  # the architecture stays readable
    torch.save({k: v for k, v in state.items() if k not in dropped}, tmp_path / "half.pth")
    with pytest.raises(WeightsError, match=f"'{dropped[0]}' is missing"):
        _load("video-depth-anything-small", tmp_path / "half.pth")


# ----------------------------------------------------------------------------- pickles (issue 20, item 13)

class _Payload:
    """A pickle that would create a file if unpickled: it must never be."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _pickled_folder(tmp_path: Path, source: Path, name: str, state) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(source / "config.json", folder / "config.json")
    if all(isinstance(v, torch.Tensor) for v in state.values()):
        torch.save(state, folder / "pytorch_model.bin")
    else:
        (folder / "pytorch_model.bin").write_bytes(pickle.dumps(state))
    return folder


@pytest.mark.parametrize("command", [
    ("run", "{photo}", "--weights", "{folder}", "--outdir", "{out}", "--backend", "torch", "-q"),
    ("models", "add", "depth-anything-v2-small", "{folder}"),
    ("export", "--weights", "{folder}", "--output", "{out}/x.onnx"),
    ("quantize", "--weights", "{folder}", "--output", "{out}/q"),
    ("serve", "--weights", "{folder}", "--port", "9"),
])
def test_a_pickled_transformers_folder_is_refused_everywhere_in_one_line(command, tiny_da_dir, tmp_path):
    """It gave a raw traceback with PyTorch's "weights_only=False will likely succeed" advice,
    and `models add` said "verified and added" without reading the .bin. Every command goes
    through the one resolution of weights, which refuses it and says how to convert it."""
    marker = tmp_path / "unpickled"
    folder = _pickled_folder(tmp_path, tiny_da_dir, "pickled", {"backbone.embeddings.cls_token": _Payload(marker)})
    values = {"photo": _photo(tmp_path), "folder": folder, "out": tmp_path / "out"}
    proc = _cli(*[part.format(**values) for part in command])
    line = _one_line(proc, "pytorch_model.bin", "pickled", "save_pretrained", "safetensors")
    assert "weights_only" not in line and "Traceback" not in proc.stderr
    assert not marker.exists(), "the pickle was unpickled"
    assert not weights.model_dir(registry.get("depth-anything-v2-small")).exists()


def test_the_conversion_the_refusal_suggests_works(tiny_da_dir, tmp_path):
    """The command in the message turns a (benign) pickled folder into one that loads."""
    from safetensors.torch import load_file

    folder = _pickled_folder(tmp_path, tiny_da_dir, "pickled", load_file(str(tiny_da_dir / "model.safetensors")))
    with pytest.raises(WeightsError) as caught:
        _load("depth-anything-v2-small", folder)
    command = str(caught.value).split("trust the file: ")[1].split(", then use")[0]
    assert command.startswith("python -c ")
    code = command[len("python -c "):].strip('"')
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
    converted = Path(f"{folder}-safetensors")
    assert (converted / "model.safetensors").is_file()
    x = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_load("depth-anything-v2-small", converted).predict(x).map,
                                  _load("depth-anything-v2-small", tiny_da_dir).predict(x).map)
