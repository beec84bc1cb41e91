"""Per-object morphology of a label image.

:func:`measure_objects` turns a label image (and optionally the raw intensity
image and the pixel size) into one array per column of the objects table (see
:mod:`micrometry.measure.schema`).  It is written for thousands of objects per
image: everything except the convex hulls is computed for all objects at once
from one sort of the foreground pixels, and the perimeter is one pass of 2x2
windows over the whole image.

Definitions (pixel centres at integer coordinates, row ``y`` down, column ``x``
right):

- ``area_px``: pixel count.  ``equivalent_diameter_px = sqrt(4 area / pi)``.
- ``perimeter_px``: Crofton estimator with 4 directions, the estimator of
  :func:`skimage.measure.perimeter_crofton`.  Measured on digitised discs
  r = 5...100 px (random sub-pixel centres) its bias is within +-0.4 %, against
  +3...+5 % for :func:`skimage.measure.perimeter` (4-connectivity) and +14...+27 %
  with 8-connectivity.  Its known weakness: polygons with straight edges along
  the pixel axes read low (a 20 x 20 px square gives 74.7 px, -6.6 %), because
  4 directions average the width of a square over 0/45/90/135 degrees.
- ``feret_max_px`` / ``feret_min_px``: caliper diameters of the convex hull of
  the pixel *squares* (each pixel is the unit square around its centre), see
  :func:`feret_diameters`.  A single pixel has both equal to 1; a disc of
  radius r reads about 2r + 1.
- ``major_axis_px`` / ``minor_axis_px`` / ``eccentricity``: of the ellipse with
  the same second central moments as the pixel centres (as
  :func:`skimage.measure.regionprops`): full axis lengths ``4 sqrt(lambda)``.
- ``orientation_deg``: angle of the major axis counter-clockwise from the +x
  (column) axis *as the image is displayed* (row 0 at the top, so "up" is
  decreasing row), in (-90, 90].  A horizontal bar is 0, a bar rising to the
  right at 45 degrees on screen is +45, a vertical bar is 90.  Related to
  scikit-image's ``orientation`` (radians, from the row axis) by
  ``orientation_deg = degrees(orientation) - 90``, wrapped into (-90, 90].
  An object without a major axis (a disc, a square) reads 0.
- ``aspect_ratio = feret_max_px / feret_min_px`` (>= 1).  Chosen over the
  ellipse-axis ratio because it is defined by the outline alone; note that for
  a w x h rectangle the maximum Feret diameter is the diagonal, so an 80 x 20 px
  rectangle reads 4.12, not 4.
- ``circularity = 4 pi area_px / perimeter_px**2``, clipped to at most 1.  It is
  1 for a disc; the clip is there because every perimeter estimator
  underestimates the outline of objects only a few pixels across (a single
  pixel: Crofton perimeter 2.68, unclipped circularity 1.75), and no planar
  shape is rounder than a disc.  The clip only acts on such tiny objects (for
  discs r >= 5 px the unclipped value is within 1 +- 0.01); the raw ratio can be
  recomputed from ``area_px`` and ``perimeter_px``.
- ``solidity = area_px / convex_area_px`` where ``convex_area_px`` is the number
  of pixel centres inside or on the convex hull of the object's pixel centres
  (Pick's theorem on the hull), so a digitally convex object (a digitised
  disc, ellipse or rectangle) has solidity exactly 1.  scikit-image's
  ``solidity`` differs: its convex image is built from pixel-edge midpoints and
  takes in extra boundary pixels, so it reads below 1 for such objects.
- ``touches_border``: the object has a pixel in the first/last row or column.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

from .schema import OBJECT_COLUMNS, numpy_dtype

__all__ = ["measure_objects", "feret_diameters"]

# Crofton perimeter weights for the 16 configurations of a 2x2 window, 4 directions,
# indexed by code = 1*p[i, j] + 2*p[i-1, j] + 4*p[i, j-1] + 8*p[i-1, j-1]; the same
# table and code as skimage.measure.perimeter_crofton(directions=4).
_CROFTON4 = np.array(
    [
        0,
        np.pi / 4 * (1 + 1 / np.sqrt(2)),
        np.pi / (4 * np.sqrt(2)),
        np.pi / (2 * np.sqrt(2)),
        0,
        np.pi / 4 * (1 + 1 / np.sqrt(2)),
        0,
        np.pi / (4 * np.sqrt(2)),
        np.pi / 4,
        np.pi / 2,
        np.pi / (4 * np.sqrt(2)),
        np.pi / (4 * np.sqrt(2)),
        np.pi / 4,
        np.pi / 2,
        0,
        0,
    ]
)

_PHYSICAL = {
    # column: (source column, power of nm_per_px)
    "area_nm2": ("area_px", 2),
    "equivalent_diameter_nm": ("equivalent_diameter_px", 1),
    "perimeter_nm": ("perimeter_px", 1),
    "feret_max_nm": ("feret_max_px", 1),
    "feret_min_nm": ("feret_min_px", 1),
    "major_axis_nm": ("major_axis_px", 1),
    "minor_axis_nm": ("minor_axis_px", 1),
}

_UINT32_MAX = np.iinfo(np.uint32).max


# --------------------------------------------------------------------------- validation


def _validate_inputs(labels, intensity, nm_per_px):
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D (Y, X) array; got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must have an integer dtype (0 = background); got {labels.dtype}. "
            "Label a binary mask first, e.g. with skimage.measure.label."
        )
    if labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0:
            raise ValueError(f"labels must be >= 0 (0 = background); found {lo}")
        if hi > _UINT32_MAX:
            raise ValueError(f"labels must fit in uint32 (<= {_UINT32_MAX}); found {hi}")
    if intensity is not None:
        intensity = np.asarray(intensity)
        if intensity.shape != labels.shape:
            raise ValueError(
                f"intensity shape {intensity.shape} does not match labels shape {labels.shape}"
            )
        if not (np.issubdtype(intensity.dtype, np.integer) or np.issubdtype(intensity.dtype, np.floating)):
            raise ValueError(f"intensity must be a real-valued array; got dtype {intensity.dtype}")
    if nm_per_px is not None:
        if isinstance(nm_per_px, (bool, np.bool_)) or not isinstance(nm_per_px, Real):
            raise ValueError(f"nm_per_px must be a positive finite number or None; got {nm_per_px!r}")
        if not (math.isfinite(nm_per_px) and nm_per_px > 0):
            raise ValueError(f"nm_per_px must be a positive finite number or None; got {nm_per_px!r}")
        nm_per_px = float(nm_per_px)
    return labels, intensity, nm_per_px


# --------------------------------------------------------------------------- convex hulls


def _convex_chain(obj: np.ndarray, x: np.ndarray, y: np.ndarray, lower: bool) -> np.ndarray:
    """Indices of the lower (or upper) convex chain of many point sequences at once.

    Each object's points are consecutive in `obj` and strictly increasing in
    `x`.  A point is dropped when it is not strictly convex with respect to its
    current neighbours (on or beyond the segment joining them): such a point is
    not a vertex of the hull of any set containing the three, so all of them can
    be dropped at once, and the pass is repeated until nothing changes.  The
    first and last point of each object always stay.
    """
    alive = np.arange(obj.size)
    while alive.size >= 3:
        o = obj[alive]
        p, c, q = alive[:-2], alive[1:-1], alive[2:]
        inner = (o[:-2] == o[1:-1]) & (o[1:-1] == o[2:])
        cross = (x[c] - x[p]) * (y[q] - y[p]) - (y[c] - y[p]) * (x[q] - x[p])
        drop = inner & ((cross <= 0) if lower else (cross >= 0))
        if not drop.any():
            break
        alive = np.concatenate([alive[:1], c[~drop], alive[-1:]])
    return alive


def _shape_measures(
    run_obj: np.ndarray, run_row: np.ndarray, run_cmin: np.ndarray, run_cmax: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feret max, Feret min and convex pixel count of n objects from their row runs.

    Parameters
    ----------
    run_obj, run_row, run_cmin, run_cmax : (R,) ndarray of int
        One entry per (object, row): object index 0..n-1 (non-decreasing, every
        object present), row, first and last column of the object in that row;
        rows strictly increasing within an object.
    n : int
        Number of objects.

    Returns
    -------
    feret_max_px, feret_min_px : (n,) ndarray of float64
    convex_px : (n,) ndarray of int64

    Notes
    -----
    The convex hull of the pixel centres is the lower chain of the first
    columns joined to the upper chain of the last columns.  The Feret diameters
    are those of the union of the pixel squares, whose hull is the Minkowski
    sum of the centre hull and the unit square, so they follow from the centre
    hull: two vertices (dy, dx) apart have square corners
    ``sqrt((|dy| + 1)**2 + (|dx| + 1)**2)`` apart (maximum); the width of a
    Minkowski sum in direction u is the sum of the widths (``|u_y| + |u_x|``
    for the square), and the minimum width of a convex polygon is reached normal
    to one of its edges (rotating calipers), here a centre-hull edge or a pixel
    axis.  ``convex_px`` counts pixel centres inside or on the centre hull by
    Pick's theorem, ``I + B = A + B/2 + 1``.
    """
    row = run_row.astype(np.int64)
    cmin = run_cmin.astype(np.int64)
    cmax = run_cmax.astype(np.int64)
    lo = _convex_chain(run_obj, row, cmin, lower=True)
    hi = _convex_chain(run_obj, row, cmax, lower=False)

    # polygon: lower chain forwards, then upper chain backwards, per object
    obj = np.concatenate([run_obj[lo], run_obj[hi]])
    part = np.concatenate([np.zeros(lo.size, np.int64), np.ones(hi.size, np.int64)])
    key = np.concatenate([row[lo], -row[hi]])
    vy = np.concatenate([row[lo], row[hi]])
    vx = np.concatenate([cmin[lo], cmax[hi]])
    order = np.lexsort((key, part, obj))
    obj, vy, vx = obj[order], vy[order], vx[order]
    # drop repeated vertices where the chains meet (a row with a single pixel)
    first = np.r_[True, obj[1:] != obj[:-1]]
    dup = ~first & (vy == np.roll(vy, 1)) & (vx == np.roll(vx, 1))
    obj, vy, vx = obj[~dup], vy[~dup], vx[~dup]
    voff = np.flatnonzero(np.r_[True, obj[1:] != obj[:-1]])
    vend = np.r_[voff[1:], obj.size] - 1
    wrap = (vend > voff) & (vy[vend] == vy[voff]) & (vx[vend] == vx[voff])
    if wrap.any():
        keep = np.ones(obj.size, bool)
        keep[vend[wrap]] = False
        obj, vy, vx = obj[keep], vy[keep], vx[keep]
        voff = np.flatnonzero(np.r_[True, obj[1:] != obj[:-1]])
    h = np.diff(np.r_[voff, obj.size])

    # edges (cyclic) -> Pick's theorem
    nxt = np.arange(obj.size) + 1
    nxt[np.r_[voff[1:], obj.size] - 1] = voff
    ey, ex = vy[nxt] - vy, vx[nxt] - vx
    area2 = np.abs(np.add.reduceat(vy * vx[nxt] - vy[nxt] * vx, voff))
    boundary = np.add.reduceat(np.gcd(np.abs(ey), np.abs(ex)), voff)
    convex_px = (area2 + boundary) // 2 + 1

    # all (i, j) vertex pairs of each object
    npair = h * h
    pstart = np.r_[0, np.cumsum(npair)[:-1]]
    pobj = np.repeat(np.arange(n), npair)
    t = np.arange(npair.sum()) - pstart[pobj]
    i = voff[pobj] + t // h[pobj]
    j = voff[pobj] + t % h[pobj]

    dy = np.abs(vy[i] - vy[j]) + 1
    dx = np.abs(vx[i] - vx[j]) + 1
    feret_max = np.sqrt(np.maximum.reduceat(dy * dy + dx * dx, pstart).astype(np.float64))

    length = np.hypot(ey, ex)
    with np.errstate(invalid="ignore", divide="ignore"):
        uy, ux = -ex / length, ey / length  # unit normal of edge i
    proj = uy[i] * vy[j] + ux[i] * vx[j]
    gstart = np.r_[0, np.cumsum(np.repeat(h, h))[:-1]]  # one group per (object, edge i)
    width = np.maximum.reduceat(proj, gstart) - np.minimum.reduceat(proj, gstart) + np.abs(uy) + np.abs(ux)
    width[length == 0] = np.inf
    feret_min = np.minimum.reduceat(width, voff)
    height_px = np.maximum.reduceat(vy, voff) - np.minimum.reduceat(vy, voff) + 1
    width_px = np.maximum.reduceat(vx, voff) - np.minimum.reduceat(vx, voff) + 1
    feret_min = np.minimum(feret_min, np.minimum(height_px, width_px))
    return feret_max, feret_min, convex_px.astype(np.int64)


