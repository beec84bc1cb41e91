"""Measure a scale bar's length in pixels, end to end, sub-pixel.

Given a grey image and an approximate box around a scale bar (as a detector
gives it: some margin, maybe part of the label), :func:`measure_bar`

1. works in the bar's frame: a vertical bar is transposed, so the bar runs
   along the columns;
2. thresholds the box at Otsu's level and takes the connected components of
   both polarities (bright on dark, dark on bright) as candidates; a
   component reaching both ends of the box is background (a data bar, the
   inside of a box) and is skipped, one touching the box elsewhere counts
   less.  Equally spaced, equally tall marks on the same rows are grouped
   into one candidate (a dotted ruler).  The bar is the longest candidate
   that is at least 1.5 times longer than thick;
3. re-thresholds halfway between the bar level (median of the bar's core)
   and the local background (median of a ring 3-4 px around it), which
   also makes the result independent of the image's dtype and range;
4. builds the coverage profile along the axis: per column, the sum over the
   bar's rows (± 1 row) of ``clip((I - background) / (bar - background), 0, 1)``,
   counted only near the bar so that speckles and label glyphs elsewhere do
   not add to it;
5. takes the run of columns whose coverage is at least half the plateau
   (the median over the bar) as the whole-pixel extent (the convention of
   ``tests/data/scalebar_truth_real.csv``: outer edge to outer edge, end
   ticks included), then moves each end by the partial coverage of the
   columns at the edge: with ``f = coverage / local maximum`` (the local
   maximum is the end tick when there is one), the left edge is
   ``a + 2 - sum(f[a-3 : a+2])`` for a run starting at column ``a``, and
   likewise on the right.  On an anti-aliased bar this recovers a fractional
   length exactly, whatever the sub-pixel position of the ends;
6. at an end tick narrower than the image's blur (a resampled image), where
   half coverage lies outside the ink, places the edge from the tick's ink
   instead: its centre minus half its width, the width being the ink's amount
   across the tick's rows divided by the contrast of the image's extreme grey
   level (``_tick_edge``; method ``'ticks'``).

Two checks come around these steps.  An end tick that one missing pixel parts
from its line is joined to it when it mirrors the tick at the other end
(``_join_parted_ticks``).  A box whose bar runs into its end is grown along
the bar (8, 16, 32 px); one that leaves less than ``_END_ROOM`` px of ground
beyond an end, where that end's background and a tick's flanks are read, is
grown by the missing pixels, and the grown box's measurement is kept only if
it is the same bar with its ends within half a pixel (``_same_object``,
``_covers``).

All coordinates are in image pixels, with the origin at the top left corner
of the top left pixel: a pixel ``[r, c]`` covers ``[c, c + 1) x [r, r + 1)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

__all__ = ["BarMeasurement", "BarNotFoundError", "measure_bar"]

_EIGHT = np.ones((3, 3), dtype=bool)
_MIN_LENGTH_PX = 4
_MIN_ELONGATION = 1.5
_OUT_WINDOW = 3  # columns outside the run that may hold partial coverage
_SHARP_TOL = 0.1  # an end column this close to empty/full (relative coverage) is it
_IN_WINDOW = 2  # columns inside the run that may be partial
_OUTLINE_PX = 4  # a frame this close to a bar's ends is its outline
_GROW_ATTEMPTS = 3  # times a box is grown along a bar that runs into its end
_END_ROOM = _OUT_WINDOW + 5  # px of ground wanted beyond a bar's end (its background window's far side)
_PATCH_OVERLAP = 0.5  # a patch a bar crosses: the columns where it lies above and below overlap this much
_TICK_CLEAR = 0.05  # a row where the line's ink is below this share of the ink contrast is clear of it
_TICK_FLANK = 4  # columns each side of a tick within which its blurred ink lies
_TICK_SHARP_SPREAD = 1.2  # columns over 0.1 of a tick's peak beyond its width at peak level: more is blurred
_TICK_MAX_LINE_PX = 3.5  # a thicker line (its ink's amount across) has ends of its own: no tick moments
_TICK_MAX_NOISE = 0.06  # background noise (robust sigma) above this share of the ink contrast: no moments


class BarNotFoundError(ValueError):
    """No elongated bar-like component was found inside the box."""


@dataclass(frozen=True)
class BarMeasurement:
    """The measured scale bar.

    Attributes
    ----------
    length_px : float
        Length along the bar's axis, outer edge to outer edge (end ticks
        included), in pixels, sub-pixel.
    orientation : {'h', 'v'}
        ``'h'``: the bar runs along x (columns); ``'v'``: along y (rows).
    bbox : tuple of int
        ``(x0, y0, x1, y1)`` in image pixels, ``x1``/``y1`` exclusive.  Along
        the axis it is the whole-pixel half-coverage extent, so
        ``x1 - x0`` (``y1 - y0`` for a vertical bar) is `length_px` rounded
        to whole pixels (within one pixel); across it spans the bar's rows.
    polarity : {'bright', 'dark'}
        Whether the bar is brighter or darker than its local background.
    thickness_px : float
        Mean coverage across the bar (its thickness for a solid bar).
    bar_level, background_level : float
        The grey levels (in the image's units) the threshold was set halfway
        between.
    method : {'profile', 'ticks', 'ruler'}
        ``'ruler'`` when the bar was assembled from separate tick marks;
        ``'ticks'`` when an end was placed at a blurred end tick's ink
        (centre minus half its width, see ``_tick_edge``) instead of at
        half coverage.
    notes : tuple of str
        Anything that lowers trust in the number, e.g. ``'touches box edge'``
        or ``'low contrast'``.
    """

    length_px: float
    orientation: str
    bbox: tuple[int, int, int, int]
    polarity: str
    thickness_px: float
    bar_level: float
    background_level: float
    method: str
    notes: tuple[str, ...] = field(default=())


@dataclass
class _Candidate:
    polarity: str
    mask: np.ndarray  # bool, crop shape
    length: int
    thickness: int
    touches_ends: int  # 0, 1 or 2 ends of the axis touched
    touches_side: bool
    bounds: tuple[int, int, int, int]  # r0, r1, c0, c1 in the crop (exclusive ends)
    ruler: bool = False

    @property
    def score(self) -> float:
        # running into an end of the box: background, or a bar cut by the box;
        # touching a side: often a label glyph merged with the bar
        return self.length * (0.5 if self.touches_ends else 1.0) * (0.8 if self.touches_side else 1.0)

    @property
    def elongation(self) -> float:
        return self.length / max(self.thickness, 1)


def _validate(image, box) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"image must be a 2-D grey image (M, N), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
            or arr.dtype == bool):
        raise TypeError(f"image must have a real dtype, got {arr.dtype}")
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f"box must be (x0, y0, x1, y1), got {box!r}") from None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise ValueError(f"box must be finite, got {box!r}")
    h, w = arr.shape
    xa, ya = max(int(math.floor(x0)), 0), max(int(math.floor(y0)), 0)
    xb, yb = min(int(math.ceil(x1)), w), min(int(math.ceil(y1)), h)
    if xb - xa < 2 or yb - ya < 2:
        raise ValueError(f"box {box!r} does not overlap the {w}x{h} image by 2x2 pixels or more")
    return arr, (xa, ya, xb, yb)


def _ink_range(arr: np.ndarray) -> tuple[float, float]:
    """Grey levels of black and white ink: the ends of the dtype's range for
    8-bit and boolean images, else the image's own extremes."""
    if arr.dtype == np.uint8:
        return 0.0, 255.0
    if arr.dtype == bool:
        return 0.0, 1.0
    lo, hi = float(arr.min()), float(arr.max())
    if math.isfinite(lo) and math.isfinite(hi):
        return lo, hi
    finite = arr[np.isfinite(arr)]  # NaN or Inf in a float image: only then a masked copy
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)


