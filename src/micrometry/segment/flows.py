"""Flow representation of instance labels: targets and their inverse.

:func:`labels_to_flows` turns an instance label image into the training
targets of the flow model -- a unit vector per object pixel pointing towards
the object's centre, and a per-object normalised distance map -- and
:func:`flows_to_labels` turns a (predicted) flow field and foreground mask back
into instance labels by flow tracking (:mod:`micrometry.segment.tracking`).
:func:`flow_error` measures how well a flow field agrees with the flows of a
label image, for quality control.  Nothing here imports torch.

Targets, per object, in its bounding-box crop (so the total cost is
proportional to the number of object pixels):

1. ``distance``: the object's Euclidean distance transform (distance to the
   nearest pixel that is not the object, the image border counting as
   outside), divided by its maximum, so each object peaks at 1.
2. Centre: the object pixel maximising *distance transform minus distance to
   the centroid* -- deep inside the object and as near the centroid as
   possible, so a C- or L-shaped object gets a centre inside it.  When that
   pixel is within one pixel of the centroid (any roughly convex object) the
   centroid itself, at sub-pixel precision, is the centre.
3. Flows: where the object is star-shaped around its centre -- tested by
   sampling, every pixel, the straight segment from each boundary pixel to
   the centre -- the flow is the unit vector towards the centre (all such
   objects at once, vectorised).  Otherwise (non-convex shapes, holes) it is
   the normalised gradient of a heat field diffused from the centre pixel
   inside the object only, for ``2 x (height + width)`` iterations of the
   object's own bounding box (continued until every pixel of the object is
   reached), so flows follow the object's shape around bends.  Iteration
   counts are per object, never set by the largest object.  Flows are unit
   length at every object pixel except the centre itself (zero), and zero
   outside objects.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from micrometry.segment.tracking import (
    LABEL_DTYPE,
    _check_step,
    _validate_flows,
    default_min_seed_count,
    default_n_iter,
    default_seed_radius_px,
    follow_flows,
    labels_from_endpoints,
)

__all__ = ["LABEL_DTYPE", "labels_to_flows", "flows_to_labels", "flow_error", "remove_flow_errors",
           "check_flow_error_max"]

_HEAT_ITER_PER_EXTENT = 2  # heat iterations = this x (crop height + width)


# --------------------------------------------------------------------------- validation
def _validate_labels(labels, *, name: str = "labels") -> np.ndarray:
    """Return a non-negative integer (Y, X) label array (no copy when possible)."""
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (Y, X) array, got shape {lab.shape}")
    if lab.dtype == bool:
        return lab.astype(np.int32)
    if not np.issubdtype(lab.dtype, np.integer):
        raise TypeError(f"{name} must be an integer label image, got dtype {lab.dtype}")
    if lab.size and np.issubdtype(lab.dtype, np.signedinteger) and lab.min() < 0:
        raise ValueError(f"{name} must be non-negative (0 = background), found {lab.min()}")
    if lab.dtype.itemsize > 4 and lab.size and lab.max() > np.iinfo(np.int32).max:
        raise ValueError(f"{name} has ids above {np.iinfo(np.int32).max}; relabel it consecutively first")
    return lab


# --------------------------------------------------------------------------- targets
def _heat_flows(m: np.ndarray, src: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit flows along the gradient of heat diffused from `src` inside mask `m`.

    `m` is a crop padded with a frame of background.  Returns ``(gy, gx,
    reached)``: float32 arrays of the crop's shape (zero where the gradient is
    zero or outside `m`) and the bool array of object pixels the heat reached.
    """
    h, w = m.shape
    inside_9 = m / 9.0  # 3 x 3 mean, zero outside the object
    heat = np.zeros((h, w), np.float64)
    n_min = _HEAT_ITER_PER_EXTENT * (h + w)
    area = int(m.sum())
    it = reached = 0
    while True:
        heat[src] += 1.0
        # mean over the 3 x 3 neighbourhood (outside = 0), by direct sums so
        # that unreached pixels stay exactly zero (a running-sum filter would
        # leave rounding noise far beyond the heat front)
        rows = heat.copy()
        rows[1:] += heat[:-1]
        rows[:-1] += heat[1:]
        heat = rows.copy()
        heat[:, 1:] += rows[:, :-1]
        heat[:, :-1] += rows[:, 1:]
        heat *= inside_9
        it += 1
        if it >= n_min:
            # the heat front advances one pixel per iteration: stop once every
            # pixel is reached, or when the front stops (a disconnected part)
            now = int(np.count_nonzero(heat))
            if now == area or now == reached:
                break
            reached = now
    gy = np.zeros((h, w), np.float64)
    gx = np.zeros((h, w), np.float64)
    gy[1:-1, :] = heat[2:, :] - heat[:-2, :]
    gx[:, 1:-1] = heat[:, 2:] - heat[:, :-2]
    norm = np.hypot(gy, gx)
    ok = m & (norm > 0)
    gy[ok] /= norm[ok]
    gx[ok] /= norm[ok]
    gy[~ok] = 0.0
    gx[~ok] = 0.0
    return gy.astype(np.float32), gx.astype(np.float32), m & (heat > 0)


