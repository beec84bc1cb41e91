"""Read a micrograph's scale bar: detect, read the label, measure the bar, judge trust.

:func:`read_scalebar` is the whole chain for one image:

1. the YOLO detector (:mod:`~micrometry.calibrate.scalebar.detect`) proposes
   ``label`` and ``bar`` boxes;
2. around each label box, best first (once a reading has confidence 0.5, boxes
   the detector scores below :data:`_WEAK_LABEL_SCORE` are left), PP-OCR's text detector looks for the
   whole line in a window (the detector's boxes are often shifted or cut by a
   character: "00 nm" of "200 nm"); each line that parses as a scale label is
   read again on its own by the recognizer
   (:func:`~micrometry.calibrate.scalebar.ocr.read_scale_label`), and a line
   that ends in the first letter of its unit ("200 n", a faint unit left out
   of the line's box) is read again past its end.  When that re-read, widened
   past the line's ends, reads a number that is no round scale-bar value where
   the line's is ("150nm" of "50nm": a bar's end tick taken in), the line as
   the text detector read it is taken; when it reads nothing, that line is
   kept for step 8.  A tall line that PP-OCR read the wrong way up ("mu009")
   is read again turned both ways.  A tall
   box holds vertical text: its window is read turned by 90° both ways, and
   its bar is searched for along the label's length (on the transposed
   image).  Only when the window holds no such line is the detector's box
   itself read.  Glyphs that a read line left out at its start (PP-OCR's
   text detector splits "0.25 μm" at the wide gaps around the point, and the
   line "25 μm" reads 100 times too large; :func:`_left_out_glyphs`) are read
   with it again, and the reading is taken when it completes the number;
3. bar-like objects around the label (solid bars, thin lines, lines with end
   ticks, short brackets: :func:`_bar_extent`; a thick bar that a bright
   region of the micrograph touches or joins, from thresholds opened apart;
   rows of equally spaced tick marks, as on Hitachi's rulers) are found by
   thresholds and kept where scale bars sit relative to their labels; a
   detected bar box covering one, or lying along its whole length, is the
   detector's vote for it.  The thresholds are halfway from the
   neighbourhood's median to its extremes (also to its rarest extremes, for
   a small bar in a large uniform box), Otsu's, and the label's own contrast
   where that takes in more.  A thin closed frame around the label (a box
   drawn as an outline around bar and label) is painted over first
   (:func:`_without_frame`): its sides are as long and thin as bars.  A
   vertical bar that the search window cuts is followed along the image,
   over or beside the label; a bar that the label's rectangle cuts in two is
   measured across it.  Only when none is found are bars looked for at loose
   thresholds (30 % of the way to the extremes: a thin line blurred to half
   the contrast of its end ticks) and measured inside detected bar boxes
   near the label, and the cheaper of the two wins.  The label's glyph box (the text
   detector's line box moved in by 15 % of its height) is masked out, except
   rows that a line crosses (a bar under the label, touched by a µ's
   descender), and what the label sits on (its own box) is not taken for a bar;
   an object of the colour of the label's ground that touches the label is a
   poorer choice (it is more likely the rest of the box the label is written in);
4. the bar is measured end to end
   (:func:`~micrometry.calibrate.scalebar.measure.measure_bar`);
5. when no label was read next to a bar, the label is looked for the same
   way around each detected bar (up to three; around a vertical bar also
   turned, for a label written along it), and when nothing is found there,
   in the bar's near surroundings enlarged twice (glyphs under ~10 px escape
   the text detector at full size);
6. if still nothing was read, PP-OCR's text detector reads the bottom 38 % of
   the image, then the top 30 %, and any line that parses as a scale label is
   tried the same way (trusted less: no detector vote);
7. if still nothing, bar-like lines found without the detector
   (:func:`~micrometry.calibrate.scalebar.lines.find_bar_lines`, up to three)
   are treated as detected bars were in step 5;
8. if still nothing, the label lines of step 2 that only the text detector
   read (its reading alone drops a character now and then: "10 nm" of a
   "100 nm");
9. if still nothing, the bands of step 6 again, their extreme grey levels
   stretched over the range (:func:`_extreme_views`): a faint white label on
   a light micrograph, a black one on a dark micrograph.
10. if nothing was read, or nothing with confidence 0.5 or more, the detector
    runs again on four overlapping corner windows of 0.6 of the image's sides,
    each enlarged to its input
    (:meth:`~micrometry.calibrate.scalebar.detect.ScalebarDetector.detect_zoomed`:
    a 9-px label on a 1,000-px image shrinks to 5 px in the whole image's view);
    its new label boxes are read as in step 2 and, when still nothing is read,
    labels are looked for around its new bars as in step 5; when still nothing
    is read, the detector's weaker label boxes after the first three (up to three
    more) are read as in step 2;
11. if still nothing was read with confidence 0.5 or more, the detected label
    boxes (those of step 10 too), and the short lines PP-OCR's text detector found in
    any step but read as no scale label ("SONM"), are read by the project's own
    label reader (:mod:`~micrometry.calibrate.scalebar.label_reader`, a pair of
    small recognizers trained on the generator's scale labels: glyphs of 9-14 px,
    blurred by resampling or JPEG, that PP-OCR misreads or does not read) and
    paired with a bar as in step 3; the most trusted reading of all wins.  When
    the two readers read the same box as different values, both readings are
    trusted less, unless the label reader also read PP-OCR's value in another of
    its boxes (only its own differing reading is then).  A reading by PP-OCR
    with confidence from 0.5 to 0.8 gets the label reader's second opinion on
    its label box: a different value read with a score of
    :data:`_SECOND_OPINION_MIN_SCORE` or more, a round value whose number is not
    cut at its start, disputes it ("25um" of a "2.5 µm" whose point PP-OCR
    dropped);
12. if still nothing was read, the label reader reads the places where a label
    sits beside each bar (up to four: detected bars, then bar-like lines of step 7),
    for glyphs of 8-33 px above and below a horizontal bar, beside a vertical one
    (:func:`_label_boxes_beside_bar`), and for horizontal labels at a bar's side:
    before or after a horizontal bar on its rows, beside a vertical one level with
    its ends or middle, or beyond its ends (:func:`_label_boxes_at_bar_side`): a
    faint label on a ground of nearly its grey level, or on a noisy micrograph,
    that no text detector finds beside a bar that stands out.  Such a reading
    has no detector vote for its label and is read by the label reader, so it
    stays below 0.5.

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
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from micrometry.calibrate.scalebar._image import box_iou as _iou
from micrometry.calibrate.scalebar._image import (
    double_band,
    filled_band,
    filled_runs,
    grey,
    longest_row_runs,
    only_at_ends,
    to_uint8,
)
from micrometry.calibrate.scalebar.lines import find_bar_lines
from micrometry.calibrate.scalebar.measure import BarMeasurement, BarNotFoundError, _group_ruler, _otsu, measure_bar
from micrometry.calibrate.scalebar.ocr import ScaleRead, TextHit, _trim, _unscored_read, read_scale_label
from micrometry.calibrate.scalebar.parse import ScaleLabel, parse_scale_label, unit_cut_off, unit_prefix_lost

__all__ = [
    "ScalebarReading",
    "read_scalebar",
    "reading_confidence",
    "is_round_value",
    "NM_PER_PX_RANGE",
    "CONFIDENCE_EXPONENT",
]

#: Pixel sizes a micrograph can plausibly have, nm/px (atomic-resolution TEM
#: to low-magnification light microscopy).
NM_PER_PX_RANGE = (0.005, 5000.0)
#: Log-odds of the unit over the next best below which the unit counts as uncertain.
_UNIT_MARGIN = 2.0
#: Log-odds against a unit that an impossible pixel size (outside NM_PER_PX_RANGE) counts
#: for: a unit read with a smaller margin gives way to the runner-up unit when that one gives
#: a possible size.  PP-OCR read a clean 18-px "25nm" as "25mm" with a margin of 2.9
#: (synthetic seed 10,000,156); a unit read with a margin of 4 or more is kept and the
#: reading left with its implausible size (and its low confidence).
_IMPOSSIBLE_SIZE_LOG_ODDS = 4.0

_ROUND_MANTISSAS = (1.0, 2.0, 2.5, 3.0, 4.0, 5.0)

#: The product of the evidence factors is raised to this power (see :func:`reading_confidence`).
CONFIDENCE_EXPONENT = 2.0
#: The factor of a label that the two readers (PP-OCR, the label reader) read as different values.
_DISPUTED = 0.6
#: Detector score below which a label box is not read by step 2 once a reading has confidence
#: 0.5 (the boxes come best first).  Reading every box (up to three) with PP-OCR was most of a
#: median image's time; on the real EMPS set the median went from 0.614 s to 0.428 s with the
#: same readings (one text differs in a space), and no reading changed on 1,200 synthetic images
#: (seeds 400M-450M).
_WEAK_LABEL_SCORE = 0.25
#: The label reader's score from which its second opinion on a PP-OCR reading trusted from 0.5
#: to 0.8 can dispute it.  On the real EMPS set the reader disagreed with such readings once,
#: wrongly, with 0.51 ("500 um" of "50.0um").  On 1,233 such synthetic readings (seeds 280M-430M)
#: it disagreed with 0.6 or more seven times: three where PP-OCR was wrong ("2um" of "0.2um"
#: 0.81, "25um" of "2.5 µm" 0.98, "250NM" of "50NM" 1.0); two where the reader dropped a point
#: ("25 µm" of "2.5 µm", 0.65 and 0.69: below this score); two where its number was cut or no
#: round value (".5 µm" 0.96, "11 um" 0.83: those give no opinion).
_SECOND_OPINION_MIN_SCORE = 0.75


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
    number_cut: bool = False,
    bar_by_shape: bool = True,
    disputed: bool = False,
    by_label_reader: bool = False,
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
        The label came from PP-OCR's text detector, not from the scale-bar
        detector.
    number_cut : bool
        The number starts with a decimal point or comma (``".5 µm"``): labels
        are printed ``"0.5"``, so a digit was probably cut off by the box.
    bar_by_shape : bool
        The bar was found by its shape around the label (the threshold
        search), whatever voted for it; False when it was only measured inside
        a detected bar box.
    disputed : bool
        The two readers (PP-OCR and the project's label reader) read the same
        label box as different values: one of the two is wrong, and nothing
        says which (factor 0.6, given to both readings).
    by_label_reader : bool
        The label was read by the project's label reader (factor 0.85): trained
        on the generator's fonts only, it reads real labels less precisely than
        PP-OCR (on the 73 hand-checked EMPS label boxes, 66 right and 4 wrong
        against PP-OCR's 69 and 1; ``benchmarks/label_reader.py --real``).  A
        tiny real "100 µm" read "1µm" beside a detected bar had 0.64 without it.

    A weak detector vote is no worse than none: a label read in a detected
    box counts at least as much as one found by PP-OCR's text detector alone,
    and a bar found by its shape at least as much as one no box voted for.
    Before this floor, a bar with a detector score of 0.05 counted 0.64 against
    0.8 for no vote at all (EMPS: 44 of the 72 right real readings were used,
    53 with it; on 895 synthetic images of seeds 10, 30, 40, 50 and 60 million +,
    661 and 730, and no wrong reading more).

    The product of the factors is raised to :data:`CONFIDENCE_EXPONENT` so that
    0.5 separates right from wrong readings: on a calibration set of 120
    synthetic images (seeds 20,000,000+, not the evaluation sets) every wrong
    reading but one (a cut number, now penalised) had a product below 0.66,
    and 0.66² < 0.5 while the readings with all checks passed keep ≥ 0.8.

    Returns
    -------
    confidence : float
    factors : dict of str to float
        Every multiplicative factor, by name.
    """
    f: dict[str, float] = {}
    # detector evidence: a clear detection of both parts is worth most; scores saturate at 0.5
    # a label found by PP-OCR's text detector and a bar found by the placement search have
    # passed the parser and the geometric checks, but lack the detector's vote
    f["label_detected"] = 0.75 if via_text_search else max(0.75, min(1.0, 0.55 + 0.9 * float(label_score)))
    if bar_score is None:
        f["bar_detected"] = 0.8
    else:
        voted = min(1.0, 0.6 + 0.8 * float(bar_score))
        f["bar_detected"] = max(0.8, voted) if bar_by_shape else voted
    f["ocr"] = min(1.0, max(0.0, (float(ocr_score) - 0.5) / 0.4))
    f["adjacent"] = 1.0 if gap_in_label_heights <= 2.0 else (0.6 if gap_in_label_heights <= 4.0 else 0.2)
    f["corrections"] = 0.8 ** int(corrections)
    f["unit_margin"] = 1.0 if unit_log_margin is None or unit_log_margin >= _UNIT_MARGIN else 0.7
    f["round_value"] = 1.0 if round_value else 0.6
    lo, hi = NM_PER_PX_RANGE
    f["plausible_size"] = 1.0 if lo <= nm_per_px <= hi else 0.05
    f["bar_clean"] = 0.85 ** int(bar_notes)
    f["number_complete"] = 0.4 if number_cut else 1.0
    f["readers_agree"] = _DISPUTED if disputed else 1.0
    f["reader"] = 0.85 if by_label_reader else 1.0
    return _confidence_of(f), {k: round(v, 4) for k, v in f.items()}


def _confidence_of(factors: dict[str, float]) -> float:
    """The product of the evidence factors raised to :data:`CONFIDENCE_EXPONENT`, in [0, 1]."""
    return float(min(1.0, max(0.0, math.prod(factors.values()) ** CONFIDENCE_EXPONENT)))


def _intersection(a, b) -> tuple[float, float, float, float]:
    """The overlap of two (x0, y0, x1, y1) boxes (x1 <= x0 or y1 <= y0 when they do not overlap)."""
    return (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))


def _area(box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _covered(inner, outer) -> float:
    """Fraction of box `inner`'s area inside box `outer` (both (x0, y0, x1, y1))."""
    return _area(_intersection(inner, outer)) / max(1e-9, _area(inner))


def _clip_box(x0, y0, x1, y1, shape) -> tuple[float, float, float, float]:
    h, w = shape
    return (max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1))


def _pad_box(box, px: float, shape) -> tuple[float, float, float, float]:
    return _clip_box(box[0] - px, box[1] - px, box[2] + px, box[3] + px, shape)


def _is_vertical_text(box) -> bool:
    """A text box over 1.5 times as tall as wide holds vertical text (a label line,
    written horizontally, is always wider than tall)."""
    return (box[3] - box[1]) > 1.5 * (box[2] - box[0])