def feret_diameters(coords_yx: np.ndarray) -> tuple[float, float]:
    """Maximum and minimum caliper (Feret) diameters of a set of pixels.

    The pixel set is taken as the union of unit squares centred on the given
    pixel coordinates; the diameters are those of its convex hull: the maximum
    is the largest distance between two hull vertices, the minimum the smallest
    width over all caliper directions (rotating calipers: for a convex polygon
    the minimum width is reached with one caliper flush with an edge).

    Parameters
    ----------
    coords_yx : (N, 2) array_like of int
        Row and column of each pixel (as ``regionprops(...).coords``), N >= 1.
        Duplicates are allowed.

    Returns
    -------
    feret_max_px, feret_min_px : float
        Diameters in pixels.  A single pixel gives (sqrt(2), 1); a k x 1 bar
        gives (sqrt(k**2 + 1), 1).

    Raises
    ------
    ValueError
        If `coords_yx` is not (N, 2) with N >= 1, or holds non-integer or
        non-finite values.

    Examples
    --------
    >>> fmax, fmin = feret_diameters([[0, 0], [0, 1], [0, 2]])
    >>> round(fmax, 4), fmin
    (3.1623, 1.0)
    """
    coords = np.asarray(coords_yx)
    if coords.ndim != 2 or coords.shape[1] != 2 or coords.shape[0] < 1:
        raise ValueError(f"coords_yx must have shape (N, 2) with N >= 1; got {coords.shape}")
    if not np.issubdtype(coords.dtype, np.integer):
        if not np.issubdtype(coords.dtype, np.floating) or not np.all(np.isfinite(coords)):
            raise ValueError("coords_yx must hold finite integer pixel coordinates")
        if np.any(coords != np.round(coords)):
            raise ValueError("coords_yx must hold integer pixel coordinates (pixel centres)")
    coords = coords.astype(np.int64)
    order = np.lexsort((coords[:, 1], coords[:, 0]))
    r, c = coords[order, 0], coords[order, 1]
    start = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
    end = np.r_[start[1:], r.size] - 1
    fmax, fmin, _ = _shape_measures(np.zeros(start.size, np.int64), r[start], c[start], c[end], 1)
    return float(fmax[0]), float(fmin[0])