def _not_star_shaped(lab: np.ndarray, centre_y: np.ndarray, centre_x: np.ndarray) -> np.ndarray:
    """Ids of objects not star-shaped around their centre (sorted).

    An object passes when every point at whole-pixel distances along the
    segment from each of its boundary pixels (pixels with a 4-neighbour of
    another label, or on the image border) to its centre rounds to a pixel of
    the object.  For a simply connected object this means every pixel sees the
    centre along a straight line inside the object.
    """
    Y, X = lab.shape
    padded = np.pad(lab, 1)
    core = padded[1:-1, 1:-1]
    edge = (core != padded[:-2, 1:-1]) | (core != padded[2:, 1:-1]) | (core != padded[1:-1, :-2]) | (core != padded[1:-1, 2:])
    by, bx = np.nonzero(edge & (core > 0))
    bid = lab[by, bx].astype(np.intp)
    dy = centre_y[bid] - by
    dx = centre_x[bid] - bx
    dist = np.hypot(dy, dx)
    n_samples = np.floor(dist).astype(np.intp)  # points at 1, 2, ... px from the boundary pixel
    keep = n_samples > 0
    by, bx, bid, dy, dx, dist, n_samples = by[keep], bx[keep], bid[keep], dy[keep], dx[keep], dist[keep], n_samples[keep]
    if by.size == 0:
        return np.zeros(0, np.intp)
    which = np.repeat(np.arange(by.size, dtype=np.int32), n_samples)
    first = (np.cumsum(n_samples) - n_samples).astype(np.int32)
    # fraction of the way to the centre; points stay between the pixel and the
    # centre, both inside the image, so no clipping is needed
    s = ((np.arange(which.size, dtype=np.int32) - first[which] + 1) / dist.astype(np.float32)[which]).astype(np.float32)
    sy = np.rint(by.astype(np.float32)[which] + s * dy.astype(np.float32)[which]).astype(np.intp)
    sx = np.rint(bx.astype(np.float32)[which] + s * dx.astype(np.float32)[which]).astype(np.intp)
    outside = lab.ravel()[sy * X + sx] != bid[which]
    return np.unique(bid[which[outside]])