def _read_label(image: np.ndarray, box, threads: int | None, detect: bool = True,
                widen: bool = True) -> tuple[ScaleRead | None, tuple]:
    """Read a label box; tall boxes also turned by ±90°.  Returns (read, text box in image pixels).

    A detector's box may cut a character at either end ("0.5 µm" read as "5 µm"), so it is
    widened by half its height on each side first (`widen`); the reader trims the crop to the
    glyphs.  `detect` False: the recognizer only (a box that PP-OCR's text detector found
    around one line).
    """
    h = box[3] - box[1]
    if widen and (box[2] - box[0]) >= h:
        box = (max(0.0, box[0] - 0.5 * h), box[1], min(float(image.shape[1]), box[2] + 0.5 * h), box[3])
    try:
        sr = read_scale_label(image, box, threads=threads, detect=detect)
    except ValueError:
        sr = None
    if sr is not None:
        return sr, tuple(sr.hit.bbox)
    x0, y0, x1, y1 = box
    if _is_vertical_text(box):
        m = 3
        xa, ya = int(max(0, x0 - m)), int(max(0, y0 - m))
        xb, yb = int(min(image.shape[1], x1 + m)), int(min(image.shape[0], y1 + m))
        crop = image[ya:yb, xa:xb]
        for k in (1, 3):
            rot = np.ascontiguousarray(np.rot90(crop, k))
            try:
                sr = read_scale_label(rot, (0, 0, rot.shape[1], rot.shape[0]), threads=threads, detect=detect)
            except ValueError:
                sr = None
            if sr is not None:
                return sr, (float(xa), float(ya), float(xb), float(yb))
    return None, tuple(box)


#: Where real scale bars lie relative to their label, in label heights (th) and widths (tw)
#: (measured on the 73 bars of tests/data/scalebar_truth_real.csv: gap <= 1.8 th, length
#: 0.26-4.5 tw, centre offset -1.6..0.6 tw for bars above/below their label).  A short
#: label ("2um", "5 µm") under a long bar reaches 8.3 tw among 183 synthetic bars; the
#: glyph box is often a little narrower than the text, hence up to 9 tw.
_MAX_GAP_TH = 2.5
#: A bar's thickness, at most, in label heights: 1.36 glyph heights on d722a3a383, the
#: thickest of the 73; the glyph box made from a text line's box may be 20 % lower than the
#: glyphs (11 px for 14 there), and the threshold adds an anti-aliased row on each side.
_MAX_THICK_TH = 2.0
_LENGTH_TW = (0.2, 9.0)
#: How far beside the label (in label widths) a bar is looked for: a bar beside it may be as
#: long as one above or below it (a 7.7-width bar right of "5 um" was cut at 6).
_REACH_TW = 9.5
#: How far beside the label (in label widths) its neighbourhood's grey levels are taken.
_LEVELS_TW = 6.0
_MAX_OFFSET_TW = 2.0
#: How far a vertical bar beside or over a horizontal label may reach above or below it, in
#: label heights (a 7-height bar above "20 nm" was cut at 6).  A longer one over the label
#: (the generator's reach 11-21 label heights on synthetic 30,000,095 and 40,000,130) is
#: followed along its columns where the window cuts it (:func:`_long_vertical_bar`): a
#: reach of 24 would read them too, but searches more of the image around every label
#: (per image, median ratio 0.94 real and 1.12 synthetic, 90th percentile 1.47-1.48;
#: 100 EMPS + 60 synthetic images, idle, one after the other).
_V_BAR_TH = 9.0
#: A vertical bar beside or over a horizontal label is at least this many label heights long:
#: the last stroke of an "m" that sticks out of the glyph box is about one (synthetic seed
#: 50,000,120: a 15-px stroke of "2 µm" beside its 14-px glyph box was taken for the bar);
#: the generator's vertical bars are 10-30 % of the image's height, about 2.5 label heights
#: or more, and none of the 73 real bars is vertical.
_MIN_V_BAR_TH = 1.5
#: A label's best bar-like object at the usual levels that costs this much or more
#: (:func:`_placement_cost`, about label heights of gap) sits poorly for its scale bar: the
#: objects found at loose levels compete with it (:func:`_candidate`).
_POOR_PLACEMENT = 1.0
#: Added to the cost of a bar of the other polarity than its label's glyphs (a white label's
#: dark bar) that touches the label, in label heights of gap.
_OTHER_COLOUR_COST = 1.0
#: Fewest equally spaced tick marks taken for a ruler (Hitachi's has 11).
_MIN_RULER_TICKS = 5
#: A text line longer than this (characters as PP-OCR read it) is no scale label ("0.25 µm" has 7)
_MAX_LABEL_CHARS = 10


def _reread_line(image: np.ndarray, hit, box, threads: int | None) -> tuple[ScaleRead | None, tuple, bool]:
    """Read a line that PP-OCR's text detector found (`hit`, its box or `box` grown past a
    cut unit) again on its own: the recognizer alone gives the unit's likelihood margin that
    the text detector's reading lacks (~0.05 s).

    The re-read is widened past the line's ends and may take in what the text detector left
    out (a bar's end tick beside "50nm" read "150nm", a speck before it ",50nm"; the text
    detector's own extra characters, "4100nm", are no round number).  When it reads a number
    that is no round value where the line's is, or that starts with a point where the line's
    does not, or reads nothing, the line's own box is read; when that disagrees too, the line
    as the text detector read it stands (without likelihoods:
    :func:`~micrometry.calibrate.scalebar.ocr._unscored_read`).

    Returns
    -------
    (read, read box, confirmed)
        `read` None when nothing parses as a label.  `confirmed` False when only the text
        detector's reading stands because no re-read read anything: that reading drops a
        character now and then ("10 nm" of a "100 nm" that the detector's label box gives
        whole, EMPS 478a6c42ec), so it is for when no other step reads anything.
    """
    own_box = box == hit.bbox  # else grown past a cut unit: the line's own text is not the label's
    sr, read_box = _read_label(image, box, threads, detect=own_box)
    as_found = parse_scale_label(hit.text) if own_box else None
    if as_found is None or not (
        sr is None
        or (is_round_value(as_found.value) and not is_round_value(sr.label.value))
        or (_number_cut(sr.hit.text) and not _number_cut(hit.text))
    ):
        return sr, read_box, True
    read_nothing = sr is None
    sr, read_box = _read_label(image, box, threads, detect=False, widen=False)
    if sr is not None and sr.label.value == as_found.value:
        return sr, read_box, True
    return _unscored_read(as_found, hit), tuple(hit.bbox), not read_nothing


def _number_cut(text: str) -> bool:
    """The number starts with a decimal point or comma (".5 µm"): labels are printed "0.5",
    so a digit was cut off, or a speck read as a point."""
    return bool(re.match(r"\s*[.,]", text))


def _measure(image, box, polarity: str | None = None) -> BarMeasurement | None:
    try:
        return measure_bar(image, box, polarity=polarity)
    except (BarNotFoundError, ValueError):
        return None


def _is_component(m: BarMeasurement | None, box, text_box, against_label: bool,
                  glyph_polarity: str | None = None) -> bool:
    """Whether a measurement is the bar component found at `box` (x0, y0, x1, y1): not a
    piece of something longer (running into its box's end, unless the image's edge cut
    it), not the label's own box where the label's rectangle cut it (as wide as the label
    and of the other polarity than its glyphs, `glyph_polarity`: a bar drawn in the
    label's colour may be exactly as long as the label is wide), not mostly inside the
    label's glyph box (a glyph sticking out of it), and as long as the component, give or
    take; it may also reach into the label's rectangle, where the mask cut it (a bracket's
    tick against the label), and not around the label on all four sides."""
    if m is None or ("touches box edge" in m.notes and not any(n.startswith("touches image edge") for n in m.notes)):
        return False
    if _covered(m.bbox, text_box) >= 0.5:  # a glyph of the label (the "5" of "5 µm", synthetic 70,000,119)
        return False
    if m.bbox[0] < text_box[0] and m.bbox[1] < text_box[1] and m.bbox[2] > text_box[2] and m.bbox[3] > text_box[3]:
        # around the label on all four sides: a frame (an outline box too faint at the bottom
        # to be found as one) measured as a line with its sides for end ticks (synthetic
        # 340,000,084 and 340,000,176, wrong with 0.96 and 0.64)
        return False
    x0, x1 = text_box[0], text_box[2]
    tw = max(2.0, x1 - x0)
    if against_label and abs(m.bbox[0] - x0) <= max(2.0, 0.05 * tw) and abs(m.bbox[2] - x1) <= max(2.0, 0.05 * tw) \
            and m.polarity != glyph_polarity:
        return False
    along = (box[2] - box[0]) if m.orientation == "h" else (box[3] - box[1])
    ax = (0, 2) if m.orientation == "h" else (1, 3)
    across = (1, 3) if m.orientation == "h" else (0, 2)
    if m.bbox[across[0]] - box[across[1]] > 1 or box[across[0]] - m.bbox[across[1]] > 1:
        # beside the component, not on it: measured through the label's rectangle, the dark
        # gap between a white line and its label gave way to the dark rows on the line's other
        # side (synthetic 510,000,105: 63 px for 118, confidence 1.0).  One row between the two
        # is the edge between levels (EMPS 0a55e7c93f: a white line measured from its dark
        # shadow's component, 1 row below it)
        return False
    into_label = max(0.0, min(m.bbox[ax[1]], text_box[ax[1]] + 1) - max(m.bbox[ax[0]], text_box[ax[0]] - 1))
    tol = max(2.0, 0.1 * along)
    return -tol <= m.length_px - along <= tol + (into_label if against_label else 0.0)


def _glyph_ink(text_pixels: np.ndarray) -> tuple[str | None, float | None]:
    """Whether a label's glyphs are brighter or darker than the ground they are written on,
    and the grey level halfway between the two: ``('bright' | 'dark', level)``, or
    ``(None, None)`` where its box is nearly one grey level.

    The glyphs are the minority of a text box's pixels: the ground is its median, and the
    glyphs lie on the side of it that reaches further (5th and 95th percentiles); the level
    is halfway between the median and that percentile.
    """
    if text_pixels.size < 4:
        return None, None
    lo, med, hi = (float(v) for v in np.percentile(text_pixels, (5, 50, 95)))
    if hi - lo < 1e-6 or max(hi - med, med - lo) < 1.5 * min(hi - med, med - lo):
        return None, None
    return ("bright", (med + hi) / 2) if hi - med > med - lo else ("dark", (med + lo) / 2)


def _glyph_rows(mask: np.ndarray, text_mask: np.ndarray) -> np.ndarray:
    """The label's rectangle without the rows that a line crosses from end to end.

    A scale bar drawn right under (or over) its label often reaches into the
    label's box, and a descender (µ) may touch it: masking the whole box would cut
    the bar.  Text never fills a row of its box without a gap, so rows where one
    run of `mask` spans at least 70 % of the box's width are given back.
    """
    rows = np.flatnonzero(text_mask.any(axis=1))
    cols = np.flatnonzero(text_mask.any(axis=0))
    if rows.size == 0:
        return text_mask
    inside = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    longest = longest_row_runs(inside)
    crossed = longest >= 0.7 * inside.shape[1]
    if not crossed.any():
        return text_mask
    out = text_mask.copy()
    out[rows[0] + np.flatnonzero(crossed)] = False
    return out


def _touched_band(line: np.ndarray, th: float) -> tuple[int, int] | None:
    """A thick solid bar along the columns of `line` that something (a particle's bright
    region) touches at one spot: rows filled over 90 % of the width, in one band
    0.3 to `_MAX_THICK_TH` label heights `th` (at least 4 px) thick, at most half as thick as long and
    at least 1.5 label heights long, other rows that are not filled (something touches
    it), and the rows next to the band less than half filled (next to a disc's widest rows
    they are not).  Returns the band's rows ``(start, stop)`` or None."""
    across, long_ = line.shape
    band = filled_band(line)
    if band is None or band[1] - band[0] == across:  # nothing touches a plain rectangle: the caller judges it
        return None
    t_band = band[1] - band[0]
    if not (max(4.0, 0.3 * th) <= t_band <= _MAX_THICK_TH * th and long_ >= max(2.0 * t_band, 1.5 * th)):
        return None
    nxt = [line[i].sum() for i in (band[0] - 1, band[1]) if 0 <= i < across]
    return band if max(nxt, default=0) < 0.5 * long_ else None


def _bar_extent(component: np.ndarray, th: float) -> tuple[int, int, int, int] | None:
    """Where a component (its mask, cropped to its box) holds a scale bar: ``(r0, c0, r1, c1)``
    in the component's box, or None when it is not shaped like one.

    A scale bar is either a filled elongated box (solid bars, thick or thin: at most
    `_MAX_THICK_TH` label heights `th` thick, at least 2.5 times as long as thick, filling a quarter
    of its box), or a straight line with end
    ticks, whose box is tall and mostly empty: rows (along the bar) that the line fills
    over 90 % of the length, no thicker than `_MAX_THICK_TH` label heights, in one band (not the two
    sides of a frame), and at most 30 % of the positions along it thicker than the line
    (the ticks; up to half of them when all are in the outer quarters, as on a short
    bracket); ticks at most 3 label heights tall.  These give the whole box.  A thick
    solid band touched by something at one spot (:func:`_touched_band`) gives the band.
    """
    wide = component.shape[1] >= component.shape[0]
    line = component if wide else component.T
    across, long_ = line.shape
    whole = (0, 0, component.shape[0], component.shape[1])
    if long_ < 6:
        return None
    if long_ >= 2.5 * across and across <= _MAX_THICK_TH * th and line.sum() >= 0.25 * across * long_:
        return whole
    # one band (a frame's two sides are not a bar), or the two close lines of a double bar
    # (speckle of a noisy ground joined to them, synthetic 260,000,085)
    runs = filled_runs(line)
    double = len(runs) != 1
    band = double_band(runs) if double else runs[0]
    t_line = 0 if band is None else band[1] - band[0]
    if t_line and t_line <= _MAX_THICK_TH * th and long_ >= 2.5 * t_line and across <= 3.0 * th:
        # positions crossed by something taller than the line (the ticks, a blob on it); a
        # speck of noise clinging to a thin line above and below is not (JPEG, shot noise)
        thick = longest_row_runs(line.T) > t_line + 2
        if double:
            # a double bar has no ticks: two lines with something tall at their ends are a
            # frame's side and a line along it (a double bar inside an outline box, synthetic
            # 270,000,135)
            bar_shaped = not thick.any()
        else:
            # a short bar's ticks take more of its length ("⊔" of 19 px): then only at its ends
            bar_shaped = thick.mean() <= 0.3 or (thick.mean() <= 0.5 and only_at_ends(thick))
        if bar_shaped:
            return whole
    return _touched_extent(component, th)


def _touched_extent(component: np.ndarray, th: float) -> tuple[int, int, int, int] | None:
    """The box ``(r0, c0, r1, c1)`` of :func:`_touched_band` in a component, along either
    axis (something attached may make the component taller than wide), or None."""
    for rows_along, comp in ((True, component), (False, component.T)):
        band = _touched_band(comp, th)
        if band is not None:
            a, b = band
            return (a, 0, b, component.shape[1]) if rows_along else (0, a, component.shape[0], b)
    return None


