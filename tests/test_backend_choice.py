"""The backend choice: a pure function of the entry, the weights' form, the request and the machine."""

from __future__ import annotations

import pytest

from localdepth import registry
from localdepth.backends.choice import Choice, Host, choose
from localdepth.errors import BackendError

DA = registry.get("depth-anything-v2-small")
PYDNET = registry.get("pydnet")
DEPTH_PRO = registry.get("depth-pro")
PROMPT_DA = registry.get("prompt-depth-anything-vits")
VDA = registry.get("video-depth-anything-small")
METRIC_VDA = registry.get("metric-video-depth-anything-small")
DA1 = registry.get("depth-anything-v1-base")
DA2_METRIC = registry.get("depth-anything-v2-metric-outdoor-large")
DA3_MONO = registry.get("da3-mono-large")
DA3_METRIC = registry.get("da3-metric-large")
DA3_ANY_VIEW = DA3 = registry.get("da3-small")
ZOE = registry.get("zoedepth-nyu")
ALL = frozenset({"torch", "tflite", "onnx", "openvino"})
CPU_BF16 = Host(runtimes=ALL, cpu_bf16=True)
CPU_OLD = Host(runtimes=ALL, cpu_bf16=False)
NO_EXTRAS = Host(runtimes=frozenset({"torch", "tflite"}), cpu_bf16=True)
ONNX_ONLY = Host(runtimes=frozenset({"torch", "tflite", "onnx"}))
GPU = Host(runtimes=ALL, accelerator="cuda", cpu_bf16=True)
GPU_BF16 = Host(runtimes=ALL, accelerator="cuda", cpu_bf16=True, gpu_bf16=True)
ARM = Host(runtimes=ALL, x86=False)
OPENVINO_OFF = Host(runtimes=ALL, cpu_bf16=True, auto_openvino=False)
# Apple silicon: PyTorch sees MPS; MLX installed or not. A Linux x86 machine with MLX's CPU build.
MAC = Host(runtimes=frozenset({"torch", "tflite", "mlx"}), accelerator="mps", x86=False, apple_silicon=True)
MAC_NO_MLX = Host(runtimes=frozenset({"torch", "tflite"}), accelerator="mps", x86=False, apple_silicon=True)
INTEL_MAC = Host(runtimes=frozenset({"torch", "tflite", "mlx"}), x86=True)
LINUX_MLX = Host(runtimes=ALL | {"mlx"}, cpu_bf16=True)


