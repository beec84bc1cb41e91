"""Tests for micrometry._dask: in-job LocalCluster, an existing scheduler, and
tiled inference computed on them (same result as the synchronous scheduler)."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
import time

import dask
import distributed
import numpy as np
import pytest

from micrometry._dask import SINGLE_THREAD_ENV, cluster_size_from_resources, dask_client
from micrometry.segment.tiled import predict_full, predict_tiled, tile_grid

SHAPE, TILE_PX, OVERLAP_PX = (700, 500), 128, 16

# Module-level state: distributed pickles module-level functions by reference,
# so in-process (threaded) workers call this very function and update this counter.
_CALLS = {"n": 0, "workers": set()}
_LOCK = threading.Lock()


def counting_pointwise(tile):
    with _LOCK:
        _CALLS["n"] += 1
        try:
            _CALLS["workers"].add(distributed.get_worker().address)
        except ValueError:  # not on a worker (synchronous scheduler)
            _CALLS["workers"].add(None)
    return np.stack([tile, 2 * tile])


@pytest.fixture
def calls():
    with _LOCK:
        _CALLS["n"] = 0
        _CALLS["workers"] = set()
    return _CALLS


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(11).random(SHAPE, dtype=np.float32)


def _tiled(image):
    return predict_tiled(image, counting_pointwise, n_channels=2, tile_px=TILE_PX, overlap_px=OVERLAP_PX,
                         out_chunks_px=256)


# --------------------------------------------------------------------------- sizing
def test_cluster_size_from_resources():
    assert cluster_size_from_resources(4, 8000) == {
        "n_workers": 1, "threads_per_worker": 4, "memory_limit": 8000 * 2**20,
    }
    assert cluster_size_from_resources(1, None)["memory_limit"] == "auto"
    assert cluster_size_from_resources(2, 1500.5)["memory_limit"] == int(1500.5 * 2**20)
    for threads, mem_mb in ((0, 100), (1.5, 100), (2, 0), (2, -5)):
        with pytest.raises(ValueError):
            cluster_size_from_resources(threads, mem_mb)


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="n_workers"):
        with dask_client(n_workers=0):
            pass


# --------------------------------------------------------------------------- local cluster
def test_local_cluster_same_result_each_tile_once(image, calls):
    with dask.config.set(scheduler="synchronous"):
        expected = _tiled(image).compute()
    n_tiles = len(tile_grid(SHAPE, TILE_PX, OVERLAP_PX))
    assert calls["n"] == n_tiles
    np.testing.assert_array_equal(expected, predict_full(image, counting_pointwise, n_channels=2))

    calls["n"] = 0
    calls["workers"] = set()
    size = cluster_size_from_resources(2, 2000)
    with dask_client(n_workers=2, threads_per_worker=1, memory_limit=size["memory_limit"]) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        # threaded workers: BLAS/OpenMP limited to one thread while the client is open
        for key, value in SINGLE_THREAD_ENV.items():
            assert os.environ[key] == value
        lazy = _tiled(image)
        assert calls["n"] == 0  # building the graph runs nothing
        got = lazy.compute()
        workers = set(client.scheduler_info()["workers"])
    np.testing.assert_array_equal(got, expected)
    assert calls["n"] == n_tiles  # every tile exactly once on the cluster too
    assert calls["workers"] and calls["workers"] <= workers
    assert distributed.client._get_global_client() is None  # closed on exit


def test_thread_environment_restored(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    with dask_client():
        assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["MKL_NUM_THREADS"] == "1"
    assert os.environ["OMP_NUM_THREADS"] == "7"
    assert "MKL_NUM_THREADS" not in os.environ


# --------------------------------------------------------------------------- existing scheduler
def test_connect_to_existing_scheduler_on_loopback(image, calls):
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp://",
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        with dask_client(address) as client:
            assert client.scheduler.address == address
            with distributed.get_task_stream(client) as stream:
                got = _tiled(image).compute()
        cluster_workers = set(cluster.scheduler.workers)
        # the work ran on that cluster's worker...
        assert calls["workers"] == cluster_workers
        assert {t["worker"] for t in stream.data} <= cluster_workers
        n_tile_tasks = sum(str(t["key"]).startswith("predict-tile-") for t in stream.data)
        assert n_tile_tasks == calls["n"] == len(tile_grid(SHAPE, TILE_PX, OVERLAP_PX))
        np.testing.assert_array_equal(got, predict_full(image, counting_pointwise, n_channels=2))
        # ...and the scheduler we did not start is left running
        assert cluster.scheduler.status == distributed.core.Status.running
        with distributed.Client(address) as again:
            assert again.submit(sum, [1, 2]).result() == 3


def test_unreachable_scheduler_is_reported():
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(OSError, match="tcp://127.0.0.1:1"):
            with dask_client("tcp://127.0.0.1:1"):
                pass
    with pytest.raises(ValueError, match="address"):
        with dask_client(""):
            pass


# --------------------------------------------------------------------------- processes (slow)
@pytest.mark.slow
def test_worker_processes_get_single_thread_environment(image):
    with dask_client(n_workers=2, threads_per_worker=1, memory_limit="1GiB", processes=True) as client:
        envs = client.run(lambda: {k: os.environ.get(k) for k in SINGLE_THREAD_ENV})
        assert len(envs) == 2
        assert all(env == SINGLE_THREAD_ENV for env in envs.values())
        fn = functools.partial(np.expand_dims, axis=0)  # importable by the worker processes
        got = predict_tiled(image, fn, n_channels=1, tile_px=TILE_PX, overlap_px=OVERLAP_PX).compute()
    np.testing.assert_array_equal(got, image[None])


@pytest.mark.slow
def test_real_dask_scheduler_and_worker_subprocesses(tmp_path, image):
    """`dask scheduler` + `dask worker` on loopback, as a user would start them."""
    dask_cli = os.path.join(os.path.dirname(sys.executable), "dask")
    scheduler_file = tmp_path / "scheduler.json"
    scheduler = subprocess.Popen(
        [dask_cli, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", str(scheduler_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert time.monotonic() < deadline, "dask scheduler did not start"
            time.sleep(0.2)
        time.sleep(0.2)  # let the file be written completely
        worker = subprocess.Popen(
            [dask_cli, "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1", "--nworkers", "1",
             "--no-dashboard", "--host", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import json

        address = json.loads(scheduler_file.read_text())["address"]
        with dask_client(address) as client:
            client.wait_for_workers(1, timeout=60)
            (worker_address,) = client.scheduler_info()["workers"]
            worker_pid = client.run(os.getpid)[worker_address]
            assert worker_pid != os.getpid()
            fn = functools.partial(np.expand_dims, axis=0)
            with distributed.get_task_stream(client) as stream:
                got = predict_tiled(image, fn, n_channels=1, tile_px=TILE_PX, overlap_px=OVERLAP_PX).compute()
        np.testing.assert_array_equal(got, image[None])
        assert stream.data and {t["worker"] for t in stream.data} == {worker_address}
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()


# --------------------------------------------------------------------------- the segment stage on Dask
def _stage_inputs(tmp_path):
    """A stored 600 x 640 synthetic micrograph and a copy of the shipped model that tiles above 256 px."""
    import json
    import shutil

    from PIL import Image

    from micrometry.stages import run_ingest
    from micrometry.train.synth import render_micrograph

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    model_dir = tmp_path / "model"
    shutil.copytree(os.path.join(repo, "models", "flow-light"), model_dir)
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg["inference"].update(tile_px=256, overlap_px=64, backend="numpy")
    (model_dir / "config.json").write_text(json.dumps(cfg))
    m = render_micrograph(5, shape=(600, 640))
    Image.fromarray(m.image).save(tmp_path / "img.png")
    run_ingest(tmp_path / "img.png", tmp_path / "img.ome.zarr", sample="img")
    settings = {"method": "flow", "flow": {"model": str(model_dir), "diameter_px": 30.0, "device": "cpu"}}
    return settings


def test_segment_stage_sends_tiles_to_dask_address(tmp_path):
    """config dask.address: the stage's tiles run on that scheduler's workers, same labels."""
    pytest.importorskip("torch")
    from micrometry.io.omezarr import load_labels
    from micrometry.stages import run_segment

    settings = _stage_inputs(tmp_path)
    store = tmp_path / "img.ome.zarr"
    run_segment(store, tmp_path / "local.json", sample="img", settings=settings, threads=2, mem_mb=2000)
    local = load_labels(store, "instances")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp://",
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        with distributed.Client(cluster.scheduler_address) as observer, \
                distributed.get_task_stream(observer) as stream:
            summary = run_segment(store, tmp_path / "remote.json", sample="img", settings=settings, threads=2,
                                  dask_address=cluster.scheduler_address)
        tile_tasks = [t for t in stream.data if str(t["key"]).startswith("predict-tile-")]
        assert len(tile_tasks) >= 4 and {t["worker"] for t in tile_tasks} <= set(cluster.scheduler.workers)
    assert summary["status"] == "ok" and summary["n_objects"] > 5
    remote = load_labels(store, "instances")
    from micrometry.evaluate import match_instances

    res = match_instances(local, remote, thresholds=(0.9,))
    assert res["tp"][0.9] >= 0.98 * local.max()  # same objects (float sums may differ in the last bits)


def test_dask_cuda_without_the_package_names_the_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_dask_cuda(name, *a, **k):
        if name == "dask_cuda":
            raise ImportError("No module named 'dask_cuda'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_dask_cuda)
    with pytest.raises(ImportError, match="pip install dask-cuda"):
        with dask_client(cuda=True):
            pass
