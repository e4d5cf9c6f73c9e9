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
ALL = frozenset({"torch", "tflite", "onnx", "openvino"})
CPU_BF16 = Host(runtimes=ALL, cpu_bf16=True)
CPU_OLD = Host(runtimes=ALL, cpu_bf16=False)
NO_EXTRAS = Host(runtimes=frozenset({"torch", "tflite"}), cpu_bf16=True)
ONNX_ONLY = Host(runtimes=frozenset({"torch", "tflite", "onnx"}))
GPU = Host(runtimes=ALL, accelerator="cuda", cpu_bf16=True)
ARM = Host(runtimes=ALL, x86=False)
OPENVINO_OFF = Host(runtimes=ALL, cpu_bf16=True, auto_openvino=False)


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
    (VDA, {"backend": "openvino"}, CPU_BF16, "video model.*PyTorch only"),
    (VDA, {"backend": "onnx"}, CPU_BF16, "video model.*PyTorch only"),
    (VDA, {"dtype": "int8"}, ONNX_ONLY, "video model.*PyTorch only"),
    (VDA, {"weights": "onnx"}, CPU_BF16, "video model.*PyTorch only"),
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