# --------------------------------------------------------------------------- perimeter


def _crofton_perimeters(seq: np.ndarray, n: int) -> np.ndarray:
    """Crofton (4 directions) perimeter of every label 1..n of a sequential label image.

    Equal, label by label, to ``skimage.measure.perimeter_crofton(seq == k, 4)``,
    computed in one pass over all 2x2 windows: each window contributes to every
    distinct label among its four pixels, with that label's configuration code.
    """
    p = np.pad(seq, 1)
    a, b, c, d = p[1:, 1:], p[:-1, 1:], p[1:, :-1], p[:-1, :-1]  # weights 1, 2, 4, 8
    keep = (a | b | c | d) != 0
    a, b, c, d = a[keep], b[keep], c[keep], d[keep]
    per = np.zeros(n + 1)
    for x, first in (
        (a, np.ones(a.shape, bool)),
        (b, b != a),
        (c, (c != a) & (c != b)),
        (d, (d != a) & (d != b) & (d != c)),
    ):
        m = first & (x != 0)
        xm = x[m]
        code = (a[m] == xm) * 1 + (b[m] == xm) * 2 + (c[m] == xm) * 4 + (d[m] == xm) * 8
        per += np.bincount(xm, weights=_CROFTON4[code], minlength=n + 1)
    return per[1:]