def _opened_extent(component: np.ndarray, th: float) -> tuple[int, int, int, int] | None:
    """:func:`_touched_extent` for a component of an opened mask, or the whole component
    when opening has cut a solid bar free of what joined it (a bright particle's streak):
    a rectangle, nearly every row filled, at least twice as long as thick (two real bars
    are 2.2 and 2.3), at most `_MAX_THICK_TH` label heights thick.  Opening squares off
    no blob that well."""
    line = component if component.shape[1] >= component.shape[0] else component.T
    across, long_ = line.shape
    if long_ >= 2.0 * across and across <= _MAX_THICK_TH * th and filled_band(line) is not None \
            and line.mean() >= 0.9:
        return (0, 0, component.shape[0], component.shape[1])
    return _touched_extent(component, th)


def _placement_cost(box, text_box) -> tuple[float, float] | None:
    """How well a bar's box (x0, y0, x1, y1) sits where scale bars sit relative to their
    label's box: None when it cannot be the label's bar, else ``(cost, gap)``, the cost
    lower for a better place, the gap in label heights.

    Above or below the label: centred within 2 label widths (or the label over the bar's
    extent, as at the end of a long bar), 0.2-9 label widths long,
    and not much shorter than the label (a fragment of noise or a particle's edge
    costs more).  Beside it: on its rows, at least half a label height long.  A vertical
    bar: beside the label on its rows, or above or below it over its width, at least
    `_MIN_V_BAR_TH` label heights long.
    """
    x0, y0, x1, y1 = text_box
    th, tw = max(2.0, y1 - y0), max(2.0, x1 - x0)
    bw, bh = box[2] - box[0], box[3] - box[1]
    gap = _gap(text_box, box) / th
    if gap > _MAX_GAP_TH:
        return None
    if bw >= bh:
        if box[3] <= y0 + 0.25 * th or box[1] >= y1 - 0.25 * th:  # above or below
            offset = ((box[0] + box[2]) / 2 - (x0 + x1) / 2) / tw
            # centred within 2 label widths, or anywhere over a long bar (a label at its end)
            if abs(offset) > max(_MAX_OFFSET_TW, 0.5 * bw / tw) or not (_LENGTH_TW[0] <= bw / tw <= _LENGTH_TW[1]):
                return None
            # what costs is how far the label's centre is from the bar's extent: a label over
            # the end of a long bar is placed as well as one over its middle (a particle
            # centred under a label at the end of a thin 182-px line, synthetic 100,000,189)
            beyond = max(0.0, box[0] - (x0 + x1) / 2, (x0 + x1) / 2 - box[2]) / tw
            return gap + 0.5 * beyond + 2.0 * max(0.0, 0.5 - bw / tw), gap
        if box[3] < y0 or box[1] > y1 or bw < 0.5 * th:  # beside: on its rows
            return None
        if min(box[2], x1) - max(box[0], x0) >= 0.5 * bw:
            # over the label's own columns, not beside it: a glyph's stroke sticking out of
            # the glyph box (the top of the "5" of "5 μm", synthetic 110,000,050)
            return None
        return gap + 0.5, gap
    over_label = not (box[2] <= x0 or box[0] >= x1)
    # beside the label: on its rows, or ending within two pixels of them (where the label's
    # rectangle, grown by a pixel and to whole pixels, cut the bar, synthetic 170,000,068)
    if bh < _MIN_V_BAR_TH * th or (not over_label and (box[3] < y0 - 2 or box[1] > y1 + 2)):
        return None
    return gap + 0.5, gap


_FRAME_CLOSED = 0.8  # share of each side's length a frame's mask must cover
_FRAME_MAX_HOLLOW_FILL = 0.3  # a frame's inside holds at most this share of its own pixels