@pytest.mark.parametrize(("spec", "kwargs", "host", "expected"), [
    # x86 CPU with OpenVINO: OpenVINO, bf16 where the CPU has it, converted once
    (DA, {}, CPU_BF16, Choice("openvino", "cpu", "bf16", ("openvino", "fp32"))),
    (DA, {}, CPU_OLD, Choice("openvino", "cpu", "fp32", ("openvino", "fp32"))),
    (DA, {"dtype": "int8"}, CPU_BF16, Choice("openvino", "cpu", "int8", ("openvino", "int8"))),
    (DA, {"device": "cpu", "dtype": "fp32"}, CPU_BF16, Choice("openvino", "cpu", "fp32", ("openvino", "fp32"))),
    # without the extra, or elsewhere: PyTorch; int8 falls back to ONNX Runtime when it is there
    (DA, {}, NO_EXTRAS, Choice("torch", "auto", "fp32")),
    (DA, {"dtype": "int8"}, ONNX_ONLY, Choice("onnx", "auto", "int8", ("onnx", "int8"))),
    (DA, {}, ARM, Choice("torch", "auto", "fp32")),
    (DA, {}, OPENVINO_OFF, Choice("torch", "auto", "fp32")),
    # auto takes OpenVINO only for families whose conversion is tested; others stay on PyTorch
    (DEPTH_PRO, {}, CPU_BF16, Choice("torch", "auto", "fp32")),
    (PROMPT_DA, {}, CPU_BF16, Choice("torch", "auto", "fp32")),
    (DEPTH_PRO, {"backend": "openvino"}, CPU_BF16, Choice("openvino", "cpu", "bf16", ("openvino", "fp32"))),
    # GPUs: PyTorch, fp16 on CUDA; an explicit --device cpu on a GPU machine is a CPU choice
    (DA, {}, GPU, Choice("torch", "auto", "fp16")),
    (DA, {"device": "cuda:1", "dtype": "bf16"}, GPU, Choice("torch", "cuda:1", "bf16")),
    (DA, {"device": "cpu"}, GPU, Choice("openvino", "cpu", "bf16", ("openvino", "fp32"))),
    (DA, {"torch_options": True}, CPU_BF16, Choice("torch", "auto", "fp32")),
    # bf16 where the reference needs its range (Depth Anything 3's autocast) and the card has it
    (DA, {}, GPU_BF16, Choice("torch", "auto", "fp16")),
    (DA3, {}, GPU_BF16, Choice("torch", "auto", "bf16")),
    (DA3, {}, GPU, Choice("torch", "auto", "fp16")),
    (DA3, {"dtype": "fp16"}, GPU_BF16, Choice("torch", "auto", "fp16")),
    # TFLite: LiteRT by default; OpenVINO reads the file itself (no conversion) when asked
    (PYDNET, {}, CPU_BF16, Choice("tflite", "cpu", "fp32")),
    (PYDNET, {}, GPU, Choice("tflite", "cpu", "fp32")),
    (PYDNET, {"backend": "openvino"}, CPU_BF16, Choice("openvino", "cpu", "bf16")),
    (PYDNET, {"backend": "openvino", "dtype": "int8"}, CPU_OLD, Choice("openvino", "cpu", "int8", ("openvino", "int8"))),
    # converted files given as weights run on their runtime, as they are
    (DA, {"weights": "onnx"}, CPU_BF16, Choice("onnx", "auto", "fp32")),
    (DA, {"weights": "openvino"}, CPU_OLD, Choice("openvino", "cpu", "fp32")),
    (DA, {"backend": "onnx"}, CPU_BF16, Choice("onnx", "auto", "fp32", ("onnx", "fp32"))),
    # video models: PyTorch, whatever runtimes the machine has
    (VDA, {}, CPU_BF16, Choice("torch", "auto", "fp32")),
    (VDA, {}, GPU, Choice("torch", "auto", "fp16")),
    # Apple silicon with MLX: the families MLX runs go to MLX on the GPU in fp16 (converted once)
    (DA, {}, MAC, Choice("mlx", "gpu", "fp16", ("mlx", "fp32"))),
    (DA1, {}, MAC, Choice("mlx", "gpu", "fp16", ("mlx", "fp32"))),
    (DA2_METRIC, {"dtype": "fp32"}, MAC, Choice("mlx", "gpu", "fp32", ("mlx", "fp32"))),
    (DA, {"dtype": "bf16"}, MAC, Choice("mlx", "gpu", "bf16", ("mlx", "fp32"))),
    (VDA, {}, MAC, Choice("mlx", "gpu", "fp16", ("mlx", "fp32"))),
    (METRIC_VDA, {}, MAC, Choice("mlx", "gpu", "fp16", ("mlx", "fp32"))),
    (DA3_MONO, {}, MAC, Choice("mlx", "gpu", "fp16", ("mlx", "fp32"))),
    (DA3_METRIC, {}, MAC, Choice("mlx", "gpu", "fp16", ("mlx", "fp32"))),
    # ... the others (and every model without MLX) run on PyTorch, whose auto device there is MPS
    (DEPTH_PRO, {}, MAC, Choice("torch", "auto", "fp32")),
    (ZOE, {}, MAC, Choice("torch", "auto", "fp32")),
    (DA3_ANY_VIEW, {}, MAC, Choice("torch", "auto", "fp32")),
    (PROMPT_DA, {}, MAC, Choice("torch", "auto", "fp32")),
    (DA, {}, MAC_NO_MLX, Choice("torch", "auto", "fp32")),
    (VDA, {}, MAC_NO_MLX, Choice("torch", "auto", "fp32")),
    (PYDNET, {}, MAC, Choice("tflite", "cpu", "fp32")),
    # a device asked for is PyTorch's: MPS, or the CPU
    (DA, {"device": "mps"}, MAC, Choice("torch", "mps", "fp32")),
    (DA, {"device": "cpu"}, MAC, Choice("torch", "cpu", "fp32")),
    (DA, {"backend": "mlx", "device": "cpu"}, MAC, Choice("mlx", "cpu", "fp32", ("mlx", "fp32"))),
    (DA, {"backend": "mlx", "device": "mps"}, MAC, Choice("mlx", "gpu", "fp16", ("mlx", "fp32"))),
    # auto never picks MLX off Apple silicon (an Intel Mac, Linux with MLX's CPU build); asked for, it runs on the CPU
    (DA, {}, INTEL_MAC, Choice("torch", "auto", "fp32")),
    (DA, {}, LINUX_MLX, Choice("openvino", "cpu", "bf16", ("openvino", "fp32"))),
    (DA, {"backend": "mlx"}, LINUX_MLX, Choice("mlx", "cpu", "fp32", ("mlx", "fp32"))),
    (DA, {"backend": "mlx", "dtype": "fp16"}, LINUX_MLX, Choice("mlx", "cpu", "fp16", ("mlx", "fp32"))),
    (VDA, {"backend": "mlx"}, LINUX_MLX, Choice("mlx", "cpu", "fp32", ("mlx", "fp32"))),
])
def test_choice_table(spec, kwargs, host, expected):
    assert choose(spec, host=host, **kwargs) == expected