def _pack_crops(slices: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shelf-pack the bounding boxes of `slices` (from ``find_objects``).

    Returns ``(box_y0, off_y, off_x)``, arrays indexed by label (entry 0 and
    missing labels unused): the box's first row in the image, and where the
    box's first pixel goes on the canvas.  Boxes are separated by at least two
    background pixels (each keeps a one-pixel frame of its own).
    """
    n = len(slices)
    box_y0 = np.zeros(n + 1, np.intp)
    off_y = np.zeros(n + 1, np.intp)
    off_x = np.zeros(n + 1, np.intp)
    present = [(i, sl) for i, sl in enumerate(slices, start=1) if sl is not None]
    if not present:
        return box_y0, off_y, off_x
    hh = np.array([sl[0].stop - sl[0].start + 2 for _, sl in present])
    ww = np.array([sl[1].stop - sl[1].start + 2 for _, sl in present])
    width = max(int(ww.max()), int(math.sqrt(float((hh * ww).sum()))) + 1)
    x = y = shelf = 0
    for k in np.argsort(-hh, kind="stable"):
        if x + ww[k] > width:
            y += shelf
            x = shelf = 0
        i, sl = present[k]
        box_y0[i] = sl[0].start
        off_y[i] = y + 1
        off_x[i] = x + 1
        x += ww[k]
        shelf = max(shelf, hh[k])
    return box_y0, off_y, off_x


def labels_to_flows(labels) -> tuple[np.ndarray, np.ndarray]:
    """Flow and distance targets of an instance label image.

    Parameters
    ----------
    labels : (Y, X) array_like of int
        Instance labels, 0 = background.  Ids need not be consecutive.  Not
        modified.

    Returns
    -------
    flows_yx : (2, Y, X) float32 ndarray
        Unit vectors (row, col) pointing towards each object's centre (or
        along the inside of a non-convex object towards it); zero outside
        objects and at a centre pixel.
    distance : (Y, X) float32 ndarray
        Per-object Euclidean distance transform divided by the object's
        maximum, in ``(0, 1]`` inside objects, 0 outside.

    Notes
    -----
    See the module docstring for how centres and non-convex flows are made.
    Cost is proportional to the object pixels: one exact Euclidean distance
    transform of all objects' crops packed on one canvas, and vectorised
    NumPy over the object pixels (a 2048 x 2048 image with 3,000 touching
    discs, 1.5 million object pixels: about 1 s on one busy 2.5 GHz core).
    Non-convex objects cost more (heat diffusion in their own crop).

    See Also
    --------
    flows_to_labels : the inverse.

    Examples
    --------
    >>> lab = np.zeros((5, 5), int); lab[1:4, 1:4] = 1
    >>> flows, distance = labels_to_flows(lab)
    >>> flows[:, 2, 1]                # left of the centre: points right
    array([0., 1.], dtype=float32)
    >>> float(distance[2, 2])
    1.0
    """
    lab = _validate_labels(labels)
    Y, X = lab.shape
    flows = np.zeros((2, Y, X), np.float32)
    distance = np.zeros((Y, X), np.float32)
    if lab.size == 0 or lab.max() == 0:
        return flows, distance
    slices = ndi.find_objects(lab)
    n = len(slices)
    flat = np.flatnonzero(lab)  # object pixels, raster order
    ys, xs = np.divmod(flat, X)
    ids = lab.ravel()[flat].astype(np.intp)
    area = np.bincount(ids, minlength=n + 1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cy = np.bincount(ids, weights=ys, minlength=n + 1) / area
        cx = np.bincount(ids, weights=xs, minlength=n + 1) / area

    # Per-object distance transforms in one call: every object's crop, with a
    # one-pixel frame of background, is packed side by side on a canvas.  The
    # frame makes the nearest non-object pixel of every object lie in its own
    # crop, so one EDT of the canvas is exact per object.
    box_y0, off_y, off_x = _pack_crops(slices)
    box_x0 = np.zeros(n + 1, np.intp)
    box_x0[1:] = [sl[1].start if sl is not None else 0 for sl in slices]
    py_c = ys - box_y0[ids] + off_y[ids]
    px_c = xs - box_x0[ids] + off_x[ids]
    canvas_width = int(px_c.max()) + 2
    canvas_flat = py_c * canvas_width + px_c
    canvas = np.zeros((int(py_c.max()) + 2, canvas_width), bool)
    canvas.ravel()[canvas_flat] = True
    edt = ndi.distance_transform_edt(canvas).ravel()[canvas_flat]
    edt_max = np.zeros(n + 1)
    np.maximum.at(edt_max, ids, edt)
    distance.ravel()[flat] = edt / edt_max[ids]

    # centre: the pixel maximising (EDT - distance to the centroid), first in
    # raster order on ties; the centroid itself when it is within 1 px of it
    score = edt - np.hypot(ys - cy[ids], xs - cx[ids])
    best = np.full(n + 1, -np.inf)
    np.maximum.at(best, ids, score)
    at_best = np.flatnonzero(score == best[ids])
    obj, first = np.unique(ids[at_best], return_index=True)
    src = np.zeros((n + 1, 2), np.intp)  # deepest-near-centroid pixel of each object
    src[obj, 0] = ys[at_best[first]]
    src[obj, 1] = xs[at_best[first]]
    near = np.hypot(src[:, 0] - cy, src[:, 1] - cx) <= 1.0
    centre_y = np.where(near, cy, src[:, 0])
    centre_x = np.where(near, cx, src[:, 1])

    # straight flows towards the centre, all objects at once
    dy = centre_y[ids] - ys
    dx = centre_x[ids] - xs
    norm = np.hypot(dy, dx)
    moving = norm > 1e-9
    uy = np.zeros_like(dy)
    ux = np.zeros_like(dx)
    uy[moving] = dy[moving] / norm[moving]
    ux[moving] = dx[moving] / norm[moving]
    flows[0].ravel()[flat] = uy
    flows[1].ravel()[flat] = ux

    # Star-shape test: the straight segment from every boundary pixel to the
    # centre, sampled every pixel, must stay in the object; objects that fail
    # (non-convex, or with holes) get heat-diffusion flows instead.
    for i in _not_star_shaped(lab, centre_y, centre_x):
        sl = slices[i - 1]
        y0, x0 = sl[0].start, sl[1].start
        m = np.pad(lab[sl] == i, 1)
        gy, gx, reached = _heat_flows(m, (src[i, 0] - y0 + 1, src[i, 1] - x0 + 1))
        core = (slice(1, -1), slice(1, -1))
        use = reached[core]  # unreached pixels (disconnected parts) keep the straight flow
        flows[0][sl][use] = gy[core][use]
        flows[1][sl][use] = gx[core][use]
    return flows, distance


# --------------------------------------------------------------------------- inverse
def flow_error(labels, flows_yx) -> np.ndarray:
    """Per-object disagreement between a flow field and the flows of its labels.

    Parameters
    ----------
    labels : (Y, X) array_like of int
        Instance labels ``1..K`` (0 = background), e.g. from
        :func:`flows_to_labels`.
    flows_yx : (2, Y, X) array_like of float
        The flows the labels came from (e.g. the network's prediction).

    Returns
    -------
    (K,) float32 ndarray
        Entry ``k - 1`` is the mean over object ``k``'s pixels of the squared
        vector difference ``|flows - labels_to_flows(labels)|^2`` (pixels^2
        per step^2; 0 for perfect unit flows, 4 for reversed ones); NaN for
        ids without pixels.
    """
    lab = _validate_labels(labels)
    flows, _ = _validate_flows(flows_yx, mask=lab != 0, mask_name="labels")
    k = int(lab.max()) if lab.size else 0
    if k == 0:
        return np.zeros(0, np.float32)
    target, _ = labels_to_flows(lab)
    sq = ((flows - target) ** 2).sum(axis=0, dtype=np.float64)
    ids = lab.ravel().astype(np.intp)
    total = np.bincount(ids, weights=sq.ravel(), minlength=k + 1)[1:]
    count = np.bincount(ids, minlength=k + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (total / count).astype(np.float32)


def flows_to_labels(
    flows_yx,
    foreground,
    *,
    n_iter: int | None = None,
    step_px: float = 1.0,
    backend: str = "auto",
    min_area_px: int = 8,
    max_area_px: float | None = None,
    max_diameter_px: float | None = None,
    flow_error_max: float | None = None,
    min_seed_count: int | None = None,
    seed_radius_px: float | None = None,
) -> np.ndarray:
    """Instance labels from a flow field and a foreground mask.

    Flows outside the foreground are set to zero, every foreground pixel is
    moved along the flows (:func:`~micrometry.segment.tracking.follow_flows`),
    the endpoints are clustered
    (:func:`~micrometry.segment.tracking.labels_from_endpoints`), objects
    outside ``[min_area_px, max_area_px]`` are removed and, when
    `flow_error_max` is given, so are objects whose flows disagree with the
    flows recomputed from their mask (:func:`flow_error`).

    Parameters
    ----------
    flows_yx : (2, Y, X) array_like of float
        Flow field, row component first (unit vectors towards object centres).
        Not modified.
    foreground : (Y, X) array_like of bool
        Pixels to label (e.g. foreground probability > 0.5).
    n_iter : int, optional
        Euler steps.  Default :func:`~micrometry.segment.tracking.default_n_iter`:
        ``ceil(max_diameter_px / step_px)``, with the diameter estimated from
        the foreground when not given.
    step_px : float
        Euler step length, in pixels for unit flows.
    backend : {"auto", "numpy", "numba", "cupy"}
        Tracking back-end (identical labels on numpy and numba).
    min_area_px : int
        Smallest object kept, in pixels.  Also sets the seed threshold and
        radius defaults.
    max_area_px : float, optional
        Largest object kept, in pixels (None: no limit).
    max_diameter_px : float, optional
        Largest expected object diameter, in pixels, for the default `n_iter`.
    flow_error_max : float, optional
        Drop objects whose :func:`flow_error` exceeds this (None or 0: no QC).
    min_seed_count : int, optional
        Default :func:`~micrometry.segment.tracking.default_min_seed_count`
        of `min_area_px`.
    seed_radius_px : float, optional
        Default :func:`~micrometry.segment.tracking.default_seed_radius_px`
        of `min_area_px`.

    Returns
    -------
    (Y, X) uint32 ndarray
        Labels ``1..K`` (0 = background).

    See Also
    --------
    labels_to_flows : the targets this inverts.

    Examples
    --------
    >>> from skimage.draw import disk
    >>> lab = np.zeros((40, 40), int)
    >>> lab[disk((10, 10), 6)] = 5; lab[disk((28, 26), 8)] = 9
    >>> flows, _ = labels_to_flows(lab)
    >>> out = flows_to_labels(flows, lab > 0, backend="numpy")
    >>> int(out.max()), bool(((out > 0) == (lab > 0)).all())
    (2, True)
    """
    from micrometry.segment.classical import remove_small_and_large

    flows, fg = _validate_flows(flows_yx, foreground, mask_name="foreground")
    step = _check_step(step_px)
    if n_iter is None:
        n_iter = default_n_iter(fg, step_px=step, max_diameter_px=max_diameter_px)
    if min_seed_count is None:
        min_seed_count = default_min_seed_count(min_area_px)
    if seed_radius_px is None:
        seed_radius_px = default_seed_radius_px(min_area_px)
    masked = np.where(fg, flows, np.float32(0.0))
    ends = follow_flows(masked, fg, n_iter=n_iter, step_px=step, backend=backend)
    labels = labels_from_endpoints(ends, fg, min_seed_count=min_seed_count, seed_radius_px=seed_radius_px)
    labels = remove_small_and_large(labels, min_area_px=min_area_px, max_area_px=max_area_px)
    return remove_flow_errors(labels, flows, flow_error_max)


def check_flow_error_max(value) -> float | None:
    """A flow-error QC limit as a float; None when the QC is off (None or 0).

    Raises
    ------
    ValueError
        Anything but None or a finite non-negative number (booleans and
        strings included).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"flow_error_max must be a non-negative number or None, got {value!r}")
    limit = float(value)
    if not math.isfinite(limit) or limit < 0:
        raise ValueError(f"flow_error_max must be a non-negative number or None, got {value!r}")
    return limit or None


