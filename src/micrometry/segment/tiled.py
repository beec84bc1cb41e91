"""Tiled model inference through Dask, blended with a taper so there are no seams.

A network sees one tile at a time.  Near a tile's edge it sees padding
instead of the neighbouring image, so its output there is unreliable; tiles
therefore overlap and their outputs are blended with weights that fall
smoothly to (almost) zero at the tile edges inside the image.  The blend is a
weighted mean, ``sum_k w_k * p_k / sum_k w_k``.

Weights (:func:`taper_window` for an interior tile): separable, a C-infinity
smooth step ``s(t) = f(t) / (f(t) + f(1 - t))``, ``f(t) = exp(-1/t)``, over
each overlap.  Each tile's ramp on a side is as long as its actual overlap
with that neighbour (at least ``overlap_px``; no ramp on an image-edge side),
so the two ramps of an overlap cover the same pixels and sum to 1.  The smooth
step weighs the outermost ~10 % of a ramp at almost nothing, which is where a
tile's output is worst: for a gaussian "network" (sigma 2 px, reach 8 px) on
white noise, tiled vs untiled differ by at most 7e-3 / 8e-4 / 1.4e-5 for
overlaps of 8 / 16 / 32 px, against 1e-2 / 2.5e-3 / 6e-4 with a sin^2 (Hann)
ramp, 2e-2 / 8e-3 / 4e-3 with a linear one and 7e-2 with plain averaging.

Construction (:func:`predict_tiled`):

1. :func:`tile_grid` places tiles of at most ``tile_px`` on each axis, evenly
   spaced, overlapping by at least ``overlap_px``, the first and last flush
   with the image edges (so all tiles are full size unless the image is
   smaller than a tile).
2. One :func:`dask.delayed` task per tile reads its window of the (lazy)
   image, pads it at the bottom/right when the network needs a size multiple
   (``pad_multiple_px``), calls ``predict_fn`` once, and crops the padding away.
3. One blending task per output chunk (``out_chunks_px``) takes the tiles that
   overlap the chunk, weights them with the taper and normalises by the sum
   of weights, accumulating in float64.  A chunk needs only the few tile
   outputs overlapping it, and a tile output is released once its (at most a
   few) chunks are done; memory is about a band of tile outputs one chunk
   row high plus a few chunks, not the image (see ``benchmarks/tiled.py``).
4. The chunks are assembled into a lazy ``(C, Y, X)`` dask array whose shape,
   chunks and dtype are declared, without running anything.

Because accumulation is in float64 and the weights are exact float32 numbers,
a pointwise ``predict_fn`` gives bit-for-bit the untiled result
(:func:`predict_full`); a local (convolution-like) ``predict_fn`` matches it
to within the tail of its kernel beyond half the overlap (numbers above).

Intensities: :func:`normalize_percentiles` gives global percentiles (NaN/Inf
and excluded pixels ignored; a strided subsample on large images), and
:func:`normalize_image` maps them to 0 and 1, so that every tile is normalised
the same way (never per tile).

This module never imports torch: ``predict_fn`` is any callable
``(h, w) float32 -> (C, h, w)``.
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import dask.array as da

__all__ = [
    "normalize_percentiles",
    "normalize_image",
    "taper_window",
    "tile_grid",
    "predict_tiled",
    "predict_full",
]

_TAPER_FLOOR = 1e-6
"""Smallest 1-D taper weight: keeps every weight > 0 (also the 2-D product in
float32, 1e-12), while the unreliable edge pixels of a tile count ~1e-6 as much
as the reliable centre of its neighbour."""


# --------------------------------------------------------------------------- validation
def _is_dask(x: Any) -> bool:
    return hasattr(x, "dask") and hasattr(x, "chunks") and hasattr(x, "compute")


def _check_image(image: Any, name: str = "image") -> None:
    shape = getattr(image, "shape", None)
    if shape is None:
        raise TypeError(f"{name} must be a NumPy or Dask array, got {type(image).__name__}")
    if len(shape) != 2:
        raise ValueError(f"{name} must be a 2-D (Y, X) array, got shape {tuple(shape)}")
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(shape)})")
    dtype = np.dtype(image.dtype)
    if dtype != bool and not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise TypeError(f"{name} must have a real numeric dtype, got {dtype}")


def _check_tiling(tile_px: int, overlap_px: int) -> tuple[int, int]:
    if int(tile_px) != tile_px or tile_px < 1:
        raise ValueError(f"tile_px must be a positive integer, got {tile_px!r}")
    if int(overlap_px) != overlap_px or overlap_px < 0:
        raise ValueError(f"overlap_px must be a non-negative integer, got {overlap_px!r}")
    if 2 * overlap_px > tile_px:
        raise ValueError(
            f"overlap_px ({overlap_px}) must be at most half of tile_px ({tile_px}), "
            "so the two tapers of a tile do not cross"
        )
    return int(tile_px), int(overlap_px)


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- normalisation
def normalize_percentiles(
    image: np.ndarray | da.Array,
    *,
    low: float = 1.0,
    high: float = 99.8,
    exclude: np.ndarray | da.Array | None = None,
    max_sample_px: int = 4_000_000,
) -> tuple[float, float]:
    """Global low/high intensity percentiles of an image, for normalisation.

    Parameters
    ----------
    image : (Y, X) ndarray or dask array, real dtype
        Raw intensities.  Non-finite pixels (NaN, +-Inf) are ignored.  For a
        very large image, a pyramid level of it gives the same answer faster.
    low, high : float, optional
        Percentiles in [0, 100], ``low < high``.
    exclude : (Y, X) bool ndarray or dask array, optional
        True where pixels are not specimen (data bar, scale bar); ignored.
    max_sample_px : int, optional
        Above this many pixels the percentiles are computed on the regular
        subsample ``image[::s, ::s]`` with the smallest stride ``s`` that keeps
        at most this many pixels.  A dask image is only read at those pixels'
        chunks, and only the subsample is held in memory.

    Returns
    -------
    lo, hi : float
        Percentiles (linear interpolation, as :func:`numpy.percentile`), in
        the image's intensity units.  ``lo == hi`` for a flat image.

    Raises
    ------
    ValueError
        Bad shape or percentiles, or no finite, non-excluded pixel.

    Examples
    --------
    >>> ramp = np.arange(101.0)[None, :]
    >>> normalize_percentiles(ramp, low=1, high=99)
    (1.0, 99.0)
    """
    _check_image(image)
    if exclude is not None:
        _check_image(exclude, "exclude mask")
        if tuple(exclude.shape) != tuple(image.shape):
            raise ValueError(f"exclude mask shape {tuple(exclude.shape)} does not match image shape {tuple(image.shape)}")
    if not (0.0 <= low < high <= 100.0):
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got low={low}, high={high}")
    max_sample_px = _check_positive_int(max_sample_px, "max_sample_px")

    ny, nx = image.shape
    stride = max(1, math.ceil(math.sqrt(ny * nx / max_sample_px)))
    while math.ceil(ny / stride) * math.ceil(nx / stride) > max_sample_px:
        stride += 1
    sample = image[::stride, ::stride]
    ex = None if exclude is None else exclude[::stride, ::stride]
    if _is_dask(sample) or _is_dask(ex):
        import dask

        sample, ex = dask.compute(sample, ex)
    values = np.asarray(sample, dtype=np.float64)
    valid = np.isfinite(values)
    if ex is not None:
        valid &= ~np.asarray(ex, dtype=bool)
    values = values[valid]
    if values.size == 0:
        raise ValueError("image has no finite, non-excluded pixel to compute percentiles on")
    lo, hi = np.percentile(values, [low, high])
    return float(lo), float(hi)


def normalize_image(image: np.ndarray | da.Array, lo: float, hi: float) -> np.ndarray | da.Array:
    """Map intensities linearly so that `lo` -> 0 and `hi` -> 1 (float32).

    Values outside ``[lo, hi]`` are not clipped (the network sees them as
    below 0 or above 1, as in training).  Non-finite pixels become 0.

    Parameters
    ----------
    image : (Y, X) ndarray or dask array, real dtype
    lo, hi : float
        From :func:`normalize_percentiles`.  When ``hi <= lo`` (a flat image)
        the scale is 1: the result is ``image - lo``.

    Returns
    -------
    normalized : (Y, X) float32 ndarray or dask array
        Same kind (eager/lazy) and chunks as `image`.
    """
    _check_image(image)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"lo and hi must be finite, got lo={lo}, hi={hi}")
    scale = 1.0 / (hi - lo) if hi > lo else 1.0

    def _norm(block: np.ndarray) -> np.ndarray:
        out = (np.asarray(block, dtype=np.float64) - lo) * scale
        out[~np.isfinite(out)] = 0.0
        return out.astype(np.float32)

    if _is_dask(image):
        return image.map_blocks(_norm, dtype=np.float32, meta=np.empty((0, 0), np.float32))
    return _norm(image)


# --------------------------------------------------------------------------- windows and grid
def _smooth_ramp(ramp_px: int) -> np.ndarray:
    """Rising weights at pixel centres of a ramp of `ramp_px` pixels (float64)."""
    t = (np.arange(ramp_px) + 0.5) / ramp_px  # in (0, 1)
    # C-infinity smooth step s(t) = f(t) / (f(t) + f(1 - t)), f(t) = exp(-1/t):
    # s(t) + s(1 - t) = 1 (a partition of unity where two ramps meet over the same
    # pixels), all derivatives vanish at both ends, and s ~ 0 over the first ~10 %
    # of the ramp, where a network's output is least trustworthy.
    with np.errstate(over="ignore", under="ignore"):
        f_t = np.exp(-1.0 / t)
        f_1t = np.exp(-1.0 / (1.0 - t))
    return np.maximum(f_t / (f_t + f_1t), _TAPER_FLOOR)


@functools.lru_cache(maxsize=256)
def _taper_1d(n_px: int, ramp_lo_px: int, ramp_hi_px: int) -> np.ndarray:
    """1-D taper of length `n_px`: a rising ramp of `ramp_lo_px` at the start,
    a falling one of `ramp_hi_px` at the end (each at most ``n_px // 2``), 1 between.

    Read-only float32 array (cached).
    """
    w = np.ones(n_px, np.float64)
    lo, hi = min(ramp_lo_px, n_px // 2), min(ramp_hi_px, n_px // 2)
    if lo > 0:
        w[:lo] = _smooth_ramp(lo)
    if hi > 0:
        w[n_px - hi:] = np.minimum(w[n_px - hi:], _smooth_ramp(hi)[::-1])
    out = w.astype(np.float32)
    out.flags.writeable = False
    return out


def taper_window(tile_px: int, overlap_px: int) -> np.ndarray:
    """Blending weights of an interior tile on a grid with overlaps of `overlap_px`.

    :func:`predict_tiled` uses the same ramps, each as long as the tile's
    actual overlap on that side, and none on a side at the image edge.

    Parameters
    ----------
    tile_px : int
        Tile side in pixels.
    overlap_px : int
        Width of the ramp at each edge, ``0 <= overlap_px <= tile_px // 2``
        (the overlap between neighbouring tiles).

    Returns
    -------
    window : (tile_px, tile_px) float32 ndarray
        Separable: ``outer(w, w)`` with ``w`` rising over the first
        `overlap_px` pixels from ~0 (floor 1e-6) to 1 along a C-infinity
        smooth step, flat at 1 in the middle and falling symmetrically at the
        end.  Strictly positive everywhere (>= 1e-12).  Where two ramps meet
        over the same `overlap_px` pixels, their weights sum to 1.

    Examples
    --------
    >>> w = taper_window(8, 2)
    >>> w.shape, w.dtype, bool(w.min() > 0), float(w[4, 4])
    ((8, 8), dtype('float32'), True, 1.0)
    """
    tile_px, overlap_px = _check_tiling(tile_px, overlap_px)
    w = _taper_1d(tile_px, overlap_px, overlap_px)
    return np.outer(w, w).astype(np.float32)


def _axis_tiles(n_px: int, tile_px: int, overlap_px: int) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis: ``(start, stop, ramp_lo_px, ramp_hi_px)``.

    Starts are evenly spaced, first and last flush with ``[0, n_px)``, with
    overlaps >= `overlap_px`.  Each ramp is the tile's actual overlap with its
    neighbour on that side (0 at the image edge), so the two ramps of an
    overlap cover the same pixels and every overlap pixel paid for is used.
    """
    if n_px <= tile_px:
        return [(0, n_px, 0, 0)]
    step_px = tile_px - overlap_px
    n_tiles = math.ceil((n_px - tile_px) / step_px) + 1
    # spacing (n - T) / (k - 1) <= T - overlap; rounding keeps every gap <= T - overlap
    starts = [int(v) for v in np.rint(np.linspace(0, n_px - tile_px, n_tiles))]
    stops = [s + tile_px for s in starts]
    return [
        (
            starts[i],
            stops[i],
            stops[i - 1] - starts[i] if i > 0 else 0,
            stops[i] - starts[i + 1] if i + 1 < n_tiles else 0,
        )
        for i in range(n_tiles)
    ]


def tile_grid(shape: tuple[int, int], tile_px: int, overlap_px: int) -> list[tuple[slice, slice]]:
    """The tiles that cover an image.

    Parameters
    ----------
    shape : (int, int)
        Image shape ``(Y, X)``.
    tile_px : int
        Tile side; a tile is ``min(tile_px, Y) x min(tile_px, X)``.
    overlap_px : int
        Minimum overlap between neighbouring tiles, ``<= tile_px // 2``.

    Returns
    -------
    tiles : list of (slice, slice)
        Row-major.  Along each axis the starts are evenly spaced, the first
        tile starts at 0 and the last ends at the image edge (flush), and
        neighbours overlap by at least `overlap_px` (more when the image
        length is not a whole number of steps).  An axis shorter than a tile
        has one tile spanning it.

    Examples
    --------
    >>> [(ys.start, ys.stop) for ys, _ in tile_grid((1000, 10), 256, 32)]
    [(0, 256), (186, 442), (372, 628), (558, 814), (744, 1000)]
    """
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be two positive sizes (Y, X), got {tuple(shape)}")
    tile_px, overlap_px = _check_tiling(tile_px, overlap_px)
    ny, nx = (int(s) for s in shape)
    return [
        (slice(y0, y1), slice(x0, x1))
        for y0, y1, _, _ in _axis_tiles(ny, tile_px, overlap_px)
        for x0, x1, _, _ in _axis_tiles(nx, tile_px, overlap_px)
    ]


# --------------------------------------------------------------------------- per-tile work
def _predict_tile(predict_fn: Callable, tile: np.ndarray, n_channels: int, pad_multiple_px: int) -> np.ndarray:
    """Run `predict_fn` on one tile (padded to the size multiple), crop, check the shape."""
    tile = np.ascontiguousarray(tile, dtype=np.float32)
    h, w = tile.shape
    pad_y, pad_x = (-h) % pad_multiple_px, (-w) % pad_multiple_px
    if pad_y or pad_x:
        # "symmetric" repeats the edge pixel, like scipy.ndimage's mode="reflect"
        tile = np.pad(tile, ((0, pad_y), (0, pad_x)), mode="symmetric")
    out = np.asarray(predict_fn(tile))
    expected = (n_channels, h + pad_y, w + pad_x)
    if out.shape != expected:
        raise ValueError(
            f"predict_fn returned an array of shape {out.shape} for a tile of shape "
            f"{tile.shape}; expected (n_channels, h, w) = {expected}"
        )
    if pad_y or pad_x:
        out = np.ascontiguousarray(out[:, :h, :w])
    return out


def _blend_chunk(
    chunk: tuple[slice, slice],
    preds: list[np.ndarray],
    tiles: list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]],
    n_channels: int,
    dtype: np.dtype,
) -> np.ndarray:
    """Weighted mean of the tile predictions over one output chunk (float64 sums).

    `tiles` holds, per prediction, the ``(start, stop, ramp_lo_px, ramp_hi_px)``
    of the tile along Y and along X (see :func:`_axis_tiles`).
    """
    cy, cx = chunk
    h, w = cy.stop - cy.start, cx.stop - cx.start
    acc = np.zeros((n_channels, h, w), np.float64)
    wsum = np.zeros((h, w), np.float64)
    for pred, ((ty0, ty1, ry0, ry1), (tx0, tx1, rx0, rx1)) in zip(preds, tiles):
        y0, y1 = max(ty0, cy.start), min(ty1, cy.stop)
        x0, x1 = max(tx0, cx.start), min(tx1, cx.stop)
        wy = _taper_1d(ty1 - ty0, ry0, ry1)[y0 - ty0:y1 - ty0]
        wx = _taper_1d(tx1 - tx0, rx0, rx1)[x0 - tx0:x1 - tx0]
        w2 = np.outer(wy.astype(np.float64), wx)
        region = (slice(y0 - cy.start, y1 - cy.start), slice(x0 - cx.start, x1 - cx.start))
        # float32 prediction x float32 weight is exact in float64
        acc[(slice(None), *region)] += pred[:, y0 - ty0:y1 - ty0, x0 - tx0:x1 - tx0] * w2
        wsum[region] += w2
    if not (wsum > 0).all():  # pragma: no cover - the grid always covers the image
        raise RuntimeError(f"output chunk {chunk} is not fully covered by tiles")
    acc /= wsum
    if dtype.itemsize < 8:
        # round once to float32 (the precision of predict_fn) before any narrower
        # dtype, so float16 output equals predict_full(...).astype(float16)
        return acc.astype(np.float32).astype(dtype, copy=False)
    return acc.astype(dtype, copy=False)