def _otsu(values: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(values))


def _thresholds(crop: np.ndarray) -> list[float]:
    """Otsu's threshold and, when the box holds three grey populations (bar,
    background and a brighter or darker patch of specimen or data bar), the
    two thresholds of a three-class Otsu."""
    from skimage.filters import threshold_multiotsu

    ts = [_otsu(crop)]
    if np.unique(crop[:: max(crop.shape[0] // 32, 1), :: max(crop.shape[1] // 64, 1)]).size > 3:
        try:
            ts.extend(float(t) for t in threshold_multiotsu(crop, classes=3, nbins=128))
        except (ValueError, IndexError):  # too few grey levels
            pass
    return ts


def _components(crop: np.ndarray) -> list[_Candidate]:
    """Candidates of both polarities at each threshold (bar along columns)."""
    h, w = crop.shape
    cands: list[_Candidate] = []
    for t in _thresholds(crop):
        for polarity, mask in (("bright", crop > t), ("dark", crop <= t)):
            cands.extend(_components_of(mask, polarity, h, w))
    return cands


def _components_of(mask: np.ndarray, polarity: str, h: int, w: int) -> list[_Candidate]:
    cands: list[_Candidate] = []
    lab, n = ndi.label(mask, structure=_EIGHT)
    ticks: list[tuple[slice, slice, int]] = []
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        rows, cols = sl
        length, thick = cols.stop - cols.start, rows.stop - rows.start
        ends = int(cols.start == 0) + int(cols.stop == w)
        side = rows.start == 0 or rows.stop == h
        if not side and ends == 0 and thick >= 3 and thick >= 1.5 * length:
            ticks.append((rows, cols, i))
        if ends == 2 or length < _MIN_LENGTH_PX or length < _MIN_ELONGATION * thick:
            continue
        bounds = (rows.start, rows.stop, cols.start, cols.stop)
        cands.append(_Candidate(polarity, lab == i, length, thick, ends, side, bounds))
    ruler = _group_ruler(ticks)
    if ruler:
        mask_r = np.isin(lab, [i for _, _, i in ruler])
        c0, c1 = ruler[0][1].start, ruler[-1][1].stop
        thick = max(r.stop for r, _, _ in ruler) - min(r.start for r, _, _ in ruler)
        r0 = min(r.start for r, _, _ in ruler)
        bounds = (r0, r0 + thick, c0, c1)
        cands.append(_Candidate(polarity, mask_r, c1 - c0, thick, 0, False, bounds, ruler=True))
    return cands


def _group_ruler(ticks: list[tuple[slice, slice, int]]) -> list[tuple[slice, slice, int]]:
    """The largest set (>= 4) of equally tall, equally spaced marks on the same rows."""
    best: list[tuple[slice, slice, int]] = []
    if len(ticks) < 4:
        return best
    starts = np.array([t[0].start for t in ticks])
    stops = np.array([t[0].stop for t in ticks])
    seen: set[tuple[int, int]] = set()
    for seed in ticks:
        rows = seed[0]
        if (rows.start, rows.stop) in seen:  # the same group again
            continue
        seen.add((rows.start, rows.stop))
        near = np.flatnonzero((np.abs(starts - rows.start) <= 2) & (np.abs(stops - rows.stop) <= 2))
        if near.size < 4 or near.size <= len(best):
            continue
        group = [ticks[i] for i in near]
        group.sort(key=lambda t: t[1].start)
        centres = np.array([(t[1].start + t[1].stop) / 2 for t in group])
        gaps = np.diff(centres)
        if gaps.min() <= 0 or gaps.std() > 0.25 * gaps.mean():
            continue
        best = group
    return best


def _contrast_weight(crop: np.ndarray, cand: _Candidate, grey_range: float) -> float:
    """1 for a candidate that stands out from its surroundings by at least a quarter
    of the crop's grey range (`grey_range`: its 1st-99th percentile, > 0), less in
    proportion below that.

    A threshold near the background's median (three-class Otsu in a noisy crop)
    makes long components of noise, as long as the bar beside them; their
    contrast is a fraction of the bar's.
    """
    bar, bg = _levels(crop, cand.mask, cand.polarity)
    sign = 1.0 if cand.polarity == "bright" else -1.0
    contrast = sign * (bar - bg)
    # and against the ground of the crop away from it: a stretch of ground boxed in by a
    # bracket (below a ticked line, between its ticks, cut by the box's side) has the
    # bracket for its ring, and stands out from that, but is the ground (EMPS-synthetic
    # 700,000,093: measured 152 px of a 159-px bracket at confidence 0.59)
    away = ~ndi.binary_dilation(cand.mask, structure=_EIGHT, iterations=2)
    if away.sum() >= 10:
        contrast = min(contrast, sign * (bar - float(np.median(crop[away]))))
    return float(np.clip(contrast / (0.25 * grey_range), 0.0, 1.0))


def _pick(cands: list[_Candidate], crop: np.ndarray | None = None) -> _Candidate | None:
    """The best-scoring candidate; a frame or box around a bar gives way to the bar.

    With the `crop` the candidates come from, those scoring at least half the
    best are weighed by their contrast (:func:`_contrast_weight`): a bar beats
    a band of background noise as long as it.  A candidate of the other
    polarity lying inside the chosen one's bounds (in its hole) and at least
    half as long is the bar inside a background box, unless it reaches to
    within ``_OUTLINE_PX`` of both ends: then the chosen candidate is the
    outline of a hollow bar, whose outer edge is the convention.
    """
    if not cands:
        return None
    best = max(cands, key=lambda c: (c.score, c.elongation))
    if crop is not None:
        top = [c for c in cands if c.score >= 0.5 * best.score]
        lo, hi = np.percentile(crop, [1, 99]) if len(top) > 1 else (0.0, 0.0)
        if hi > lo:
            weights = {id(c): _contrast_weight(crop, c, float(hi - lo)) for c in top}
            best = max(top, key=lambda c: (c.score * weights[id(c)], c.elongation))
    for _ in range(3):
        r0, r1, c0, c1 = best.bounds
        inner = [
            c for c in cands
            if c.polarity != best.polarity and not c.touches_ends and c.length >= 0.5 * best.length
            and c.bounds[0] > r0 and c.bounds[1] < r1 and c.bounds[2] > c0 and c.bounds[3] < c1
        ]
        if not inner:
            break
        bar = max(inner, key=lambda c: (c.score, c.elongation))
        if bar.bounds[2] - c0 <= _OUTLINE_PX and c1 - bar.bounds[3] <= _OUTLINE_PX:
            break
        best = bar
    return best


def _levels(crop: np.ndarray, mask: np.ndarray, polarity: str) -> tuple[float, float]:
    """(bar level, local background level) around a candidate mask."""
    core = ndi.binary_erosion(mask, structure=_EIGHT)
    if core.sum() >= 8:
        bar = float(np.median(crop[core]))
    else:
        bar = float(np.percentile(crop[mask], 75 if polarity == "bright" else 25))
    ring = ndi.binary_dilation(mask, structure=_EIGHT, iterations=4) & ~ndi.binary_dilation(
        mask, structure=_EIGHT, iterations=2
    )
    if ring.sum() < 5:
        ring = ~ndi.binary_dilation(mask, structure=_EIGHT)
    if ring.sum() < 1:
        ring = ~mask
    if not ring.any():
        return bar, float(crop.min() if polarity == "bright" else crop.max())
    values = crop[ring]
    bg = float(np.median(values))
    # two populations around the bar (it crosses a brighter and a darker patch):
    # the one nearer the bar level is the background the bar must stand out from
    sign = 1.0 if polarity == "bright" else -1.0
    if values.size >= 20 and values.max() > values.min():
        t = _otsu(values)
        lo_pop, hi_pop = values[values <= t], values[values > t]
        if min(lo_pop.size, hi_pop.size) >= 0.2 * values.size:
            near_pop = float(np.median(hi_pop if sign > 0 else lo_pop))
            far_pop = float(np.median(lo_pop if sign > 0 else hi_pop))
            full = sign * (bar - bg)
            # a patch the bar crosses lies on both of its sides, over the same stretch of it
            # (EMPS 0a55e7c93f: its last 10 px of 56 on a light patch); one on a single side
            # (the ground outside the box the bar is drawn in, beyond the box's edge, and a
            # glyph's top on the other) is not the bar's background (EMPS-synthetic
            # 670,000,014: a blurred white bar 2 px inside a black box's edge was measured
            # against the light ground above it, 2.7 px short)
            ring_rows, ring_cols = np.divmod(np.flatnonzero(ring), mask.shape[1])
            bar_rows, bar_cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            along = (ring_cols >= bar_cols[0]) & (ring_cols <= bar_cols[-1])
            near_along = along & (sign * (values - t) > 0)
            above, below = ring_rows < bar_rows[0], ring_rows > bar_rows[-1]
            both_sides = True
            seen = [len(set(ring_cols[along & side])) >= 0.5 * bar_cols.size for side in (above, below)]
            if all(seen):  # (a side the crop cuts off is not judged)
                cols_above, cols_below = set(ring_cols[near_along & above]), set(ring_cols[near_along & below])
                both_sides = len(cols_above & cols_below) >= _PATCH_OVERLAP * max(len(cols_above | cols_below), 1)
            if (full > 0 and abs(near_pop - far_pop) > 0.25 * full and sign * (bar - near_pop) >= 0.3 * full
                    and both_sides):
                bg = near_pop
            elif full <= 0 < sign * (bar - far_pop):
                # most of the ring is as bright as the bar (a thin bar between the outline of
                # the box it is drawn in and its label's glyphs): the rest is the background
                bg = far_pop
    return bar, bg


def _refine_end(
    band: np.ndarray, near: np.ndarray, a: int, b: int, *, bar: float, bg: float, sign: float, ruler: bool
) -> tuple[int, float]:
    """Sub-pixel position of the left end of the run ``[a, b)`` of a bar.

    `band` holds the bar's rows; `near` masks the pixels near the bar.  The
    background is re-estimated just beyond the end (columns ``a-8 .. a-3``)
    when there is room, and the first column of the bar is re-found at half
    coverage (it may move by a few columns).  With ``f`` the column coverage
    divided by its local maximum, the edge is ``a - f[a-1]`` for a sharp end
    whose first column is full, ``a + 1 - f[a]`` for one whose column before
    is empty (within 0.1), else where ``f`` crosses 0.5, interpolated between
    columns ``a-1`` and ``a`` (a blurred end).  Columns further out are left
    out: clipped at zero, the background's noise there only adds length (a
    sharp bar on noise of a quarter of its contrast came out ~0.6 px long).
    ``a + 2 - sum(f[a-3 : a+2])`` is the fallback at the crop's edge.
    Returns (first whole column, edge position).
    """
    w = band.shape[1]
    contrast = sign * (bar - bg)
    profile = None
    ref = 1.0
    for _ in range(4):
        lo, hi = max(a - _OUT_WINDOW - 5, 0), a - _OUT_WINDOW + 1
        bg_end = bg
        if hi - lo >= 2:
            local = float(np.median(band[:, lo:hi]))
            if sign * (bar - local) >= 0.2 * contrast:
                bg_end = local
        cover = np.clip(sign * (band - bg_end) / (sign * (bar - bg_end)), 0.0, 1.0) * near
        profile = cover.sum(axis=0)
        plateau = float(np.median(profile[a:b])) if not ruler else 0.0
        ref = max(float(profile[a: min(a + 4, b)].max()), plateau)
        if ref <= 0:
            break
        new_a = a
        while new_a > max(a - _OUT_WINDOW, 0) and profile[new_a - 1] >= 0.5 * ref:
            new_a -= 1
        if new_a == a:
            while new_a < b - 1 and profile[new_a] < 0.5 * ref:
                new_a += 1
        if new_a == a:
            break
        a = new_a
    if ref > 0 and a > 0:
        f1, f2 = float(profile[a - 1] / ref), min(float(profile[a] / ref), 1.0)
        if f1 < 0.5 <= f2:
            if f2 >= 1.0 - _SHARP_TOL:  # sharp, the partial column outside the run
                return a, a - max(f1, 0.0)
            if f1 <= _SHARP_TOL:  # sharp, the partial column is the run's first
                return a, a + 1.0 - f2
            return a, (a - 0.5) + (0.5 - f1) / (f2 - f1)  # blurred: half-coverage crossing
    lo_c, hi_c = max(a - _OUT_WINDOW, 0), min(a + _IN_WINDOW, w)
    frac = float(np.clip(profile[lo_c:hi_c] / ref, 0.0, 1.0).sum()) if ref > 0 else float(hi_c - a)
    return a, (a + _IN_WINDOW) - frac


def _tick_edge(
    crop: np.ndarray, sel: np.ndarray, clear_rows: np.ndarray, a: int, *, sign: float, ink: float
) -> float | None:
    """Outer edge of a blurred end tick at the left end of a bar run starting at column `a`.

    A tick is narrower than the blur of a resampled image: the half-maximum
    crossing of its profile lies outside its ink (a 1-px tick blurred over
    five columns came out 1.3 px wide on each side).  Blur moves ink but
    keeps its amount and its centre, so in the tick's rows clear of the line
    (`clear_rows`: (H,) bool, rows where the line's blurred ink is under
    `_TICK_CLEAR` of the ink contrast), the ink of each row,
    ``sign * (I - background)`` summed over the tick's columns, is the tick's
    width times the ink contrast ``sign * (ink - background)``, and its
    centroid is the tick's centre: the edge is ``centre - width / 2``.
    `ink` is the extreme grey level of the image's range (white ink is the
    range's top), which blur does not reach on a thin mark.

    Returns ``None`` (the coverage edge is kept) when there is no tick (no
    ink outside the line's rows at this end), when the tick is sharp (its
    peak within 0.1 of the ink contrast, or its ink in whole columns with at
    most one partial column each side: a tick drawn in grey, whose width the
    range's end would understate), when the background's noise exceeds
    `_TICK_MAX_NOISE` of the contrast (the ink's amount is lost in it) or
    when the rows disagree by more than a pixel.
    """
    h, w = crop.shape
    lo_c, hi_c = max(a - _OUT_WINDOW, 0), min(a + _OUT_WINDOW + 1, w)
    if hi_c - lo_c < 3:
        return None
    tick_rows = np.flatnonzero(sel[:, lo_c:hi_c].any(axis=1) & clear_rows)
    if tick_rows.size < 2:
        return None  # no tick, or only its blurred tip clear of the line (its ink there is less)
    # the tick's columns in those rows, and a flank on each side for the background
    c0 = max(a - _OUT_WINDOW - 2, 0)
    cols = c0 + np.flatnonzero(sel[tick_rows, c0: min(a + 2 * _OUT_WINDOW + 2, w)].any(axis=0))
    t0, t1 = int(cols[0]), int(cols[-1]) + 1
    w0, w1 = max(t0 - _TICK_FLANK, 0), min(t1 + _TICK_FLANK, w)
    if t0 - w0 < 2 or w1 - t1 < 2:
        return None
    block = crop[tick_rows][:, w0:w1]
    # the background: the two columns at each side of the window, beyond the tick's blur,
    # interpolated across it (a gradient across the tick would shift its centre)
    left_bg, right_bg = block[:, :2].mean(axis=1), block[:, -2:].mean(axis=1)
    t = (np.arange(w1 - w0) - 0.5) / max(w1 - w0 - 2, 1)  # 0 at the left flank's centre, 1 at the right's
    bg = left_bg[:, None] + (right_bg - left_bg)[:, None] * t[None, :]
    d = sign * (block - bg)  # ink above the background, columns w0 .. w1
    contrast = sign * (ink - bg.mean(axis=1))
    if not (contrast > 0).all():
        return None
    flank = np.concatenate([d[:, :2], d[:, -2:]], axis=1)
    noise = 1.4826 * float(np.median(np.abs(flank)))
    if noise > _TICK_MAX_NOISE * float(np.median(contrast)):
        return None  # the ink's amount is lost in the noise (a sharp tick on a noisy micrograph)
    mass = d.sum(axis=1)
    if mass.max() <= 0:
        return None
    keep = mass >= 0.8 * mass.max()  # rows across the tick's middle, not its blurred tips
    d, mass, contrast = d[keep], mass[keep], contrast[keep]
    peak = d.max(axis=1)
    spread = (d >= 0.1 * peak[:, None]).sum(axis=1) - mass / peak
    if float(np.median(peak / contrast)) >= 0.9 or float(np.median(spread)) <= _TICK_SHARP_SPREAD:
        # a sharp tick: its ink at the ink's level, or in whole columns with at most one
        # partial column each side (drawn in grey): the coverage edge holds
        return None
    x = np.arange(w0, w1) + 0.5
    centres = (d * x).sum(axis=1) / mass
    widths = mass / contrast
    edges = centres - widths / 2
    if float(np.ptp(edges)) > 1.0:
        return None
    return float(np.median(edges))


def _blurred_tick_ends(
    crop: np.ndarray, sel: np.ndarray, a: int, b: int, left: float, right: float, *,
    bg: float, sign: float, ink: Callable[[], tuple[float, float]],
) -> tuple[float, float, int]:
    """The bar's edges ``(left, right)`` with each blurred end tick placed from its ink
    (:func:`_tick_edge`), and how many ends were.

    Only on lines up to `_TICK_MAX_LINE_PX` thick (the line's ink across, over the ink
    contrast), the case this was built and checked for (resampled synthetic ticks): on a
    real bracket with a 5-px line (EMPS 4cd9e65aae) the ticks' ink gives 18.5 px where the
    hand-made table says 19 (the line's own ends at half contrast say 18.4, so the table's
    whole pixels may be what is off); thicker lines keep the coverage edges until a finer
    truth decides.  A tick edge more than 2 px inside or 0.3 px outside the coverage edge
    is not taken.
    """
    w = crop.shape[1]
    mid = slice(a + _OUT_WINDOW + 3, b - _OUT_WINDOW - 3)
    level = ink()[1] if sign > 0 else ink()[0]
    ink_contrast = sign * (level - bg)
    if mid.stop - mid.start < 3 or ink_contrast <= 0:
        return left, right, 0
    line_ink = np.median(sign * (crop[:, mid] - bg), axis=1)  # the line's blurred profile across
    if float(np.clip(line_ink, 0, None).sum()) > _TICK_MAX_LINE_PX * ink_contrast:
        return left, right, 0
    clear = line_ink < _TICK_CLEAR * ink_contrast
    n = 0
    left_t = _tick_edge(crop, sel, clear, a, sign=sign, ink=level)
    if left_t is not None and left - 0.3 <= left_t <= left + 2.0:
        left, n = left_t, n + 1
    right_t = _tick_edge(crop[:, ::-1], sel[:, ::-1], clear, w - b, sign=sign, ink=level)
    if right_t is not None and right - 2.0 <= w - right_t <= right + 0.3:
        right, n = w - right_t, n + 1
    return left, right, n


def _end_tick(sel: np.ndarray, line_rows: tuple[int, int]) -> tuple[int, int, int] | None:
    """(top row, bottom row + 1, width) of the tick at the right end of `sel`'s ink, or ``None``.

    A tick is ink in the last `_OUT_WINDOW` + 1 columns reaching both above and below the
    line's rows ``[line_rows[0], line_rows[1])``.
    """
    cols = np.flatnonzero(sel.any(axis=0))
    end = sel[:, max(int(cols[-1]) - _OUT_WINDOW, 0): int(cols[-1]) + 1]
    rows = np.flatnonzero(end.any(axis=1))
    if rows.size == 0 or rows[0] >= line_rows[0] or rows[-1] < line_rows[1]:
        return None
    outside = end.copy()
    outside[line_rows[0]: line_rows[1]] = False
    return int(rows[0]), int(rows[-1]) + 1, int(outside.any(axis=0).sum())


def _join_parted_ticks(ink: np.ndarray, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Add to a bar's pixels an end tick that a gap of one column parts from its line.

    Noise or resampling can break a 1-px line right before its tick; the tick is then a
    component of its own, and the bar was measured from the line's end, a tick's width
    and the gap short (EMPS-synthetic 640000086: 2 px of 136).  A component beyond that
    gap is taken for the tick only when it mirrors the tick at the bar's other end: the
    same rows within a pixel, reaching above and below the line, and at most a pixel
    wider; glyphs of a label beside the bar do not match a tick that way.

    Parameters
    ----------
    ink : (H, W) bool
        Pixels at the bar's level (coverage >= 0.5) in the crop, the bar along columns.
    sel : (H, W) bool
        The bar's pixels found so far.

    Returns
    -------
    sel : (H, W) bool
        `sel`, with any parted tick added.
    gap_cols : (W,) bool
        The gap's columns, which the coverage run must bridge.
    """
    gap_cols = np.zeros(sel.shape[1], bool)
    row_count = sel.sum(axis=1)
    if row_count.max() == 0:
        return sel, gap_cols
    line = np.flatnonzero(row_count >= 0.5 * row_count.max())
    line_rows = (int(line[0]), int(line[-1]) + 1)
    # the tick at the end away from each possible gap (the right end, then the left)
    others = [_end_tick(s, line_rows) for s in (sel, sel[:, ::-1])]
    if others == [None, None]:
        return sel, gap_cols  # no tick to mirror: nothing to label (the common case)
    lab, n = ndi.label(ink & ~sel, structure=_EIGHT)
    if n == 0:
        return sel, gap_cols
    out = sel.copy()
    for flip, other in zip((False, True), others):
        s = sel[:, ::-1] if flip else sel
        la = lab[:, ::-1] if flip else lab
        first = int(np.flatnonzero(s.any(axis=0))[0])
        if other is None or first < 3:
            continue
        # a component ending just before the gap column first - 1
        for k in np.unique(la[:, max(first - 2 - _OUT_WINDOW, 0): first - 1]):
            if k == 0:
                continue
            comp = la == k
            c = np.flatnonzero(comp.any(axis=0))
            r = np.flatnonzero(comp.any(axis=1))
            if int(c[-1]) != first - 2:
                continue
            if abs(int(r[0]) - other[0]) > 1 or abs(int(r[-1]) + 1 - other[1]) > 1:
                continue
            if c.size > other[2] + 1 or r[0] >= line_rows[0] or r[-1] < line_rows[1]:
                continue
            if flip:
                out[:, ::-1][comp] = True
                gap_cols[::-1][first - 1] = True
            else:
                out[comp] = True
                gap_cols[first - 1] = True
    return out, gap_cols


def _measure_frame(crop: np.ndarray, cand: _Candidate, ink: Callable[[], tuple[float, float]] | None = None) -> dict:
    """Measure the chosen candidate in the bar frame (bar along columns)."""
    h, w = crop.shape
    notes: list[str] = []
    bar, bg = _levels(crop, cand.mask, cand.polarity)
    sign = 1.0 if cand.polarity == "bright" else -1.0
    contrast = sign * (bar - bg)
    if not contrast > 0:
        raise BarNotFoundError("the bar candidate has no contrast against its surroundings")
    lo, hi = np.percentile(crop, [1, 99])
    if contrast < 0.25 * (hi - lo):
        notes.append("low contrast")
    cover = sign * (crop - bg) / contrast  # 0 at background, 1 at bar level

    # the bar at the refined threshold: components that overlap the candidate,
    # grown by at most a few pixels (not into a patch of similar grey level)
    grow = ndi.binary_dilation(cand.mask, structure=np.ones((3, 2 * _OUT_WINDOW + 1), bool))
    lab, _ = ndi.label((cover >= 0.5) & grow, structure=_EIGHT)
    ids = np.unique(lab[cand.mask & (lab > 0)])
    sel = np.isin(lab, ids) if ids.size else cand.mask
    gap_cols = np.zeros(w, bool)
    if not cand.ruler:
        sel, gap_cols = _join_parted_ticks(cover >= 0.5, sel)

    # the bar's rows: those holding at least half of the fullest row (ticks and
    # touching glyphs excluded), +- 1 row for anti-aliased edges; all rows for a ruler
    row_count = sel.sum(axis=1)
    if cand.ruler:
        bar_rows = row_count > 0
    else:
        bar_rows = row_count >= 0.5 * row_count.max()
    rows = np.flatnonzero(bar_rows)
    r0, r1 = max(rows.min() - 1, 0), min(rows.max() + 2, h)
    near = ndi.binary_dilation(sel, structure=np.ones((3, 2 * _OUT_WINDOW + 1), bool))[r0:r1]
    band = crop[r0:r1]
    profile = (np.clip(cover[r0:r1], 0.0, 1.0) * near).sum(axis=0)

    cols = np.flatnonzero(sel[r0:r1].any(axis=0))
    if cand.ruler:
        a, b = int(cols.min()), int(cols.max()) + 1
        plateau = float(np.median(profile[a:b][profile[a:b] > 0]))
    else:
        plateau = float(np.median(profile[cols.min(): cols.max() + 1]))
        on = (profile >= 0.5 * plateau) | gap_cols
        runs_lab, n_runs = ndi.label(on)
        if n_runs == 0:
            raise BarNotFoundError("empty coverage profile")
        run_ink = ndi.sum(profile, runs_lab, index=np.arange(1, n_runs + 1))
        run = int(np.argmax(run_ink)) + 1
        idx = np.flatnonzero(runs_lab == run)
        a, b = int(idx[0]), int(idx[-1]) + 1

    # each end against its own background (the bar may end on a brighter or
    # darker patch than the rest of its surroundings)
    kw = dict(bar=bar, bg=bg, sign=sign, ruler=cand.ruler)
    a, left = _refine_end(band, near, a, b, **kw)
    wb, right_f = _refine_end(band[:, ::-1], near[:, ::-1], w - b, w - a, **kw)
    b, right = w - wb, w - right_f
    tick_ends = 0  # ends placed from a blurred tick's ink
    if b - a < 2 * _IN_WINDOW:  # too short for separate edge windows
        left, right = float(a), float(b)
        notes.append("short bar: whole-pixel length")
    elif ink is not None and not cand.ruler:
        left, right, tick_ends = _blurred_tick_ends(crop, sel, a, b, left, right, bg=bg, sign=sign, ink=ink)
    if a <= 0 or b >= w:
        notes.append("touches box edge")
    rows_in = np.flatnonzero(sel[:, a:b].any(axis=1))
    return {
        "left": left,
        "right": right,
        "a": a,
        "b": b,
        "r0": int(rows_in.min()),
        "r1": int(rows_in.max()) + 1,
        "thickness": float(profile[a:b].mean()),
        "bar": bar,
        "bg": bg,
        "tick_ends": tick_ends,
        "notes": notes,
    }


def _measure_box(
    arr: np.ndarray, crop_box: tuple[int, int, int, int], orientation: str | None, box, polarity: str | None = None,
    ink: Callable[[], tuple[float, float]] | None = None,
) -> tuple[str, _Candidate, dict]:
    xa, ya, xb, yb = crop_box
    crop = arr[ya:yb, xa:xb].astype(np.float64)
    if not np.isfinite(crop).all():
        finite = crop[np.isfinite(crop)]
        crop = np.where(np.isfinite(crop), crop, np.median(finite) if finite.size else 0.0)
    if float(crop.max()) == float(crop.min()):
        raise BarNotFoundError(f"the box {box!r} is uniform")

    bw, bh = xb - xa, yb - ya
    if orientation is None:
        if bw >= 1.5 * bh:
            tries = ["h"]
        elif bh >= 1.5 * bw:
            tries = ["v"]
        else:
            tries = ["h", "v"]
    else:
        tries = [orientation]

    best: tuple[_Candidate, str, np.ndarray] | None = None
    for orient in tries:
        frame = crop if orient == "h" else crop.T
        cand = _pick([c for c in _components(frame) if polarity in (None, c.polarity)], frame)
        if cand is None:
            continue
        if best is None or (cand.elongation, cand.score) > (best[0].elongation, best[0].score):
            best = (cand, orient, frame)
    if best is None:
        raise BarNotFoundError(f"no elongated bar-like object in box {box!r}")
    cand, orient, frame = best
    return orient, cand, _measure_frame(frame, cand, ink)


class _Attempt(NamedTuple):
    """One measurement of :func:`measure_bar` in a crop; `for_room`: the crop is about to be
    grown for room only (the bar did not run into its end), so the grown crop's bar must be
    the same one with the same ends (:func:`_same_object`, :func:`_covers`)."""

    orient: str
    cand: _Candidate
    res: dict
    crop_box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the image
    for_room: bool


def _covers(res: dict, old: dict, shift: int) -> bool:
    """Whether the bar measured as `res` spans the one measured as `old` within half a pixel
    at each end (2 px where more of its ends are now placed from blurred ticks' ink), `old`'s
    crop starting `shift` px further along the axis.  A box grown for room only refines the
    ends: at the levels of a grown box a bar of 41 px was cut to 25.6 (EMPS-synthetic
    750,000,082), and another's end moved 0.9 px in where the window for its end's
    background took in the edge of the box it is drawn in (670,000,166)."""
    slack = 2.0 if res["tick_ends"] > old["tick_ends"] else 0.5
    return res["left"] + shift <= old["left"] + slack and res["right"] + shift >= old["right"] - slack


def _same_object(old: _Candidate, old_origin: tuple[int, int], new: _Candidate, new_origin: tuple[int, int],
                 orient: str) -> bool:
    """Whether `new`, found in a crop grown along the bar's axis from `old`'s, is the same
    object: it holds at least half of `old`'s pixels and spans the same rows across the
    axis within a pixel or half its thickness (not the bar merged with the glyphs beside it
    at another level).
    Both are in `orient`'s frame of crops whose top-left corners are at image ``(x, y)``
    `old_origin` and `new_origin` (the same across the axis)."""
    def flat(c: _Candidate, origin: tuple[int, int]) -> np.ndarray:
        rr, cc = np.nonzero(c.mask)
        if orient == "v":
            rr, cc = cc, rr
        return (rr + origin[1]).astype(np.int64) * (1 << 20) + cc + origin[0]
    a = flat(old, old_origin)
    tol = max(1, (old.bounds[1] - old.bounds[0]) // 2)  # a blurred tick's tip may join at another level
    if a.size == 0 or abs(new.bounds[0] - old.bounds[0]) > tol or abs(new.bounds[1] - old.bounds[1]) > tol:
        return False
    # and reaches along the axis as far as `old` did, within 2 px: not a piece of it (a
    # ticked bar inside an outline box, grown over the box's sides, was cut at another
    # threshold: 118 px of 160, EMPS-synthetic 710,000,062)
    along_old, along_new = old_origin[orient == "v"], new_origin[orient == "v"]
    if (new.bounds[2] + along_new > old.bounds[2] + along_old + 2
            or new.bounds[3] + along_new < old.bounds[3] + along_old - 2):
        return False
    return float(np.isin(a, flat(new, new_origin)).mean()) >= 0.5


def measure_bar(
    image, box, *, orientation: str | None = None, polarity: str | None = None, pad_px: int = 3
) -> BarMeasurement:
    """Measure the length of a scale bar inside an approximate box.

    Parameters
    ----------
    image : (M, N) array_like, any real dtype
        Grey image (8/16-bit integers, floats of any range, bool).
    box : sequence of 4 numbers
        ``(x0, y0, x1, y1)``, image pixels, ``x1``/``y1`` exclusive: an
        approximate box around the bar.  It may hold some margin and part of
        the label; the bar should be the longest elongated object in it.
    orientation : {'h', 'v', None}, optional
        The bar's axis.  ``None`` (default): from the box's aspect ratio, or
        both tried when the box is nearly square (the more elongated bar
        wins).
    polarity : {'bright', 'dark', None}, optional
        The bar's polarity when the caller knows it (it found the bar at a
        threshold): only objects of that polarity are measured, so the dark
        gap of a white double line is not taken for the bar.  ``None``
        (default): either.
    pad_px : int, optional
        The box is grown by this many pixels on every side (within the
        image) before the search, so that a tight box still shows the bar's
        ends.  Default 3.

    Returns
    -------
    BarMeasurement
        Length in pixels (sub-pixel, outer edge to outer edge), orientation,
        tight box, polarity and notes.

    Raises
    ------
    ValueError
        If `image` is not 2-D or `box` does not overlap it.
    TypeError
        If `image` does not have a real dtype.
    BarNotFoundError
        (a ``ValueError``) if nothing bar-like is inside the box.

    Examples
    --------
    >>> img = np.zeros((40, 120), np.uint8)
    >>> img[20:26, 10:90] = 255
    >>> m = measure_bar(img, (4, 14, 96, 32))
    >>> m.length_px, m.orientation, m.bbox, m.polarity
    (80.0, 'h', (10, 20, 90, 26), 'bright')
    """
    arr, (xa, ya, xb, yb) = _validate(image, box)
    if orientation not in (None, "h", "v"):
        raise ValueError(f"orientation must be 'h', 'v' or None, got {orientation!r}")
    if polarity not in (None, "bright", "dark"):
        raise ValueError(f"polarity must be 'bright', 'dark' or None, got {polarity!r}")
    if pad_px < 0:
        raise ValueError(f"pad_px must be >= 0, got {pad_px}")
    h_img, w_img = arr.shape
    ink = functools.cache(lambda: _ink_range(arr))  # only a blurred tick needs it
    xa, ya = max(xa - pad_px, 0), max(ya - pad_px, 0)
    xb, yb = min(xb + pad_px, w_img), min(yb + pad_px, h_img)
    forced = orientation
    prev: _Attempt | None = None  # the measurement before the box was last grown
    for attempt in range(_GROW_ATTEMPTS + 1):
        orient, cand, res = _measure_box(arr, (xa, ya, xb, yb), forced, box, polarity, ink)
        if prev is not None and prev.for_room and not (
                _same_object(prev.cand, prev.crop_box[:2], cand, (xa, ya), orient)
                and _covers(res, prev.res, (xa, ya)[orient == "v"] - prev.crop_box[orient == "v"])):
            orient, cand, res, (xa, ya, xb, yb) = prev.orient, prev.cand, prev.res, prev.crop_box
            break
        forced = orient
        if attempt == _GROW_ATTEMPTS:
            break
        # a bar that runs into the end of the box: look further along the axis, twice as far
        # each time (8, 16, 32 px); a bar with less than `_END_ROOM` px of ground before an
        # end (where its end's background and a tick's flanks are read): just that much
        # further (more would take in other objects, which change the crop's grey levels),
        # as long as the bar found then is the same object
        lo, hi, n = (xa, xb, w_img) if orient == "h" else (ya, yb, h_img)
        grow = max(8, pad_px) * 2**attempt
        room_lo, room_hi = res["a"], (hi - lo) - res["b"]
        cut_lo, cut_hi = room_lo <= 0 and lo > 0, room_hi <= 0 and hi < n
        if not ((room_lo < _END_ROOM and lo > 0) or (room_hi < _END_ROOM and hi < n)):
            break
        prev = _Attempt(orient, cand, res, (xa, ya, xb, yb), for_room=not (cut_lo or cut_hi))
        lo = max(lo - (grow if cut_lo else max(_END_ROOM - room_lo, 0)), 0)
        hi = min(hi + (grow if cut_hi else max(_END_ROOM - room_hi, 0)), n)
        if orient == "h":
            xa, xb = lo, hi
        else:
            ya, yb = lo, hi

    if orient == "h":
        bbox = (xa + res["a"], ya + res["r0"], xa + res["b"], ya + res["r1"])
        at_image_edge = (xa + res["a"] == 0) or (xa + res["b"] == w_img)
    else:
        bbox = (xa + res["r0"], ya + res["a"], xa + res["r1"], ya + res["b"])
        at_image_edge = (ya + res["a"] == 0) or (ya + res["b"] == h_img)
    notes = list(res["notes"])
    if at_image_edge:
        notes.append("touches image edge: may be cut")
    return BarMeasurement(
        length_px=float(res["right"] - res["left"]),
        orientation=orient,
        bbox=tuple(int(v) for v in bbox),
        polarity=cand.polarity,
        thickness_px=res["thickness"],
        bar_level=res["bar"],
        background_level=res["bg"],
        method="ruler" if cand.ruler else ("ticks" if res["tick_ends"] else "profile"),
        notes=tuple(notes),
    )
