"""The Dask client a stage computes with: an in-job LocalCluster or an existing scheduler.

A Snakemake rule states its ``threads`` and ``resources.mem_mb``; the stage
starts a :class:`distributed.LocalCluster` of that size for the duration of
the job (:func:`cluster_size_from_resources`, :func:`dask_client`).  When the
config names ``dask.address``, the stage connects to that scheduler instead
(dask-jobqueue, dask-cuda ``LocalCUDACluster``, Kubernetes) and leaves it
running afterwards.

Every worker thread does its own numerical work (a tile through the network,
a block of flow tracking), so BLAS/OpenMP libraries get one thread each;
otherwise ``threads`` workers times ``cores`` BLAS threads oversubscribe the
machine.  For worker processes this is set in their environment before they
start (``distributed.nanny.pre-spawn-environ``); for in-process (threaded)
workers it is applied to this process while the client is open.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import distributed

__all__ = ["dask_client", "cluster_size_from_resources", "SINGLE_THREAD_ENV"]

SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}
"""Environment that limits BLAS/OpenMP (incl. torch's intra-op pool) to one thread."""

_MIB = 2**20


def cluster_size_from_resources(threads: int, mem_mb: int | None) -> dict[str, Any]:
    """Size an in-job LocalCluster from a rule's ``threads`` and ``resources.mem_mb``.

    One worker with `threads` threads: the tile and tracking tasks spend their
    time in NumPy/SciPy/Numba/torch code that releases the GIL, so threads of
    one worker run them in parallel while sharing one copy of the model and
    never shipping tile outputs between processes.  That worker may use all
    of the job's memory.

    Parameters
    ----------
    threads : int
        The rule's ``threads`` (>= 1).
    mem_mb : int or None
        The rule's ``resources.mem_mb`` in MiB (Snakemake's ``mem_mb`` is
        mebibyte-based); None lets Dask choose (``"auto"``: the machine's or
        cgroup's memory).

    Returns
    -------
    dict
        ``{"n_workers": int, "threads_per_worker": int, "memory_limit": int | "auto"}``
        with ``memory_limit`` in bytes per worker, ready to pass to
        :func:`dask_client`.

    Examples
    --------
    >>> cluster_size_from_resources(4, 8000)
    {'n_workers': 1, 'threads_per_worker': 4, 'memory_limit': 8388608000}
    """
    if isinstance(threads, bool) or int(threads) != threads or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    if mem_mb is None:
        memory_limit: int | str = "auto"
    else:
        if isinstance(mem_mb, bool) or not float(mem_mb) > 0:
            raise ValueError(f"mem_mb must be a positive number of MiB, got {mem_mb!r}")
        memory_limit = int(float(mem_mb) * _MIB)
    return {"n_workers": 1, "threads_per_worker": int(threads), "memory_limit": memory_limit}


@contextlib.contextmanager
def _single_thread_numerics() -> Iterator[None]:
    """Limit BLAS/OpenMP to one thread in this process; restore on exit.

    Libraries already loaded are limited through threadpoolctl (when it is
    installed); libraries loaded later read the environment variables.
    """
    saved = {k: os.environ.get(k) for k in SINGLE_THREAD_ENV}
    os.environ.update(SINGLE_THREAD_ENV)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # optional: only limits libraries loaded before the client
            limiter: Any = contextlib.nullcontext()
        else:
            limiter = threadpool_limits(limits=1)
        with limiter:
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def dask_client(
    address: str | None = None,
    *,
    n_workers: int = 1,
    threads_per_worker: int = 1,
    memory_limit: str | int = "auto",
    processes: bool = False,
    cuda: bool = False,
) -> Iterator[distributed.Client]:
    """Open a Dask client for the duration of a ``with`` block.

    Parameters
    ----------
    address : str, optional
        Address of a running scheduler (``"tcp://host:8786"``): connect to
        it, and leave it running on exit.  The sizing arguments are then
        ignored.  None: start an in-job :class:`distributed.LocalCluster`.
    n_workers, threads_per_worker : int, optional
        Size of the LocalCluster (see :func:`cluster_size_from_resources`).
    memory_limit : int or str, optional
        Per worker: bytes, a Dask size string (``"4GiB"``) or ``"auto"``.
    processes : bool, optional
        Workers in separate processes (True) or as threads of this process
        (False, the default: no start-up cost, no serialisation, shared model).
    cuda : bool, optional
        Start a dask-cuda ``LocalCUDACluster`` instead (one worker process per
        visible GPU; the sizing arguments are ignored).  Needs the
        ``dask-cuda`` package; ImportError with the install command otherwise.

    Yields
    ------
    client : distributed.Client
        Set as the default scheduler inside the block, so ``.compute()`` and
        :func:`dask.compute` run on it.

    Notes
    -----
    The LocalCluster has no dashboard (no port to collide with on a shared
    node); its worker processes listen on the loopback interface only, and
    threaded workers communicate in-process.  BLAS/OpenMP get
    one thread per worker thread: via ``distributed.nanny.pre-spawn-environ``
    for worker processes, or in this process for threaded workers (restored
    on exit).

    Examples
    --------
    >>> import dask.array as da
    >>> with dask_client(threads_per_worker=2) as client:
    ...     int(da.ones((100, 100), chunks=50).sum().compute())
    10000
    """
    import dask
    import distributed

    if address is not None:
        if not isinstance(address, str) or not address.strip():
            raise ValueError(f"dask address must be a non-empty string like 'tcp://host:8786', got {address!r}")
        try:
            client = distributed.Client(address, set_as_default=True)
        except OSError as exc:
            raise OSError(f"cannot connect to the Dask scheduler at '{address}': {exc}") from exc
        try:
            yield client
        finally:
            client.close()
        return

    if cuda:
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError as exc:
            raise ImportError(
                "dask.cuda is set but dask-cuda is not installed: pip install dask-cuda "
                "(or start a LocalCUDACluster yourself and give its address as dask.address)"
            ) from exc
        with LocalCUDACluster(dashboard_address=None) as cluster, \
                distributed.Client(cluster, set_as_default=True) as client:
            yield client
        return

    for value, name in ((n_workers, "n_workers"), (threads_per_worker, "threads_per_worker")):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")

    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", default={}), **SINGLE_THREAD_ENV}
    numerics = contextlib.nullcontext() if processes else _single_thread_numerics()
    with numerics, dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        cluster = distributed.LocalCluster(
            n_workers=int(n_workers),
            threads_per_worker=int(threads_per_worker),
            memory_limit=memory_limit,
            processes=processes,
            # threaded workers talk in-process (inproc://); worker processes over loopback TCP
            **({"host": "127.0.0.1"} if processes else {}),
            dashboard_address=None,
        )
        try:
            client = distributed.Client(cluster, set_as_default=True)
            try:
                yield client
            finally:
                client.close()
        finally:
            cluster.close()
