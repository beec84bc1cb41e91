"""One workflow run per results directory at a time.

Snakemake locks its own working directory (``.snakemake/locks``), but two runs
started from different working directories -- or with different Snakefiles --
may still point at the same ``results_dir`` and would then write the same
files.  :func:`acquire_results_lock` takes an exclusive, non-blocking
``flock`` on ``{results}/.micrometry.lock`` for the life of the calling
process (the workflow's ``onstart`` hook calls it, so dry runs and cluster
job processes never take it); the kernel releases it when the process ends,
even after ``SIGKILL``, so a crashed run never leaves a stale lock.  The file
holds who holds the lock, for the message the second run prints.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
from pathlib import Path
from typing import IO

__all__ = ["LOCK_NAME", "ResultsLockedError", "acquire_results_lock", "release_results_lock"]

LOCK_NAME = ".micrometry.lock"

_HELD: dict[str, IO[str]] = {}


class ResultsLockedError(RuntimeError):
    """Another live process holds the results directory's lock."""


def acquire_results_lock(results_dir: str | os.PathLike) -> Path:
    """Lock `results_dir` for this process, or raise naming the holder.

    Parameters
    ----------
    results_dir : path
        The workflow's results directory (created when missing).

    Returns
    -------
    pathlib.Path
        The lock file.  Calling again from the same process is a no-op.

    Raises
    ------
    ResultsLockedError
        Another process holds the lock; the message names the directory and
        the holder's pid, host, start time and command line.
    """
    import fcntl

    results = Path(results_dir).resolve()
    results.mkdir(parents=True, exist_ok=True)
    path = results / LOCK_NAME
    key = str(path)
    if key in _HELD:
        return path
    fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the process lifetime
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip()
        fh.close()
        try:
            info = json.loads(holder)
            who = (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}: "
                   f"{info.get('command')}")
        except ValueError:
            who = "another process"
        raise ResultsLockedError(
            f"results directory {results} is in use by another micrometry run ({who}). "
            f"Wait for it to finish, or point this run at another results_dir; the lock ({path}) is released "
            "automatically when that process ends."
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(json.dumps({
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(_cmdline()),
    }))
    fh.flush()
    _HELD[key] = fh
    return path


def release_results_lock(results_dir: str | os.PathLike) -> None:
    """Release this process's lock on `results_dir` (no-op when not held)."""
    import fcntl

    key = str((Path(results_dir).resolve() / LOCK_NAME))
    fh = _HELD.pop(key, None)
    if fh is not None:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()


def _cmdline() -> list[str]:
    try:
        raw = Path(f"/proc/{os.getpid()}/cmdline").read_bytes()
        return [a.decode(errors="replace") for a in raw.split(b"\0") if a][:12]
    except OSError:
        import sys

        return sys.argv[:12]