# --------------------------------------------------------------------------- main entry


def _empty_columns() -> dict[str, np.ndarray]:
    return {c.name: np.zeros(0, dtype=numpy_dtype(c)) for c in OBJECT_COLUMNS if c.name != "sample"}


def measure_objects(
    labels: np.ndarray,
    intensity: np.ndarray | None = None,
    *,
    nm_per_px: float | None = None,
) -> dict[str, np.ndarray]:
    """Measure every object of a label image.

    Parameters
    ----------
    labels : (Y, X) ndarray of int
        Instance labels, 0 = background, any positive values (need not be
        sequential; at most 2**32 - 1).  Not modified.
    intensity : (Y, X) ndarray of int or float, optional
        Raw intensities for ``mean_intensity``; None leaves that column NaN.
    nm_per_px : float, optional
        Pixel size in nanometres per pixel (square pixels).  None (uncalibrated)
        leaves every ``_nm`` / ``_nm2`` column NaN; ``_px`` columns are always
        filled.

    Returns
    -------
    columns : dict of str to (M,) ndarray
        One array per column of :data:`micrometry.measure.schema.OBJECT_COLUMNS`
        except ``sample``, in schema order, with the schema's dtype (``label``
        uint32, ``bbox_*_px`` and ``area_px`` int64, ``touches_border`` bool,
        all others float64).  One row per object, sorted by label; M = 0 gives
        zero-length typed arrays.  Definitions and conventions are in this
        module's docstring.

    Raises
    ------
    ValueError
        If `labels` is not 2-D integer with values in [0, 2**32 - 1], if
        `intensity` does not have the same shape or is not real-valued, or if
        `nm_per_px` is not None or a positive finite number.

    See Also
    --------
    skimage.measure.regionprops_table : general-purpose equivalent (slower).
    micrometry.measure.objects_table : columns to an Arrow table.

    Examples
    --------
    >>> lab = np.zeros((5, 6), np.uint16)
    >>> lab[1:3, 1:5] = 7
    >>> cols = measure_objects(lab, nm_per_px=2.0)
    >>> int(cols["label"][0]), int(cols["area_px"][0]), float(cols["area_nm2"][0])
    (7, 8, 32.0)
    >>> float(cols["orientation_deg"][0]), float(cols["feret_min_px"][0])
    (0.0, 2.0)
    """
    labels, intensity, nm_per_px = _validate_inputs(labels, intensity, nm_per_px)
    height, width = labels.shape

    flat = labels.ravel()
    idx = np.flatnonzero(flat)  # row-major order
    if idx.size == 0:
        return _empty_columns()

    # Group foreground pixels by label; the stable sort keeps row-major order inside a label.
    lab_fg = flat[idx]
    order = np.argsort(lab_fg, kind="stable")
    idx = idx[order]
    lab_s = lab_fg[order]
    del lab_fg, order
    r_s = idx // width
    c_s = idx % width
    is_start = np.r_[True, lab_s[1:] != lab_s[:-1]]
    starts = np.flatnonzero(is_start)
    ends = np.r_[starts[1:], lab_s.size]  # exclusive
    n = starts.size
    seq_s = np.cumsum(is_start).astype(np.int32)  # 1..n per pixel
    out_labels = lab_s[starts].astype(np.uint32)

    # Area, centroid and second central moments (two-pass for accuracy).
    area = (ends - starts).astype(np.int64)
    rf = r_s.astype(np.float64)
    cf = c_s.astype(np.float64)
    cy = np.add.reduceat(rf, starts) / area
    cx = np.add.reduceat(cf, starts) / area
    dr = rf - cy[seq_s - 1]
    dc = cf - cx[seq_s - 1]
    var_r = np.add.reduceat(dr * dr, starts) / area
    var_c = np.add.reduceat(dc * dc, starts) / area
    cov_rc = np.add.reduceat(dr * dc, starts) / area
    del rf, cf, dr, dc

    half_tr = (var_r + var_c) / 2
    disc = np.sqrt(((var_r - var_c) / 2) ** 2 + cov_rc**2)
    lam1 = half_tr + disc
    lam2 = np.clip(half_tr - disc, 0, None)
    major = 4 * np.sqrt(lam1)
    minor = 4 * np.sqrt(lam2)
    with np.errstate(invalid="ignore", divide="ignore"):
        ecc = np.where(lam1 > 0, np.sqrt(np.clip(1 - lam2 / lam1, 0, 1)), 0.0)
    # y axis up on screen is -row, so cov(x, y_up) = -cov_rc.
    orient = np.degrees(0.5 * np.arctan2(-2 * cov_rc, var_c - var_r))
    orient = np.where(orient <= -90, orient + 180, orient) + 0.0  # no -0.0

    # Per-row extent of each object: runs of equal (label, row) in the sorted pixels.
    run_start = np.flatnonzero(is_start | np.r_[True, r_s[1:] != r_s[:-1]])
    run_end = np.r_[run_start[1:], lab_s.size] - 1  # inclusive
    run_row = r_s[run_start]
    run_cmin = c_s[run_start]
    run_cmax = c_s[run_end]
    runs_of = np.searchsorted(run_start, starts)  # first run of each object

    y0 = r_s[starts].astype(np.int64)
    y1 = r_s[ends - 1].astype(np.int64) + 1
    x0 = np.minimum.reduceat(run_cmin, runs_of).astype(np.int64)
    x1 = np.maximum.reduceat(run_cmax, runs_of).astype(np.int64) + 1

    run_obj = seq_s[run_start] - 1
    feret_max, feret_min, convex_px = _shape_measures(run_obj, run_row, run_cmin, run_cmax, n)

    seq = np.zeros(labels.shape, dtype=np.int32)
    seq.ravel()[idx] = seq_s
    perimeter = _crofton_perimeters(seq, n)
    del seq

    if intensity is None:
        mean_int = np.full(n, np.nan)
    else:
        vals = intensity.ravel()[idx].astype(np.float64)
        mean_int = np.add.reduceat(vals, starts) / area

    eq_diam = np.sqrt(4 * area / np.pi)
    with np.errstate(invalid="ignore", divide="ignore"):
        circ = np.minimum(4 * np.pi * area / perimeter**2, 1.0)

    cols: dict[str, np.ndarray] = {
        "label": out_labels,
        "centroid_y_px": cy,
        "centroid_x_px": cx,
        "bbox_y0_px": y0,
        "bbox_x0_px": x0,
        "bbox_y1_px": y1,
        "bbox_x1_px": x1,
        "area_px": area,
        "equivalent_diameter_px": eq_diam,
        "perimeter_px": perimeter,
        "feret_max_px": feret_max,
        "feret_min_px": feret_min,
        "major_axis_px": major,
        "minor_axis_px": minor,
        "aspect_ratio": feret_max / feret_min,
        "circularity": circ,
        "solidity": area / convex_px,
        "eccentricity": ecc,
        "orientation_deg": orient,
        "mean_intensity": mean_int,
        "touches_border": (y0 == 0) | (x0 == 0) | (y1 == height) | (x1 == width),
    }
    for name, (src, power) in _PHYSICAL.items():
        cols[name] = cols[src] * nm_per_px**power if nm_per_px is not None else np.full(n, np.nan)

    return {
        c.name: np.ascontiguousarray(cols[c.name], dtype=numpy_dtype(c))
        for c in OBJECT_COLUMNS
        if c.name != "sample"
    }
