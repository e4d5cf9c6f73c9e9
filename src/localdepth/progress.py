"""Progress of the long steps a command waits for (converting a model, calibrating, checking
parity, a scene's stages), so that half a minute of work never looks like a hang.

:class:`Status` is called with the name of each step as it starts::

    status = Status.for_command(quiet=args.quiet)
    status("converting depth-anything-v2-small to OpenVINO IR")
    ...
    status("checking parity against PyTorch")
    ...
    status.done()

* on a terminal, one line on stderr names the step under way and the seconds it has taken,
  rewritten in place twice a second; a finished step stays on screen with its time;
* elsewhere (a log file, a pipe), one plain line as each step starts;
* with ``--quiet``, nothing.
"""

from __future__ import annotations

import sys
import threading
import time

_CLEAR = "\r\x1b[K"  # back to the start of the line, erase it


class Status:
    """A status line for long steps (see the module docstring). ``mode``: ``"live"`` (a terminal),
    ``"lines"`` or ``"off"``."""

    def __init__(self, mode: str = "lines", stream=None, prefix: str = "localdepth: ", interval: float = 0.5):
        self.mode = mode
        self.stream = stream or sys.stderr
        self.prefix = prefix
        self.interval = interval
        self._step: str | None = None
        self._started = 0.0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._ticker: threading.Thread | None = None

    @classmethod
    def for_command(cls, quiet: bool = False, stream=None) -> Status:
        stream = stream or sys.stderr
        if quiet:
            return cls("off", stream)
        return cls("live" if getattr(stream, "isatty", lambda: False)() else "lines", stream)

    @property
    def live(self) -> bool:
        return self.mode == "live"

    def __call__(self, step: str) -> None:
        """Start ``step`` (the previous one, if any, is done)."""
        if self.mode == "off":
            return
        if self.mode == "lines":
            self._write(f"{self.prefix}{step}\n")
            return
        step = step.rstrip(" .…")  # the elapsed time follows the step's name
        with self._lock:
            self._finish_locked()
            self._step, self._started = step, time.perf_counter()
            self._show_locked()
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="localdepth-status", daemon=True)
            self._ticker.start()

    def done(self) -> None:
        """End the current step: on a terminal its line stays, with the time it took."""
        if self.mode != "live":
            return
        with self._lock:
            self._finish_locked()

    def close(self) -> None:
        self.done()
        if self._ticker is not None:
            self._wake.set()
            self._ticker.join(timeout=2)
            self._ticker = None
            self._wake.clear()

    def __enter__(self) -> Status:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -------------------------------------------------------------------- the terminal line

    def _tick(self) -> None:
        while not self._wake.wait(self.interval):
            with self._lock:
                if self._step is not None:
                    self._show_locked()

    def _show_locked(self) -> None:
        seconds = time.perf_counter() - self._started
        self._write(f"{_CLEAR}{self.prefix}{self._step}… {seconds:.0f} s")

    def _finish_locked(self) -> None:
        if self._step is None:
            return
        seconds = time.perf_counter() - self._started
        self._write(f"{_CLEAR}{self.prefix}{self._step}: {seconds:.1f} s\n")
        self._step = None

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed terminal must not stop the work
            pass
