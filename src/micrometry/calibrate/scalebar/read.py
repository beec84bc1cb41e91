"""Read a micrograph's scale bar: detect, read the label, measure the bar, judge trust.

:func:`read_scalebar` is the whole chain for one image:

1. the YOLO detector (:mod:`~micrometry.calibrate.scalebar.detect`) proposes
   ``label`` and ``bar`` boxes;
2. each label box, best first, is read by PP-OCR and parsed
   (:func:`~micrometry.calibrate.scalebar.ocr.read_scale_label`); tall boxes
   (vertical text) are also read turned by 90° both ways;
3. the label is paired with the detected bar nearest to it (the gap in units
   of the label's height); when no detected bar is near, the bar is searched
   for around the label (below, above, left, right);
4. the bar is measured end to end in its box
   (:func:`~micrometry.calibrate.scalebar.measure.measure_bar`);
5. if the detector gives no readable label, PP-OCR's own text detector reads
   the whole image and any line that parses as a scale label is tried the
   same way (trusted less: no detector agreement).

Confidence (:func:`reading_confidence`) multiplies the evidence: detector
scores of label and bar, OCR score, and penalties for every check that
fails or is weak — label not next to the bar, bar found by search instead of
detection, OCR corrections or an uncertain unit, a value that is not a
round scale-bar number, a bar touching the image edge or of low contrast, a
pixel size outside the range of microscopy.  Each factor is recorded in
``checks`` so that a reader can see why a reading is trusted or not.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from micrometry.calibrate.scalebar._image import grey
from micrometry.calibrate.scalebar.measure import BarMeasurement, BarNotFoundError, measure_bar
from micrometry.calibrate.scalebar.ocr import ScaleRead, read_scale_label

__all__ = [
    "ScalebarReading",
    "read_scalebar",
    "reading_confidence",
    "is_round_value",
    "NM_PER_PX_RANGE",
]

#: Pixel sizes a micrograph can plausibly have, nm/px (atomic-resolution TEM
#: to low-magnification light microscopy).
NM_PER_PX_RANGE = (0.005, 5000.0)

_ROUND_MANTISSAS = (1.0, 2.0, 2.5, 3.0, 4.0, 5.0)


def is_round_value(value: float) -> bool:
    """True for the values scale bars are drawn at: 1, 2, 2.5, 3, 4, 5 × 10^k.

    >>> [is_round_value(v) for v in (200, 0.5, 25, 1.5, 37)]
    [True, True, True, False, False]
    """
    if not (value > 0 and math.isfinite(value)):
        return False
    k = math.floor(math.log10(value))
    mant = value / 10**k
    return any(abs(mant - m) < 1e-6 * m for m in _ROUND_MANTISSAS) or abs(mant - 10.0) < 1e-5


@dataclass
class ScalebarReading:
    """One image's scale bar, read and measured.

    Boxes are ``(x0, y0, x1, y1)`` in image pixels, exclusive ends.

    Attributes
    ----------
    nm_per_px : float
        ``value_nm / bar_px``.
    value, unit, value_nm : float, str, float
        The label's number, its unit (``"nm"``, ``"um"``, ``"mm"``, ``"A"``)
        and the length it states in nm.
    text : str
        The label text as read by OCR.
    bar_px : float
        Bar length in pixels, outer edge to outer edge.
    orientation : {'h', 'v'}
    bar_bbox, text_bbox : tuple of int
        The measured bar's box and the label's box.
    confidence : float
        In [0, 1]; see :func:`reading_confidence`.
    checks : dict
        Each factor of the confidence and the evidence behind it.
    notes : list of str
        Warnings (OCR corrections, bar notes).
    """

    nm_per_px: float
    value: float
    unit: str
    value_nm: float
    text: str
    bar_px: float
    orientation: str
    bar_bbox: tuple[int, int, int, int]
    text_bbox: tuple[int, int, int, int]
    confidence: float
    checks: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The ``scalebar`` object of the calibration JSON contract."""
        d = asdict(self)
        d["bar_bbox"] = [int(v) for v in self.bar_bbox]
        d["text_bbox"] = [int(v) for v in self.text_bbox]
        return d


def _gap(a, b) -> float:
    """Distance between two (x0, y0, x1, y1) boxes; 0 when they overlap."""
    dx = max(0.0, max(a[0], b[0]) - min(a[2], b[2]))
    dy = max(0.0, max(a[1], b[1]) - min(a[3], b[3]))
    return math.hypot(dx, dy)


