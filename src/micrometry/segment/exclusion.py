"""Masks of what is not specimen: instrument data bars, annotations, user ROIs.

A micrograph as saved by the instrument or cropped from a figure often holds
pixels that are not specimen: the data bar at the bottom of SEM images
("HV 5.00 kV  WD 4.9 mm  mag ..."), a burned-in scale bar with its label and
its box, panel letters.  Segmenting them yields fake particles, so the segment
stage excludes them.  All masks here are bool ``(Y, X)`` arrays, True where a
pixel is **not** specimen.

The detectors are deliberately conservative: a missed annotation costs one
fake object, a false detection silently removes real particles.

- :func:`detect_data_bar`: a band of rows at the bottom, spanning the full
  width, whose pixels are mostly one flat value (the bar colour), that holds
  several small high-contrast marks (text), and that starts at a sharp edge:
  the rows just above the band look like image, not like the bar.
- :func:`detect_annotations`: connected regions of saturated (extreme-value)
  pixels that are scale bars (a straight, full-length run of rows or columns
  making up most of the region: a rectangle or an I-beam with end caps),
  boxes (a filled axis-aligned rectangle with something written in it) or
  text (thin-stroked, partly non-convex glyphs of similar height on a line,
  next to a bar or box or in a corner of the image, as scale-bar labels and
  panel letters are).  Blobs and rods, such as saturated particles, have
  thick strokes or are convex, and are never taken.
- :func:`load_roi_mask`: a user-drawn ROI image (nonzero = analyse).
- :func:`exclusion_mask`: the union of the above and of non-finite pixels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from micrometry.segment.classical import check_grey_image

__all__ = ["detect_data_bar", "detect_annotations", "exclusion_mask", "load_roi_mask"]

# data bar
_BAR_MAX_HEIGHT_FRACTION = 0.3  # a data bar is at most this fraction of the image height
_BAR_MIN_HEIGHT_PX = 6
_BAR_ROW_FLAT_FRACTION = 0.25  # a bar row has at least this fraction of pixels at the bar value
_BAR_MEAN_FLAT_FRACTION = 0.75  # ... and over the whole band at least this much of them on average
_BAR_FULL_ROW_FRACTION = 0.98  # the band's top two rows are (almost) entirely bar colour
_BAR_EDGE_ROW_FRACTION = 0.9  # ... and the row above is not
_BAR_VALUE_TOLERANCE = 0.04  # |pixel - bar value| <= this x dynamic range counts as bar colour
_BAR_TEXT_CONTRAST = 0.3  # text pixels differ from the bar value by at least this x range
_BAR_MIN_MARKS = 3  # at least this many separate text marks in the band

# annotations
_SATURATION_TOLERANCE = 0.03  # within this x dynamic range of the image's min/max = saturated
_LINE_FULL_FRACTION = 0.95  # a bar row spans at least this fraction of the region's width
_LINE_MIN_ASPECT = 3.0  # bar length / bar thickness
_LINE_MIN_LENGTH_FRACTION = 0.05  # bar length >= this x image width (and >= 20 px)
_LINE_MAX_THICKNESS_FRACTION = 0.06  # bar thickness <= this x the image's shorter side
_LINE_MIN_CORE_FRACTION = 0.8  # the full-length rows hold at least this fraction of the region
_BOX_MIN_EXTENT = 0.97  # filled region / bounding box for a box
_BOX_MAX_AREA_FRACTION = 0.15  # a box covers at most this fraction of the image
_MIN_COMPONENT_PX = 8  # saturated regions smaller than this are ignored (noise, dots)
_HALO_PX = 3  # text is checked against the ring this far outside it
_HALO_MIN_CONTRAST = 0.15  # ring pixels closer than this x range to the text colour are "near"
_HALO_MAX_NEAR_FRACTION = 0.25  # ... and at most this fraction of the ring may be near
_MAX_GLYPHS = 2000  # more glyph candidates than this means texture, not text
_GLYPH_MIN_HEIGHT_PX = 5
_GLYPH_MAX_HEIGHT_FRACTION = 0.15  # of the image height
_GLYPH_MAX_STROKE_RATIO = 0.3  # 2 x max inscribed radius / glyph height (a disc is 1.0)
_GLYPH_CORNER_FRACTION = 0.12  # text away from a bar is accepted within this fraction of two edges
_GLYPH_MAX_HEIGHT_RATIO = 1.6  # glyphs on one line differ in height by at most this factor
_GLYPH_MAX_SOLIDITY = 0.75  # a text line holds at least one glyph less convex than this


def _as_grey(image: np.ndarray, name: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """float64 copy with non-finite pixels set to NaN, and the finite mask."""
    img = check_grey_image(image, name=name).astype(np.float64, copy=True)
    finite = np.isfinite(img)
    img[~finite] = np.nan
    return img, finite


# --------------------------------------------------------------------------- data bar
def detect_data_bar(image: np.ndarray) -> np.ndarray:
    """Find the instrument data bar at the bottom of an (SEM) image.

    The bar is a band of full-width rows at the bottom, mostly one flat
    colour (black, white or grey), holding text.  Rows are scanned upwards
    from the bottom; a row can belong to the band while at least a quarter of
    its pixels have the bar colour (the most common value of the bottom rows;
    rows through text can be dense).  The band's top is the highest row such
    that

    - the band is between 6 px and 30 % of the image height (a flat region
      covering more is image content, e.g. an empty substrate);
    - its top two rows are entirely bar colour (98 %) and the row above them
      is not (90 %): the bar starts at a sharp horizontal edge, and text has
      a margin, whereas a particle cut by the bottom edge crosses any such
      line;
    - on average at least 75 % of its pixels have the bar colour;
    - it contains at least 3 separate marks of strongly different intensity
      (text, logos, a scale bar);
    - the bar colour is an extreme of the image (at or beyond its 2nd or 98th
      percentile), as the black, white or saturated bars of instruments are.

    Separator lines just above the band (full-width rows of one value) are
    included.

    Parameters
    ----------
    image : (Y, X) ndarray of real numbers
        Grey-level micrograph; non-finite pixels are ignored.

    Returns
    -------
    (Y, X) bool ndarray
        True on the rows of the data bar; all False when there is none.
    """
    img, finite = _as_grey(image)
    ny, nx = img.shape
    mask = np.zeros((ny, nx), bool)
    if ny < 2 * _BAR_MIN_HEIGHT_PX or nx < 8 or not finite.any():
        return mask
    lo, hi = np.nanpercentile(img, [0.0, 100.0])
    if not hi > lo:
        return mask
    rng = hi - lo
    # bar colour: the most common value of the bottom rows (a bar is flat, so this is robust)
    bottom = img[-max(2, _BAR_MIN_HEIGHT_PX // 2):, :]
    bottom = bottom[np.isfinite(bottom)]
    if bottom.size == 0:
        return mask
    hist, edges = np.histogram(bottom, bins=256, range=(lo, hi))
    k = int(np.argmax(hist))
    in_bin = bottom[(bottom >= edges[k]) & (bottom <= edges[k + 1])]
    bar_value = float(np.median(in_bin))
    p02, p98 = np.nanpercentile(img, [2.0, 98.0])
    if not (bar_value <= p02 or bar_value >= p98):
        return mask
    flat = np.abs(img - bar_value) <= _BAR_VALUE_TOLERANCE * rng  # NaN compares False
    row_flat = flat.mean(axis=1)
    max_rows = int(_BAR_MAX_HEIGHT_FRACTION * ny)
    # rows from the bottom up that can be bar rows (text rows may be dense)
    run = 0
    while run < ny and row_flat[ny - 1 - run] >= _BAR_ROW_FLAT_FRACTION:
        run += 1
    full = row_flat >= _BAR_FULL_ROW_FRACTION
    top = None
    for t in range(ny - min(run, max_rows), ny - _BAR_MIN_HEIGHT_PX + 1):
        # the band starts at a sharp edge: two flat rows under a row of image content
        if not (full[t] and full[t + 1]) or (t > 0 and row_flat[t - 1] >= _BAR_EDGE_ROW_FRACTION):
            continue
        if row_flat[t:].mean() < _BAR_MEAN_FLAT_FRACTION:
            continue
        marks = np.abs(img[t:] - bar_value) >= _BAR_TEXT_CONTRAST * rng
        if ndi.label(marks)[1] < _BAR_MIN_MARKS:
            continue
        top = t
        break
    if top is None:
        return mask
    # include separator lines (full-width rows of one value) directly above the band
    while top > 0:
        row = img[top - 1]
        row = row[np.isfinite(row)]
        if row.size == 0 or np.ptp(row) > _BAR_VALUE_TOLERANCE * rng:
            break
        top -= 1
    mask[top:, :] = True
    return mask


# --------------------------------------------------------------------------- annotations
def _line_like(region: np.ndarray, min_length_px: float, max_thickness_px: float) -> bool:
    """True if a region is a straight bar (rectangle or I-beam), in either orientation."""
    filled = ndi.binary_fill_holes(region)  # JPEG drop-outs inside a bar
    for reg in (filled, filled.T):
        h, w = reg.shape
        if w < min_length_px:
            continue
        full_rows = reg.sum(axis=1) >= _LINE_FULL_FRACTION * w
        n_full = int(full_rows.sum())
        if n_full == 0 or n_full > max_thickness_px or w < _LINE_MIN_ASPECT * n_full:
            continue
        # the full rows must be contiguous (one bar) and hold most of the region
        idx = np.flatnonzero(full_rows)
        if idx[-1] - idx[0] + 1 != n_full:
            continue
        if reg[full_rows].sum() >= _LINE_MIN_CORE_FRACTION * reg.sum():
            return True
    return False


def _box_like(region: np.ndarray, image_px: int) -> bool:
    """True if a region is a filled axis-aligned rectangle with something written inside."""
    h, w = region.shape
    if h < 8 or w < 8 or region.size > _BOX_MAX_AREA_FRACTION * image_px:
        return False
    filled = ndi.binary_fill_holes(region)
    if filled.mean() < _BOX_MIN_EXTENT:
        return False
    holes_px = int((filled & ~region).sum())
    return 0.005 * region.size <= holes_px <= 0.5 * region.size


def _annotation_components(
    sat: np.ndarray, img: np.ndarray, extreme: float, range_: float
) -> tuple[np.ndarray, list[tuple[int, int, int, int, float]]]:
    """Classify the connected regions of one saturated colour.

    `sat` marks the pixels within tolerance of `extreme` (the image's minimum
    or maximum); `range_` is the image's dynamic range.

    Returns
    -------
    shapes : (Y, X) bool ndarray
        Bounding boxes of the bars and boxes found.
    glyphs : list of (y0, y1, x0, x1, solidity)
        Bounding boxes of thin-stroked, glyph-sized regions (text candidates).
    """
    ny, nx = sat.shape
    shapes = np.zeros(sat.shape, bool)
    glyphs: list[tuple[int, int, int, int, float]] = []
    lab, n = ndi.label(sat, structure=np.ones((3, 3)))
    if n == 0:
        return shapes, glyphs
    area_px = np.bincount(lab.ravel(), minlength=n + 1)
    slices = ndi.find_objects(lab)
    min_line_px = max(20.0, _LINE_MIN_LENGTH_FRACTION * nx)
    max_thick_px = max(3.0, _LINE_MAX_THICKNESS_FRACTION * min(ny, nx))
    max_glyph_h = max(_GLYPH_MIN_HEIGHT_PX + 1, _GLYPH_MAX_HEIGHT_FRACTION * ny)
    for i, sl in enumerate(slices, start=1):
        if sl is None or area_px[i] < _MIN_COMPONENT_PX:
            continue
        region = lab[sl] == i
        h, w = region.shape
        if region.size <= _BOX_MAX_AREA_FRACTION * ny * nx and (
            _line_like(region, min_line_px, max_thick_px) or _box_like(region, ny * nx)
        ):
            shapes[sl] = True
            continue
        if not (_GLYPH_MIN_HEIGHT_PX <= h <= max_glyph_h and w <= 3 * h):
            continue
        stroke = 2.0 * float(ndi.distance_transform_edt(np.pad(region, 1)).max())
        if stroke > _GLYPH_MAX_STROKE_RATIO * h:
            continue
        if not _stands_out(region, sat, img, sl, extreme, range_):
            continue
        solidity = float(area_px[i]) / max(float(_convex_area_px(region)), 1.0)
        glyphs.append((sl[0].start, sl[0].stop, sl[1].start, sl[1].stop, solidity))
    return shapes, glyphs


def _stands_out(
    region: np.ndarray, sat: np.ndarray, img: np.ndarray, sl: tuple[slice, slice], extreme: float, range_: float
) -> bool:
    """True if a region is surrounded by pixels of clearly another intensity.

    Looks at the ring ``_HALO_PX`` px outside the region, away from any
    saturated pixel (beyond anti-aliasing, and not on the other pieces of the
    same glyph): drawn text contrasts with what it is drawn on, whereas a
    saturated patch inside a particle is surrounded by nearly saturated
    particle pixels.
    """
    pad = _HALO_PX
    y0, x0 = sl[0].start - pad, sl[1].start - pad
    ys = slice(max(y0, 0), min(sl[0].stop + pad, img.shape[0]))
    xs = slice(max(x0, 0), min(sl[1].stop + pad, img.shape[1]))
    reg = np.zeros((ys.stop - ys.start, xs.stop - xs.start), bool)
    reg[sl[0].start - ys.start:sl[0].stop - ys.start, sl[1].start - xs.start:sl[1].stop - xs.start] = region
    near_sat = ndi.binary_dilation(sat[ys, xs] | reg, iterations=pad - 1)
    ring = ndi.binary_dilation(reg, iterations=pad) & ~near_sat
    vals = img[ys, xs][ring]
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return False
    near = np.abs(vals - extreme) < _HALO_MIN_CONTRAST * range_
    return float(near.mean()) <= _HALO_MAX_NEAR_FRACTION


def _convex_area_px(region: np.ndarray) -> int:
    from skimage.morphology import convex_hull_image

    return int(convex_hull_image(region).sum())


def _glyph_lines(boxes: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """Boxes of the glyph lines that are text: next to a bar or box, or in a corner.

    Two glyphs belong to the same line when their heights differ by at most
    a factor ``_GLYPH_MAX_HEIGHT_RATIO``, their vertical extents overlap by at
    least 70 % of the smaller height, and the horizontal gap between them is
    at most their larger height; or when one lies within the other's height
    and they (nearly) touch (pieces of one glyph split by anti-aliasing).  A line is text only if at least one of its
    glyphs is clearly non-convex (solidity < ``_GLYPH_MAX_SOLIDITY``; most
    letters and digits are, rods and discs are not) and it lies either within
    two line heights of a detected bar or box (the scale-bar label) or within
    ``_GLYPH_CORNER_FRACTION`` of a vertical and a horizontal image edge
    (panel letters, labels in corners).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ny, nx = shapes.shape
    y0, y1, x0, x1, solidity = boxes.T.astype(np.float64)
    h = y1 - y0
    hi = np.maximum(h[:, None], h[None, :])
    lo_h = np.minimum(h[:, None], h[None, :])
    overlap = np.minimum(y1[:, None], y1[None, :]) - np.maximum(y0[:, None], y0[None, :])
    gap = np.maximum(x0[:, None], x0[None, :]) - np.minimum(x1[:, None], x1[None, :])
    link = (hi <= _GLYPH_MAX_HEIGHT_RATIO * lo_h) & (overlap >= 0.7 * lo_h) & (gap <= hi)
    # pieces of one glyph (anti-aliasing splits thin strokes): one box within the
    # other's height and (nearly) touching it
    contained = overlap >= lo_h - 0.5
    link |= contained & (gap <= np.maximum(2.0, 0.15 * hi))
    np.fill_diagonal(link, False)
    n_groups, group = connected_components(coo_matrix(link), directed=False)
    out = np.zeros(shapes.shape, bool)
    for gid in range(n_groups):
        members = np.flatnonzero(group == gid)
        if solidity[members].min() >= _GLYPH_MAX_SOLIDITY:
            continue
        gy0, gy1 = int(y0[members].min()), int(y1[members].max())
        gx0, gx1 = int(x0[members].min()), int(x1[members].max())
        if gy0 == 0 or gx0 == 0 or gy1 == ny or gx1 == nx:
            continue  # cut by the image border: image content, not drawn text
        reach = int(2 * (gy1 - gy0))
        near_shape = shapes[max(gy0 - reach, 0):gy1 + reach, max(gx0 - reach, 0):gx1 + reach].any()
        near_y = gy1 <= _GLYPH_CORNER_FRACTION * ny or gy0 >= (1 - _GLYPH_CORNER_FRACTION) * ny
        near_x = gx1 <= _GLYPH_CORNER_FRACTION * nx or gx0 >= (1 - _GLYPH_CORNER_FRACTION) * nx
        if near_shape or (near_y and near_x):
            out[gy0:gy1, gx0:gx1] = True
    return out


