"""The model registry and `localdepth models`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from localdepth import registry
from localdepth.errors import ModelNotFoundError

REQUIRED = [
    "depth-anything-v2-small", "depth-anything-v2-base", "depth-anything-v2-large",
    *[f"depth-anything-v2-metric-{s}-{z}" for s in ("indoor", "outdoor") for z in ("small", "base", "large")],
    "depth-anything-v1-small", "depth-anything-v1-base", "depth-anything-v1-large",
    "midas-dpt-large", "midas-dpt-hybrid", "pydnet",
]


def test_required_entries_exist_and_are_complete():
    for name in REQUIRED:
        spec = registry.get(name)
        assert spec.family and spec.licence and spec.source and spec.files
        assert spec.params_millions > 0 and spec.download_mb > 0
        assert spec.output in ("disparity", "depth")
        assert (spec.max_depth is not None) == (spec.output == "depth")


def test_names_accept_dashes_underscores_case_aliases_and_repo_ids():
    spec = registry.get("depth-anything-v2-small")
    assert registry.get("depth_anything_v2_small") is spec
    assert registry.get("Depth_Anything_V2_Small") is spec
    assert registry.get("depth-anything/Depth-Anything-V2-Small-hf") is spec
    assert registry.get("dpt_large").name == "midas-dpt-large"
    assert registry.get("depth-anything-v2-metric-outdoor-large").max_depth == 80


def test_unknown_name_suggests():
    with pytest.raises(ModelNotFoundError, match="did you mean depth-anything-v2-small"):
        registry.get("depth-anything-v2-smal")


def test_metric_and_relative_kinds_and_licences():
    assert registry.get("depth-anything-v2-metric-indoor-small").max_depth == 20
    assert registry.get("depth-anything-v2-base").commercial_use is False
    assert registry.get("pydnet").files[0].sha256.startswith("ba97991e")


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "localdepth", *args], capture_output=True, text=True, env=env)


def test_models_command_table_and_json(tmp_path, pydnet_file):
    table = _cli("models")
    assert table.returncode == 0
    for word in ("name", "kind", "params", "size", "licence", "local", "cc-by-nc-4.0", "pydnet"):
        assert word in table.stdout
    rows = json.loads(_cli("models", "--json").stdout)
    assert [r["name"] for r in rows] == list(registry.MODELS)
    assert not any(r["local"] for r in rows)
    assert _cli("models", "add", "pydnet", str(pydnet_file)).returncode == 0
    rows = {r["name"]: r for r in json.loads(_cli("models", "--json").stdout)}
    assert rows["pydnet"]["local"] is True and rows["pydnet"]["licence"] == "research-only"