def reading_confidence(
    *,
    label_score: float,
    bar_score: float | None,
    ocr_score: float,
    gap_in_label_heights: float,
    corrections: int,
    unit_log_margin: float | None,
    round_value: bool,
    nm_per_px: float,
    bar_notes: int,
    via_text_search: bool,
) -> tuple[float, dict[str, float]]:
    """Combine the evidence on one reading into a confidence in [0, 1].

    Parameters
    ----------
    label_score, bar_score : float
        Detector confidences; `bar_score` ``None`` when the bar was found by
        searching around the label instead of by the detector.
    ocr_score : float
        PP-OCR's mean character probability of the label line.
    gap_in_label_heights : float
        Distance between label and bar boxes divided by the label's height.
    corrections : int
        Number of OCR corrections the parser needed (``O->0``, ...).
    unit_log_margin : float or None
        Log-odds of the unit over the next best (``None``: not available).
    round_value : bool
        :func:`is_round_value` of the label's number.
    nm_per_px : float
        The resulting pixel size.
    bar_notes : int
        Warnings of the bar measurement (touching an edge, low contrast, ...).
    via_text_search : bool
        The label came from PP-OCR's text detector over the whole image, not
        from the scale-bar detector.

    Returns
    -------
    confidence : float
    factors : dict of str to float
        Every multiplicative factor, by name.
    """
    f: dict[str, float] = {}
    # detector evidence: a clear detection of both parts is worth most; scores saturate at 0.5
    f["label_detected"] = 0.6 if via_text_search else min(1.0, 0.55 + 0.9 * float(label_score))
    f["bar_detected"] = 0.7 if bar_score is None else min(1.0, 0.6 + 0.8 * float(bar_score))
    f["ocr"] = min(1.0, max(0.0, (float(ocr_score) - 0.5) / 0.4))
    f["adjacent"] = 1.0 if gap_in_label_heights <= 2.0 else (0.6 if gap_in_label_heights <= 4.0 else 0.2)
    f["corrections"] = 0.8 ** int(corrections)
    f["unit_margin"] = 1.0 if unit_log_margin is None or unit_log_margin >= 2.0 else 0.7
    f["round_value"] = 1.0 if round_value else 0.6
    lo, hi = NM_PER_PX_RANGE
    f["plausible_size"] = 1.0 if lo <= nm_per_px <= hi else 0.05
    f["bar_clean"] = 0.85 ** int(bar_notes)
    conf = 1.0
    for v in f.values():
        conf *= v
    return float(min(1.0, max(0.0, conf))), {k: round(v, 4) for k, v in f.items()}


def _pad_box(box, px: float, shape) -> tuple[float, float, float, float]:
    h, w = shape
    return (max(0.0, box[0] - px), max(0.0, box[1] - px), min(float(w), box[2] + px), min(float(h), box[3] + px))


def _read_label(image: np.ndarray, box, threads: int | None) -> tuple[ScaleRead | None, tuple]:
    """Read a label box; tall boxes also turned by ±90°.  Returns (read, text box in image pixels)."""
    try:
        sr = read_scale_label(image, box, threads=threads)
    except ValueError:
        sr = None
    if sr is not None:
        return sr, tuple(sr.hit.bbox)
    x0, y0, x1, y1 = box
    if (y1 - y0) > 1.5 * (x1 - x0):  # vertical text
        m = 3
        xa, ya = int(max(0, x0 - m)), int(max(0, y0 - m))
        xb, yb = int(min(image.shape[1], x1 + m)), int(min(image.shape[0], y1 + m))
        crop = image[ya:yb, xa:xb]
        for k in (1, 3):
            rot = np.ascontiguousarray(np.rot90(crop, k))
            try:
                sr = read_scale_label(rot, (0, 0, rot.shape[1], rot.shape[0]), threads=threads)
            except ValueError:
                sr = None
            if sr is not None:
                return sr, (float(xa), float(ya), float(xb), float(yb))
    return None, tuple(box)


def _search_boxes(text_box, shape) -> list[tuple[float, float, float, float]]:
    """Where a bar may be around a label: below, above, left, right (in that order)."""
    x0, y0, x1, y1 = text_box
    th, tw = y1 - y0, x1 - x0
    reach_w = max(2.5 * tw, 6 * th)
    cx = (x0 + x1) / 2
    boxes = [
        (cx - reach_w, y1, cx + reach_w, y1 + 2.5 * th),  # below
        (cx - reach_w, y0 - 2.5 * th, cx + reach_w, y0),  # above
        (x0 - reach_w, y0 - th, x0, y1 + th),  # left
        (x1, y0 - th, x1 + reach_w, y1 + th),  # right
    ]
    h, w = shape
    out = []
    for b in boxes:
        c = (max(0.0, b[0]), max(0.0, b[1]), min(float(w), b[2]), min(float(h), b[3]))
        if c[2] - c[0] >= 4 and c[3] - c[1] >= 2:
            out.append(c)
    return out


def _measure(image, box) -> BarMeasurement | None:
    try:
        return measure_bar(image, box)
    except (BarNotFoundError, ValueError):
        return None


