"""Numeric tolerances that can say what they measured, and the conditions they are measured under.

Every numeric check of the suite is one of: ``np.testing.assert_allclose``, ``np.allclose``,
``torch.testing.assert_close``, ``pytest.approx``, or :func:`within`, :func:`correlated` and
:func:`at_least` below (a measured value against a bound written in the test). Normally these
are plain assertions. With
``LOCALDEPTH_TOLERANCE_LOG=FILE`` set, :func:`install` (called by tests/conftest.py) makes each
of them append what it measured to ``FILE`` (JSON lines: the test, the line of the check, the
measured error, the allowed one, and their ratio ``usage``: above 1 fails), and applies the
conditions the variables below ask for. ``benchmarks/tolerance_matrix.py`` runs the suite under
each condition and tabulates the worst ``usage`` of every check (docs/testing.md, Tolerances).

* ``LOCALDEPTH_TOLERANCE_THREADS=N``: every CPU runtime uses N threads (PyTorch, ONNX Runtime,
  OpenVINO, LiteRT), whatever a test asks for (its ``torch.set_num_threads(1)`` included; a test
  that asserts a thread count, as the Ray actor's does, fails under the other count);
* ``LOCALDEPTH_TOLERANCE_BATCH=2``: every network runs each input inside a batch of two (the
  input twice), as a batched run would: PyTorch modules called from outside any other module
  under ``no_grad``/``inference_mode``, and the ONNX Runtime and OpenVINO backends. Kernels
  are chosen by shape, so a batch can change the arithmetic; the first half is returned.

The CPU kernels themselves are chosen with the libraries' own variables, set by the caller:
``ONEDNN_MAX_CPU_ISA`` (oneDNN inside PyTorch and OpenVINO), ``ATEN_CPU_CAPABILITY``
(PyTorch's own kernels), ``OPENBLAS_CORETYPE`` (NumPy's BLAS), ``OPENCV_CPU_DISABLE`` (OpenCV).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import numpy as np

LOG_ENV = "LOCALDEPTH_TOLERANCE_LOG"
THREADS_ENV = "LOCALDEPTH_TOLERANCE_THREADS"
BATCH_ENV = "LOCALDEPTH_TOLERANCE_BATCH"

_TESTS = Path(__file__).resolve().parent
_lock = threading.Lock()


# ----------------------------------------------------------------------------- checks written in tests

def within(measured: float, limit: float, what: str = "error", at=None) -> None:
    """``assert measured <= limit``: an error against its tolerance, recorded when measuring.
    ``what`` names the quantity (the same for every call of one check); ``at`` says where in
    the failure message (a frame, an image)."""
    measured = float(measured)
    usage = measured / limit if limit > 0 else (0.0 if measured <= 0 else np.inf)
    record("within", measured, float(limit), usage, f"{what} ≤ {limit:g}")
    assert measured <= limit, f"{what} {measured:.3g} > {limit:g}" + (f" ({at})" if at is not None else "")


def correlated(a, b, floor: float, what: str = "Pearson r", at=None) -> float:
    """Pearson correlation of ``a`` and ``b`` (in float64) is at least ``floor``; recorded as
    the error ``1 - r`` against ``1 - floor``. Returns ``r``."""
    r = float(np.corrcoef(np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel())[0, 1])
    record("1 - pearson", 1.0 - r, 1.0 - floor, (1.0 - r) / (1.0 - floor), f"{what} ≥ {floor:g}")
    assert r >= floor, f"{what} {r:.6f} < {floor}" + (f" ({at})" if at is not None else "")
    return r


def at_least(measured: float, floor: float, what: str = "value", at=None) -> None:
    """``assert measured >= floor`` for a quality that noise can only lower (a rank correlation
    with ground truth); recorded with ``usage = floor / measured`` (1 at the floor)."""
    measured = float(measured)
    usage = floor / measured if measured > 0 else np.inf
    record("at_least", measured, float(floor), usage, f"{what} ≥ {floor:g}")
    assert measured >= floor, f"{what} {measured:.4g} < {floor:g}" + (f" ({at})" if at is not None else "")


# ----------------------------------------------------------------------------- recording

def measuring() -> bool:
    return bool(os.environ.get(LOG_ENV))


def _site() -> str:
    """``file.py:line`` of the test code that made the check (the innermost frame in tests/
    outside this module), or ``?`` when no test code is on the stack."""
    frame = sys._getframe(1)
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if path.parent == _TESTS and path.name != "tolerance.py":
            return f"{path.name}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


def record(kind: str, measured: float, limit: float, usage: float, what: str = "") -> None:
    log = os.environ.get(LOG_ENV)
    if not log:
        return
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]
    line = json.dumps({"test": test, "site": _site(), "kind": kind, "measured": _finite(measured),
                       "limit": _finite(limit), "usage": _finite(usage), "what": what})
    with _lock, open(log, "a") as f:
        f.write(line + "\n")


def _finite(x: float):
    x = float(x)
    return x if np.isfinite(x) else str(x)


def _closeness(actual, desired, rtol: float, atol: float) -> tuple[float, float, float] | None:
    """``(usage, |a - d| at the worst element, allowed there)`` for an elementwise
    ``|a - d| <= atol + rtol * |d|``, or None when the arrays are not numeric."""
    try:
        a = np.asarray(actual, dtype=np.float64)
        d = np.asarray(desired, dtype=np.float64)
        a, d = np.broadcast_arrays(a, d)
    except (TypeError, ValueError):
        return None
    if a.size == 0:
        return 0.0, 0.0, float(atol)
    same = (a == d) | (np.isnan(a) & np.isnan(d))
    err = np.where(same, 0.0, np.abs(a - d))
    allowed = atol + rtol * np.abs(d)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(err == 0, 0.0, err / allowed)
    ratio = np.where(np.isnan(ratio), np.inf, ratio)
    i = int(np.argmax(ratio))
    return float(ratio.flat[i]), float(err.flat[i]), float(allowed.flat[i])


def _called_from_tests(depth: int = 2) -> bool:
    """Whether the wrapped function was called by test code itself (not by a library a test
    calls: ``torch.jit.trace`` checks its trace with ``assert_close``, SciPy calls ``allclose``)."""
    path = Path(sys._getframe(depth).f_code.co_filename)
    return path.parent == _TESTS and path.name != "tolerance.py"


def _record_close(kind: str, actual, desired, rtol: float, atol: float) -> None:
    found = _closeness(actual, desired, rtol, atol)
    if found is not None:
        usage, err, allowed = found
        record(kind, err, allowed, usage, f"rtol={rtol:g}, atol={atol:g}")


# ----------------------------------------------------------------------------- installing

def install() -> None:
    """Wrap the comparison functions to record, and apply the conditions (see the module docstring).
    Does nothing unless ``LOCALDEPTH_TOLERANCE_LOG`` is set."""
    if not measuring():
        return
    _wrap_numpy()
    _wrap_approx()
    if "torch" in sys.modules or _importable("torch"):
        _wrap_torch()
    threads = int(os.environ.get(THREADS_ENV, "0") or 0)
    if threads:
        _force_threads(threads)
    if os.environ.get(BATCH_ENV, "1") == "2":
        _batch_of_two()


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _wrap_numpy() -> None:
    assert_allclose, allclose = np.testing.assert_allclose, np.allclose

    def recording_assert_allclose(actual, desired, rtol=1e-7, atol=0, *args, **kwargs):
        if _called_from_tests():
            _record_close("assert_allclose", actual, desired, rtol, atol)
        return assert_allclose(actual, desired, rtol, atol, *args, **kwargs)

    def recording_allclose(a, b, rtol=1e-5, atol=1e-8, *args, **kwargs):
        if _called_from_tests():
            _record_close("np.allclose", a, b, rtol, atol)
        return allclose(a, b, rtol, atol, *args, **kwargs)

    np.testing.assert_allclose = recording_assert_allclose
    np.allclose = recording_allclose


def _wrap_approx() -> None:
    ApproxScalar = type(__import__("pytest").approx(1.0))  # _pytest.approx or _pytest.python_api by version

    equal = ApproxScalar.__eq__

    def recording_eq(self, actual):
        result = equal(self, actual)
        try:
            tolerance = float(self.tolerance)
            err = abs(float(actual) - float(self.expected))
        except (TypeError, ValueError, OverflowError):
            return result
        usage = 0.0 if err == 0 else (err / tolerance if tolerance > 0 else np.inf)
        record("approx", err, tolerance, usage, f"rel={self.rel}, abs={self.abs}")
        return result

    ApproxScalar.__eq__ = recording_eq


def _wrap_torch() -> None:
    import torch

    assert_close = torch.testing.assert_close

    def recording_assert_close(actual, expected, *args, rtol=None, atol=None, **kwargs):
        if isinstance(actual, torch.Tensor) and isinstance(expected, torch.Tensor) and _called_from_tests():
            # PyTorch's defaults when none are given: float32's, float64's
            default = (1e-7, 1e-7) if expected.dtype == torch.float64 else (1.3e-6, 1e-5)
            r, a = (rtol, atol) if rtol is not None else default
            _record_close("assert_close", actual.detach().double().cpu().numpy(),
                          expected.detach().double().cpu().numpy(), r, a)
        return assert_close(actual, expected, *args, rtol=rtol, atol=atol, **kwargs)

    torch.testing.assert_close = recording_assert_close


def _force_threads(n: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(n)  # subprocesses, and the runtimes' default
    from localdepth import runtimes

    def budget(threads=None):
        return n

    runtimes.thread_budget = budget
    try:
        from localdepth.backends import tflite_backend

        tflite_backend.thread_budget = budget
    except ImportError:
        pass
    if _importable("torch"):
        import torch

        torch.set_num_threads(n)
        torch.set_num_threads = lambda threads: None  # a test's own setting would undo the condition


def _batch_of_two() -> None:
    import torch
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    call = torch.nn.Module.__call__
    state = threading.local()

    def batched_call(self, *args, **kwargs):
        if getattr(state, "inside", False) or self.training or torch.is_grad_enabled():
            return call(self, *args, **kwargs)
        if kwargs.get("same_scene"):  # Depth Anything 3's views of one scene: the first axis is views, not a batch
            return call(self, *args, **kwargs)
        if _get_current_dispatch_mode() is not None:  # a FLOP counter (or tracer) watches: count one input's
            return call(self, *args, **kwargs)
        lead = next((t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor) and t.ndim >= 3), None)
        if lead is None:
            return call(self, *args, **kwargs)
        n = lead.shape[0]
        def twice(v):
            return torch.cat([v, v]) if isinstance(v, torch.Tensor) and v.ndim >= 1 and v.shape[0] == n else v

        state.inside = True
        try:
            out = call(self, *(twice(a) for a in args), **{k: twice(v) for k, v in kwargs.items()})
        finally:
            state.inside = False
        return _first_half(out, n)

    torch.nn.Module.__call__ = batched_call

    from localdepth.backends.base import NetworkOutput

    def wrap_run(cls):
        run = cls.run

        def batched_run(self, batch, **conditioning):
            n = batch.shape[0]
            twice = {k: np.concatenate([v, v]) if isinstance(v, np.ndarray) else v for k, v in conditioning.items()}
            out = run(self, np.concatenate([batch, batch]), **twice)
            return NetworkOutput(**{k: (v[:n] if isinstance(v, np.ndarray) else v) for k, v in vars(out).items()})

        cls.run = batched_run

    for module, name in (("onnx_backend", "OnnxBackend"), ("openvino_backend", "OpenVINOBackend")):
        try:
            mod = __import__(f"localdepth.backends.{module}", fromlist=[name])
        except ImportError:
            continue
        wrap_run(getattr(mod, name))


def _first_half(out, n: int):
    import torch

    if isinstance(out, torch.Tensor):
        return out[:n] if out.ndim >= 1 and out.shape[0] == 2 * n else out
    if isinstance(out, dict):
        halves = {k: _first_half(v, n) for k, v in out.items()}
        try:
            return type(out)(**halves) if type(out) is not dict else halves
        except TypeError:
            return halves
    if isinstance(out, tuple) and hasattr(out, "_fields"):
        return type(out)(*(_first_half(v, n) for v in out))
    if isinstance(out, (list, tuple)):
        return type(out)(_first_half(v, n) for v in out)
    return out
