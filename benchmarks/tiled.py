"""Tiled inference: wall time and peak memory, untiled vs tiled (Dask).

Usage::

    python benchmarks/tiled.py                    # 4096 x 4096, tile 512, overlap 64, median of 3
    python benchmarks/tiled.py --size 2048 --repeats 1

A cheap convolutional "network" (three Gaussian-derivative filters, sigma 2 px:
smoothed image and its two first derivatives, via scipy.ndimage) stands in for
the model, so the numbers measure the tiling, blending and scheduling, not a
network.  Modes:

- ``full``: :func:`predict_full` on the whole image (the reference);
- ``tiled sync``: :func:`predict_tiled`, synchronous scheduler;
- ``tiled 2 workers``: :func:`predict_tiled` on :func:`micrometry._dask.dask_client`,
  a LocalCluster of 2 threaded workers x 1 thread;

reading the image from a Zarr array on disk with 1024 px chunks (as the
segment stage reads the OME-Zarr store), each either computed into memory (``-> memory``, the whole (3, Y, X) float32
result is held) or written chunk by chunk to a Zarr array (``-> zarr``, as the
segment stage stores predictions).  Seconds are the median of ``--repeats``
runs; peak memory is the largest traced allocation (tracemalloc, which sees
NumPy buffers of all threads of this process) above what was allocated before
the call, in a separate run.  The input image itself (64 MiB) is not counted.

Latest results (2 CPU cores shared with other jobs at load 5-6, so the seconds
are noisy: the same ``full`` row measured 7.8 s in an earlier run; 4096 x 4096
float32, 81 tiles of 512 px, overlap >= 64 px, 3 output channels = 192 MiB,
max |tiled - full| = 6e-8)::

    | mode            | output    | seconds (median of 3) | peak MiB |
    |-----------------|-----------|-----------------------|----------|
    | full            | -> memory |  2.41                 | 192      |
    | tiled sync      | -> memory |  5.14                 | 386      |
    | tiled sync      | -> zarr   |  8.60                 | 128      |
    | tiled 2 workers | -> memory | 10.23                 | 392      |
    | tiled 2 workers | -> zarr   | 13.62                 | 180      |

Reading: tiling costs ~2x here because this "network" is almost free, so the
1.28x overlap and the float64 blending dominate; with a real network the
prediction does.  ``-> memory`` holds the result plus dask's final
concatenation (2 x 192 MiB).  Written to Zarr, memory is bounded by the band
of tile outputs that later chunks still need (about one row of chunks'
worth: 128 MiB synchronous, 180 MiB with 2 workers, which start tiles ahead),
not by the image.  The 2-worker LocalCluster was slower than the synchronous
scheduler on this loaded machine; do not read it as a speed-up measurement.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from micrometry._dask import dask_client  # noqa: E402
from micrometry.segment.tiled import predict_full, predict_tiled, tile_grid  # noqa: E402

SIGMA_PX = 2.0
N_CHANNELS = 3


def conv_net(tile: np.ndarray) -> np.ndarray:
    """(h, w) float32 -> (3, h, w): Gaussian-smoothed image and its d/dy, d/dx."""
    out = np.empty((N_CHANNELS, *tile.shape), np.float32)
    ndi.gaussian_filter(tile, SIGMA_PX, order=0, output=out[0], mode="reflect")
    ndi.gaussian_filter(tile, SIGMA_PX, order=(1, 0), output=out[1], mode="reflect")
    ndi.gaussian_filter(tile, SIGMA_PX, order=(0, 1), output=out[2], mode="reflect")
    return out


def _peak_mib(fn) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    result = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return (peak - base) / 2**20


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        del result
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=4096, help="image side in pixels")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--chunks", type=int, default=1024, help="output chunk side")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    rng = np.random.default_rng(0)
    image = ndi.gaussian_filter(rng.random((args.size, args.size), dtype=np.float32), 3.0)
    kw = dict(n_channels=N_CHANNELS, tile_px=args.tile, overlap_px=args.overlap, out_chunks_px=args.chunks)
    tmp = Path(tempfile.mkdtemp(prefix="micrometry-bench-tiled-"))
    try:
        return _run(args, image, kw, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(args, image, kw, tmp: Path) -> int:
    import dask
    import dask.array as da

    da.from_array(image, chunks=1024).to_zarr(str(tmp / "image.zarr"))
    stored = da.from_zarr(str(tmp / "image.zarr"))
    counter = iter(range(10**6))

    def to_memory():
        return predict_tiled(stored, conv_net, **kw).compute()

    def to_zarr():
        target = tmp / f"pred-{next(counter)}.zarr"
        predict_tiled(stored, conv_net, **kw).to_zarr(str(target))
        return None

    full = predict_full(image, conv_net, n_channels=N_CHANNELS)
    rows = []
    rows.append(("full", "-> memory",
                 _median_seconds(lambda: predict_full(image, conv_net, n_channels=N_CHANNELS), args.repeats),
                 _peak_mib(lambda: predict_full(image, conv_net, n_channels=N_CHANNELS))))
    with dask.config.set(scheduler="synchronous"):
        check = to_memory()
        max_err = float(np.abs(check - full).max())
        del check
        rows.append(("tiled sync", "-> memory", _median_seconds(to_memory, args.repeats), _peak_mib(to_memory)))
        rows.append(("tiled sync", "-> zarr", _median_seconds(to_zarr, args.repeats), _peak_mib(to_zarr)))
    with dask_client(n_workers=2, threads_per_worker=1):
        to_memory()  # warm up the workers
        rows.append(("tiled 2 workers", "-> memory", _median_seconds(to_memory, args.repeats), _peak_mib(to_memory)))
        rows.append(("tiled 2 workers", "-> zarr", _median_seconds(to_zarr, args.repeats), _peak_mib(to_zarr)))

    n_tiles = len(tile_grid(image.shape, args.tile, args.overlap))
    print(f"image {args.size} x {args.size} float32, {n_tiles} tiles of {args.tile} px, overlap >= {args.overlap} px, "
          f"{N_CHANNELS} channels, output chunks {args.chunks} px; max |tiled - full| = {max_err:.2e}")
    print(f"| mode | output | seconds (median of {args.repeats}) | peak MiB |")
    print("|---|---|---|---|")
    for mode, out, sec, mib in rows:
        print(f"| {mode} | {out} | {sec:.2f} | {mib:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