def remove_flow_errors(labels, flows_yx, flow_error_max: float | None) -> np.ndarray:
    """Drop the objects whose flows disagree with the flows of their own mask.

    The flow-error quality control of Cellpose (its ``flow_threshold``):
    objects whose :func:`flow_error` exceeds `flow_error_max` are set to 0,
    the others relabelled ``1..K`` in their original order.

    Parameters
    ----------
    labels : (Y, X) array_like of int
        Instance labels (0 = background).  Not modified.
    flows_yx : (2, Y, X) array_like of float
        The flows the labels came from.
    flow_error_max : float or None
        Largest accepted mean squared flow difference (unit vectors: 0 =
        perfect, 4 = reversed; Cellpose's default is 0.4).  None or 0: no QC
        (`labels` returned as they are).

    Returns
    -------
    (Y, X) uint32 ndarray
        Labels ``1..K'`` of the objects kept.
    """
    from micrometry.segment.classical import remove_small_and_large

    limit = check_flow_error_max(flow_error_max)
    lab = _validate_labels(labels)
    if limit is None or not lab.any():
        return lab.astype(LABEL_DTYPE, copy=False)
    err = flow_error(lab, flows_yx)
    drop = np.concatenate([[False], err > limit])
    out = lab.astype(LABEL_DTYPE, copy=True)
    out[drop[lab]] = 0
    return remove_small_and_large(out, min_area_px=1)