def detect_annotations(image: np.ndarray) -> np.ndarray:
    """Find burned-in scale bars, their labels and boxes, and panel letters.

    Annotations are drawn in saturated colours: pixels within 3 % of the
    image's dynamic range from its minimum or its maximum.  Connected regions
    of each saturated colour (covering less than half the image) are
    classified:

    - *bar*: a straight rectangle or I-beam (end caps), at least 3 times as
      long as thick, at least 5 % of the image width (and 20 px) long, at
      most 6 % of the shorter image side thick, whose full-length rows hold
      80 % of its pixels (rods with round ends do not qualify);
    - *box*: a filled axis-aligned rectangle (97 % of its bounding box once
      holes are filled) with something written in it, at most 15 % of the
      image;
    - *text*: glyph-sized regions (5 px to 15 % of the image height) with
      thin strokes (stroke width <= 0.3 x height), standing out from their
      surroundings (pixels 3 px outside are not nearly saturated), grouped
      into lines, kept when a line has a non-convex glyph and lies next to a
      bar or box or in a corner (see :func:`_glyph_lines`).

    Everything else, in particular compact blobs such as a saturated
    particle, is left alone.  Each accepted region is replaced by its
    bounding box, and the result is dilated by ``max(2, image size / 200)``
    pixels to cover anti-aliased edges.  Thin anti-aliased text whose strokes
    never come within 3 % of the extreme value is not found.

    Parameters
    ----------
    image : (Y, X) ndarray of real numbers
        Grey-level micrograph; non-finite pixels are ignored.

    Returns
    -------
    (Y, X) bool ndarray
        True on annotation pixels.
    """
    img, finite = _as_grey(image)
    mask = np.zeros(img.shape, bool)
    if not finite.any():
        return mask
    lo, hi = float(np.nanmin(img)), float(np.nanmax(img))
    if not hi > lo:
        return mask
    tol = _SATURATION_TOLERANCE * (hi - lo)
    glyphs: list[tuple[int, int, int, int, float]] = []
    for extreme, sat in ((hi, img >= hi - tol), (lo, img <= lo + tol)):  # NaN compares False
        if sat.any() and sat.mean() < 0.5:
            shapes, found = _annotation_components(sat, img, extreme, hi - lo)
            mask |= shapes
            glyphs += found
    if glyphs and len(glyphs) <= _MAX_GLYPHS:
        mask |= _glyph_lines(np.asarray(glyphs, dtype=np.float64), mask.copy())
    if mask.any():
        margin_px = max(2, int(round(max(img.shape) / 200)))
        mask = ndi.binary_dilation(mask, structure=np.ones((2 * margin_px + 1, 2 * margin_px + 1), bool))
    return mask