@pytest.mark.parametrize(("spec", "kwargs", "host", "message"), [
    (DA, {"backend": "openvino"}, NO_EXTRAS, r"pip install 'localdepth\[openvino\]'"),
    (DA, {"backend": "onnx"}, NO_EXTRAS, r"pip install 'localdepth\[onnx\]'"),
    (DA, {"backend": "openvino", "device": "cuda"}, GPU, "runs on the CPU"),
    (DA, {"backend": "openvino", "dtype": "fp16"}, CPU_BF16, "fp32, bf16 or int8"),
    (DA, {"backend": "torch", "dtype": "int8"}, CPU_BF16, "--backend openvino --dtype int8"),
    (DA, {"backend": "openvino", "torch_options": True}, CPU_BF16, "PyTorch options"),
    (DA, {"backend": "torch", "weights": "openvino"}, CPU_BF16, "--backend openvino"),
    (PYDNET, {"backend": "torch"}, CPU_BF16, "PyTorch does not run"),
    (PYDNET, {"dtype": "bf16"}, CPU_BF16, "fp32 only"),
    (DA, {"backend": "tflite"}, CPU_BF16, "no TFLite weights"),
    # a converted graph takes pixel_values only: no prompt depth
    (PROMPT_DA, {"backend": "openvino"}, CPU_BF16, "takes a prompt depth"),
    (PROMPT_DA, {"backend": "onnx"}, CPU_BF16, "takes a prompt depth"),
    (PROMPT_DA, {"dtype": "int8"}, ONNX_ONLY, "--backend openvino --dtype int8"),
    # a converted graph holds one frame's network: no windows, no streaming state
    (VDA, {"backend": "openvino"}, CPU_BF16, "video model.*PyTorch or MLX only"),
    (VDA, {"backend": "onnx"}, CPU_BF16, "video model.*PyTorch or MLX only"),
    (VDA, {"dtype": "int8"}, ONNX_ONLY, "video model.*PyTorch or MLX only"),
    (VDA, {"weights": "onnx"}, CPU_BF16, "video model.*PyTorch or MLX only"),
    # MLX: installed, a model it runs, its devices and precisions, the entry's own weights
    (DA, {"backend": "mlx"}, NO_EXTRAS, r"the MLX backend needs mlx: pip install 'localdepth\[mlx\]'"),
    (DEPTH_PRO, {"backend": "mlx"}, LINUX_MLX, "does not run on MLX.*use --backend torch"),
    (DA3_ANY_VIEW, {"backend": "mlx"}, MAC, "does not run on MLX"),
    (PYDNET, {"backend": "mlx"}, MAC, "does not run on MLX"),
    (DA, {"backend": "mlx", "device": "cuda"}, LINUX_MLX, "not 'cuda'"),
    (DA, {"backend": "mlx", "device": "gpu"}, LINUX_MLX, "MLX has no GPU here"),
    (DA, {"backend": "mlx", "dtype": "int8"}, LINUX_MLX, "the mlx backend runs fp32, fp16 or bf16, not int8"),
    (DA, {"backend": "mlx", "weights": "onnx"}, LINUX_MLX, "--backend onnx"),
    (DA, {"backend": "mlx", "torch_options": True}, LINUX_MLX, "PyTorch options"),
])
def test_impossible_requests_fail_with_what_to_do(spec, kwargs, host, message):
    with pytest.raises(BackendError, match=message):
        choose(spec, host=host, **kwargs)


