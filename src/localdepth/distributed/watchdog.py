"""Stop the local Ray of ``localdepth batch`` when its driver dies, however it dies.

``ray.init()`` starts a local Ray's processes as descendants of the driver. A normal exit (or
Ctrl-C) shuts them down, but after ``kill -9`` of the driver Ray's agents (dashboard agent,
runtime-env agent) were seen running for minutes. So the driver starts this watchdog: a small
process in a session of its own, holding the read end of a pipe whose write end only the driver
holds. When the pipe reads end-of-file (the driver ended, killed or not), the watchdog terminates
what is left of that Ray:

* the processes ``ray.init`` started (the driver's children that appeared during it) and their
  descendants, noted every half second while the driver lives;
* and every Ray service process (run from the ``ray`` package, or titled ``ray::...``) that holds
  a file open in that Ray's session folder (each keeps its log files there): that covers the
  agents, which start a moment after ``ray.init`` returns and lose their parent with the driver.
  The driver itself keeps its own log files there after ``ray.shutdown()``, so it is spared by
  process id and by not being a Ray service: a driver that shuts Ray down and carries on lives.

Every process is identified by id and creation time, so a reused process id is never hit.
Run as ``python -m localdepth.distributed.watchdog FD SESSION_DIR PID,PID,...``; :func:`start` does that.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

POLL_S = 0.5
GRACE_S = 3.0

_keep: list[int] = []  # the pipe's write end stays open for the life of the driver


def children() -> set[int]:
    """Process ids of this process's children (to tell, around ``ray.init``, which ones Ray started)."""
    try:
        import psutil

        return {c.pid for c in psutil.Process().children()}
    except Exception:
        return set()


def start(roots: set[int], session_dir: str) -> subprocess.Popen | None:
    """Watch the processes ``roots`` (those ``ray.init`` started) and the processes of the Ray
    session in ``session_dir``, and stop what is left of them when this process ends. Returns the
    watchdog, or None where it cannot run (no psutil, not POSIX, nothing to watch)."""
    try:
        import psutil  # noqa: F401
    except ImportError:
        return None
    if os.name != "posix" or not roots or not session_dir:
        return None
    read_fd, write_fd = os.pipe()  # both ends not inheritable: Ray's processes never hold them
    try:
        args = [str(read_fd), os.path.realpath(session_dir), ",".join(map(str, sorted(roots)))]
        proc = subprocess.Popen([sys.executable, "-m", "localdepth.distributed.watchdog", *args],
                                pass_fds=(read_fd,), start_new_session=True, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        os.close(read_fd)
    _keep.append(write_fd)
    return proc


def _alive(pid: int, created: float):
    """The process ``pid`` if it is still the one created at ``created``, else None."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return proc if abs(proc.create_time() - created) < 1e-3 and proc.status() != psutil.STATUS_ZOMBIE else None
    except psutil.Error:
        return None


def _with_descendants(seen: dict[int, float]) -> dict[int, float]:
    """The processes of ``seen`` still alive, and their descendants."""
    import psutil

    out = {}
    for pid, created in seen.items():
        proc = _alive(pid, created)
        if proc is None:
            continue
        out[pid] = created
        try:
            for child in proc.children(recursive=True):
                out.setdefault(child.pid, child.create_time())
        except psutil.Error:
            pass
    return out


def _ray_package_dir() -> str:
    import importlib.util

    spec = importlib.util.find_spec("ray")
    locations = list(spec.submodule_search_locations or []) if spec else []
    return os.path.realpath(locations[0]) + "/" if locations else ""


def _is_ray_service(proc, ray_dir: str) -> bool:
    """Ray's own processes: its binaries and scripts (gcs_server, raylet, dashboard, monitors) run
    from the ``ray`` package, its workers and agents are titled ``ray::...``. A driver (a user's
    Python process that called ``ray.init``) is neither, and also holds files in the session folder
    after ``ray.shutdown()``: it must never be hit."""
    cmdline = proc.cmdline()
    if not cmdline:
        return False
    if cmdline[0].startswith("ray::"):
        return True
    return bool(ray_dir) and any(os.path.realpath(arg).startswith(ray_dir) for arg in cmdline[:2])


def _session_processes(session_dir: str, spare: set[int] = frozenset()) -> dict[int, float]:
    """Ray's own processes (see :func:`_is_ray_service`) of this user that hold a file open under
    ``session_dir``; never this process or those in ``spare`` (the driver)."""
    import psutil

    prefix = session_dir.rstrip("/") + "/"
    ray_dir = _ray_package_dir()
    found = {}
    me, uid = os.getpid(), os.getuid()
    for proc in psutil.process_iter():
        try:
            if proc.pid == me or proc.pid in spare or proc.uids().real != uid:
                continue
            if any(f.path.startswith(prefix) for f in proc.open_files()) and _is_ray_service(proc, ray_dir):
                found[proc.pid] = proc.create_time()
        except (psutil.Error, OSError):
            pass
    return found


def terminate(seen: dict[int, float], grace_s: float = GRACE_S) -> int:
    """SIGTERM every process of ``seen`` still alive, SIGKILL after ``grace_s``. Returns how many."""
    import psutil

    procs = [p for p in (_alive(pid, t) for pid, t in seen.items() if pid != os.getpid()) if p is not None]
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, left = psutil.wait_procs(procs, timeout=grace_s)
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            pass
    return len(procs)


def main(argv: list[str] | None = None) -> int:
    import psutil

    fd_text, session_dir, roots_text = argv or sys.argv[1:]
    fd = int(fd_text)
    driver = {os.getppid()}  # the process that started this watchdog, alive or not: never a target
    seen: dict[int, float] = {}
    for pid in (int(p) for p in roots_text.split(",") if p):
        try:
            seen[pid] = psutil.Process(pid).create_time()
        except psutil.Error:
            pass
    seen = _with_descendants(seen)
    while True:
        ready, _, _ = select.select([fd], [], [], POLL_S)
        if ready and not os.read(fd, 1):  # end of file: the driver is gone
            break
        seen = _with_descendants(seen)
        if not seen:  # Ray ended (ray.shutdown, or it died): stop what may be left of it, and leave
            terminate(_session_processes(session_dir, driver))
            return 0
    time.sleep(0.2)  # a normal exit shuts Ray down itself; let it
    terminate({**_with_descendants(seen), **_session_processes(session_dir, driver)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