def _frame_band(component: np.ndarray) -> np.ndarray | None:
    """The pixels of a thin closed rectangular frame: `component` (a mask cropped to its
    box) when a line runs along each of the four sides of its box (within its 4 outer
    rows: over `_FRAME_CLOSED` of the side's length away from the corners, in rows at
    least half filled, a stray pixel outside it allowed), at most 4 px or a fifth of the
    box's shorter side deep, with little of it inside (what touches it there, a bar or a
    glyph, is kept out of the result); else None."""
    h, w = component.shape
    if min(h, w) < 8:
        return None
    depth = []
    for side in (component, component[::-1], component.T, component.T[::-1]):  # top, bottom, left, right
        n = side.shape[1]
        outer = side[: min(4, side.shape[0] // 4), n // 10 : n - n // 10]  # rows from the border inwards
        if outer.size == 0 or outer.any(axis=0).mean() < _FRAME_CLOSED:
            return None
        full = np.flatnonzero(outer.mean(axis=1) >= 0.5)
        if full.size == 0:
            return None
        depth.append(int(full[-1]) + 1)
    top, bottom, left, right = depth
    if top + bottom >= h - 2 or left + right >= w - 2:
        return None
    if component[top : h - bottom, left : w - right].mean() > _FRAME_MAX_HOLLOW_FILL:
        return None
    zone = np.ones((h, w), bool)
    zone[top : h - bottom, left : w - right] = False
    return component & zone


def _frame_window(mask: np.ndarray, label_box) -> tuple[slice, slice] | None:
    """Where a frame around the label may be in `mask`: the rows and columns up to the
    furthest lines that cross the label's span on each of its four sides (columns left
    and right of its centre filled over 80 % of its rows, rows above and below filled
    over 80 % of its columns), 2 px beyond; None when a side has no such line.  A cheap
    test before the mask's components are labelled: most labels have no frame."""
    h, w = mask.shape
    x0, y0 = int(np.clip(np.floor(label_box[0]), 0, w - 1)), int(np.clip(np.floor(label_box[1]), 0, h - 1))
    x1, y1 = int(np.clip(np.ceil(label_box[2]), x0 + 1, w)), int(np.clip(np.ceil(label_box[3]), y0 + 1, h))
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    left = np.flatnonzero(mask[y0:y1, :cx].mean(axis=0) >= _FRAME_CLOSED)
    right = np.flatnonzero(mask[y0:y1, cx:].mean(axis=0) >= _FRAME_CLOSED)
    top = np.flatnonzero(mask[:cy, x0:x1].mean(axis=1) >= _FRAME_CLOSED)
    bottom = np.flatnonzero(mask[cy:, x0:x1].mean(axis=1) >= _FRAME_CLOSED)
    if not (left.size and right.size and top.size and bottom.size):
        return None
    return (slice(max(int(top[0]) - 2, 0), min(cy + int(bottom[-1]) + 3, h)),
            slice(max(int(left[0]) - 2, 0), min(cx + int(right[-1]) + 3, w)))


def _without_frame(image: np.ndarray, crop_origin, masks, label_box) -> np.ndarray | None:
    """`image` with a thin frame around the label painted over, or None when there is none.

    A box drawn as an outline around a scale bar and its label has sides as long and
    thin as bars, parallel to the bar and longer, a few pixels from its ends: taken for
    the bar, or merged with it by blur, or measured as its "outline" (synthetic
    140,000,014 and 150,000,094).  A frame is a component of one of `masks` (crops of the
    image from `crop_origin` = (x, y)) whose box holds the label's centre (`label_box`,
    image pixels) and that is a thin closed ring (:func:`_frame_band`), looked for only
    where lines cross the label's span on all four sides (:func:`_frame_window`).  Its pixels, grown
    by one for anti-aliasing, take the grey level of the nearest pixel outside them (the
    box's inside on the inner half, the micrograph on the outer), in a copy of the image.
    """
    from scipy import ndimage as ndi

    ox, oy = crop_origin
    cx, cy = (label_box[0] + label_box[2]) / 2 - ox, (label_box[1] + label_box[3]) / 2 - oy
    paint = None
    for mask in masks:
        window = _frame_window(mask, (label_box[0] - ox, label_box[1] - oy, label_box[2] - ox, label_box[3] - oy))
        if window is None:
            continue
        labels, _ = ndi.label(mask[window], structure=np.ones((3, 3), bool))
        wy, wx = window[0].start, window[1].start
        for lab, sl in enumerate(ndi.find_objects(labels), start=1):
            if sl is None or not (sl[0].start < cy - wy < sl[0].stop and sl[1].start < cx - wx < sl[1].stop):
                continue
            band = _frame_band(labels[sl] == lab)
            if band is None:
                continue
            if paint is None:
                paint = np.zeros(mask.shape, bool)
            sl = (slice(sl[0].start + wy, sl[0].stop + wy), slice(sl[1].start + wx, sl[1].stop + wx))
            grown = (slice(max(sl[0].start - 1, 0), sl[0].stop + 1), slice(max(sl[1].start - 1, 0), sl[1].stop + 1))
            full = np.zeros(mask.shape, bool)
            full[sl] = band
            paint[grown] |= ndi.binary_dilation(full[grown], structure=np.ones((3, 3), bool))
    if paint is None or paint.all():
        return None
    out = np.array(image, copy=True)
    region = out[oy : oy + paint.shape[0], ox : ox + paint.shape[1]]
    _, (ri, ci) = ndi.distance_transform_edt(paint, return_indices=True)
    region[paint] = region[ri[paint], ci[paint]]
    return out


def _bar_candidates(image: np.ndarray, text_box, frames: bool = True,
                    loose: bool = False) -> list[tuple[float, BarMeasurement, float]]:
    """Bar-like objects placed around a label as scale bars are, measured; best first.

    Bar-like objects (long, thin, solid or ticked, not cut by the search
    window, either polarity) around the label are listed from thresholds of
    the neighbourhood (and of the label's own contrast, :func:`_glyph_ink`,
    where that takes in more), with the label's own pixels masked out; each must sit
    where scale bars sit relative to their labels (gap at most 2.5 label
    heights, length 0.2-9 label widths, centred within 2 label widths or under the label for a
    bar above or below), and is measured with
    :func:`~micrometry.calibrate.scalebar.measure.measure_bar`.  With `frames`, a thin
    frame around the label (:func:`_without_frame`) is painted over first, and the bars
    are measured in the painted copy of the image.  With `loose`, the levels are 30 % of
    the way from the median to the extremes instead (for when nothing is found at the
    usual ones).

    Returns
    -------
    list of (cost, BarMeasurement, gap)
        Sorted by cost (nearer and better centred first); `gap` in label heights.
    """
    from scipy import ndimage as ndi

    h_img, w_img = image.shape
    x0, y0, x1, y1 = (float(v) for v in text_box)
    th, tw = max(2.0, y1 - y0), max(2.0, x1 - x0)
    # the window: a bar beside the label may be up to the longest length away on its side
    ra = int(max(0, np.floor(x0 - _REACH_TW * tw)))
    rb = int(min(w_img, np.ceil(x1 + _REACH_TW * tw)))
    # and a vertical bar beside or over it up to _V_BAR_TH label heights long, or above or below
    # it up to 2 label widths long
    reach = max(_V_BAR_TH * th, 2.0 * tw)
    rya = int(max(0, np.floor(y0 - reach)))
    ryb = int(min(h_img, np.ceil(y1 + reach)))
    crop = np.asarray(image[rya:ryb, ra:rb], dtype=np.float64)
    finite = np.isfinite(crop)
    crop = np.where(finite, crop, np.nanmedian(crop[finite]) if finite.any() else 0.0)
    text_mask = np.zeros(crop.shape, bool)
    text_mask[max(0, int(y0 - rya) - 1) : int(np.ceil(y1 - rya)) + 1, max(0, int(x0 - ra) - 1) : int(np.ceil(x1 - ra)) + 1] = True
    # grey levels from the label's near neighbourhood (up to 4 label heights above and below):
    # the further rows are there only to hold a long vertical bar whole
    d_near = (_MAX_GAP_TH + 1.5) * th
    near = slice(max(0, int(y0 - d_near) - rya), max(0, int(np.ceil(y1 + d_near)) - rya))
    # and up to _LEVELS_TW label widths beside it (the window reaches further only to hold a
    # long bar beside the label whole; the grey levels must not change with how far it reaches)
    near_cols = slice(max(0, int(x0 - _LEVELS_TW * tw) - ra), max(0, int(np.ceil(x1 + _LEVELS_TW * tw)) - ra))
    outside = crop[near, near_cols][~text_mask[near, near_cols]]
    if outside.size == 0 or outside.min() == outside.max():
        return []  # nothing around the label, or nothing but one grey level
    glyph_polarity, glyph_level = _glyph_ink(crop[text_mask])
    med = float(np.median(outside))
    hi, lo, top, bottom = (float(v) for v in np.percentile(outside, (99.5, 0.5, 99.95, 0.05)))
    if loose:
        # for when nothing was found at the usual levels: a thin line that resampling blurred to
        # under half the contrast of its end ticks and label, so that it joins neither (synthetic
        # 130,000,079: a 1-px line at 47 % between ticks at 100 %), 30 % of the way from the
        # median to the extremes
        levels = [med + 0.3 * (hi - med), med - 0.3 * (med - lo)]
        polarities = ["bright", "dark"]
        if glyph_polarity is not None:
            # and 30 % of the way from the label's ground to its glyphs: a thin line on the
            # box the label is written in, of another grey than the micrograph around it
            # (synthetic 130,000,141: a dark line at 30 % on a grey box on a dark micrograph)
            ground = float(np.median(crop[text_mask]))
            levels.append(ground + 0.6 * (glyph_level - ground))
            polarities.append(glyph_polarity)
    else:
        t = _otsu(outside)
        # bars are the extreme grey levels of their neighbourhood: halfway between the median
        # and the extreme separates a bar from a background that Otsu would lump it with
        levels = [(med + hi) / 2, (med + lo) / 2, t, t]
        polarities = ["bright", "dark", "bright", "dark"]
        same = [level for level, polarity in zip(levels, polarities) if polarity == glyph_polarity]
        if glyph_polarity is not None and (glyph_level < min(same) if glyph_polarity == "bright" else glyph_level > max(same)):
            # a bar drawn in the label's colour has the label's contrast: halfway between the
            # label's ground and its glyphs finds a thin bar that resampling dimmed below the
            # neighbourhood's bright (dark) particles (synthetic 100,000,097: a 1-px white line
            # at grey 102 on a black box, over a micrograph reaching 243).  Only a level that
            # takes in more than the neighbourhood's: a stricter one splits an outlined box's
            # frame into lines that look like bars (synthetic 40,000,110)
            levels.append(glyph_level)
            polarities.append(glyph_polarity)
        # a small bar in a large uniform neighbourhood (a grey box) is under 0.5 % of its
        # pixels: the 99.5th percentile is the box's level, and halfway to it takes in the
        # box with the bar (synthetic 170,000,005).  Halfway to the rarer extreme as well,
        # when it lies well beyond
        for rare, usual, polarity in ((top, hi, "bright"), (bottom, lo, "dark")):
            if abs(rare - usual) > 0.25 * abs(rare - med):
                levels.append((med + rare) / 2)
                polarities.append(polarity)
    plain = [crop > level if polarity == "bright" else crop < level for level, polarity in zip(levels, polarities)]
    if frames:
        # a thin frame around the label and its bar, drawn at an extreme grey level, is
        # painted over and the search run again without it; looked for at the loose levels
        # too (a frame that resampling dimmed is cut by the usual ones: a faint outline box
        # around "20 nm" and its ticked bar, whose side was measured, 139 px for 58, synthetic
        # 300,000,110)
        frame_masks = plain if loose else plain + [crop > med + 0.3 * (hi - med), crop < med - 0.3 * (med - lo)]
        painted = _without_frame(image, (ra, rya), frame_masks, (x0, y0, x1, y1))
        if painted is not None:
            return _bar_candidates(painted, text_box, frames=False, loose=loose)
    out: list[tuple[float, BarMeasurement, float]] = []
    seen = set()  # (box, polarity) measured: the opened masks give many of the plain ones again
    measured: dict[tuple, BarMeasurement | None] = {}

    def measure(box, polarity: str | None = None) -> BarMeasurement | None:
        """:func:`_measure` in `box` grown by 2 px, once per box and polarity (an object of
        the other polarity, measured at its own, may be measured there again)."""
        key = (tuple(box), polarity)
        if key not in measured:
            measured[key] = _measure(image, _pad_box(box, 2, image.shape), polarity)
        return measured[key]

    for opened in (False, True):
        if opened:
            # a thick bar joined to bright (dark) regions of the micrograph by thinner bridges,
            # opened apart (also when the plain masks gave a bar: it may be a thin edge of
            # the thick one); only a solid rectangle or a band with something still attached
            # is taken there (opening also squares off blobs that are not bars)
            k = np.ones((5, 5), bool)
            masks = [ndi.binary_opening(plain[0], k), ndi.binary_opening(plain[1], k)]
        else:
            masks = plain
        extent_of = _opened_extent if opened else _bar_extent
        found = []
        for mask, polarity, level in zip(masks, polarities, levels):
            masked = _glyph_rows(mask, text_mask)
            mask = mask & ~masked
            labels, n_labels = ndi.label(mask, structure=np.ones((3, 3), bool))
            # a component lying along the masked label's rim, or reaching into the label's
            # rectangle, and exactly as wide as the label is the rest of the box the label
            # sits on, not a bar (checked on the measured bar below: the mask may cut it)
            rim = ndi.binary_dilation(masked) & ~masked
            contact = np.bincount(labels[rim], minlength=n_labels + 1)
            inside = np.bincount(labels[text_mask], minlength=n_labels + 1)
            ticks: list[tuple[slice, slice, int]] = []
            for lab, sl in enumerate(ndi.find_objects(labels), start=1):
                if sl is None:
                    continue
                r0, c0, r1, c1 = sl[0].start, sl[1].start, sl[0].stop, sl[1].stop
                bh, bw = r1 - r0, c1 - c0
                if not opened and 3 <= bh <= 1.5 * th and bh >= 1.5 * bw and 0 < r0 and r1 < crop.shape[0] \
                        and 0 < c0 and c1 < crop.shape[1]:
                    ticks.append((sl[0], sl[1], lab))  # a tick mark of a ruler, maybe (opening erases them)
                if max(bh, bw) < 6:
                    continue
                if (r0 == 0 and rya > 0) != (r1 == crop.shape[0] and ryb < h_img) and 0 < c0 and c1 < crop.shape[1] \
                        and not opened:
                    # cut by the window's top or bottom only: a vertical bar over the label
                    # longer than the window, maybe (followed along its columns)
                    box = _long_vertical_bar(image, labels[sl] == lab, (ra + c0, rya + r0), (x0, y0, x1, y1),
                                             level, polarity, upward=r0 == 0)
                    placed = None if box is None else _placement_cost(box, (x0, y0, x1, y1))
                    if placed is not None:
                        found.append((*placed, box, False, polarity))
                    continue
                if r0 == 0 or c0 == 0 or r1 == crop.shape[0] or c1 == crop.shape[1]:
                    continue  # cut by the window: an edge, a frame or a large object
                box = (ra + c0, rya + r0, ra + c1, rya + r1)
                if _gap((x0, y0, x1, y1), box) / th > _MAX_GAP_TH:
                    continue
                component = labels[sl] == lab
                if r0 <= (y0 + y1) / 2 - rya < r1 and c0 <= (x0 + x1) / 2 - ra < c1 \
                        and (component | masked[sl]).mean() >= 0.6:
                    continue  # the box the label is written in (a bar is beside its label, not under it)
                extent = extent_of(component, th)
                if extent is None:
                    continue
                r0, c0, r1, c1 = r0 + extent[0], c0 + extent[1], r0 + extent[2], c0 + extent[3]
                bh, bw = r1 - r0, c1 - c0
                box = (ra + c0, rya + r0, ra + c1, rya + r1)
                placed = _placement_cost(box, (x0, y0, x1, y1))
                if placed is not None:
                    against_label = bool(contact[lab] >= 0.5 * max(bh, bw) or inside[lab] > 0
                                         or _end_in(labels, lab, masked, (r0, c0, r1, c1)))
                    found.append((*placed, box, against_label, polarity))
            # tick marks in a row, equally spaced: a ruler (Hitachi's), measured end to end
            ruler = _group_ruler(ticks) if len(ticks) >= _MIN_RULER_TICKS else []
            if len(ruler) >= _MIN_RULER_TICKS:
                r0, r1 = min(tick[0].start for tick in ruler), max(tick[0].stop for tick in ruler)
                box = (ra + ruler[0][1].start, rya + r0, ra + ruler[-1][1].stop, rya + r1)
                placed = _placement_cost(box, (x0, y0, x1, y1))
                if placed is not None:
                    found.append((*placed, box, False, polarity))
        for cost, gap, box, against_label, polarity in sorted(found, key=lambda f: f[0])[:10]:
            if (box, polarity) in seen:
                continue
            seen.add((box, polarity))
            m = measure(box)
            if against_label and m is not None and "touches box edge" in m.notes:
                # the label's rectangle cut the bar (a text line box grown over a bar drawn
                # right under its glyphs): measured again through the rectangle, along the bar
                m = measure(_through_label(box, text_box, m.orientation))
                if m is not None:
                    # or across it: the rectangle cut the bar in two (a vertical bar beside
                    # its label, under a text box wider than the glyphs, synthetic
                    # 170,000,005)
                    box, m = _across_label(image, box, text_box, m)
            if m is not None and m.polarity != polarity and "low contrast" in m.notes:
                # a faint object of the other polarity measured in the box of a bar found at
                # an extreme level (the black between a white bar's end ticks in a black data
                # bar, synthetic 250,000,086): the bar of the polarity it was found at, if it
                # stands out
                other = measure(box, polarity)
                if other is not None and "low contrast" not in other.notes:
                    m = other
            if loose and m is not None and "touches box edge" not in m.notes:
                # at a loose level noise breaks a faint line: the bar measured on from the
                # piece found, where it still sits where bars sit, is the component
                grown = _grown_to(box, m)
                if _placement_cost(grown, text_box) is not None:
                    box = grown
            if m is not None and m.length_px < 3 * th:
                bar = _bar_of_tick(image, m)
                placed = None if bar is None else _placement_cost(bar.bbox, text_box)
                if placed is not None:
                    (cost, gap), box, m = placed, bar.bbox, bar
            if not _is_component(m, box, text_box, against_label, glyph_polarity):
                if m is not None and m.polarity == polarity:
                    continue
                # something else was measured (the dark gap of a white double line, running on
                # into a dark band): only objects of the polarity the component was found at
                m = measure(box, polarity)
                if not _is_component(m, box, text_box, against_label, glyph_polarity):
                    continue
            if glyph_polarity is not None and m.polarity != glyph_polarity and _gap(m.bbox, text_box) <= 2.0:
                # of the colour of the label's ground and touching it: more likely the rest of
                # the box the label is written in than a bar (synthetic 30,000,115); a bar of
                # that colour apart from its label is common (EMPS 478a6c42ec: a white bar
                # beside a black label on a white box)
                cost += _OTHER_COLOUR_COST
            out.append((cost, _outlined(image, m), gap))
    out.sort(key=lambda o: o[0])
    return out


def _long_vertical_bar(image: np.ndarray, component: np.ndarray, corner, text_box, level: float,
                       polarity: str, upward: bool) -> tuple[int, int, int, int] | None:
    """A vertical bar over or beside a label that the search window cut: its box in image
    pixels, or None.

    `component` (a mask cropped to its box, whose top-left pixel is `corner` = (x, y) in
    the image) reaches the window's top (`upward`) or bottom; when it is a bar-thin column,
    its rows are followed towards the cut at the same grey `level` (rows at least half as
    filled as the component's own) up to the image's edge, which it must not reach.  Where
    the box found sits relative to the label (over it, or beside it on its rows) is the
    caller's :func:`_placement_cost`.  The generator's vertical bars are 10-30 % of
    the image's height, up to 21 label heights over a label (synthetic 30,000,095 and
    40,000,130) or more, and 11 label heights beside one (synthetic 150,000,155).
    """
    th = max(2.0, text_box[3] - text_box[1])
    cx, cy = corner
    ch, cw = component.shape
    if cw > _MAX_THICK_TH * th or ch < cw:
        return None
    ya, yb = (0, cy + ch) if upward else (cy, image.shape[0])
    strip = np.asarray(image[ya:yb, cx : cx + cw], dtype=np.float64)
    counts = (strip > level if polarity == "bright" else strip < level).sum(axis=1)
    filled = counts >= max(1.0, 0.5 * float(np.median(component.sum(axis=1))))
    run = filled[::-1] if upward else filled  # from the label's end of the bar outwards
    n = int(np.argmin(run)) if not run.all() else run.size
    if n == run.size or n < ch:  # reaches the image's edge, or ends where the window cut it
        return None
    return (cx, yb - n, cx + cw, yb) if upward else (cx, ya, cx + cw, ya + n)


def _end_in(labels: np.ndarray, lab: int, masked: np.ndarray, box) -> bool:
    """Whether an end of component `lab` of `labels` (along its longer side; `box` =
    ``(r0, c0, r1, c1)``, its rows and columns) runs into `masked`: the pixel just
    beyond one of its end pixels is masked (the label's rectangle cut the bar there)."""
    r0, c0, r1, c1 = box
    if c1 - c0 < r1 - r0:
        return _end_in(labels.T, lab, masked.T, (c0, r0, c1, r1))
    rows = slice(r0, r1)
    return bool((c0 > 0 and ((labels[rows, c0] == lab) & masked[rows, c0 - 1]).any())
                or (c1 < masked.shape[1] and ((labels[rows, c1 - 1] == lab) & masked[rows, c1]).any()))


def _runs_across(ink: np.ndarray, cols, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
    """For columns `cols` of a boolean (H, W) `ink`, the rows ``[top, bottom)`` of the run of
    ink through rows ``[y0, y1)``: from the inked rows there on, unbroken, up and down.  A
    column without ink in ``[y0, y1)`` gets an empty run (``top == bottom == y0``)."""
    cols = np.asarray(cols, dtype=np.intp)
    up = _unbroken(ink[:y0, cols][::-1].T) if y0 > 0 else np.zeros(cols.size, np.intp)
    down = _unbroken(ink[y1:, cols].T) if y1 < ink.shape[0] else np.zeros(cols.size, np.intp)
    inked = ink[y0:y1, cols].any(axis=0)
    return np.where(inked, y0 - up, y0), np.where(inked, y1 + down, y0)


def _bar_of_tick(image: np.ndarray, m: BarMeasurement) -> BarMeasurement | None:
    """The longer bar that a short measured bar `m` is an end tick of, measured, or None.

    A bracket-shaped bar (a line with end ticks) beside its label on the label's rows
    is cut there by the label's masked rows; the tick left above or below them was
    measured as a bar across the real one (EMPS-synthetic 740,000,014: a vertical
    48-px bracket, its 16-px top tick level with "1 µm", read at 2.9 times the scale).
    A line of ink at the bar's level through one of `m`'s ends, at right angles to it,
    reaching at least twice `m`'s length beyond its rows and with a tick of about `m`'s
    length at its other end, is that bar.  Only a strip of the image across `m`'s extent
    (and twice its length beyond each end) is thresholded.
    """
    x0, y0, x1, y1 = m.bbox
    img = np.asarray(image)
    if m.orientation == "v":  # `m` along the rows of the transposed image
        img, (x0, y0, x1, y1) = img.T, (y0, x0, y1, x1)
    reach = int(2 * m.length_px) + 4
    lo = max(x0 - reach, 0)
    level = (m.bar_level + m.background_level) / 2
    strip = img[:, lo: x1 + reach]
    ink = strip > level if m.polarity == "bright" else strip < level
    x0, x1 = x0 - lo, x1 - lo
    # the longest run across `m`'s rows in its first and last 4 columns
    cols = sorted(set(range(x0, min(x0 + 4, x1))) | set(range(max(x1 - 4, x0), x1)))
    tops, bottoms = _runs_across(ink, cols, y0, y1)
    k = int(np.argmax(bottoms - tops))
    c, top, bottom = cols[k], int(tops[k]), int(bottoms[k])
    if bottom - top < 2 * m.length_px + (y1 - y0):
        return None
    # a bracket's tick ends free and its other end has a tick as long, pointing the same way;
    # an outline box's edge meets another side at its far end too (EMPS-synthetic 640,000,178:
    # the box's top edge and its 294-px side, for a 251-px bar inside it)
    step = -1 if abs(c - x0) > abs(c - (x1 - 1)) else 1  # from the line towards the tick's far end
    far_end = x0 if step < 0 else x1 - 1
    far_tops, far_bottoms = _runs_across(ink, range(max(far_end - 3, 0), min(far_end + 4, ink.shape[1])), y0, y1)
    if (far_bottoms - far_tops >= 0.5 * (bottom - top)).any():
        return None
    far_rows = slice(max(bottom - 4, top), bottom) if abs(y0 - top) < abs(bottom - y1) else slice(top, min(top + 4, bottom))
    along = ink[far_rows, c:] if step > 0 else ink[far_rows, : c + 1][:, ::-1]
    run = int(_unbroken(along).max()) if along.size else 0
    if not 0.5 * m.length_px <= run <= 2.0 * m.length_px:
        return None
    box = (lo + c - 3, top, lo + c + 4, bottom)
    if m.orientation == "v":
        box = (top, lo + c - 3, bottom, lo + c + 4)
    bar = _measure(image, _clip_box(*box, image.shape), m.polarity)
    if bar is None or bar.orientation == m.orientation or bar.length_px < 2 * m.length_px:
        return None
    return bar


def _grown_to(box, m: BarMeasurement) -> tuple:
    """`box` (x0, y0, x1, y1) grown along `m`'s axis to its measured extent, when that
    holds the box's extent (within 2 px); else `box`."""
    ax = (0, 2) if m.orientation == "h" else (1, 3)
    if m.bbox[ax[0]] > box[ax[0]] + 2 or m.bbox[ax[1]] < box[ax[1]] - 2:
        return box
    out = list(box)
    out[ax[0]], out[ax[1]] = min(box[ax[0]], m.bbox[ax[0]]), max(box[ax[1]], m.bbox[ax[1]])
    return tuple(out)


def _across_label(image: np.ndarray, box, text_box, m: BarMeasurement) -> tuple[tuple, BarMeasurement]:
    """A bar piece `box` (x0, y0, x1, y1) that runs into the label's rectangle, measured
    through it as `m`: when the bar goes on across the whole rectangle (measured again in
    the piece's box carried past the rectangle by the piece's own length, if `m` still
    runs into its box's end) and starts at the piece's outer end (within 2 px), the box
    grown to that bar along its axis and the bar's measurement; else ``(box, m)``."""
    ax = (0, 2) if m.orientation == "h" else (1, 3)
    a0, a1, t0, t1 = box[ax[0]], box[ax[1]], text_box[ax[0]], text_box[ax[1]]
    before = a1 <= (t0 + t1) / 2  # the piece lies before the label along the axis
    bar = m
    if "touches box edge" in m.notes:
        grown = list(box)
        if before:
            grown[ax[1]] = max(a1, t1) + (a1 - a0)
        else:
            grown[ax[0]] = min(a0, t0) - (a1 - a0)
        bar = _measure(image, _pad_box(tuple(grown), 2, image.shape))
        if bar is None or bar.orientation != m.orientation:
            return box, m
    f0, f1 = bar.bbox[ax[0]], bar.bbox[ax[1]]
    if abs((f0 - a0) if before else (f1 - a1)) > 2 or f0 > t0 or f1 < t1:
        return box, m
    return _grown_to(box, bar), bar


def _through_label(box, text_box, orientation: str) -> tuple[float, float, float, float]:
    """`box` grown along the bar's axis (``"h"`` or ``"v"``) over the label's rectangle,
    where that rectangle overlaps or adjoins it; its other sides unchanged.

    >>> _through_label((20, 10, 40, 14), (5, 0, 21, 15), "h")
    (5, 10, 40, 14)
    """
    x0, y0, x1, y1 = box
    if orientation == "h":
        return (min(x0, text_box[0]), y0, max(x1, text_box[2]), y1)
    return (x0, min(y0, text_box[1]), x1, max(y1, text_box[3]))


def _outlined(image: np.ndarray, m: BarMeasurement) -> BarMeasurement:
    """The bar with its outline, when it is a hollow bar: a thin frame (1-4 px) of the
    other polarity around the bar's fill, on both ends and along both sides (a white bar
    drawn with a grey outline).  Scale bars are measured to the outline's outer edges:
    each end gains the outline's width (its coverage between the outline's and the
    background's grey levels, sub-pixel).  Any other bar is returned as it is."""
    image = np.asarray(image)
    if m.orientation == "v":
        t = _outlined(image.T, replace(m, bbox=_transposed_box(m.bbox), orientation="h"))
        return m if t.bbox == _transposed_box(m.bbox) else replace(t, bbox=_transposed_box(t.bbox), orientation="v")
    h_img, w_img = image.shape
    d, pad = 4, 9  # the widest outline; the pixels looked at around the bar
    bx0, by0, bx1, by1 = m.bbox
    if bx0 < pad or by0 < pad or bx1 > w_img - pad or by1 > h_img - pad or bx1 - bx0 < 6:
        return m
    # only the bar's neighbourhood, in its own coordinates (the bar from (pad, pad))
    arr = np.asarray(image[by0 - pad : by1 + pad, bx0 - pad : bx1 + pad], dtype=np.float64)
    x0, y0, x1, y1 = pad, pad, pad + bx1 - bx0, pad + by1 - by0
    fill = float(np.median(arr[y0:y1, x0:x1]))
    ring = np.concatenate([arr[y0 - d - 4 : y0 - d, x0:x1].ravel(), arr[y1 + d : y1 + d + 4, x0:x1].ravel(),
                           arr[y0:y1, x0 - d - 4 : x0 - d].ravel(), arr[y0:y1, x1 + d : x1 + d + 4].ravel()])
    bg = float(np.median(ring))
    sign = 1.0 if fill > bg else -1.0
    contrast = abs(fill - bg)
    if contrast <= 0:
        return m
    # how far each pixel beyond the fill is from the background, away from the fill (0..1+)
    def dev(a):
        return -sign * (a - bg) / contrast
    mid = slice(y0 + (y1 - y0) // 4, y1 - (y1 - y0) // 4 or y1)
    ends = [dev(arr[mid, x0 - d : x0][:, ::-1]), dev(arr[mid, x1 : x1 + d])]  # outward from each end
    if not all((e.max(axis=1) > 0.5).all() for e in ends):
        return m
    level = float(np.median([e.max(axis=1).mean() for e in ends]))  # the outline's deviation
    # along both sides too, and the background back just outside it (a box around the bar,
    # or its label, is no outline), over most of the length
    for side in (arr[y0 - d - 3 : y0, x0:x1][::-1], arr[y1 : y1 + d + 3, x0:x1]):  # rows outwards
        dv = dev(side)
        if ((dv[:d].max(axis=0) > 0.5 * level) & (dv[d + 1 :].min(axis=0) < 0.25 * level)).mean() < 0.6:
            return m
    # the outline's outer edges: where the profile along the bar crosses halfway between
    # the background and the outline's level, coming from outside (sub-pixel); beyond the
    # outline there must be background again (a 4-px gap of a box's interior between a dark
    # bar's end and the box's dark frame is no light outline, synthetic 150,000,094)
    edges = []
    for prof, base, step in ((np.median(dev(arr[mid, x0 - d - 4 : x0]), axis=0), x0 - d - 4, 1),
                             (np.median(dev(arr[mid, x1 : x1 + d + 4]), axis=0)[::-1], x1 + d + 4, -1)):
        j = 2 + int(np.argmax(prof[2:] >= 0.5 * level))
        if j == 2:
            return m  # no background outside the outline
        if abs(float(np.median(prof[max(0, j - 3) : j - 1]))) > 0.35 * level:
            return m  # something else beyond it: the outline is the gap to that
        frac = (0.5 * level - prof[j - 1]) / max(1e-9, prof[j] - prof[j - 1])
        edges.append(base + step * (j - 0.5 + frac))  # pixel i of the profile is centred at base + step * (i + 0.5)
    left, right = edges
    if not (1.0 <= x0 - left <= d + 0.5 and 1.0 <= right - x1 <= d + 0.5):
        return m
    # the outline's whole columns at each end, on average, deviate as an outline does: on
    # a noisy micrograph the largest of a few pixels beyond a thin bar's ends passes the
    # tests above by chance (synthetic 130,000,019: 3 px of noise "outline" at each end)
    zones = (arr[mid, int(np.ceil(left)) : x0], arr[mid, x1 : int(np.floor(right))])
    if not all(z.size and float(dev(z).mean()) >= 0.5 * level for z in zones):
        return m
    left, right = left + bx0 - pad, right + bx0 - pad  # back to image pixels
    return replace(m, length_px=float(right - left),
                   bbox=(int(np.floor(left + 0.5)), by0, int(np.floor(right + 0.5)), by1),
                   notes=tuple(m.notes) + ("outlined",))


def _transposed_box(box) -> tuple:
    """A box (x0, y0, x1, y1) in the transposed image."""
    return (box[1], box[0], box[3], box[2])


def _bar_candidates_any_text(image: np.ndarray, text_box,
                             loose: bool = False) -> list[tuple[float, BarMeasurement, float]]:
    """:func:`_bar_candidates` for a horizontal or a vertical label.

    Vertical text (:func:`_is_vertical_text`) has its bar beside it along y:
    the search runs on the transposed image, where it is a horizontal label,
    and the bars found are turned back.
    """
    if not _is_vertical_text(text_box):
        return _bar_candidates(image, text_box, loose=loose)
    out = []
    for cost, m, gap in _bar_candidates(np.asarray(image).T, _transposed_box(text_box), loose=loose):
        m = replace(m, bbox=_transposed_box(m.bbox), orientation="v" if m.orientation == "h" else "h")
        out.append((cost, m, gap))
    return out


def _votes_for(det_box, m: BarMeasurement) -> bool:
    """Whether a detected bar box is the detector's vote for a measured bar: it covers half
    of the bar, or it lies along the bar over its whole length (a box around one edge
    of a thick bar)."""
    if _covered(m.bbox, det_box) >= 0.5:
        return True
    ax = (0, 2) if m.orientation == "h" else (1, 3)
    length = m.bbox[ax[1]] - m.bbox[ax[0]]
    return _covered(det_box, m.bbox) >= 0.5 and abs((det_box[ax[1]] - det_box[ax[0]]) - length) <= 0.1 * length


def _pieces_vote(det_boxes, m: BarMeasurement) -> list[int]:
    """The detected bar boxes that together are the detector's vote for a measured bar
    none of them votes for alone (:func:`_votes_for`): their indices, or [] when they
    are no vote.

    The detector boxes a long thin bar in pieces, or cut short, and the bar's measured
    box may be tall (the rows of a thin line and the label's glyphs under it, synthetic
    100,000,189).  Boxes on the bar's rows (columns for a vertical bar), lying along it
    (90 % of each within its length), vote when together they cover 60 % of its
    length (a box over half of a 271-px outline box around a bar and its label is none,
    synthetic 110,000,145).
    """
    ax, ac = ((0, 2), (1, 3)) if m.orientation == "h" else ((1, 3), (0, 2))
    a0, a1 = m.bbox[ax[0]], m.bbox[ax[1]]
    if a1 <= a0:
        return []
    pieces, spans = [], []
    for i, box in enumerate(det_boxes):
        d0, d1 = box[ax[0]], box[ax[1]]
        across = min(m.bbox[ac[1]], box[ac[1]]) - max(m.bbox[ac[0]], box[ac[0]])
        inside = min(a1, d1) - max(a0, d0)
        if across > 0 and d1 > d0 and inside >= 0.9 * (d1 - d0):
            pieces.append(i)
            spans.append((max(a0, d0), min(a1, d1)))
    covered, end = 0.0, a0
    for s0, s1 in sorted(spans):
        covered += max(0.0, s1 - max(s0, end))
        end = max(end, s1)
    return pieces if covered >= 0.6 * (a1 - a0) else []


def _candidate(image, sr: ScaleRead, text_box, label_score, bars, via_text_search,
               read_by: str = "pp-ocr", disputed: bool = False) -> ScalebarReading | None:
    """Pair a read label with its bar and build the reading (None when no bar is found).
    `read_by`: what read the label ("pp-ocr" or "label-reader"), recorded in ``checks``;
    `disputed`: the other reader read the same label otherwise (:func:`reading_confidence`)."""
    th = max(1.0, text_box[3] - text_box[1])
    tw = max(1.0, text_box[2] - text_box[0])
    vertical_text = _is_vertical_text(text_box)
    if vertical_text:  # the label's height is the box's width
        th, tw = tw, th
    # bar-like objects where a scale bar sits relative to this label; a detected bar box
    # covering one of them is the detector's vote for it
    def shaped(loose: bool) -> list:
        out = []
        for cost, m, gap in _bar_candidates_any_text(image, text_box, loose=loose):
            support = [d.score for d in bars if _votes_for(d.box, m)] or \
                [bars[i].score for i in _pieces_vote([d.box for d in bars], m)]
            # a scale bar is drawn at an extreme grey level: an object of low contrast (the dark
            # gap between the lines of a white double bar, synthetic 60,000,077) is a poorer choice
            faint = 0.5 if "low contrast" in m.notes else 0.0
            out.append((cost - (0.5 if support else 0.0) + faint, m, max(support) if support else None, gap, True))
        return out

    options = shaped(False)
    if options and min(o[0] for o in options) >= _POOR_PLACEMENT:
        # only what sits poorly for a bar found at the usual levels: bars at loose levels
        # compete (a dark rod 1.5 label heights from "50 nm" against the faint 1-px line right
        # beside it, synthetic 110,000,137)
        options = options + shaped(True)
    if not options:
        # nothing bar-like found at the usual levels: bars at loose levels (a faint thin line
        # between its end ticks), and measurements inside detected bar boxes near the label
        options = shaped(True)
        for d in sorted(bars, key=lambda d: _gap(text_box, d.box) / th - d.score)[:3]:
            m = _measure(image, _pad_box(d.box, 2, image.shape))
            if m is None:
                continue
            gap = _gap(text_box, m.bbox) / th
            along_text = (m.orientation == "h") != vertical_text
            ratio = m.length_px / tw if along_text else m.length_px / th
            if gap <= _MAX_GAP_TH and _LENGTH_TW[0] <= ratio <= 12.0:
                options.append((gap, m, d.score, gap, False))
    if not options:
        return None
    _, m, bar_score, gap, by_shape = min(options, key=lambda o: o[0])
    label = sr.label
    if not vertical_text and _ends_before(m.bbox, text_box):
        label = _tick_read_as_one(label) or label
    nm = label.value_nm / m.length_px
    lo, hi = NM_PER_PX_RANGE
    alt = sr.runner_up
    unit_margin = sr.log_margin
    if not lo <= nm <= hi and alt is not None and (unit_margin is None or unit_margin < _IMPOSSIBLE_SIZE_LOG_ODDS) \
            and lo <= alt.value_nm / m.length_px <= hi:
        # a unit that gives a pixel size no microscope has, where the next most likely unit
        # gives one: the next unit, reported with the recognizer's margin against it (0 when
        # the recognizer gave none) and counted as uncertain
        label = alt
        nm = label.value_nm / m.length_px
        unit_margin = -abs(unit_margin or 0.0)
    conf, factors = reading_confidence(
        label_score=label_score, bar_score=bar_score, ocr_score=sr.hit.score,
        gap_in_label_heights=gap, corrections=len(label.corrections),
        unit_log_margin=unit_margin, round_value=is_round_value(label.value),
        nm_per_px=nm, bar_notes=len(m.notes), via_text_search=via_text_search,
        number_cut=_number_cut(sr.hit.text), bar_by_shape=by_shape, disputed=disputed,
        by_label_reader=read_by == "label-reader",
    )
    checks = {
        "factors": factors,
        "label_score": round(float(label_score), 4),
        "bar_score": None if bar_score is None else round(float(bar_score), 4),
        "ocr_score": round(float(sr.hit.score), 4),
        "gap_label_heights": round(float(gap), 3),
        "unit_log_margin": None if unit_margin is None else round(float(unit_margin), 3),
        "label_found_by": "text-search" if via_text_search else "detector",
        "label_read_by": read_by,
        "bar_found_by": "search" if bar_score is None else "detector",
        "bar_method": m.method,
    }
    return ScalebarReading(
        nm_per_px=float(nm), value=float(label.value), unit=label.unit, value_nm=float(label.value_nm),
        text=sr.hit.text, bar_px=float(m.length_px), orientation=m.orientation,
        bar_bbox=tuple(int(v) for v in m.bbox), text_bbox=tuple(int(round(v)) for v in text_box),
        confidence=conf, checks=checks, notes=list(label.corrections) + list(m.notes),
    )


def _same_value(a_nm: float, b_nm: float) -> bool:
    """Two readings of a label give the same length (nm, to rounding)."""
    return math.isclose(a_nm, b_nm, rel_tol=1e-6)


def _second_opinion(image: np.ndarray, reading: ScalebarReading, reader) -> tuple[ScaleRead | None, tuple | None]:
    """The project's label reader on `reading`'s label box, when it reads a different value
    with a score of :data:`_SECOND_OPINION_MIN_SCORE` or more: that read and its text box
    (:func:`_read_with_label_reader`); else (None, None)."""
    sr, text_box = _read_with_label_reader(image, reading.text_bbox, reader)
    if sr is None or sr.hit.score < _SECOND_OPINION_MIN_SCORE or _number_cut(sr.hit.text) \
            or not is_round_value(sr.label.value) \
            or _same_value(sr.label.value_nm, reading.value_nm):
        # no opinion from a number cut at its start (".5 µm" of "[2,5 µm" that PP-OCR read
        # right, synthetic 310,000,028: the widened box lost a digit) or from a value no scale
        # bar has ("11 um" of "1 um", 0.83, synthetic 340,000,076)
        return None, None
    return sr, text_box


def _disputed(reading: ScalebarReading) -> ScalebarReading:
    """`reading` with its ``readers_agree`` factor set to that of a disputed label
    (:func:`reading_confidence`) and its confidence recomputed from its factors."""
    factors = {**reading.checks["factors"], "readers_agree": _DISPUTED}
    return replace(reading, confidence=_confidence_of(factors), checks={**reading.checks, "factors": factors})


def _ends_before(bar_box, text_box) -> bool:
    """Whether a horizontal bar ends right before a horizontal label, on its rows (within
    half a label height of its first glyph): the bar's end tick may be read as the label's
    first character."""
    x0, y0, x1, y1 = text_box
    th = max(1.0, y1 - y0)
    bx0, by0, bx1, by1 = bar_box
    return bx1 - bx0 >= by1 - by0 and by0 < y1 and by1 > y0 and abs(bx1 - x0) <= 0.5 * th


def _tick_read_as_one(label: ScaleLabel) -> ScaleLabel | None:
    """`label` without its leading "1" when that is a bar's end tick: the value read is no
    round scale-bar value and the rest, of two digits or more, is ("10.2 µm" of "0.2 µm"
    right of its bar, synthetic 60,000,105; "150nm" of "50nm"); else None.  A one-digit
    rest is left alone: "15 nm" is a label too."""
    text = label.text.lstrip()
    if not text.startswith("1") or is_round_value(label.value):
        return None
    rest = parse_scale_label(text[1:])
    if rest is None or not is_round_value(rest.value) or sum(c.isdigit() for c in text[1:]) < 2:
        return None
    # the number only: the label keeps its unit (chosen by likelihoods, maybe) and corrections
    return replace(label, value=rest.value, value_nm=label.value_nm * rest.value / label.value,
                   corrections=label.corrections + ("bar tick",))


def _label_window(box, shape) -> tuple[float, float, float, float]:
    """Where to look for the whole label line around a detected label box: the
    detector's boxes are often shifted or cut by a character or two."""
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    dx, dy = max(0.5 * w, 1.5 * h), 1.0 * h
    return _clip_box(x0 - dx, y0 - dy, x1 + dx, y1 + dy, shape)


def _around_bar(box, shape, d_across: float, d_along: float) -> tuple[float, float, float, float]:
    """A bar's box (x0, y0, x1, y1) grown by `d_across` across the bar and `d_along` beyond its
    ends (px), clipped to the image."""
    x0, y0, x1, y1 = box
    if (x1 - x0) >= (y1 - y0):
        return _clip_box(x0 - d_along, y0 - d_across, x1 + d_along, y1 + d_across, shape)
    return _clip_box(x0 - d_across, y0 - d_along, x1 + d_across, y1 + d_along, shape)


def _edge_bands(shape) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """The bands where scale bars sit in nearly every micrograph: the bottom 38 % and the top
    30 % of an image of `shape` (M, N), as (x0, y0, x1, y1); reading only those keeps PP-OCR's
    text detector (the slow part) off most of the image."""
    h_img, w_img = shape
    return (0, int(h_img * 0.62), w_img, h_img), (0, 0, w_img, int(np.ceil(h_img * 0.3)))


def _bar_window(box, shape) -> tuple[float, float, float, float]:
    """Where a bar's label can be, around a detected bar box (above, below or beside;
    labels are shorter than about 4 bar lengths and sit within about two label heights)."""
    length = max(box[2] - box[0], box[3] - box[1])
    return _around_bar(box, shape, max(32.0, 0.8 * length), 0.6 * length)


def _near_bar_window(box, shape) -> tuple[float, float, float, float]:
    """Where a small label (glyphs under ~10 px) of a bar can be: within 48 px across the bar
    and 30 % of its length (at least 48 px) beyond its ends."""
    return _around_bar(box, shape, 48.0, max(48.0, 0.3 * max(box[2] - box[0], box[3] - box[1])))


def _glyph_box(line_box, shape, read_box=None) -> tuple[float, float, float, float]:
    """The glyphs' box inside a text line found by PP-OCR's text detector.

    The detector's boxes are grown around the text (DB's "unclip"): on the
    EMPS labels by 0.15-0.3 glyph heights on each side, enough to reach a bar
    drawn right under the label.  Each side not at the image edge is moved in
    by 15 % of the line's height (the box's shorter side).  The detector also joins a bar's end to a
    label beside it now and then; `read_box`, the box the recognizer read
    (trimmed to the glyphs, long thin objects left out), cuts that off where it
    is inside the line box.
    """
    x0, y0, x1, y1 = (float(v) for v in line_box)
    h_img, w_img = shape
    d = 0.15 * min(y1 - y0, x1 - x0)  # the line's height, also for vertical text
    box = (
        x0 + d if x0 > 0 else x0, y0 + d if y0 > 0 else y0,
        x1 - d if x1 < w_img else x1, y1 - d if y1 < h_img else y1,
    )
    if read_box is None:
        return box
    inter = _intersection(box, read_box)
    return inter if inter[2] - inter[0] >= 2 and inter[3] - inter[1] >= 2 else box


def _upscale_for(text_height_px: float) -> float:
    """Enlargement that brings a label of this height to the ~24 px PP-OCR's detector finds
    reliably (at most 3x)."""
    return float(min(3.0, max(1.0, 24.0 / max(1.0, text_height_px))))


def _extreme_views(image: np.ndarray, window) -> Iterator[np.ndarray]:
    """Remapped copies of a grey image in which what lies at the extreme grey levels of a
    window stands out, white on black.

    Scale labels are drawn white or black.  On a light micrograph (a dark one) PP-OCR's
    text detector loses white (black) glyphs that stand a few grey levels above (below)
    their ground, and finds them once little else is left (synthetic 90,000,179 and
    40,000,051).

    Parameters
    ----------
    image : (M, N) array, any real dtype
        The grey image.
    window : (x0, y0, x1, y1)
        The part to remap, image pixels.

    Yields
    ------
    (M, N) uint8
        Zero outside `window`.  First the bright view: the levels from halfway between the
        window's median and its 99.9th percentile up to that percentile stretched over
        0-255; then the dark view, towards the 0.1th percentile, the darkest levels white.
        Nothing where the window is one grey level.  Made one at a time: the reader stops
        at the first that gives a label.
    """
    xa, ya, xb, yb = (int(round(v)) for v in window)
    pix = np.asarray(image[ya:yb, xa:xb], dtype=np.float64)
    finite = pix[np.isfinite(pix)]
    if finite.size == 0:
        return
    lo, med, hi = (float(v) for v in np.percentile(finite, (0.1, 50, 99.9)))
    for extreme in (hi, lo):
        ground = (med + extreme) / 2
        if abs(extreme - ground) < 1e-6:
            continue
        view = np.zeros(image.shape, np.uint8)
        view[ya:yb, xa:xb] = np.clip(np.rint(np.nan_to_num((pix - ground) / (extreme - ground)) * 255.0), 0, 255)
        yield view


def _turned_lines(image: np.ndarray, window, *, upscale, threads) -> list:
    """Text lines of a window read turned by 90° both ways (vertical text), with
    their boxes in image pixels; the turn that finds a label line wins."""
    from micrometry.calibrate.scalebar.ocr import TextHit, _is_label, read_text

    xa, ya, xb, yb = (int(round(v)) for v in window)
    crop = image[ya:yb, xa:xb]
    hh, ww = crop.shape
    found = []
    for k in (1, 3):  # counter-clockwise (text reading upwards), then clockwise
        rot = np.ascontiguousarray(np.rot90(crop, k))
        hits = read_text(rot, None, accept=_is_label, threads=threads, trim=False, margin_px=0,
                         single_line=False, upscale=upscale)
        out = []
        for h in hits:
            rx0, ry0, rx1, ry1 = h.bbox
            if k == 1:  # rot[i, j] = crop[j, ww - 1 - i]
                box = (xa + ww - ry1, ya + rx0, xa + ww - ry0, ya + rx1)
            else:  # rot[i, j] = crop[hh - 1 - j, i]
                box = (xa + ry0, ya + hh - rx1, xa + ry1, ya + hh - rx0)
            out.append(TextHit(h.text, h.score, tuple(float(v) for v in box)))
        if any(_is_label(h.text) for h in out):
            return out
        found += out
    return found


def _best_label_reading(image: np.ndarray, boxes, vertical: bool, reader) -> tuple[ScaleRead | None, tuple | None]:
    """The project's label reader on boxes of an image, in one batch (a box of vertical text
    read turned both ways): the reading that parses as a scale label with the reader's
    highest score and its text box in image pixels (the glyphs of its crop,
    :func:`~micrometry.calibrate.scalebar.ocr._trim`; the whole box for vertical text), or
    (None, None)."""
    views, owners = [], []
    for i, box in enumerate(boxes):
        xa, ya, xb, yb = (int(round(v)) for v in box)
        crop = image[ya:yb, xa:xb]
        if min(crop.shape) < 4:
            continue
        for v in ([np.rot90(crop, -1), np.rot90(crop, 1)] if vertical else [crop]):
            views.append(np.ascontiguousarray(v))
            owners.append(i)
    best = None
    for i, (text, score) in zip(owners, reader.read_batch(views) if views else []):
        label = parse_scale_label(text)
        if label is not None and (best is None or score > best[0]):
            best = (score, label, text, i)
    if best is None:
        return None, None
    score, label, text, i = best
    xa, ya, xb, yb = (int(round(v)) for v in boxes[i])
    text_box = (float(xa), float(ya), float(xb), float(yb)) if vertical else \
        _cut_bar_ends(image, tuple(float(v) for v in _trim(to_uint8(image[ya:yb, xa:xb]), xa, ya, xb, yb)))
    return _unscored_read(label, TextHit(text, score, text_box)), text_box


#: A label box's end whose ink, on a row it holds, goes on outside the box unbroken over
#: :data:`_BAR_END_FILL` of this many box heights is a bar's end.
_BAR_END_REACH = 1.0
_BAR_END_FILL = 0.7


def _unbroken(ink: np.ndarray) -> np.ndarray:
    """Per row of a boolean (K, L) array, how many pixels from its first are inked unbroken
    (L where all are)."""
    return np.where(ink.all(axis=1), ink.shape[1], np.argmin(ink, axis=1))


def _cut_bar_ends(image: np.ndarray, text_box, beside: bool = True) -> tuple[float, float, float, float]:
    """A horizontal label's glyph box without the end of a bar beside the label, or a
    vertical bar passing its end.

    A label box widened along its text (as the label reader reads it) takes in the end of a
    bar drawn beside the label; :func:`~micrometry.calibrate.scalebar.ocr._trim` keeps that
    end, a blob like a glyph cut by the box's edge, and the bar searched for next to the box
    is then cut where the box covers it (synthetic 440,000,083: "5 µm" right of a white
    110-px bar, whose last 8 px the box took in; 94.7 px measured).  A run of inked columns
    (Otsu's threshold, the label's polarity) from the box's side is such an end when, on a
    row it holds, the ink goes on through the side and outside the box for
    :data:`_BAR_END_FILL` of :data:`_BAR_END_REACH` box heights unbroken
    (glyphs beyond a cut box leave gaps; glyphs inside keep a margin from the side, and a bar
    a few pixels beyond them is no end run through it: synthetic 340,000,023); the box is
    then moved in past the run.  So is a run that starts within the box's margin and holds
    a column inked over most of the box's rows and on, unbroken, above or below it: a
    vertical bar passing the label's end (its top taken into a line's box, synthetic
    560,000,021).  Every label box is cut so before it is paired with a bar; the label
    reader's boxes at both kinds of end, PP-OCR's at a vertical bar's only (their ends are
    the text detector's: an end run there is glyphs joined to a bar by blur, the "nm" of
    "200 nm" before a double bar, synthetic 530,000,045).

    Parameters
    ----------
    image : (M, N) array
        The image (grey).
    text_box : (x0, y0, x1, y1)
        The glyph box, image pixels.
    beside : bool, optional
        Whether the end of a bar beside the label is cut off too (default), or only a
        vertical bar passing its end.

    Returns
    -------
    (x0, y0, x1, y1) : tuple of float
        `text_box`, with either end moved in past a bar's end.
    """
    from micrometry.calibrate.scalebar.ocr import _dark_on_light

    xa, ya, xb, yb = (int(round(v)) for v in text_box)
    h, w = yb - ya, xb - xa
    crop = image[ya:yb, xa:xb]  # the image's own levels, inside the box and out
    if h < 4 or w < 2 * h or not np.isfinite(crop).all() or crop.max() == crop.min():
        return tuple(float(v) for v in text_box)
    th = _otsu(crop)
    # the glyphs' polarity: the ground around the box is on the other side of the threshold
    # (the crop's own levels misjudge it where large black glyphs fill half the box on a dark
    # noisy ground, synthetic 400,000,153: the ground was taken for ink, and for a bar's end)
    ring = np.concatenate([image[max(ya - 2, 0):ya, xa:xb].ravel(), image[yb:yb + 2, xa:xb].ravel(),
                           image[ya:yb, max(xa - 2, 0):xa].ravel(), image[ya:yb, xb:xb + 2].ravel()])
    light = float(np.median(ring)) > th if ring.size else _dark_on_light(crop)

    def inked(a: np.ndarray) -> np.ndarray:
        return a < th if light else a > th

    ink = inked(crop)
    cols = ink.any(axis=0)
    reach = int(math.ceil(_BAR_END_REACH * h))
    x0, x1 = float(text_box[0]), float(text_box[2])
    margin = max(2, round(0.15 * h)) + 1  # a glyph box's margin (ocr._trim), and a pixel
    for side in (0, 1):  # the box's left end, then its right end (columns counted from it)
        c = cols if side == 0 else cols[::-1]
        first = np.flatnonzero(c)
        if first.size == 0 or first[0] > margin:
            continue
        start = int(first[0])  # the first inked column from the side
        gaps = np.flatnonzero(~c[start:])
        run = int(gaps[0]) if gaps.size else w - start  # inked columns from there on
        if run > 0.5 * w:
            continue  # no end run
        lo, hi = (start, start + run) if side == 0 else (w - start - run, w - start)  # columns [lo, hi)
        bar_end = False
        o0, o1 = (xa - reach, xa) if side == 0 else (xb, xb + reach)
        if beside and start == 0 and o0 >= 0 and o1 <= image.shape[1]:  # (at the image's edge nothing is beside)
            rows = np.flatnonzero(ink[:, lo:hi].any(axis=1))
            ink_out = inked(image[ya + rows[0]: ya + rows[-1] + 1, o0:o1])
            # a bar's rows: inked from the box's side on, unbroken, over most of the reach (the
            # "nm" of "500 nm" cut by the box is followed by a 2-px gap before the bar beside it,
            # synthetic 600,000,033: the box cut there lost the unit, and the bar then found
            # beside it was the unit's glyphs)
            bar_end = bool((_unbroken(ink_out[:, ::-1] if side == 0 else ink_out) >= _BAR_END_FILL * reach).any())
        # or a vertical bar passing the label's end, within the box's margin: a column of the
        # run inked over the box's rows and on, unbroken, above or below it (a vertical bar whose
        # label's box took in its top, synthetic 560,000,021: measured beside itself)
        # and with the ground beside it, towards the glyphs (not a ground taken for ink where
        # the label's polarity was misjudged: large black glyphs on a dark noisy ground,
        # synthetic 400,000,153)
        full = ink[:, lo:hi].mean(axis=0) >= _BAR_END_FILL
        if not bar_end and full.any():
            inner = slice(xa + hi, xa + hi + 2) if side == 0 else slice(xa + lo - 2, xa + lo)
            for r0, r1 in ((yb, yb + reach), (ya - reach, ya)):
                if r0 < 0 or r1 > image.shape[0]:
                    continue
                out = inked(image[r0:r1, xa + lo: xa + hi]).T
                out = out if r0 == yb else out[:, ::-1]  # rows counted from the box
                if (_unbroken(out)[full] >= _BAR_END_FILL * reach).any() \
                        and inked(image[r0:r1, inner]).mean() <= 1 - _BAR_END_FILL:
                    bar_end = True
                    break
        if bar_end:
            if side == 0:
                x0 = float(xa + hi)
            else:
                x1 = float(xa + lo)
    return (x0, float(text_box[1]), x1, float(text_box[3]))


#: Glyphs a read line left out at its start are looked for this far beside its box, and may
#: be this far apart from the line and from each other (in glyph heights): a wide font's
#: decimal point leaves a gap of about one glyph height on each side ("2 . 5 µm"), where
#: PP-OCR's text detector splits the line.
_LEFT_OUT_REACH_TH = 3.0
_LEFT_OUT_GAP_TH = 1.5


def _left_out_glyphs(image: np.ndarray, text_box) -> list[tuple[float, float, float, float]]:
    """Boxes of a read line carried over glyphs that it left out at an end.

    PP-OCR's text detector splits a line where a wide font leaves a gap, and the usual gap
    is around the decimal point: "0.25 μm" is found as "25 μm" and read 100 times too large,
    with full confidence (synthetic 460,000,010, 500,000,026 and 510,000,116).  Glyphs of
    the label's polarity (:func:`_glyph_ink`) on the line's rows beside its box are
    connected components 0.45-1.3 glyph heights tall, at most 1.5 wide (not a bar, not a
    frame's side), centred on the line's rows; those within :data:`_LEFT_OUT_GAP_TH` of the
    box, and then of each other, are taken in, with a point or comma between them as a
    bridge.  A horizontal line is carried on at its start only (after its unit a label
    ends); a vertical one, whose reading direction is not known here, at either end.

    Parameters
    ----------
    image : (M, N) array
        The image (grey).
    text_box : (x0, y0, x1, y1)
        The line's glyph box, image pixels.

    Returns
    -------
    list of (x0, y0, x1, y1)
        `text_box` carried over the left-out glyphs (a fifth of a glyph height beyond
        them), one per end that has any; empty when none.
    """
    from scipy import ndimage as ndi

    vertical = _is_vertical_text(text_box)
    arr = image.T if vertical else image
    x0, y0, x1, y1 = (float(v) for v in (_transposed_box(text_box) if vertical else text_box))
    th = y1 - y0
    h_img, w_img = arr.shape
    if th < 4:
        return []
    inside = np.asarray(arr[int(y0):int(math.ceil(y1)), int(x0):int(math.ceil(x1))], dtype=np.float64)
    if not np.isfinite(inside).all():
        return []
    polarity, level = _glyph_ink(inside)
    if polarity is None:
        return []
    ya, yb = int(max(0, math.floor(y0 - 0.5 * th))), int(min(h_img, math.ceil(y1 + 0.5 * th)))
    reach = int(math.ceil(_LEFT_OUT_REACH_TH * th))
    out = []
    for start in ((True, False) if vertical else (True,)):
        if start:
            ca, cb = max(0, int(x0) - reach), int(x0)
        else:
            ca, cb = int(math.ceil(x1)), min(w_img, int(math.ceil(x1)) + reach)
        if cb - ca < 2:
            continue
        strip = np.asarray(arr[ya:yb, ca:cb], dtype=np.float64)
        labels, _ = ndi.label(strip > level if polarity == "bright" else strip < level, structure=np.ones((3, 3), bool))
        glyphs = []  # (near edge, far edge, a glyph and not a point) along the line, image columns
        for sl in ndi.find_objects(labels):
            if sl is None:
                continue
            gh, gw = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
            centre = ya + 0.5 * (sl[0].start + sl[0].stop)
            glyph = 0.45 * th <= gh <= 1.3 * th and gw <= 1.5 * th and y0 <= centre <= y1
            # a decimal point or comma: small, on the line's lower half; it bridges the gap
            # to the digit before it, but is not taken in on its own (a speck may be one)
            point = 2 <= max(gh, gw) and gh < 0.45 * th and gw <= 0.5 * th and (y0 + y1) / 2 <= centre <= y1 + 0.2 * th
            if glyph or point:
                edges = (ca + sl[1].stop, ca + sl[1].start) if start else (ca + sl[1].start, ca + sl[1].stop)
                glyphs.append((*edges, glyph))
        end = x0 if start else x1  # the line's end on this side
        edge = reached = end
        for near, far, glyph in sorted(glyphs, key=lambda g: -g[0] if start else g[0]):
            if abs(reached - near) > _LEFT_OUT_GAP_TH * th and ((near < reached) if start else (near > reached)):
                break  # too far from the line (marks overlapping the reach so far are in)
            reached = min(reached, far) if start else max(reached, far)
            if glyph:
                edge = reached
        if edge != end:
            pad = 0.2 * th
            grown = (max(0.0, edge - pad), y0, x1, y1) if start else (x0, y0, min(float(w_img), edge + pad), y1)
            out.append(_transposed_box(grown) if vertical else grown)
    return out


def _completed(new: ScaleLabel, old: ScaleLabel) -> bool:
    """`new`, read over glyphs that `old`'s line left out, is `old` completed: the same unit,
    a round value, and digits ending in `old`'s ("0.25" of "25", "2.5" of "5"); a bar's end
    tick read as a "1" ("150 nm" of "50 nm") is no round value."""
    def digits(v: float) -> str:
        return f"{v:.10g}".replace(".", "")

    return (new.unit == old.unit and new.value != old.value and is_round_value(new.value)
            and digits(new.value).endswith(digits(old.value)))


def _whole_line(image: np.ndarray, sr: ScaleRead, text_box, threads: int | None) -> tuple[ScaleRead, tuple]:
    """A read line with the glyphs it left out at an end (:func:`_left_out_glyphs`), read
    again with them by PP-OCR's recognizer, when that completes the number
    (:func:`_completed`); else the line as read."""
    for box in _left_out_glyphs(image, text_box):
        whole, _ = _read_label(image, box, threads, detect=False, widen=False)
        if whole is not None and _completed(whole.label, sr.label):
            return whole, tuple(box)
    return sr, tuple(text_box)


def _read_with_label_reader(image: np.ndarray, box, reader) -> tuple[ScaleRead | None, tuple]:
    """The project's label reader (:mod:`~micrometry.calibrate.scalebar.label_reader`) on a
    label box (the detector's, or a line's of PP-OCR's text detector): widened by half a glyph
    height along the text and a fifth across it (as its training crops were), a tall box read
    turned both ways.  Returns (read, text box in image pixels: the glyphs of the crop,
    :func:`~micrometry.calibrate.scalebar.ocr._trim`; the widened box for vertical text), or
    (None, `box`) when nothing parses as a scale label."""
    vertical = _is_vertical_text(box)
    th = (box[2] - box[0]) if vertical else (box[3] - box[1])
    along, across = 0.5 * th, 0.2 * th
    dx, dy = (across, along) if vertical else (along, across)
    widened = tuple(int(round(v)) for v in _clip_box(box[0] - dx, box[1] - dy, box[2] + dx, box[3] + dy, image.shape))
    sr, text_box = _best_label_reading(image, [widened], vertical, reader)
    return (sr, text_box) if sr is not None else (None, tuple(box))


#: Glyph heights (px) of the labels looked for beside a bar by the last step, and the
#: distances from the bar (in glyph heights) they are looked for at.
_BESIDE_BAR_TH = (8, 10, 12, 15, 18, 22, 27, 33)
_BESIDE_BAR_GAPS = (0.15, 0.5)
#: At most this many bars (detected ones first, then bar-like lines) are read beside.
_BESIDE_BAR_MAX_BARS = 4


def _label_boxes_beside_bar(bar_box, shape) -> list[tuple[float, float, float, float]]:
    """Boxes where a label may sit above or below a horizontal bar.

    For each glyph height ``th`` of :data:`_BESIDE_BAR_TH` up to 0.6 of the bar's
    length: boxes 1.4 ``th`` tall at :data:`_BESIDE_BAR_GAPS` above and below the
    bar, wide enough for a label of 2.5-5 ``th`` (at most the bar's length and a
    fifth), centred on the bar or starting at either of its ends.  Clipped to
    `shape`; boxes left under 2 ``th`` wide or 0.8 ``th`` tall are dropped.

    Parameters
    ----------
    bar_box : (x0, y0, x1, y1)
        The measured bar's box, image pixels.
    shape : (M, N)
        The image's shape.
    """
    bx0, by0, bx1, by1 = (float(v) for v in bar_box)
    length, cx = bx1 - bx0, (bx0 + bx1) / 2
    out = []
    for th in _BESIDE_BAR_TH:
        if th > 0.6 * length:
            break
        w = min(5.0 * th, max(2.5 * th, 1.2 * length))
        for gap in _BESIDE_BAR_GAPS:
            for y0, y1 in ((by0 - (gap + 1.4) * th, by0 - gap * th), (by1 + gap * th, by1 + (gap + 1.4) * th)):
                out += _roomy_boxes([(x0, y0, x0 + w, y1) for x0 in (cx - w / 2, bx0 - 0.3 * th, bx1 + 0.3 * th - w)],
                                    th, shape)
    return out


def _roomy_boxes(boxes, th: float, shape) -> list[tuple[float, float, float, float]]:
    """`boxes` (x0, y0, x1, y1) clipped to `shape`, those left with room for a label of glyph
    height `th` (2 ``th`` wide, 0.8 ``th`` tall) kept."""
    clipped = [_clip_box(*b, shape) for b in boxes]
    return [b for b in clipped if b[2] - b[0] >= 2 * th and b[3] - b[1] >= 0.8 * th]


#: Widths (in glyph heights) of the boxes read for a horizontal label on a bar's side: a short
#: label ("1 µm", about 3) and a long one ("100 nm", about 5).
_SIDE_LABEL_TW = (3.5, 5.5)


def _label_boxes_at_bar_side(bar_box, shape) -> list[tuple[float, float, float, float]]:
    """Boxes where a horizontal label may sit at the side of a bar: before or after a
    horizontal bar, on its rows; left or right of a vertical bar (its top at the bar's top,
    its middle at the bar's middle, or its bottom at the bar's bottom), or above or below
    the vertical bar's ends, centred on it.

    For each glyph height ``th`` of :data:`_BESIDE_BAR_TH` up to 0.6 of the bar's length:
    boxes 1.4 ``th`` tall and :data:`_SIDE_LABEL_TW` ``th`` wide, at
    :data:`_BESIDE_BAR_GAPS` from the bar.  Clipped to `shape`; boxes left under 2 ``th``
    wide or 0.8 ``th`` tall are dropped.

    Parameters
    ----------
    bar_box : (x0, y0, x1, y1)
        The measured bar's box, image pixels.
    shape : (M, N)
        The image's shape.
    """
    bx0, by0, bx1, by1 = (float(v) for v in bar_box)
    vertical = by1 - by0 > bx1 - bx0
    length = (by1 - by0) if vertical else (bx1 - bx0)
    cx, cy = (bx0 + bx1) / 2, (by0 + by1) / 2
    out = []
    for th in _BESIDE_BAR_TH:
        if th > 0.6 * length:
            break
        hh = 1.4 * th
        for gap in _BESIDE_BAR_GAPS:
            for tw in _SIDE_LABEL_TW:
                w = tw * th
                if not vertical:
                    corners = [(bx0 - gap * th - w, cy - hh / 2), (bx1 + gap * th, cy - hh / 2)]
                else:
                    corners = [(x, y) for x in (bx0 - gap * th - w, bx1 + gap * th)
                               for y in (by0 - 0.2 * th, cy - hh / 2, by1 + 0.2 * th - hh)]
                    corners += [(cx - w / 2, by0 - gap * th - hh), (cx - w / 2, by1 + gap * th)]
                out += _roomy_boxes([(x0, y0, x0 + w, y0 + hh) for x0, y0 in corners], th, shape)
    return out


def _read_beside_bar(image: np.ndarray, m: BarMeasurement, reader) -> tuple[ScaleRead | None, tuple | None]:
    """The project's label reader on the boxes where a label may sit beside a measured bar
    (:func:`_label_boxes_beside_bar`; for a vertical bar on the transposed geometry, the
    boxes read turned both ways): the reading that parses as a scale label with the
    reader's highest score, and its glyph box, or (None, None).

    For labels that neither the detector nor PP-OCR's text detector finds (faint glyphs on
    a ground of nearly their grey level, a noisy micrograph) beside a bar that stands out."""
    at_side = _label_boxes_at_bar_side(m.bbox, image.shape)  # horizontal labels
    if m.orientation != "v":  # one batch: all boxes hold horizontal text
        return _best_label_reading(image, _label_boxes_beside_bar(m.bbox, image.shape) + at_side, False, reader)
    # turned labels along a vertical bar, read turned; the best of both
    along = [_transposed_box(b) for b in _label_boxes_beside_bar(_transposed_box(m.bbox), image.shape[::-1])]
    return max((r for r in (_best_label_reading(image, along, True, reader),
                            _best_label_reading(image, at_side, False, reader)) if r[0] is not None),
               key=lambda r: r[0].hit.score, default=(None, None))


def read_scalebar(
    image,
    *,
    detector=None,
    detector_dir: str | os.PathLike | None = None,
    threads: int | None = 1,
    max_labels: int = 3,
    text_search: bool = True,
    zoom: bool = True,
    label_reader=None,
    use_label_reader: bool = True,
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
        along the bottom and top of the image for a line that parses as a
        scale label, then around bar-like lines found without the detector.
    zoom : bool
        When nothing was read with confidence 0.5 or more, run the detector
        again on four overlapping corner windows (each 0.6 of the image's
        sides, enlarged to its input) and read its new label and bar boxes.
    label_reader : LabelReader, optional
        A loaded label reader; default
        :func:`~micrometry.calibrate.scalebar.label_reader.load_label_reader`.
    use_label_reader : bool
        When nothing was read with confidence 0.5 or more, read the detected
        label boxes and the lines PP-OCR misread with the project's label
        reader as well (last step).

    Returns
    -------
    ScalebarReading or None
        The most trusted reading, or ``None`` when no label could be read
        next to a measurable bar.
    """
    from micrometry.calibrate.scalebar.detect import load_detector
    from micrometry.calibrate.scalebar.ocr import _is_label, read_text

    arr = grey(image)
    det = detector if detector is not None else load_detector(detector_dir, threads=threads)
    dets = det.detect(arr)
    detected_labels = [d for d in dets if d.cls == "label"]
    labels = detected_labels[:max_labels]
    bars = [d for d in dets if d.cls == "bar"][:6]

    best: ScalebarReading | None = None
    # boxes of the text lines already read and paired with a bar: a line read where no bar
    # was found is read again when a later step finds it (its box may differ: a box too wide
    # for the bar under it, made from the detector's, synthetic 100,000,199)
    done: list[tuple] = []
    unconfirmed: list[tuple] = []  # (ScaleRead, text box) of lines only the text detector read
    # (box, image or view) of short lines PP-OCR found but read as no scale label ("SONM"): step 10
    unparsed: list[tuple] = []
    bar_lines = None  # find_bar_lines(arr), once step 4 has run

    def the_label_reader():
        """The label reader (steps 8a, 8 and 9), loaded on first use."""
        nonlocal label_reader
        if label_reader is None:
            from micrometry.calibrate.scalebar.label_reader import load_label_reader

            label_reader = load_label_reader()
        return label_reader

    def consider(sr, text_box, label_score, via_text_search, read_by="pp-ocr", disputed=False) -> bool:
        """Pair a read label with a bar; True when a reading came out of it."""
        nonlocal best
        if read_by == "pp-ocr":
            # a line split at a wide gap ("25 μm" of "0.25 μm") read whole, and a vertical bar's
            # top out of its box (the label reader's boxes are cut in _best_label_reading)
            sr, text_box = _whole_line(arr, sr, text_box, threads)
            text_box = _cut_bar_ends(arr, text_box, beside=False)
        r = _candidate(arr, sr, text_box, label_score, bars, via_text_search=via_text_search, read_by=read_by,
                       disputed=disputed)
        if r is not None and (best is None or r.confidence > best.confidence):
            best = r
        return r is not None

    def read_lines(window, upscale, turned: bool = False, view: np.ndarray | None = None) -> int:
        """Label lines found by PP-OCR's text detector inside a window, each read and paired.

        `turned`: the window is read turned by 90° each way instead (vertical text).
        `view`: the lines are found and read in this remapped copy of the image instead
        (:func:`_extreme_views`); their bars are still measured in the image.
        Returns how many label lines the window holds that are read (now or before).
        """
        src = arr if view is None else view
        try:
            if turned:
                hits = _turned_lines(src, window, upscale=upscale, threads=threads)
            else:
                hits = read_text(src, window, accept=_is_label, threads=threads, trim=False, margin_px=0,
                                 single_line=False, upscale=upscale)
        except ValueError:
            return 0
        n = 0
        for hit in hits:
            box = hit.bbox
            if not _is_label(hit.text) and unit_prefix_lost(hit.text) is None:
                # (a lost prefix, "5m", is for the recognizer's likelihoods on the re-read)
                if _is_vertical_text(box):
                    # a vertical line that PP-OCR turned the wrong way up ("500 nm" read "mu009"):
                    # the re-read reads it turned both ways
                    if not any(c.isdigit() for c in hit.text):
                        continue
                elif unit_cut_off(hit.text):
                    # a faint unit left out of the line's box ("200 n"): read past its end
                    box = (box[0], box[1], min(float(arr.shape[1]), box[2] + 1.5 * (box[3] - box[1])), box[3])
                else:
                    if len(hit.text.strip()) <= _MAX_LABEL_CHARS:
                        unparsed.append((box, src))
                    continue
            if any(_iou(box, b) > 0.5 for b in done):
                n += 1
                continue
            sr, read_box, confirmed = _reread_line(src, hit, box, threads)
            if sr is None:
                continue
            text_box = _glyph_box(box, arr.shape, read_box)
            if not confirmed:  # tried only when no step reads anything else
                unconfirmed.append((sr, text_box))
                continue
            n += 1
            if consider_line(sr, text_box):
                done.append(box)
        return n

    def consider_line(sr, text_box) -> bool:
        score = max((d.score for d in labels if _iou(d.box, text_box) >= 0.3), default=None)
        return consider(sr, text_box, 0.0 if score is None else score, via_text_search=score is None)

    def read_detected_label(d) -> None:
        """PP-OCR's text detector in a window around a detected label box finds the whole line
        (the detector's boxes are often cut or shifted); the box itself is read when it finds none."""
        if _is_vertical_text(d.box):  # the window turned with the text, read turned
            window = _transposed_box(_label_window(_transposed_box(d.box), arr.shape[::-1]))
            n_read = read_lines(window, upscale=_upscale_for(d.box[2] - d.box[0]), turned=True)
        else:
            n_read = read_lines(_label_window(d.box, arr.shape), upscale=_upscale_for(d.box[3] - d.box[1]))
        if not n_read:
            sr, text_box = _read_label(arr, d.box, threads, detect=False)
            if sr is not None and consider(sr, text_box, d.score, via_text_search=False):
                done.append(text_box)

    # 1. each detected label
    for d in labels:
        if best is not None and best.confidence >= 0.5 and d.score < _WEAK_LABEL_SCORE:
            break  # a trusted reading: weak label boxes after it are not read (time, see the constant)
        read_detected_label(d)
        if best is not None and best.confidence >= 0.8:
            return best
    searched: list[tuple] = []  # windows around bars already read

    def read_around_bar(box) -> None:
        window = _bar_window(box, arr.shape)
        if any(_covered(window, w) >= 0.8 for w in searched):
            return
        searched.append(window)
        vertical = box[3] - box[1] > box[2] - box[0]
        if read_lines(window, upscale=None):
            return
        if vertical and read_lines(window, upscale=None, turned=True):  # a label turned with its bar
            return
        # a small label (glyphs under ~10 px) escapes PP-OCR's text detector at full size: the
        # bar's near surroundings, where such a label sits, enlarged twice
        near = _near_bar_window(box, arr.shape)
        if not read_lines(near, upscale=2.0) and vertical:
            read_lines(near, upscale=2.0, turned=True)

    def read_around_bars(boxes) -> bool:
        """The label looked for around each bar box that is not the best reading's bar;
        True once a reading has confidence 0.8."""
        for box in boxes:
            if best is not None and _gap(best.bar_bbox, box) == 0:
                continue
            read_around_bar(box)
            if best is not None and best.confidence >= 0.8:
                return True
        return False

    # 2. no label read next to a bar: look for the label around each detected bar
    if best is None and read_around_bars([d.box for d in bars[:3]]):
        return best
    # 3. still nothing: scale bars sit along the bottom or top edge in nearly every micrograph;
    #    reading those bands only keeps PP-OCR's text detector (the slow part) off most of the image
    if best is None and text_search:
        for band in _edge_bands(arr.shape):
            if read_lines(band, upscale=None):
                break
    # 4. still nothing: bar-like lines that the detector missed (a thin vertical bar beside the
    #    image's middle, a dark bar on a dark noisy image), their labels looked for around them
    if best is None and text_search:
        bar_lines = find_bar_lines(arr)
        for line in bar_lines:
            read_around_bar(line.box)
            if best is not None:
                break
    # 5. still nothing: label lines as PP-OCR's text detector read them, which no re-read confirmed
    if best is None:
        for sr, text_box in unconfirmed:
            consider_line(sr, text_box)
    # 6. still nothing: a faint label (white glyphs on a light micrograph) escapes the text
    #    detector; the bands again, their extreme grey levels stretched over the range
    if best is None and text_search:
        n_unconfirmed = len(unconfirmed)
        for band in _edge_bands(arr.shape):
            if any(read_lines(band, upscale=None, view=v) for v in _extreme_views(arr, band)):
                break
        if best is None:  # lines only the text detector read in a view
            for sr, text_box in unconfirmed[n_unconfirmed:]:
                consider_line(sr, text_box)
    # 7. (step 10 of the module's list) nothing read, or nothing trusted: the detector again, on
    #    four corner windows enlarged to its input (a small label on a large image shrinks to a
    #    few pixels in the whole image's view); its new label boxes are read as in step 1, and,
    #    when still nothing is read, labels are looked for around its new bars as in step 2
    if zoom and (best is None or best.confidence < 0.5):
        zoomed = det.detect_zoomed(arr)
        new_labels = [d for d in zoomed if d.cls == "label"
                      and not any(_iou(d.box, o.box) > 0.5 for o in labels)][:max_labels]
        new_bars = [d for d in zoomed if d.cls == "bar" and not any(_iou(d.box, o.box) > 0.5 for o in bars)][:3]
        labels.extend(new_labels)
        bars.extend(new_bars)  # votes for the bars paired from here on
        for d in new_labels:
            read_detected_label(d)
        if best is None:
            read_around_bars([d.box for d in new_bars])
    # 7b. (step 10 of the module's list) still nothing read: the detector's weaker label boxes
    #     after the first `max_labels` (a clear 49-px "1 µm" beside a thin bar, scored 0.075 and
    #     fourth after boxes on a "20.0 kV" and on noise, synthetic 620,000,123)
    if best is None:
        more_labels = [d for d in detected_labels[max_labels:2 * max_labels]
                       if not any(_iou(d.box, o.box) > 0.5 for o in labels)]
        labels.extend(more_labels)
        for d in more_labels:
            read_detected_label(d)
    # 8a. (step 11 of the module's list) a reading PP-OCR made, trusted but not fully: the
    #     project's label reader reads its label box too, and a different value disputes it
    #     (a decimal point PP-OCR dropped: "25um" of "2.5 µm", synthetic 400,000,103, 0.64)
    if use_label_reader and best is not None and 0.5 <= best.confidence < 0.8 \
            and best.checks["label_read_by"] == "pp-ocr":
        sr, text_box = _second_opinion(arr, best, the_label_reader())
        if sr is not None:  # both trusted less; the more trusted of the two stays best
            first = best
            best = _disputed(first)
            consider(sr, text_box, first.checks["label_score"],
                     via_text_search=first.checks["label_found_by"] != "detector", read_by="label-reader",
                     disputed=True)
    # 8. (step 11 of the module's list) still nothing trusted: label boxes read by the
    #    project's own label reader, trained on the generator's labels (small, blurred or faint
    #    glyphs that PP-OCR misreads or does not read: "1 µm" at 10 px after JPEG); the most
    #    trusted reading wins
    reader = the_label_reader() if use_label_reader and (best is None or best.confidence < 0.5) else None
    if reader is not None and (labels or unparsed):
        pp_ocr = best
        # the detected label boxes (the zoomed step's too), then short lines PP-OCR's text
        # detector found where the detector found no label and read as something else ("SONM")
        boxes = [(d.box, arr, d.score, False) for d in labels]
        for box, src in unparsed:
            if not any(_iou(box, b[0]) > 0.5 for b in boxes):
                boxes.append((box, src, 0.0, True))
        reads = []  # (read, text box, score, via text search, on PP-OCR's label: same value as it?)
        for box, src, score, via_text_search in boxes:
            sr, text_box = _read_with_label_reader(src, box, reader)
            if sr is not None:
                on_label = pp_ocr is not None and _iou(pp_ocr.text_bbox, text_box) > 0.3
                same = _same_value(pp_ocr.value_nm, sr.label.value_nm) if on_label else None
                reads.append((sr, text_box, score, via_text_search, same))
        # PP-OCR read a label to another value than the reader did ("10 pm", a µ read p, against
        # "10 nm"): one of the two readers is wrong, and nothing says which.  A dispute weighs on
        # both readings: PP-OCR's is trusted less too (its "120nm" of a "20 nm" beside a bar's
        # end tick against the reader's "20 nm"), unless the reader read the label to PP-OCR's
        # value as well in another of its boxes (a zoomed box that lost the point of "2.5um",
        # which PP-OCR and the reader's other box read whole, synthetic 610,000,058)
        sames = [same for *_, same in reads]
        if False in sames and True not in sames \
                and best is pp_ocr and pp_ocr.checks["factors"]["readers_agree"] == 1.0:
            best = pp_ocr = _disputed(pp_ocr)
        for sr, text_box, score, via_text_search, same in reads:
            consider(sr, text_box, score, via_text_search=via_text_search, read_by="label-reader",
                     disputed=same is False)
    # 9. (step 12 of the module's list) still nothing read: the label reader on the places
    #    beside each bar (detected, or a bar-like line) where a label sits, for a label that
    #    no text detector finds (faint glyphs on a ground of nearly their grey level)
    if reader is not None and best is None:
        if bar_lines is None:
            bar_lines = find_bar_lines(arr) if text_search else []
        measured: list[tuple] = []
        for box in [d.box for d in bars] + [line.box for line in bar_lines]:
            if len(measured) == _BESIDE_BAR_MAX_BARS:
                break
            m = _measure(arr, _pad_box(box, 2, arr.shape))
            if m is None or any(_iou(m.bbox, b) > 0.7 for b in measured):
                continue
            measured.append(m.bbox)
            sr, text_box = _read_beside_bar(arr, m, reader)
            if sr is not None:
                consider(sr, text_box, 0.0, via_text_search=True, read_by="label-reader")
    return best
