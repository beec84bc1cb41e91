"""One run per results directory: a second process is refused by name; a killed holder frees it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from micrometry.runlock import LOCK_NAME, ResultsLockedError, acquire_results_lock, release_results_lock

HOLD = (
    "import sys, time\n"
    "from micrometry.runlock import acquire_results_lock\n"
    "acquire_results_lock(sys.argv[1])\n"
    "print('locked', flush=True)\n"
    "time.sleep(120)\n"
)


def _holder(results):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(results)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_process_is_refused_and_a_killed_holder_frees_the_lock(tmp_path):
    results = tmp_path / "results"
    proc = _holder(results)
    try:
        holder = json.loads((results / LOCK_NAME).read_text())
        assert holder["pid"] == proc.pid
        with pytest.raises(ResultsLockedError, match=rf"{results}.*in use by another micrometry run \(pid {proc.pid}"):
            acquire_results_lock(results)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # the kernel dropped the flock with the process: no stale lock after a crash
    path = acquire_results_lock(results)
    assert json.loads(path.read_text())["pid"] == os.getpid()
    assert acquire_results_lock(results) == path  # re-entrant within one process
    release_results_lock(results)


def test_other_results_directories_are_independent(tmp_path):
    proc = _holder(tmp_path / "a")
    try:
        t0 = time.perf_counter()
        acquire_results_lock(tmp_path / "b")
        assert time.perf_counter() - t0 < 5  # never blocks
    finally:
        release_results_lock(tmp_path / "b")
        proc.kill()
        proc.wait()