# --------------------------------------------------------------------------- ROI and union
def load_roi_mask(path: str | os.PathLike, shape: tuple[int, int]) -> np.ndarray:
    """Read a ROI image and return the mask of what lies *outside* it.

    Parameters
    ----------
    path : str or path-like
        PNG or TIFF (or any format Pillow reads) of the same size as the
        micrograph; nonzero pixels are specimen to analyse.  A colour image
        counts a pixel as inside when any colour channel (alpha ignored) is
        nonzero.
    shape : (int, int)
        ``(Y, X)`` shape of the micrograph.

    Returns
    -------
    (Y, X) bool ndarray
        True outside the ROI (excluded), False inside.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ValueError
        If the file cannot be read as an image, or its shape differs from
        `shape`; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ROI mask {path} does not exist")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            roi = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as im:
                roi = np.asarray(im)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        raise ValueError(f"ROI mask {path} could not be read as an image: {exc}") from exc
    roi = np.asarray(roi)
    if roi.ndim == 3 and roi.shape[-1] in (2, 3, 4) and roi.shape[:2] == tuple(shape):
        n_colour = {2: 1, 3: 3, 4: 3}[roi.shape[-1]]
        roi = (roi[..., :n_colour] != 0).any(axis=-1)
    elif roi.ndim == 3 and roi.shape[0] == 1:
        roi = roi[0]
    if roi.shape != tuple(shape):
        raise ValueError(f"ROI mask {path} has shape {roi.shape}, but the micrograph has shape {tuple(shape)}")
    return ~(roi != 0)


def exclusion_mask(
    image: np.ndarray,
    *,
    data_bar: bool = True,
    annotations: bool = True,
    roi: np.ndarray | None = None,
) -> np.ndarray:
    """Everything in a micrograph that is not specimen.

    Parameters
    ----------
    image : (Y, X) ndarray of real numbers
        Grey-level micrograph.  Non-finite pixels are always excluded.
    data_bar : bool
        Exclude the instrument data bar (:func:`detect_data_bar`).
    annotations : bool
        Exclude scale bars, labels, boxes and panel letters
        (:func:`detect_annotations`).
    roi : (Y, X) bool ndarray, optional
        *Excluded* mask of a user ROI, as returned by :func:`load_roi_mask`
        (True = outside the ROI).

    Returns
    -------
    (Y, X) bool ndarray
        True where pixels are not specimen.
    """
    img, finite = _as_grey(image)
    mask = ~finite
    if roi is not None:
        roi = np.asarray(roi)
        if roi.shape != img.shape:
            raise ValueError(f"roi mask shape {roi.shape} does not match image shape {img.shape}")
        mask |= roi.astype(bool)
    if data_bar:
        mask |= detect_data_bar(img)
    if annotations:
        mask |= detect_annotations(img)
    return mask