def _chunk_bounds(n_px: int, chunk_px: int) -> list[tuple[int, int]]:
    return [(s, min(s + chunk_px, n_px)) for s in range(0, n_px, chunk_px)]


def _identity(x: Any) -> Any:
    return x


# --------------------------------------------------------------------------- public API
def predict_tiled(
    image: np.ndarray | da.Array,
    predict_fn: Callable[[np.ndarray], Any],
    *,
    n_channels: int,
    tile_px: int = 512,
    overlap_px: int = 64,
    dtype: Any = np.float32,
    out_chunks_px: int = 1024,
    pad_multiple_px: int = 1,
) -> da.Array:
    """Predict an image tile by tile, lazily, and blend the tiles without seams.

    The tiled counterpart of :func:`predict_full`: same arguments and the same
    result, as a lazy dask array.

    Parameters
    ----------
    image : (Y, X) ndarray or dask array, real dtype
        Already normalised (:func:`normalize_image`); cast to float32 per tile.
        A dask array (e.g. from an OME-Zarr store) is read tile by tile.
    predict_fn : callable
        ``predict_fn(tile) -> (C, h, w)`` array for a C-contiguous
        ``(h, w) float32`` tile, ``h, w <= tile_px`` (rounded up to
        `pad_multiple_px`).  Called exactly once per tile of
        :func:`tile_grid`, possibly from several threads or processes at once.
    n_channels : int
        C, the number of output channels.
    tile_px : int, optional
        Tile side in pixels.
    overlap_px : int, optional
        Minimum overlap of neighbouring tiles, ``<= tile_px // 2``; the
        blending ramps span the actual overlaps (evenly spaced tiles often
        overlap more).  Choose it at least twice, better four times, the
        distance over which the network's output depends on its input (its
        effective receptive radius): the error of the blend is about the
        part of that dependence reaching beyond half the overlap.
    dtype : numpy dtype, optional
        Output dtype (e.g. float16 to store predictions).  Blending is done
        in float64 first.
    out_chunks_px : int, optional
        Side of the output chunks (the last ones ragged).  Each output chunk
        is one task holding the few tile outputs that overlap it.
    pad_multiple_px : int, optional
        When a tile side (only possible for an image side shorter than
        `tile_px`) is not a multiple of this, the tile is padded at the
        bottom/right by symmetric reflection before `predict_fn` and the
        padding is cropped from the output.  1: never pad.

    Returns
    -------
    prediction : (C, Y, X) dask array of `dtype`
        Chunks ``(C, out_chunks_px, out_chunks_px)``; shape, dtype and meta
        are declared, nothing is computed until asked.  Each pixel is the
        mean of the tiles covering it, weighted by :func:`taper_window`.

    See Also
    --------
    predict_full : the untiled reference.
    tile_grid, taper_window : the tiles and their weights.

    Notes
    -----
    Each tile task passes its output to the (at most a few) chunk tasks that
    overlap it and is then released, so when the result is stored chunk by
    chunk (``to_zarr``) peak memory is about one row of chunks' worth of tile
    outputs plus a few chunks (4096 x 4096, 3 channels: 128 MiB synchronous
    vs. 192 MiB for the untiled call), growing with the image width only.
    `predict_fn` travels in the graph once, as a single key, not once per
    tile; on a distributed cluster pass a dask array read from the store
    rather than a large NumPy image, which would be embedded in the graph.
    """
    import dask
    import dask.array as da

    _check_image(image)
    if not callable(predict_fn):
        raise TypeError(f"predict_fn must be callable, got {type(predict_fn).__name__}")
    n_channels = _check_positive_int(n_channels, "n_channels")
    tile_px, overlap_px = _check_tiling(tile_px, overlap_px)
    out_chunks_px = _check_positive_int(out_chunks_px, "out_chunks_px")
    pad_multiple_px = _check_positive_int(pad_multiple_px, "pad_multiple_px")
    dtype = np.dtype(dtype)

    if _is_dask(image):
        arr = image
    else:
        arr = da.from_array(np.asarray(image), chunks=out_chunks_px, name=False)
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    ny, nx = (int(s) for s in arr.shape)

    token = uuid.uuid4().hex
    fn_key = dask.delayed(_identity, pure=False)(predict_fn, dask_key_name=f"predict-fn-{token}")
    # same tiles, in the same order, as tile_grid(), with their ramps
    tiles = [(ty, tx) for ty in _axis_tiles(ny, tile_px, overlap_px) for tx in _axis_tiles(nx, tile_px, overlap_px)]
    preds = [
        dask.delayed(_predict_tile, pure=False)(
            fn_key, arr[ty[0]:ty[1], tx[0]:tx[1]], n_channels, pad_multiple_px,
            dask_key_name=f"predict-tile-{token}-{i}",
        )
        for i, (ty, tx) in enumerate(tiles)
    ]

    meta = np.empty((0, 0, 0), dtype)
    rows = []
    for r, (y0, y1) in enumerate(_chunk_bounds(ny, out_chunks_px)):
        row = []
        for c, (x0, x1) in enumerate(_chunk_bounds(nx, out_chunks_px)):
            idx = [
                i for i, (ty, tx) in enumerate(tiles)
                if ty[0] < y1 and ty[1] > y0 and tx[0] < x1 and tx[1] > x0
            ]
            chunk = dask.delayed(_blend_chunk, pure=False)(
                (slice(y0, y1), slice(x0, x1)),
                [preds[i] for i in idx],
                [tiles[i] for i in idx],
                n_channels,
                dtype,
                dask_key_name=f"blend-tiles-{token}-{r}-{c}",
            )
            row.append(da.from_delayed(chunk, shape=(n_channels, y1 - y0, x1 - x0), dtype=dtype, meta=meta))
        rows.append(row)
    return da.block(rows)