def test_without_the_extra_openvino_fails_in_one_line(tiny_da_dir, monkeypatch):
    import localdepth
    from localdepth import runtimes

    monkeypatch.setattr(runtimes, "_importable", lambda module: module not in ("openvino", "nncf"))
    with pytest.raises(BackendError) as info:
        localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, backend="openvino")
    message = str(info.value)
    assert "\n" not in message and "pip install 'localdepth[openvino]'" in message
    assert localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, backend="auto").backend.name == "torch"


def test_cli_without_the_extra_says_how_to_install(tiny_da_dir, photo, tmp_path, monkeypatch, capsys):
    from localdepth import runtimes
    from localdepth.cli.main import main

    monkeypatch.setattr(runtimes, "_importable", lambda module: module not in ("openvino", "nncf"))
    code = main(["run", str(photo), "--weights", str(tiny_da_dir), "--backend", "openvino", "--outdir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0] == "localdepth: error: the OpenVINO backend needs openvino: pip install 'localdepth[openvino]'"


def test_apple_silicon_is_a_host_fact(monkeypatch):
    """macOS on arm64 and nothing else; the choice reads it from the Host, never from the platform."""
    import platform
    import sys

    from localdepth import runtimes

    for system, machine, expected in (("darwin", "arm64", True), ("darwin", "x86_64", False),
                                      ("linux", "aarch64", False), ("linux", "x86_64", False)):
        monkeypatch.setattr(sys, "platform", system)
        monkeypatch.setattr(platform, "machine", lambda m=machine: m)
        assert runtimes.is_apple_silicon() is expected, (system, machine)


def _block_mlx(monkeypatch) -> None:
    """As if MLX were not installed: importing it fails (a None in sys.modules blocks the import)."""
    import sys

    for name in ("mlx", "mlx.core", "mlx.nn", "mlx.utils"):
        monkeypatch.setitem(sys.modules, name, None)


def test_cli_without_mlx_says_how_to_install(tiny_da_dir, photo, tmp_path, monkeypatch, capsys):
    from localdepth.cli.main import main

    _block_mlx(monkeypatch)
    code = main(["run", str(photo), "--weights", str(tiny_da_dir), "--backend", "mlx", "--outdir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0] == "localdepth: error: the MLX backend needs mlx: pip install 'localdepth[mlx]'"
    assert not list(tmp_path.iterdir())


def test_a_broken_mlx_install_fails_in_one_line_too(monkeypatch):
    """Found but not importable (e.g. ``pip install mlx`` on Linux, which has no CPU backend)."""
    from localdepth.backends.mlx_backend import import_mlx

    _block_mlx(monkeypatch)
    with pytest.raises(BackendError) as info:
        import_mlx()
    assert "\n" not in str(info.value) and "pip install 'localdepth[mlx]'" in str(info.value)

def test_native_bf16_needs_the_cpu_flag_and_onednn_allowed_to_use_it(monkeypatch):
    """The machine fact behind `--dtype auto` on OpenVINO: an AVX-512 BF16 or AMX flag, unless
    oneDNN is capped below AVX512_CORE_BF16 (ONEDNN_MAX_CPU_ISA), where OpenVINO cannot compile bf16."""
    from localdepth import runtimes

    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(runtimes, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})  # a Zen 4
    assert runtimes.cpu_has_bf16()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not runtimes.cpu_has_bf16() and runtimes.openvino_config("int8")["INFERENCE_PRECISION_HINT"] == "f32"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core_bf16")
    assert runtimes.cpu_has_bf16()
    monkeypatch.setattr(runtimes, "cpu_flags", lambda: {"avx2", "fma"})
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert not runtimes.cpu_has_bf16()