def _candidate(image, sr: ScaleRead, text_box, label_score, bars, via_text_search) -> ScalebarReading | None:
    th = max(1.0, text_box[3] - text_box[1])
    best = None
    near = sorted(bars, key=lambda d: _gap(text_box, d.box) / th - d.score)
    tried = []
    for d in near[:3]:
        gap = _gap(text_box, d.box) / th
        if gap > 4.0:
            continue
        m = _measure(image, _pad_box(d.box, 2, image.shape))
        if m is not None:
            tried.append((m, d.score, gap))
            break
    if not tried:  # search around the label
        for b in _search_boxes(text_box, image.shape):
            m = _measure(image, b)
            if m is None or m.length_px < 0.3 * th:
                continue
            gap = _gap(text_box, (m.bbox[0], m.bbox[1], m.bbox[2], m.bbox[3])) / th
            tried.append((m, None, gap))
            break
    for m, bar_score, gap in tried:
        if not (m.length_px > 0):
            continue
        label = sr.label
        nm = label.value_nm / m.length_px
        conf, factors = reading_confidence(
            label_score=label_score, bar_score=bar_score, ocr_score=sr.hit.score,
            gap_in_label_heights=gap, corrections=len(label.corrections),
            unit_log_margin=sr.log_margin, round_value=is_round_value(label.value),
            nm_per_px=nm, bar_notes=len(m.notes), via_text_search=via_text_search,
        )
        checks = {
            "factors": factors,
            "label_score": round(float(label_score), 4),
            "bar_score": None if bar_score is None else round(float(bar_score), 4),
            "ocr_score": round(float(sr.hit.score), 4),
            "gap_label_heights": round(float(gap), 3),
            "unit_log_margin": None if sr.log_margin is None else round(float(sr.log_margin), 3),
            "label_found_by": "text-search" if via_text_search else "detector",
            "bar_found_by": "search" if bar_score is None else "detector",
            "bar_method": m.method,
        }
        reading = ScalebarReading(
            nm_per_px=float(nm), value=float(label.value), unit=label.unit, value_nm=float(label.value_nm),
            text=sr.hit.text, bar_px=float(m.length_px), orientation=m.orientation,
            bar_bbox=tuple(int(v) for v in m.bbox), text_bbox=tuple(int(round(v)) for v in text_box),
            confidence=conf, checks=checks, notes=list(label.corrections) + list(m.notes),
        )
        if best is None or reading.confidence > best.confidence:
            best = reading
    return best


def read_scalebar(
    image,
    *,
    detector=None,
    detector_dir: str | os.PathLike | None = None,
    threads: int | None = 1,
    max_labels: int = 3,
    text_search: bool = True,
) -> ScalebarReading | None:
    """Find, read and measure the scale bar of a micrograph.

    Parameters
    ----------
    image : (M, N) or (M, N, 3|4) array_like, any real dtype
        The micrograph as stored (colour is averaged to grey).
    detector : ScalebarDetector, optional
        A loaded detector; default :func:`~micrometry.calibrate.scalebar.detect.load_detector`
        of `detector_dir`.
    detector_dir : path, optional
        Detector directory (default ``models/scalebar-yolo``).
    threads : int, optional
        CPU threads for the detector and OCR.  Default 1.
    max_labels : int
        Label boxes tried, best first.
    text_search : bool
        When no detected label can be read, let PP-OCR's text detector look
        at the whole image for a line that parses as a scale label.

    Returns
    -------
    ScalebarReading or None
        The most trusted reading, or ``None`` when no label could be read
        next to a measurable bar.
    """
    from micrometry.calibrate.scalebar.detect import load_detector

    arr = grey(image)
    det = detector if detector is not None else load_detector(detector_dir, threads=threads)
    dets = det.detect(arr)
    labels = [d for d in dets if d.cls == "label"][:max_labels]
    bars = [d for d in dets if d.cls == "bar"][:6]

    best: ScalebarReading | None = None
    for d in labels:
        sr, text_box = _read_label(arr, d.box, threads)
        if sr is None:
            continue
        r = _candidate(arr, sr, text_box, d.score, bars, via_text_search=False)
        if r is not None and (best is None or r.confidence > best.confidence):
            best = r
        if best is not None and best.confidence >= 0.8:
            break
    if best is None and text_search:
        from micrometry.calibrate.scalebar.ocr import _is_label, read_text

        for hit in read_text(arr, None, accept=_is_label, threads=threads):
            if not _is_label(hit.text):
                continue
            sr, text_box = _read_label(arr, hit.bbox, threads)
            if sr is None:
                continue
            r = _candidate(arr, sr, text_box, 0.0, bars, via_text_search=True)
            if r is not None and (best is None or r.confidence > best.confidence):
                best = r
    return best
