"""Find bar-like lines anywhere in a micrograph, without the detector.

The scale-bar detector misses a bar now and then (a thin vertical bar on a
JPEG-compressed image, a black bar on a dark noisy one).  A scale bar is
nonetheless one of the most regular objects in a micrograph: a straight band
of the image's extreme grey level, a few pixels thick and tens to hundreds
long, with background of another level on both sides.  :func:`find_bar_lines`
lists such bands, so that the reader can look for a label around each
(:func:`micrometry.calibrate.scalebar.read.read_scalebar`, last step).  It
finds candidates only; the label read next to one and the bar measurement
decide whether it is a scale bar.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from micrometry.calibrate.scalebar._image import filled_band

__all__ = ["BarLine", "find_bar_lines"]

#: Shortest run (px) along a line that survives the opening: longer than any glyph stroke
#: of a label up to ~15 px tall, shorter than the shortest bars (about 20 px).
_RUN_PX = 15
#: Shortest line kept, px.
_MIN_LENGTH_PX = 20
#: Longest line kept, as a fraction of the image's side along it (a frame's or data bar's edge
#: spans the image; scale bars are at most about half of it).
_MAX_LENGTH_FRACTION = 0.7
#: Thickest line kept: at most this fraction of its length, and at most _MAX_THICK_PX.
_MAX_THICK_FRACTION = 0.25
_MAX_THICK_PX = 40
#: Least contrast of the band against each of its two sides, as a fraction of the distance
#: from the image's median to its extreme grey level on the band's side.
_MIN_CONTRAST = 0.4
#: Scale bars sit along the image's border: a line within this fraction of the shorter side
#: from it ranks as is, one further in at half its length times contrast.
_NEAR_BORDER_FRACTION = 0.2


class BarLine(NamedTuple):
    """A bar-like line.

    Attributes
    ----------
    box : tuple of int
        ``(x0, y0, x1, y1)``, image pixels, exclusive ends: the line's band.
    orientation : str
        ``"h"`` (along x) or ``"v"`` (along y).
    polarity : str
        ``"bright"`` or ``"dark"``.
    contrast : float
        Least contrast against its two sides (see ``_MIN_CONTRAST``); >= 0.4.
    """

    box: tuple[int, int, int, int]
    orientation: str
    polarity: str
    contrast: float


def _runs_at_least(mask: np.ndarray, n: int, axis: int) -> np.ndarray:
    """The pixels of `mask` that lie in runs of at least `n` along `axis` (a binary
    opening by a line of `n` pixels, in time independent of `n`)."""
    from scipy import ndimage as ndi

    full = ndi.uniform_filter1d(mask.astype(np.float32), n, axis=axis, mode="constant") >= 1.0 - 1e-4
    return ndi.uniform_filter1d(full.astype(np.float32), n, axis=axis, mode="constant") > 1e-4


def _row_lines(src: np.ndarray, med: float, lo: float, hi: float) -> list[tuple[tuple[int, int, int, int], str, float]]:
    """The bar-like lines along the rows of `src` (see :func:`find_bar_lines`), as
    ``(box, polarity, contrast)``, the box ``(x0, y0, x1, y1)`` in `src`'s pixels."""
    from scipy import ndimage as ndi

    h, w = src.shape
    smooth = ndi.uniform_filter1d(src, 5, axis=1)
    out = []
    for polarity, sign, mask, side in (
        ("bright", 1.0, smooth > (med + hi) / 2, hi - med),
        ("dark", -1.0, smooth < (med + lo) / 2, med - lo),
    ):
        if side <= 0:
            continue
        lines = ndi.binary_closing(_runs_at_least(mask, _RUN_PX, axis=1), np.ones((4, 1), bool))
        labels, _ = ndi.label(lines)
        for lab, sl in enumerate(ndi.find_objects(labels), start=1):
            if sl is None:
                continue
            r0, c0, r1, c1 = sl[0].start, sl[1].start, sl[0].stop, sl[1].stop
            if r0 == 0 or c0 == 0 or r1 == h or c1 == w:
                continue  # cut by the border: a frame, an edge, a large object
            length = c1 - c0
            if not _MIN_LENGTH_PX <= length <= _MAX_LENGTH_FRACTION * w:
                continue
            band = filled_band(labels[sl] == lab)
            if band is None:
                continue
            thick = band[1] - band[0]
            if thick > min(_MAX_THICK_FRACTION * length, _MAX_THICK_PX):
                continue
            top, bottom = r0 + band[0], r0 + band[1]
            d = max(2, thick)  # the rows beside the band, one row away (anti-aliasing)
            if top - d - 1 < 0 or bottom + d + 1 > h:
                continue
            inner = float(src[top:bottom, c0:c1].mean())
            before = float(src[top - d - 1 : top - 1, c0:c1].mean())
            after = float(src[bottom + 1 : bottom + d + 1, c0:c1].mean())
            contrast = min(sign * (inner - before), sign * (inner - after)) / side
            if contrast >= _MIN_CONTRAST:
                out.append(((int(c0), int(top), int(c1), int(bottom)), polarity, float(contrast)))
    return out


