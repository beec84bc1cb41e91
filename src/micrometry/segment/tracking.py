"""Flow tracking: move foreground pixels along a flow field and cluster where they end.

This is the inverse half of the flow representation (the targets are in
:mod:`micrometry.segment.flows`).  Two steps, each a function:

1. :func:`follow_flows` -- every start position moves ``n_iter`` Euler steps
   of ``step_px`` along the flow, read by bilinear interpolation.
2. :func:`labels_from_endpoints` -- endpoints are binned in a 2-D histogram
   on the pixel grid, seeds are the histogram's dense local maxima, and every
   pixel takes the label of the nearest seed its endpoint reached.

:func:`micrometry.segment.flows.flows_to_labels` chains them with the size
filter and the optional flow-error QC.

Conventions
-----------
- Pixel ``(i, j)`` sits at coordinate ``(i, j)`` (pixel centres on integers).
  ``flows_yx[0]`` is the row (y) component, ``flows_yx[1]`` the column (x)
  component, both in pixels per step before scaling by ``step_px``.
- Bilinear interpolation at ``(y, x)`` uses the pixels ``y0 = floor(y)`` and
  ``y0 + 1`` (``y0`` clipped to ``[0, Y - 2]``), likewise in x.
- After each step the position is clipped to ``[0, Y-1] x [0, X-1]``.
- Arithmetic is float32 throughout, in the same order in every back-end, so
  the NumPy and Numba back-ends give bit-identical endpoints; the CUDA kernel
  is compiled without fused multiply-add for the same reason (compiled for
  the CPU, its source reproduces NumPy bit for bit; on a GPU it is tested
  to 1e-4 px).
- Settled pixels stop early, exactly: the step map is deterministic, so once
  a position equals its value two steps earlier it is on a fixed point or a
  2-cycle, and its position after ``n_iter`` steps is known (the current one
  if the remaining count is even, else the previous one).  Results are
  identical to running every step; on ideal flows of 2048 x 2048 discs the
  mean number of steps per pixel drops from 200 to about 40.

Back-ends are chosen in one place, :mod:`micrometry._backend`: this module
registers the ``follow_flows`` kernel for ``"numpy"`` (vectorised over pixels,
a Python loop over steps, settled pixels leave the active set: the
reference), ``"numba"`` (parallel over chunks of pixels; in each chunk four
lanes follow one pixel each with all its steps in registers, so that four
independent dependency chains share the pipeline) and ``"cupy"`` (one fused
CUDA kernel, one thread per pixel, all steps in registers).  Importing this
module imports neither Numba nor CuPy.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from micrometry._backend import get_kernels, register_kernel

__all__ = [
    "LABEL_DTYPE",
    "default_n_iter",
    "default_seed_radius_px",
    "default_min_seed_count",
    "follow_flows",
    "labels_from_endpoints",
]

LABEL_DTYPE = np.uint32
"""dtype of every label image produced by this module."""

_MIN_N_ITER = 10  # never fewer Euler steps than this by default
_PATH_PER_INSCRIBED_RADIUS = 16.0  # default path cap: objects up to aspect ratio ~8
_SEED_COUNT_FRACTION = 0.5  # a seed needs this fraction of the smallest object's pixels ...
_MIN_SEED_COUNT = 3  # ... and never fewer endpoints than this in its 3 x 3 window
_PEAK_FOOTPRINT_PX = 5  # seeds are maxima of the 3 x 3 endpoint counts over 5 x 5 windows
_MIN_SEED_RADIUS_PX = 2.0


# --------------------------------------------------------------------------- validation
def _validate_flows(flows_yx, mask=None, *, name: str = "flows_yx", mask_name: str = "mask") -> tuple[np.ndarray, np.ndarray]:
    """Check a flow field (and mask) and return kernel-ready arrays.

    Parameters
    ----------
    flows_yx : (2, Y, X) array_like of real numbers
    mask : (Y, X) array_like of bool or integers, optional
        Non-zero = foreground.  None: every pixel.

    Returns
    -------
    flows : (2, Y, X) float32 ndarray, C-contiguous
        The input itself when it already is one (it is never written to).
    mask : (Y, X) bool ndarray

    Raises
    ------
    ValueError
        Wrong number of dimensions, first axis not 2, empty image, a mask
        whose shape differs from the flows' image shape (both shapes are in
        the message), or non-finite flow values.
    TypeError
        Non-numeric flows or mask.
    """
    flows = np.asarray(flows_yx)
    if flows.ndim != 3 or flows.shape[0] != 2:
        raise ValueError(f"{name} must have shape (2, Y, X) (row and column components), got shape {flows.shape}")
    if flows.shape[1] == 0 or flows.shape[2] == 0:
        raise ValueError(f"{name} has an empty image (shape {flows.shape})")
    if not (np.issubdtype(flows.dtype, np.floating) or np.issubdtype(flows.dtype, np.integer)):
        raise TypeError(f"{name} must be a real numeric array, got dtype {flows.dtype}")
    flows = np.ascontiguousarray(flows, dtype=np.float32)
    if not np.isfinite(flows).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    image_shape = flows.shape[1:]
    if mask is None:
        return flows, np.ones(image_shape, bool)
    m = np.asarray(mask)
    if m.shape != image_shape:
        raise ValueError(f"{mask_name} has shape {m.shape} but {name} has shape {flows.shape}: expected {mask_name} of shape {image_shape}")
    if m.dtype != bool:
        if not (np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)):
            raise TypeError(f"{mask_name} must be boolean or numeric, got dtype {m.dtype}")
        m = m != 0
    return flows, m


def _validate_positions(starts, image_shape: tuple[int, int]) -> np.ndarray:
    pos = np.asarray(starts)
    if pos.ndim != 2 or pos.shape[0] != 2:
        raise ValueError(f"starts must have shape (2, N), got shape {pos.shape}")
    pos = np.ascontiguousarray(pos, dtype=np.float32)
    if not np.isfinite(pos).all():
        raise ValueError("starts contains NaN or infinite values")
    Y, X = image_shape
    return np.stack([np.clip(pos[0], 0, Y - 1), np.clip(pos[1], 0, X - 1)]).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- kernels
# Every kernel: kernel(flows (2, Y, X) float32 C-contiguous, starts (2, N) float32
# C-contiguous within the image, n_iter int >= 0, step_px float) -> (2, N) float32 ndarray.
# The arithmetic below is the specification; the Numba and CUDA kernels repeat it
# operation for operation.


@register_kernel("follow_flows", "numpy")
def _build_follow_flows_numpy():
    return _follow_flows_numpy


def _euler_step_numpy(fy, fx, y, x, X, y1max, x1max, y0max, x0max, ymax, xmax, step):
    """One Euler step of bilinearly interpolated flow, float32, for arrays of positions."""
    one = np.float32(1.0)
    y0 = np.floor(y).astype(np.intp)
    x0 = np.floor(x).astype(np.intp)
    np.clip(y0, 0, y0max, out=y0)
    np.clip(x0, 0, x0max, out=x0)
    y1 = np.minimum(y0 + 1, y1max)
    x1 = np.minimum(x0 + 1, x1max)
    wy = y - y0.astype(np.float32)
    wx = x - x0.astype(np.float32)
    vy = one - wy
    vx = one - wx
    i00 = y0 * X + x0
    i01 = y0 * X + x1
    i10 = y1 * X + x0
    i11 = y1 * X + x1
    dy = vy * (vx * fy[i00] + wx * fy[i01]) + wy * (vx * fy[i10] + wx * fy[i11])
    dx = vy * (vx * fx[i00] + wx * fx[i01]) + wy * (vx * fx[i10] + wx * fx[i11])
    ny = y + step * dy
    nx = x + step * dx
    np.clip(ny, np.float32(0.0), ymax, out=ny)
    np.clip(nx, np.float32(0.0), xmax, out=nx)
    return ny, nx


def _follow_flows_numpy(flows: np.ndarray, starts: np.ndarray, n_iter: int, step_px: float, *, shortcut: bool = True) -> np.ndarray:
    """Reference kernel: vectorised over positions, a Python loop over steps.

    With `shortcut`, a position whose new value equals its value two steps
    earlier has entered a fixed point or a 2-cycle of the (deterministic)
    step map; its position after `n_iter` steps is then known exactly (the
    current one if the remaining step count is even, else the previous one)
    and it leaves the active set.  The result is bit-identical to running
    every step (``shortcut=False``), only faster.
    """
    _, Y, X = flows.shape
    fy = flows[0].ravel()
    fx = flows[1].ravel()
    consts = (X, Y - 1, X - 1, max(Y - 2, 0), max(X - 2, 0), np.float32(Y - 1), np.float32(X - 1), np.float32(step_px))
    out = np.empty((2, starts.shape[1]), np.float32)
    idx = np.arange(starts.shape[1])
    y = starts[0].astype(np.float32, copy=True)
    x = starts[1].astype(np.float32, copy=True)
    py = np.full_like(y, -1.0)  # position two steps back (positions are never negative)
    px = np.full_like(x, -1.0)
    for t in range(1, int(n_iter) + 1):
        if idx.size == 0:
            break
        ny, nx = _euler_step_numpy(fy, fx, y, x, *consts)
        if shortcut:
            hit = (ny == py) & (nx == px)
            if hit.any():
                if (int(n_iter) - t) % 2 == 1:
                    out[0, idx[hit]] = y[hit]
                    out[1, idx[hit]] = x[hit]
                else:
                    out[0, idx[hit]] = ny[hit]
                    out[1, idx[hit]] = nx[hit]
                keep = ~hit
                idx, y, x, ny, nx = idx[keep], y[keep], x[keep], ny[keep], nx[keep]
        py, px, y, x = y, x, ny, nx
    out[0, idx] = y
    out[1, idx] = x
    return out


# The Numba kernel is written as plain module-level Python (so that Numba can
# cache the compiled code on disk) and compiled by the builder below, which
# first points ``_prange`` and ``_lane_jit`` at their Numba versions.
_prange = range


def _lane_step(fy, fx, sy, sx, out, k, y, x, py, px, t, nxt, end, n_iter, step):  # pragma: no cover - compiled
    """One Euler step of one lane; when its pixel is done, store it and load the next."""
    Y = fy.shape[0]
    X = fy.shape[1]
    one = np.float32(1.0)
    zero = np.float32(0.0)
    # positions are never negative, so truncation is floor
    y0 = min(int(y), max(Y - 2, 0))
    x0 = min(int(x), max(X - 2, 0))
    y1 = min(y0 + 1, Y - 1)
    x1 = min(x0 + 1, X - 1)
    wy = y - np.float32(y0)
    wx = x - np.float32(x0)
    vy = one - wy
    vx = one - wx
    dy = vy * (vx * fy[y0, x0] + wx * fy[y0, x1]) + wy * (vx * fy[y1, x0] + wx * fy[y1, x1])
    dx = vy * (vx * fx[y0, x0] + wx * fx[y0, x1]) + wy * (vx * fx[y1, x0] + wx * fx[y1, x1])
    ny = min(max(y + step * dy, zero), np.float32(Y - 1))
    nx = min(max(x + step * dx, zero), np.float32(X - 1))
    t += 1
    if ny == py and nx == px:  # fixed point or 2-cycle: the end is known
        if (n_iter - t) % 2 == 0:
            y = ny
            x = nx
        done = True
    else:
        py = y
        px = x
        y = ny
        x = nx
        done = t >= n_iter
    if done:
        out[0, k] = y
        out[1, k] = x
        if nxt < end:
            k = nxt
            nxt += 1
            y = sy[k]
            x = sx[k]
            py = np.float32(-1.0)
            px = np.float32(-1.0)
            t = 0
        else:
            k = -1
    return k, y, x, py, px, t, nxt


_lane_jit = _lane_step


def _follow_lanes(fy, fx, sy, sx, n_iter, step, out, chunk):  # pragma: no cover - compiled
    """Numba kernel body (see :func:`_build_follow_flows_numba`).

    Pixels are split into chunks (one parallel task each).  Within a chunk,
    four lanes each follow one pixel at a time, all its steps in registers;
    the four independent dependency chains interleave in the CPU's pipeline.
    A lane that finishes its pixel takes the chunk's next one.
    """
    n = sy.shape[0]
    m1 = np.float32(-1.0)
    for c in _prange((n + chunk - 1) // chunk):
        a = c * chunk
        end = min(a + chunk, n)
        if n_iter == 0:
            for k in range(a, end):
                out[0, k] = sy[k]
                out[1, k] = sx[k]
            continue
        nxt = a
        k0 = k1 = k2 = k3 = -1
        y0 = x0 = y1 = x1 = y2 = x2 = y3 = x3 = m1
        if nxt < end:
            k0, y0, x0, nxt = nxt, sy[nxt], sx[nxt], nxt + 1
        if nxt < end:
            k1, y1, x1, nxt = nxt, sy[nxt], sx[nxt], nxt + 1
        if nxt < end:
            k2, y2, x2, nxt = nxt, sy[nxt], sx[nxt], nxt + 1
        if nxt < end:
            k3, y3, x3, nxt = nxt, sy[nxt], sx[nxt], nxt + 1
        p0y = p0x = p1y = p1x = p2y = p2x = p3y = p3x = m1  # positions two steps back
        t0 = t1 = t2 = t3 = 0
        while k0 >= 0 or k1 >= 0 or k2 >= 0 or k3 >= 0:
            if k0 >= 0:
                k0, y0, x0, p0y, p0x, t0, nxt = _lane_jit(fy, fx, sy, sx, out, k0, y0, x0, p0y, p0x, t0, nxt, end, n_iter, step)
            if k1 >= 0:
                k1, y1, x1, p1y, p1x, t1, nxt = _lane_jit(fy, fx, sy, sx, out, k1, y1, x1, p1y, p1x, t1, nxt, end, n_iter, step)
            if k2 >= 0:
                k2, y2, x2, p2y, p2x, t2, nxt = _lane_jit(fy, fx, sy, sx, out, k2, y2, x2, p2y, p2x, t2, nxt, end, n_iter, step)
            if k3 >= 0:
                k3, y3, x3, p3y, p3x, t3, nxt = _lane_jit(fy, fx, sy, sx, out, k3, y3, x3, p3y, p3x, t3, nxt, end, n_iter, step)


@register_kernel("follow_flows", "numba")
def _build_follow_flows_numba():
    global _prange, _lane_jit
    import numba

    _prange = numba.prange
    _lane_jit = numba.njit(inline="always", fastmath=False, nogil=True)(_lane_step)
    kernel = numba.njit(parallel=True, fastmath=False, cache=True, nogil=True)(_follow_lanes)

    def follow_flows_numba(flows: np.ndarray, starts: np.ndarray, n_iter: int, step_px: float) -> np.ndarray:
        out = np.empty(starts.shape, np.float32)
        if starts.shape[1]:
            kernel(flows[0], flows[1], starts[0], starts[1], int(n_iter), np.float32(step_px), out, _NUMBA_CHUNK)
        return out

    return follow_flows_numba


_NUMBA_CHUNK = 1024  # pixels per parallel task

_CUDA_SOURCE = r"""
extern "C" __global__
void follow_flows_fused(const float* __restrict__ flows,   // (2, Y, X) C order
                        const float* __restrict__ starts,  // (2, N)
                        float* __restrict__ out,           // (2, N)
                        const long long n, const int Y, const int X,
                        const int n_iter, const float step)
{
    const long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n) return;
    const long long plane = (long long)Y * X;
    const float* fy = flows;
    const float* fx = flows + plane;
    const float ymax = (float)(Y - 1);
    const float xmax = (float)(X - 1);
    const int y0max = max(Y - 2, 0);
    const int x0max = max(X - 2, 0);
    float y = starts[k];
    float x = starts[n + k];
    float py = -1.0f;  // position two steps back
    float px = -1.0f;
    for (int t = 1; t <= n_iter; ++t) {
        const int y0 = min((int)y, y0max);  // positions are never negative: truncation is floor
        const int x0 = min((int)x, x0max);
        const int y1 = min(y0 + 1, Y - 1);
        const int x1 = min(x0 + 1, X - 1);
        const float wy = y - (float)y0;
        const float wx = x - (float)x0;
        const float vy = 1.0f - wy;
        const float vx = 1.0f - wx;
        const long long i00 = (long long)y0 * X + x0;
        const long long i01 = (long long)y0 * X + x1;
        const long long i10 = (long long)y1 * X + x0;
        const long long i11 = (long long)y1 * X + x1;
        const float dy = vy * (vx * __ldg(fy + i00) + wx * __ldg(fy + i01)) + wy * (vx * __ldg(fy + i10) + wx * __ldg(fy + i11));
        const float dx = vy * (vx * __ldg(fx + i00) + wx * __ldg(fx + i01)) + wy * (vx * __ldg(fx + i10) + wx * __ldg(fx + i11));
        const float ny = fminf(fmaxf(y + step * dy, 0.0f), ymax);
        const float nx = fminf(fmaxf(x + step * dx, 0.0f), xmax);
        if (ny == py && nx == px) {  // fixed point or 2-cycle: the end is known
            if ((n_iter - t) % 2 == 0) { y = ny; x = nx; }
            break;
        }
        py = y; px = x;
        y = ny; x = nx;
    }
    out[k] = y;
    out[n + k] = x;
}
"""

_CUDA_THREADS = 256


@register_kernel("follow_flows", "cupy")
def _build_follow_flows_cupy():  # pragma: no cover - needs a CUDA device
    import cupy as cp

    kernel = cp.RawKernel(_CUDA_SOURCE, "follow_flows_fused", options=("--fmad=false",))

    def follow_flows_cupy(flows, starts, n_iter: int, step_px: float) -> np.ndarray:
        d_flows = cp.ascontiguousarray(cp.asarray(flows, dtype=cp.float32))
        d_starts = cp.ascontiguousarray(cp.asarray(starts, dtype=cp.float32))
        n = int(d_starts.shape[1])
        _, Y, X = d_flows.shape
        d_out = cp.empty((2, n), cp.float32)
        if n:
            blocks = (n + _CUDA_THREADS - 1) // _CUDA_THREADS
            kernel(
                (blocks,),
                (_CUDA_THREADS,),
                (d_flows, d_starts, d_out, np.int64(n), np.int32(Y), np.int32(X), np.int32(n_iter), np.float32(step_px)),
            )
        return cp.asnumpy(d_out)

    return follow_flows_cupy


# --------------------------------------------------------------------------- public API
def follow_flows(flows_yx, mask=None, *, n_iter: int, step_px: float = 1.0, backend: str = "auto", starts=None) -> np.ndarray:
    """Move every foreground pixel along a flow field by Euler steps.

    Parameters
    ----------
    flows_yx : (2, Y, X) array_like of float
        Flow field, row component first, in pixels per step (unit vectors for
        ideal flows).  Read with bilinear interpolation; values are used as
        given (mask them beforehand to stop pixels at the foreground edge).
    mask : (Y, X) array_like of bool, optional
        Pixels to move (non-zero).  None: every pixel.
    n_iter : int
        Number of Euler steps (>= 0); see :func:`default_n_iter`.
    step_px : float
        Step length multiplier: each step moves by ``step_px * flow``.
    backend : {"auto", "numpy", "numba", "cupy"}
        Resolved by :func:`micrometry._backend.resolve_backend`.  The NumPy
        and Numba back-ends give identical results.
    starts : (2, M) array_like of float, optional
        Explicit start positions ``(row, col)`` in pixels, instead of the mask
        pixels (used for block-wise tracking).  Clipped into the image.

    Returns
    -------
    (2, N) float32 ndarray
        Final ``(row, col)`` positions, in pixels, of the ``N`` mask pixels in
        C (raster) order, i.e. the order of ``np.nonzero(mask)``; or of the
        ``M`` given starts.  Every position lies in ``[0, Y-1] x [0, X-1]``.

    Raises
    ------
    ValueError
        Bad shapes (named in the message), non-finite values, negative
        ``n_iter`` or non-positive ``step_px``, or an unavailable back-end.

    See Also
    --------
    labels_from_endpoints : cluster the endpoints into instances.
    micrometry.segment.flows.flows_to_labels : the whole inverse.

    Examples
    --------
    >>> import numpy as np
    >>> flows = np.zeros((2, 5, 5), np.float32)
    >>> flows[1] = 1.0                       # everything flows to the right
    >>> mask = np.zeros((5, 5), bool); mask[2, 0] = True
    >>> follow_flows(flows, mask, n_iter=3, backend="numpy")
    array([[2.],
           [3.]], dtype=float32)
    """
    flows, m = _validate_flows(flows_yx, mask)
    n_iter = _check_n_iter(n_iter)
    step_px = _check_step(step_px)
    if starts is None:
        pos = np.stack(np.nonzero(m)).astype(np.float32)
    else:
        if mask is not None:
            raise ValueError("give either mask or starts, not both")
        pos = _validate_positions(starts, flows.shape[1:])
    return get_kernels(backend).follow_flows(flows, pos, n_iter, step_px)


def _check_n_iter(n_iter) -> int:
    if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)):
        raise TypeError(f"n_iter must be an integer, got {n_iter!r}")
    if n_iter < 0:
        raise ValueError(f"n_iter must be >= 0, got {n_iter}")
    return int(n_iter)


def _check_step(step_px) -> float:
    step = float(step_px)
    if not math.isfinite(step) or step <= 0:
        raise ValueError(f"step_px must be a positive number, got {step_px!r}")
    return step


def default_n_iter(foreground, *, step_px: float = 1.0, max_diameter_px: float | None = None) -> int:
    """Number of Euler steps that brings every pixel to its object's centre.

    Unit flows move a pixel ``step_px`` per step, and the path from a pixel to
    its object's centre is at most about the object's diameter ``D`` for
    convex objects (a straight segment) and its bounding box's height + width
    for bent ones, so ``ceil(D / step_px)`` steps suffice.  ``D`` is
    `max_diameter_px` when the caller knows the largest object expected
    (e.g. from the model's object size range).  Otherwise it is estimated
    from the foreground: the largest height + width of a connected
    foreground region's bounding box, but at most 16 x the largest inscribed
    radius (the maximum of the foreground's distance transform), which stops
    a big cluster of touching particles from setting the count while still
    covering objects up to an aspect ratio of about 8.  Never fewer than 10.

    A generous count is cheap: every back-end stops following a pixel once
    it has settled on a fixed point or a 2-cycle (the result is the same as
    running every step).

    Parameters
    ----------
    foreground : (Y, X) array_like of bool
    step_px : float
    max_diameter_px : float, optional

    Returns
    -------
    int

    Examples
    --------
    >>> default_n_iter(np.ones((8, 8), bool), max_diameter_px=60)
    60
    >>> disc = np.hypot(*np.mgrid[-20:21, -20:21]) < 12.5
    >>> default_n_iter(disc)                   # bounding box 25 + 25 px
    50
    """
    step = _check_step(step_px)
    if max_diameter_px is None:
        fg = np.asarray(foreground) != 0
        if fg.ndim != 2:
            raise ValueError(f"foreground must be a 2-D (Y, X) array, got shape {fg.shape}")
        if not fg.any():
            return _MIN_N_ITER
        regions, _ = ndi.label(fg)
        extent = max(sl[0].stop - sl[0].start + sl[1].stop - sl[1].start for sl in ndi.find_objects(regions))
        # pad so that the image border counts as the edge of an object
        r_in = float(ndi.distance_transform_edt(np.pad(fg, 1)).max())
        max_diameter_px = min(float(extent), _PATH_PER_INSCRIBED_RADIUS * r_in)
    d = float(max_diameter_px)
    if not math.isfinite(d) or d < 0:
        raise ValueError(f"max_diameter_px must be a non-negative number, got {max_diameter_px!r}")
    return max(_MIN_N_ITER, int(math.ceil(d / step)))


def default_min_seed_count(min_area_px: int) -> int:
    """Endpoints a seed needs in its 3 x 3 window: half the smallest object, at least 3."""
    return max(_MIN_SEED_COUNT, int(math.ceil(_SEED_COUNT_FRACTION * max(int(min_area_px), 0))))


def default_seed_radius_px(min_area_px: int) -> float:
    """Farthest an endpoint may be from its seed: the smallest object's radius, at least 2 px.

    Two objects of the smallest expected area have centres at least two of
    these radii apart, so the radius never lets an endpoint reach past the
    midpoint to a neighbour's seed; it only stops stragglers (pixels that did
    not converge) from joining a far seed.
    """
    return max(_MIN_SEED_RADIUS_PX, math.sqrt(max(int(min_area_px), 0) / math.pi))


def labels_from_endpoints(
    endpoints_yx,
    mask,
    *,
    min_seed_count: int = 4,
    seed_radius_px: float = 2.0,
) -> np.ndarray:
    """Cluster flow endpoints into instance labels.

    1. Endpoints are rounded to the nearest pixel and counted in a 2-D
       histogram on the image grid.
    2. The histogram is smoothed by summing 3 x 3 windows (so a value is the
       number of endpoints within one pixel).
    3. Seeds are the local maxima of the smoothed counts over 5 x 5 windows
       with at least `min_seed_count` endpoints; maxima that tie within two
       pixels of each other form one seed.
    4. Every endpoint takes the label of the nearest seed pixel within
       `seed_radius_px` on the histogram grid (:class:`scipy.spatial.cKDTree`);
       endpoints farther from every seed stay background.

    Parameters
    ----------
    endpoints_yx : (2, N) array_like of float
        Final positions from :func:`follow_flows`, one per mask pixel, in the
        C order of ``np.nonzero(mask)``.
    mask : (Y, X) array_like of bool
        The pixels that were moved; ``N == mask.sum()``.
    min_seed_count : int
        Endpoints a seed needs in its 3 x 3 window
        (:func:`default_min_seed_count` derives it from the smallest object).
    seed_radius_px : float
        Largest endpoint-to-seed distance, in pixels
        (:func:`default_seed_radius_px`).

    Returns
    -------
    (Y, X) uint32 ndarray
        Labels ``1..K`` numbered in raster order of their seeds, 0 elsewhere.
        No size filter is applied here.
    """
    m = np.asarray(mask) != 0
    if m.ndim != 2:
        raise ValueError(f"mask must be a 2-D (Y, X) array, got shape {m.shape}")
    ends = np.asarray(endpoints_yx, dtype=np.float32)
    n = int(m.sum())
    if ends.ndim != 2 or ends.shape[0] != 2 or ends.shape[1] != n:
        raise ValueError(f"endpoints_yx must have shape (2, {n}) for a mask with {n} pixels, got shape {ends.shape}")
    if int(min_seed_count) < 1:
        raise ValueError(f"min_seed_count must be >= 1, got {min_seed_count}")
    radius = float(seed_radius_px)
    if not math.isfinite(radius) or radius < 0:
        raise ValueError(f"seed_radius_px must be a non-negative number, got {seed_radius_px!r}")
    Y, X = m.shape
    out = np.zeros((Y, X), LABEL_DTYPE)
    if n == 0:
        return out

    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    iy = np.clip(np.rint(ends[0]), 0, Y - 1).astype(np.intp)
    ix = np.clip(np.rint(ends[1]), 0, X - 1).astype(np.intp)
    # Histogram over the endpoints' bounding box plus a margin of empty bins, so
    # that every 5 x 5 neighbourhood of a non-zero 3 x 3 count lies in the grid.
    half = _PEAK_FOOTPRINT_PX // 2
    margin = half + 1
    oy = int(iy.min()) - margin
    ox = int(ix.min()) - margin
    h = int(iy.max()) + margin + 1 - oy
    w = int(ix.max()) + margin + 1 - ox
    bins = (iy - oy) * w + (ix - ox)
    hist = np.bincount(bins, minlength=h * w).astype(np.int32).reshape(h, w)
    rows = hist.copy()
    rows[1:] += hist[:-1]
    rows[:-1] += hist[1:]
    counts = rows.copy()  # endpoints in each 3 x 3 window
    counts[:, 1:] += rows[:, :-1]
    counts[:, :-1] += rows[:, 1:]
    flat = counts.ravel()
    cand = np.flatnonzero(flat >= int(min_seed_count))
    if cand.size == 0:
        return out
    value = flat[cand]
    is_peak = np.ones(cand.size, bool)
    for dy in range(-half, half + 1):
        for dx in range(-half, half + 1):
            if dy or dx:
                is_peak &= value >= flat[cand + (dy * w + dx)]
    peaks = cand[is_peak]
    seed_yx = np.stack([peaks // w, peaks % w], axis=1)
    # maxima that tie within two bins of each other are one seed
    tree = cKDTree(seed_yx)
    pairs = tree.query_pairs(r=half, p=np.inf, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(len(peaks), len(peaks)))
    _, group = connected_components(graph, directed=False)
    seed_label = (group + 1).astype(LABEL_DTYPE)

    occupied = np.flatnonzero(hist)
    occ_yx = np.stack([occupied // w, occupied % w], axis=1)
    _, nearest = tree.query(occ_yx, k=1, distance_upper_bound=radius + 1e-6)
    reached = nearest < len(peaks)
    bin_label = np.zeros(h * w, LABEL_DTYPE)
    bin_label[occupied[reached]] = seed_label[nearest[reached]]
    out[m] = bin_label[bins]
    return out