def predict_full(
    image: np.ndarray,
    predict_fn: Callable[[np.ndarray], Any],
    *,
    n_channels: int,
    dtype: Any = np.float32,
    pad_multiple_px: int = 1,
) -> np.ndarray:
    """Predict the whole image in one call: the reference for :func:`predict_tiled`.

    Parameters
    ----------
    image : (Y, X) ndarray, real dtype
        Already normalised; cast to float32.
    predict_fn : callable
        ``(Y, X) float32 -> (C, Y, X)``, as in :func:`predict_tiled`.
    n_channels : int
        C.
    dtype : numpy dtype, optional
        Output dtype.
    pad_multiple_px : int, optional
        Pad the image at the bottom/right (symmetric reflection) to a multiple
        of this before `predict_fn`; the padding is cropped from the output.

    Returns
    -------
    prediction : (C, Y, X) ndarray of `dtype`
    """
    _check_image(image)
    if _is_dask(image):
        raise TypeError("predict_full takes an in-memory NumPy image; use predict_tiled for a dask array")
    if not callable(predict_fn):
        raise TypeError(f"predict_fn must be callable, got {type(predict_fn).__name__}")
    n_channels = _check_positive_int(n_channels, "n_channels")
    pad_multiple_px = _check_positive_int(pad_multiple_px, "pad_multiple_px")
    out = _predict_tile(predict_fn, np.asarray(image), n_channels, pad_multiple_px)
    return out.astype(np.dtype(dtype), copy=False)