def find_bar_lines(image: np.ndarray, max_lines: int = 3) -> list[BarLine]:
    """Straight bands of extreme grey level with background on both sides.

    Parameters
    ----------
    image : (M, N) array_like, real
        Grey micrograph.
    max_lines : int
        How many to return.

    Returns
    -------
    list of BarLine
        Most bar-like first: length times contrast, halved for a line further
        than a fifth of the shorter side from the border.  Lines touching the image's
        border, longer than 70 % of its side, thicker than a quarter of their
        length or than 40 px, and the edges of regions (contrast on one side only)
        are left out.  The two lines of a double bar (1-3 px apart) are one band.

    Notes
    -----
    Per axis and polarity: the image is averaged over 5 px along the axis (a thin
    line keeps its level, noise loses most of it), thresholded halfway between its
    median and its 0.5 (99.5) percentile (or halfway to its minimum (maximum), if
    further), opened by a 15-px line along the axis
    (text, particles' rims and noise go), closed by 4 px across it, and each
    component that holds one band of rows filled over 90 % of its length is measured
    against the rows beside the band.  About 0.02-0.2 s for 0.1-1 megapixel.

    Examples
    --------
    >>> img = np.full((120, 200), 100, np.uint8)
    >>> img[100:104, 30:130] = 255
    >>> find_bar_lines(img)[0].box  # along the line, within the 5-px smoothing
    (30, 100, 130, 104)
    """
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"image must be 2-D grey, got shape {arr.shape}")
    h, w = arr.shape
    sample = arr[::3, ::3]  # levels from a ninth of the pixels: a bar's share is small either way
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return []
    med = float(np.median(sample))
    lo, hi = (float(v) for v in np.percentile(sample, (0.5, 99.5)))
    # a bar may be nearly all of an extreme level (a plain background): then halfway to it
    hi, lo = max(hi, (med + float(sample.max())) / 2), min(lo, (med + float(sample.min())) / 2)
    found: list[tuple[float, BarLine]] = []
    for orientation, src in (("h", arr), ("v", np.ascontiguousarray(arr.T))):  # vertical lines: rows of arr.T
        for (a0, b0, a1, b1), polarity, contrast in _row_lines(src, med, lo, hi):
            box = (a0, b0, a1, b1) if orientation == "h" else (b0, a0, b1, a1)
            near_border = min(box[0], box[1], w - box[2], h - box[3]) <= _NEAR_BORDER_FRACTION * min(h, w)
            rank = (a1 - a0) * contrast * (1.0 if near_border else 0.5)
            found.append((rank, BarLine(box, orientation, polarity, contrast)))
    found.sort(key=lambda f: -f[0])
    return [line for _, line in found[:max_lines]]
