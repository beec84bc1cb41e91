"""The reading chain around imperfect detections: cut label boxes, a bar without a
label box, bars touching their label, labels on a box of their own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rapidocr_onnxruntime")

from micrometry.calibrate.scalebar._image import longest_row_runs  # noqa: E402
from micrometry.calibrate.scalebar.detect import Detection  # noqa: E402
from micrometry.calibrate.scalebar.parse import parse_scale_label  # noqa: E402
from micrometry.calibrate.scalebar.read import (  # noqa: E402
    _bar_candidates,
    _bar_extent,
    _candidate,
    _glyph_box,
    _glyph_rows,
    _placement_cost,
    read_scalebar,
)

DATA = Path(__file__).parent / "data"


class _BoxesDetector:
    """A detector that returns fixed boxes: isolates the reading chain from the network."""

    def __init__(self, dets):
        self.dets = dets

    def detect(self, image, **kw):
        return list(self.dets)

    def detect_zoomed(self, image, **kw):
        return list(self.dets)  # the same boxes again: nothing new for the chain's zoomed step


def _read_with_label_box(img, box, score):
    """read_scalebar with one detected label box and nothing else (no text search)."""
    det = _BoxesDetector([Detection("label", score, tuple(float(v) for v in box))])
    return read_scalebar(img, detector=det, text_search=False)


def _read_sample(seed: int):
    """A synthetic sample's scale-bar truth (``info["scalebar"]`` of
    :func:`~micrometry.train.scalebar_detector.render_detector_sample`) and the chain's
    reading of it with the shipped detector."""
    from micrometry.calibrate.scalebar.detect import load_detector
    from micrometry.train.scalebar_detector import render_detector_sample

    img, _, info = render_detector_sample(seed)
    return info["scalebar"], read_scalebar(img, detector=load_detector())


def _paste_text(img, text, x, y, fg, bg, size=18):
    from micrometry.train.synth import _text_patch

    patch = _text_patch(text, "DejaVuSans", size)
    th, tw = patch.shape
    img[y : y + th, x : x + tw] = np.round(bg * (1 - patch) + fg * patch).astype(np.uint8)
    return (x, y, x + tw, y + th)


def _scene(bar_px=120, text="200 nm", gap=4, bg=40, fg=255):
    """A bar of `bar_px` px at rows 200-205 from x = 60, its label centred below, `gap` px under it."""
    img = np.full((260, 360), bg, np.uint8)
    img[200:206, 60 : 60 + bar_px] = fg
    from micrometry.train.synth import _text_patch

    tw = _text_patch(text, "DejaVuSans", 18).shape[1]
    box = _paste_text(img, text, 60 + (bar_px - tw) // 2, 206 + gap, fg, bg)
    return img, box


def _vertical_bar_scene():
    """A white 5 x 80 px vertical bar beside the middle of the left edge of a noisy image,
    "50 nm" turned along it (reading upwards); returns (image, label box grown by 2 px)."""
    from micrometry.train.synth import _text_patch

    rng = np.random.default_rng(3)
    img = np.clip(rng.normal(110, 12, (400, 600)), 0, 255).astype(np.uint8)
    img[150:230, 30:35] = 255
    patch = np.rot90(_text_patch("50 nm", "DejaVuSans", 18), 1)  # reads bottom to top
    ph, pw = patch.shape
    y, x = 150 + (80 - ph) // 2, 40
    img[y : y + ph, x : x + pw] = np.round(110 * (1 - patch) + 255 * patch).astype(np.uint8)
    return img, (x - 2.0, y - 2.0, x + pw + 2.0, y + ph + 2.0)


def test_longest_row_runs_counts_the_longest_run_per_row():
    m = np.zeros((3, 10), bool)
    m[0, 2:5] = m[0, 6:10] = True
    m[2, :] = True
    assert longest_row_runs(m).tolist() == [4, 0, 10]
    assert longest_row_runs(np.zeros((2, 0), bool)).tolist() == [0, 0]
    with pytest.raises(ValueError):
        longest_row_runs(np.zeros(4, bool))


def test_glyph_box_moves_inner_sides_only():
    # 40 px tall line box: each side moves in by 6 px, except those on the image's edge
    assert _glyph_box((10, 20, 110, 60), (100, 200)) == (16.0, 26.0, 104.0, 54.0)
    assert _glyph_box((0, 60, 200, 100), (100, 200)) == (0.0, 66.0, 200.0, 100.0)


def test_glyph_rows_gives_back_rows_crossed_by_a_line():
    text_mask = np.zeros((30, 60), bool)
    text_mask[5:25, 10:50] = True
    mask = np.zeros_like(text_mask)
    mask[8:18, 12:20] = mask[8:18, 30:38] = True  # two glyphs
    mask[22:24, 5:55] = True  # a bar under them, inside the label's rectangle
    out = _glyph_rows(mask, text_mask)
    assert not out[22:24].any()  # the bar's rows are given back
    assert out[5:22, 10:50].all() and out[24, 10:50].all()
    mask[22:24, :] = False
    assert (_glyph_rows(mask, text_mask) == text_mask).all()  # no line: the rectangle stays


def test_label_cut_by_the_detector_box_is_read_whole():
    """A label box that misses the first two digits ("0 nm" of "200 nm"): the line is found whole."""
    img, (x0, y0, x1, y1) = _scene(120, "200 nm")
    cut = (x0 + 22.0, float(y0), float(x1), float(y1))
    r = _read_with_label_box(img, cut, 0.6)
    assert r is not None and r.value == 200 and r.unit == "nm"
    assert abs(r.nm_per_px - 200 / 120) / (200 / 120) < 0.01


def test_label_is_found_around_a_detected_bar_without_a_label_box():
    img, _ = _scene(150, "500 nm")
    det = _BoxesDetector([Detection("bar", 0.5, (58.0, 198.0, 212.0, 208.0))])
    r = read_scalebar(img, detector=det, text_search=False)
    assert r is not None and r.value_nm == 500
    assert abs(r.bar_px - 150) <= 0.5
    assert r.checks["label_found_by"] == "text-search"  # no detector vote for the label


def test_bar_touching_its_label_is_measured_whole():
    """A bar right under a µm label whose descender touches it: the label's box reaches
    into the bar's rows, yet the whole bar is measured."""
    img, _ = _scene(140, "1 µm", gap=0)
    det = _BoxesDetector([Detection("bar", 0.5, (58.0, 198.0, 202.0, 208.0))])
    r = read_scalebar(img, detector=det, text_search=False)
    assert r is not None and r.value_nm == 1000
    assert abs(r.bar_px - 140) <= 0.5


def test_the_box_a_label_sits_on_is_not_taken_for_its_bar():
    """White label on a black box, the bar (black) to its left: the parts of the box above
    and below the glyphs look like bars; the bar is the one beside."""
    img = np.full((260, 400), 200, np.uint8)
    img[180:186, 30:130] = 0  # the bar, 100 px
    img[160:205, 150:290] = 0  # the label's box
    box = _paste_text(img, "200 nm", 165, 172, 255, 0, size=20)
    r = _read_with_label_box(img, box, 0.3)
    assert r is not None and r.value_nm == 200
    assert abs(r.bar_px - 100) <= 0.5, r.bar_bbox


def test_bar_shape_accepts_ticked_lines_and_rejects_frames_and_blobs():
    th = 12.0  # label height
    solid = np.ones((5, 80), bool)
    ticked = np.zeros((11, 80), bool)
    ticked[5, :] = True  # a 1-px line with end ticks: its box is 11 x 80, 12 % filled
    ticked[:, :2] = ticked[:, -2:] = True
    frame = np.zeros((30, 120), bool)  # the outline of a box around a label
    frame[[0, -1], :] = True
    frame[:, [0, -1]] = True
    yy, xx = np.mgrid[:21, :21]
    disc = (yy - 10) ** 2 + (xx - 10) ** 2 <= 100
    crossed = np.zeros((25, 80), bool)  # a line through a particle: thick over half its length
    crossed[12, :] = True
    crossed[2:23, 20:60] = True
    assert _bar_extent(solid, th) is not None and _bar_extent(solid.T, th) is not None
    assert _bar_extent(ticked, th) is not None and _bar_extent(ticked.T, th) is not None
    assert _bar_extent(frame, th) is None
    assert _bar_extent(disc, th) is None
    assert _bar_extent(crossed, th) is None
    assert _bar_extent(np.ones((20, 40), bool), th) is None  # too thick for its label


def test_thin_ticked_bar_in_noise_is_measured_end_to_end():
    """A 1-px line with 7-px end ticks over a noisy background, its label right under it."""
    rng = np.random.default_rng(3)
    img = np.clip(rng.normal(90, 25, (260, 360)), 0, 255).astype(np.uint8)
    img[200, 80:190] = 255  # 110 px from outer tick edge to outer tick edge
    img[194:201, 80] = img[194:201, 189] = 255
    box = _paste_text(img, "500 nm", 105, 203, 255, 90)
    r = _read_with_label_box(img, box, 0.4)
    assert r is not None and r.value_nm == 500
    assert abs(r.bar_px - 110) <= 1.0, r.bar_bbox


def test_vertical_label_beside_a_vertical_bar():
    """Text turned by 90° (reading upwards) to the right of a vertical bar: the bar runs
    along the label's length, and the label's height is the box's width (measured
    with the box's height, a short line under the label would be nearer than the bar)."""
    img = np.full((300, 260), 50, np.uint8)
    img[60:240, 100:106] = 255  # a 180 px vertical bar
    from micrometry.train.synth import _text_patch

    patch = np.rot90(_text_patch("2 µm", "DejaVuSans", 20), 1)
    ph, pw = patch.shape
    y, x = 150 - ph // 2, 118
    img[y : y + ph, x : x + pw] = np.round(50 * (1 - patch) + 255 * patch).astype(np.uint8)
    img[y + ph + 19 : y + ph + 23, x + pw // 2 - 15 : x + pw // 2 + 15] = 255  # a line below, not the bar
    r = _read_with_label_box(img, (float(x - 2), float(y - 4), float(x + pw + 2), float(y + ph + 4)), 0.4)
    assert r is not None and r.value_nm == 2000
    assert r.orientation == "v" and abs(r.bar_px - 180) <= 1.0, r.bar_bbox


def test_bar_shape_accepts_a_short_bracket_and_a_bar_touched_by_a_particle():
    th = 30.0
    bracket = np.zeros((11, 19), bool)  # "⊔": ticks take a third of its length, all at the ends
    bracket[6:, :] = True
    bracket[:, :3] = bracket[:, -3:] = True
    assert _bar_extent(bracket, th) is not None
    middle = bracket.copy()  # the same amount of thicker positions in the middle is not a bar
    middle[:, :3] = middle[:, -3:] = False
    middle[:6, 8:14] = True
    assert _bar_extent(middle, th) is None
    touched = np.zeros((60, 70), bool)  # a 28 x 70 bar, a bright wedge reaching down to it
    touched[32:, :] = True
    for r in range(32):
        touched[r, 30 - r // 3 : 40 + r // 3] = True
    assert _bar_extent(touched, th) == (32, 0, 60, 70)
    assert _bar_extent(touched.T, th) == (0, 32, 70, 60)
    yy, xx = np.mgrid[:61, :61]
    assert _bar_extent((yy - 30) ** 2 + (xx - 30) ** 2 <= 900, th) is None  # a disc's widest rows are no bar


def test_short_bracket_against_its_label_is_measured_whole():
    """A black "⊔" of 19 px, its ticks a third of its length, 10 px left of "100 nm" in a
    white box (the label's line box, grown by the text detector, reaches its right tick)."""
    img = np.full((200, 400), 255, np.uint8)
    box = _paste_text(img, "100 nm", 200, 90, 0, 255, size=20)
    x = box[0] - 29
    img[100:105, x : x + 19] = 0  # the line, 19 px
    img[94:105, x : x + 3] = img[94:105, x + 16 : x + 19] = 0  # the ticks, 11 px tall
    r = _read_with_label_box(img, box, 0.6)
    assert r is not None and r.value_nm == 100
    assert abs(r.bar_px - 19) <= 0.5, r.bar_bbox


def test_thick_bar_joined_to_bright_regions_is_measured():
    """A white 70 x 22 px bar beside its label in a white box, touched by a bright
    region of the micrograph (as between particles) that runs 110 px up from it."""
    img = np.full((300, 420), 40, np.uint8)
    img[230:252, 20:90] = 255  # the bar
    for r in range(120, 230):  # a bright wedge down to the bar
        img[r, 45 - (r - 120) // 20 : 55 + (r - 120) // 20] = 200
    img[215:265, 120:300] = 255  # the label's white box
    box = _paste_text(img, "100 nm", 135, 222, 0, 255, size=30)
    r = _read_with_label_box(img, box, 0.3)
    assert r is not None and r.value_nm == 100
    assert abs(r.bar_px - 70) <= 1.0, r.bar_bbox


def test_dotted_ruler_of_an_sem_data_bar_is_measured_tick_to_tick():
    """Hitachi's ruler: 11 white ticks on the black data bar above "10.0um"; its length is
    the outer extent of the first and last tick."""
    img = np.full((300, 520), 110, np.uint8)
    img[240:, :] = 0  # the data bar
    for i in range(11):
        x = 300 + 16 * i
        img[243:250, x : x + 2] = 230
    _paste_text(img, "S4800 3.0kV x3.00k", 10, 262, 230, 0, size=16)
    box = _paste_text(img, "10.0um", 420, 258, 230, 0, size=16)
    r = _read_with_label_box(img, box, 0.6)
    assert r is not None and r.value_nm == 10_000
    assert abs(r.bar_px - 162) <= 1.0, r.bar_bbox
    assert r.checks["bar_method"] == "ruler"


def test_hollow_bar_is_measured_to_its_outline():
    """A white bar with a 2-px grey outline, its white label outlined in grey too, the
    label's outline touching the bar's: 126 px from the outline's outer edge to outer
    edge (the fill alone is 122)."""
    from scipy import ndimage as ndi

    from micrometry.train.synth import _text_patch

    img = np.full((240, 360), 212.0)
    img[150:160, 40:166] = 120  # outline
    img[152:158, 42:164] = 255  # fill
    patch = _text_patch("0.5 µm", "DejaVuSans", 20)
    ph, pw = patch.shape
    y, x = 152 - ph, 50
    glyph = np.zeros(img.shape, bool)
    glyph[y : y + ph, x : x + pw] = patch > 0.5
    img[ndi.binary_dilation(glyph, iterations=2) & ~glyph] = 120
    img[glyph] = 255
    img = np.clip(ndi.gaussian_filter(img, 0.6), 0, 255).astype(np.uint8)
    r = _read_with_label_box(img, (x - 2.0, y - 2.0, x + pw + 2.0, y + ph + 2.0), 0.5)
    assert r is not None and r.value_nm == 500
    assert abs(r.bar_px - 126) <= 1.0, r.bar_bbox


def test_bar_in_the_box_its_label_is_written_in():
    """A black box (21 x 129 px) holding a white label and, under it, a white 1-px line
    with end ticks (123 px), as the generator draws a "fill" box.  The label's
    rectangle (a text line box grown over the bar's rows and left of the glyphs) cuts
    the bar's first quarter: the bar is measured through the rectangle, and the box,
    which holds the label's centre, is not a bar."""
    img = np.full((260, 400), 190, np.uint8)
    img[149:170, 66:195] = 0
    _paste_text(img, "1um", 69, 151, 255, 0, size=12)
    img[166, 69:192] = 255
    img[163:167, 69] = img[163:167, 191] = 255
    found = _bar_candidates(img, (58.0, 152.0, 93.0, 170.0))
    assert found, "no bar found"
    m = found[0][1]
    assert m.bbox[1] >= 162 and abs(m.length_px - 123) <= 1.0, m.bbox


def test_a_stroke_over_the_labels_columns_is_not_a_bar_beside_it():
    """The top stroke of the "5" of "5 μm" (8 x 3 px) sticks out above the glyph box
    (synthetic 110,000,050) on the label's rows: over its columns it is part of the label,
    not a bar beside it; a bar of the same rows right of the label is."""
    label = (483.0, 504.0, 534.0, 518.0)
    assert _placement_cost((481, 501, 490, 508), label) is None
    assert _placement_cost((537, 505, 600, 508), label) is not None


def test_long_bar_under_a_short_label_is_placed():
    """A 269 px bar under a 41 px wide "2um" (6.6 label widths; the generator reaches
    8.3) is a candidate; one over 9 label widths is not."""
    label = (141.0, 27.0, 182.0, 48.0)
    assert _placement_cost((28, 49, 297, 61), label) is not None
    assert _placement_cost((0, 49, 400, 61), label) is None


def test_uncertain_unit_giving_an_impossible_pixel_size_gives_way_to_the_runner_up():
    """"25 nm" read as "25mm" with a log-margin of 0.4 over nm: 25 mm over a 69 px bar is
    362 µm/px, which no microscope in range gives; the runner-up unit (nm) is used, with
    the uncertainty kept in the confidence.  So it is with a margin of 2.9 (PP-OCR's on a
    clean 18-px "25nm", synthetic seed 10,000,156); a unit read with a margin of 5 is not
    overruled."""
    from micrometry.calibrate.scalebar.ocr import ScaleRead, TextHit
    from micrometry.calibrate.scalebar.parse import parse_scale_label

    img, box = _scene(69, "25 nm")
    hit = TextHit("25mm", 0.98, tuple(float(v) for v in box))
    mm, nm = parse_scale_label("25mm"), parse_scale_label("25nm")
    unsure = _candidate(img, ScaleRead(mm, hit, False, 0.4, nm), box, 0.8, [], via_text_search=False)
    assert unsure is not None and unsure.unit == "nm" and abs(unsure.nm_per_px - 25 / 69) < 0.01
    assert unsure.checks["factors"]["unit_margin"] < 1 and unsure.checks["factors"]["plausible_size"] == 1
    fairly_sure = _candidate(img, ScaleRead(mm, hit, False, 2.9, nm), box, 0.8, [], via_text_search=False)
    assert fairly_sure is not None and fairly_sure.unit == "nm" and abs(fairly_sure.nm_per_px - 25 / 69) < 0.01
    assert fairly_sure.checks["factors"]["unit_margin"] < 1 and fairly_sure.checks["unit_log_margin"] == -2.9
    sure = _candidate(img, ScaleRead(mm, hit, False, 5.0, nm), box, 0.8, [], via_text_search=False)
    assert sure is not None and sure.unit == "mm" and sure.confidence < 0.1


def test_opened_masks_give_back_a_stubby_solid_bar_and_its_edge_box_votes_for_it():
    """EMPS 478a6c42ec: a white 69 x 30 px bar (2.3 times as long as thick) joined to a
    bright streak; opening frees it as a solid rectangle, which counts as a bar there (not
    a disc, not a hollow frame), and the detector's box around the dark line along its
    bottom edge, as long as the bar, is a vote for it (a box across it is not); so are boxes
    cut short on a thin line whose measured box is tall, when they cover most of it."""
    from micrometry.calibrate.scalebar.measure import BarMeasurement
    from micrometry.calibrate.scalebar.read import _opened_extent, _pieces_vote, _votes_for

    rect = np.ones((30, 69), bool)
    assert _opened_extent(rect, 40.0) == (0, 0, 30, 69)
    assert _opened_extent(rect.T, 40.0) == (0, 0, 69, 30)
    assert _bar_extent(rect, 40.0) is None  # in the plain masks 2.5:1 is asked
    yy, xx = np.mgrid[:41, :41]
    assert _opened_extent((yy - 20) ** 2 + (xx - 20) ** 2 <= 400, 40.0) is None
    frame = rect.copy()
    frame[4:-4, 4:-4] = False
    assert _opened_extent(frame, 40.0) is None
    bar = BarMeasurement(length_px=68.4, bbox=(9, 474, 78, 502), orientation="h", polarity="bright",
                         method="profile", bar_level=255.0, background_level=60.0, thickness_px=28.0)
    assert _votes_for((8, 500, 79, 503), bar)  # along its bottom edge, whole length
    assert not _votes_for((30, 470, 40, 505), bar)  # a box across it
    assert _votes_for((0, 470, 90, 505), bar)  # a box around it
    # synthetic 100,000,189: a 182-px line measured with a box 17 rows tall (the line's rows and
    # the label's under it); the detector's box on the line, cut at 136 px, is its vote, as are
    # pieces along it that together cover 60 % of it; pieces covering less, a box on
    # other rows or a box reaching far past the line's end are none
    line = BarMeasurement(length_px=181.8, bbox=(444, 4, 626, 21), orientation="h", polarity="bright",
                          method="profile", bar_level=255.0, background_level=120.0, thickness_px=3.0)
    assert not _votes_for((443, 4, 579, 11), line)
    assert _pieces_vote([(443, 4, 579, 11)], line) == [0]
    assert _pieces_vote([(0, 0, 9, 9), (443, 4, 520, 11), (515, 5, 570, 10)], line) == [1, 2]
    assert _pieces_vote([(443, 4, 540, 11)], line) == []
    assert _pieces_vote([(443, 30, 579, 37)], line) == []
    assert _pieces_vote([(300, 4, 579, 11)], line) == []


def test_thick_bar_under_a_low_contrast_label_whose_unit_the_line_box_cut(monkeypatch):
    """A dark-grey "200 nm" on a dark background over a black bar 1.4 glyph heights thick
    (EMPS d722a3a383).  PP-OCR's text detector boxed "200 n" only; the line is read again
    past its end, and the thick bar is taken."""
    from micrometry.calibrate.scalebar import ocr

    img = np.full((260, 360), 22, np.uint8)
    box = _paste_text(img, "200 nm", 40, 150, 6, 22)
    th = box[3] - box[1]
    img[box[3] + 4 : box[3] + 4 + int(1.4 * th), 44:104] = 0  # the bar, 60 px
    read_text = ocr.read_text
    cut = (box[0] - 2.0, box[1] - 2.0, box[0] + 0.72 * (box[2] - box[0]), box[3] + 2.0)

    def band_read(image, window=None, **kw):
        if kw.get("single_line") is False and window is not None and window[2] - window[0] > 300:
            return [ocr.TextHit("200n", 0.93, cut)]  # the text detector's cut line
        return read_text(image, window, **kw)

    monkeypatch.setattr(ocr, "read_text", band_read)
    r = read_scalebar(img, detector=_BoxesDetector([]), text_search=True)
    assert r is not None and r.value_nm == 200, r
    assert abs(r.bar_px - 60) <= 1.0, (r.bar_px, r.bar_bbox)


def test_label_at_the_end_of_a_long_bar_is_placed():
    """"1um" over the left end of a 123 px bar (offset 2.3 label widths from its centre) is
    placed; a bar whose extent the label is not over, as far off, is not."""
    label = (169.0, 852.0, 191.0, 861.0)
    assert _placement_cost((169, 863, 292, 867), label) is not None
    assert _placement_cost((215, 863, 265, 867), label) is None  # 50 px, centre 2.3 widths off


@pytest.mark.parametrize("vertical", [False, 8, 21])
def test_long_bar_beside_or_above_its_label_is_found_whole(vertical):
    """A bar 8.3 label widths long beside its label, or a vertical bar 8 label heights tall
    above it (synthetic 10000042, 10000097): the search window holds either whole (it
    reached 6 widths beside and 6 heights above).  One 21 label heights tall (synthetic
    40,000,130), which the window cuts, is followed along its columns."""
    img = np.full((420, 820), 50, np.uint8)
    if vertical:
        box = _paste_text(img, "5 nm", 300, 380, 255, 50)
        length = vertical * (box[3] - box[1])
        img[380 - 6 - length : 380 - 6, 318:322] = 255
    else:
        box = _paste_text(img, "5 um", 20, 200, 255, 50)
        length = int(8.3 * (box[2] - box[0]))
        img[box[1] + 5 : box[1] + 9, box[2] + 6 : box[2] + 6 + length] = 255
    found = [m.length_px for _, m, _ in _bar_candidates(img, box)]
    assert any(abs(v - length) <= 1.0 for v in found), (found, box, length)


def test_vertical_bar_the_detector_missed_is_found_as_a_line(monkeypatch):
    """A white 5 x 80 px vertical bar beside the middle of the left edge, its label "50 nm"
    turned along it (synthetic seeds 10,000,074 and 10,000,091, which the detector missed
    whole): the bands along the bottom and top hold nothing, so the bar is found as a
    bar-like line and its label read turned beside it.  Without the line search nothing
    is read."""
    img, _ = _vertical_bar_scene()
    r = read_scalebar(img, detector=_BoxesDetector([]), text_search=True)
    assert r is not None and r.value_nm == 50 and r.orientation == "v", r
    assert abs(r.bar_px - 80) <= 1.0 and r.checks["label_found_by"] == "text-search"
    monkeypatch.setattr("micrometry.calibrate.scalebar.read.find_bar_lines", lambda image: [])
    assert read_scalebar(img, detector=_BoxesDetector([]), text_search=True) is None


def test_a_glyph_stroke_beside_the_glyph_box_is_not_a_vertical_bar():
    """Synthetic seed 50,000,120: the last stroke of "2 µm" (15 px tall, sticking out of the
    14-px glyph box) was taken for a vertical bar beside the label; a vertical bar must be
    1.5 label heights long.  One of 2 label heights beside the label is placed."""
    label = (646.0, 665.0, 703.0, 679.0)
    assert _placement_cost((699, 664, 707, 679), label) is None
    assert _placement_cost((706, 660, 711, 688), label) is not None


def test_thin_ticked_line_with_noise_clinging_to_it_is_bar_shaped():
    """A 1-px line with 9-px end ticks on shot noise (synthetic 40,000,127): specks cling to
    the line above and below at 40 % of its positions, three pixels across.  They are not
    ticks (a line through a particle stays rejected: test above)."""
    th = 13.0
    line = np.zeros((11, 56), bool)
    line[5, 2:55] = True
    line[1:10, 2] = line[1:10, 54] = True
    specks = np.zeros_like(line)
    cols = np.arange(4, 52, 4)
    specks[4, cols] = specks[6, cols] = True
    specks[4, cols + 1] = specks[6, cols + 1] = True
    assert ((line | specks).sum(axis=0) >= 3).mean() >= 0.4
    assert _bar_extent(line | specks, th) == (0, 0, 11, 56)


def test_small_label_by_a_detected_bar_is_read_enlarged():
    """"5 um" in 7-px glyphs above a detected 187-px bar (synthetic 40,000,018 and
    40,000,115): PP-OCR's text detector misses it at full size; the bar's near
    surroundings are read again enlarged twice."""
    rng = np.random.default_rng(5)
    img = np.clip(rng.normal(70, 10, (400, 700)), 0, 255).astype(np.uint8)
    img[300:304, 200:387] = 255
    box = _paste_text(img, "5 um", 200, 290, 255, 70, size=10)
    assert box[3] - box[1] <= 8
    det = _BoxesDetector([Detection("bar", 0.3, (199.0, 299.0, 388.0, 305.0))])
    r = read_scalebar(img, detector=det, text_search=False)
    assert r is not None and r.value_nm == 5000, r
    assert abs(r.bar_px - 187) <= 1.0


@pytest.mark.parametrize("reread_text", ["150 nm", ",50 nm", None])
def test_a_label_line_whose_reread_disagrees(monkeypatch, reread_text):
    """PP-OCR's text detector reads "50 nm" under a bar.  Read again on its own, widened
    past its ends, the line gave "150 nm" (a bar's end tick taken in, synthetic
    40,000,174), ",50 nm" (a speck before it, 60,000,065) or nothing (40,000,129): the
    line as the text detector read it is taken, the last time only because no step reads
    anything else."""
    from micrometry.calibrate.scalebar import ocr
    from micrometry.calibrate.scalebar import read as read_mod

    img, box = _scene(bar_px=120, text="50 nm")
    line_box = (box[0] - 2.0, box[1] - 2.0, box[2] + 2.0, box[3] + 2.0)

    def text_detector(image, window=None, **kw):
        return [ocr.TextHit("50 nm", 0.95, line_box)] if kw.get("single_line") is False else []

    def reread(image, rbox, threads, detect=True, widen=True):
        if reread_text is None:
            return None, tuple(rbox)
        label = parse_scale_label(reread_text)
        return ocr.ScaleRead(label, ocr.TextHit(reread_text, 0.9, tuple(rbox)), False, 8.0), tuple(rbox)

    monkeypatch.setattr(ocr, "read_text", text_detector)
    monkeypatch.setattr(read_mod, "_read_label", reread)
    r = read_scalebar(img, detector=_BoxesDetector([]), text_search=True)
    assert r is not None and r.value_nm == 50, r
    assert abs(r.bar_px - 120) <= 1.0


def test_vertical_line_read_upside_down_is_read_again_turned(monkeypatch):
    """A vertical label that PP-OCR's line crop turned the wrong way up ("50 nm" read
    "mu05", synthetic 40,000,039) is read again turned both ways beside its bar."""
    from micrometry.calibrate.scalebar import ocr

    img, vbox = _vertical_bar_scene()

    def text_detector(image, window=None, **kw):  # only the upside-down line of the whole image
        if kw.get("single_line") is False and np.shape(image) == img.shape:
            return [ocr.TextHit("mu05", 0.57, vbox)]
        return []

    monkeypatch.setattr(ocr, "read_text", text_detector)
    r = read_scalebar(img, detector=_BoxesDetector([]), text_search=True)
    assert r is not None and r.value_nm == 50 and r.orientation == "v", r
    assert abs(r.bar_px - 80) <= 1.0


def test_a_label_read_by_the_text_detector_alone_in_mm_gives_way_to_nm():
    """"500mm" as PP-OCR's text detector read it, no re-read confirming it (synthetic
    30,000,081): 500 mm over an 84-px bar is no microscope's pixel size, so the unit PP-OCR
    confuses with it, nm, is taken, marked uncertain."""
    from micrometry.calibrate.scalebar import ocr
    from micrometry.calibrate.scalebar.ocr import _unscored_read

    img, box = _scene(bar_px=84, text="500 nm")
    sr = _unscored_read(parse_scale_label("500mm"), ocr.TextHit("500mm", 0.94, box))
    r = _candidate(img, sr, box, 0.0, [], via_text_search=True)
    assert r is not None and r.unit == "nm" and r.nm_per_px == pytest.approx(500 / 84, rel=0.02)
    assert r.checks["unit_log_margin"] == 0 and r.checks["factors"]["unit_margin"] < 1
    assert _unscored_read(parse_scale_label("5 um"), ocr.TextHit("5 um", 0.9, box)).runner_up is None


def test_a_column_cut_by_the_window_that_runs_to_the_image_edge_is_no_bar():
    """A bright column over the label from the image's top edge down to just above it (a
    particle's straight edge, a frame) is cut by the search window but reaches the edge:
    not a bar."""
    img = np.full((420, 820), 50, np.uint8)
    box = _paste_text(img, "5 nm", 300, 380, 255, 50)
    img[0 : 380 - 6, 318:322] = 255
    found = [m for _, m, _ in _bar_candidates(img, box) if m.orientation == "v"]
    assert not found, [(m.bbox, m.length_px) for m in found]


def test_the_dark_gap_of_a_white_double_bar_is_not_its_bar():
    """A white double bar (two 2-px lines 3 px apart, 98 px) under "10 nm", JPEG-darkened
    between its lines over 24 px near the label's centre (synthetic 60,000,077): that dark
    gap is bar-shaped and better centred, but of low contrast; the lines are taken."""
    from micrometry.calibrate.scalebar import ocr

    rng = np.random.default_rng(7)
    img = np.clip(rng.normal(60, 14, (300, 400)), 0, 255).astype(np.uint8)
    box = _paste_text(img, "10 nm", 100, 150, 255, 60, size=16)
    y = box[3] + 4
    img[y : y + 2, 100:198] = img[y + 5 : y + 7, 100:198] = 240
    img[y + 2 : y + 5, 118:142] = 25
    assert any("low contrast" in m.notes for _, m, _ in _bar_candidates(img, box))
    sr = ocr.ScaleRead(parse_scale_label("10 nm"), ocr.TextHit("10 nm", 0.95, box), False, 8.0)
    r = _candidate(img, sr, box, 0.5, [], via_text_search=False)
    assert r is not None and abs(r.bar_px - 98) <= 1.0, (r.bar_px, r.bar_bbox)


@pytest.mark.parametrize(
    ("text", "bar_box", "value"),
    [
        ("10.2 µm", (12, 13, 127, 41), 0.2),  # the tick right before the label: "0.2 µm"
        ("150nm", (20, 18, 70, 22), 50),
        ("10.2 µm", (12, 60, 127, 64), 10.2),  # the bar under the label: no tick before it
        ("150nm", (20, 18, 40, 22), 150),  # the bar ends 30 px before the label
        ("100 nm", (20, 18, 70, 22), 100),  # a round value is kept
        ("15 nm", (20, 18, 70, 22), 15),  # a one-digit rest: "15 nm" is a label too
    ],
)
def test_a_bar_end_tick_read_as_a_leading_one(text, bar_box, value):
    """A "1" before a label's number, where a horizontal bar ends right before the label
    and the value is no round scale-bar value while the rest is, is the bar's end tick
    (synthetic 60,000,105: "10.2 µm" of "0.2 µm" right of its bar)."""
    from micrometry.calibrate.scalebar.read import _ends_before, _tick_read_as_one

    text_box = (123.0, 11.0, 243.0, 41.0) if "µ" in text else (72.0, 14.0, 110.0, 26.0)
    label = parse_scale_label(text)
    if _ends_before(bar_box, text_box):
        label = _tick_read_as_one(label) or label
    assert label.value == pytest.approx(value)


def test_a_glyph_sticking_out_of_the_glyph_box_is_not_a_bar():
    """The top of the "5" of "5 µm" sticks out of the label's glyph box and was measured
    as a 9.7-px vertical bar mostly inside it (synthetic 70,000,119, confidence 0.64 for a
    196-px bar): a measurement mostly inside the label's glyph box is part of the label.
    A bar right under the label, touching it, is not."""
    from micrometry.calibrate.scalebar.measure import BarMeasurement
    from micrometry.calibrate.scalebar.read import _is_component

    text_box = (640.0, 25.0, 682.0, 37.0)
    glyph = BarMeasurement(9.7, "v", (637, 27, 647, 37), "bright", 10.0, 255.0, 80.0, "profile")
    assert not _is_component(glyph, (638, 22, 646, 30), text_box, against_label=True)
    under = BarMeasurement(60.0, "h", (630, 36, 690, 40), "bright", 4.0, 255.0, 80.0, "profile")
    assert _is_component(under, (630, 36, 690, 40), text_box, against_label=True)


def test_a_tick_read_as_one_keeps_the_unit_the_likelihoods_chose():
    """"150mm" whose unit the recognizer's likelihoods turned to nm, right after a bar's end:
    the "1" is the tick, the label 50 nm with both corrections (the rest parsed alone says mm)."""
    from micrometry.calibrate.scalebar.parse import with_unit
    from micrometry.calibrate.scalebar.read import _tick_read_as_one

    label = with_unit(parse_scale_label("150mm"), "nm", "OCR likelihood")
    out = _tick_read_as_one(label)
    assert out is not None and (out.value, out.unit, out.value_nm) == (50, "nm", 50)
    assert out.corrections == ("mm->nm (OCR likelihood)", "bar tick") and out.text == "150mm"


@pytest.mark.parametrize("gap", [0, 1])
def test_a_bar_as_long_as_its_label_is_wide_right_against_it(gap):
    """A white bar exactly as long as its white label is wide, 0-1 px above it (synthetic
    90,000,163, turned): the same colour as the glyphs, so not the rest of a box the label
    is written in."""
    from micrometry.train.synth import _text_patch

    tw = _text_patch("200 nm", "DejaVuSans", 18).shape[1]
    img, box = _scene(bar_px=tw, gap=gap)
    found = _bar_candidates(img, box)
    assert found, "no bar found"
    m = found[0][1]
    assert m.polarity == "bright" and abs(m.length_px - tw) <= 1.0, (m.bbox, tw)


def test_a_bar_in_its_labels_colour_wins_over_the_box_beside_the_label():
    """A black box holding a white bar (132 px) and, under its right end, a white "20NM"
    (synthetic 30,000,115, JPEG): the box left of the label is a dark band beside it,
    nearer than the bar, and the detector's box along the bar lies inside it too; the bar
    drawn in the label's colour is taken."""
    from micrometry.calibrate.scalebar.ocr import ScaleRead, TextHit
    from micrometry.calibrate.scalebar.parse import parse_scale_label

    img = np.load(DATA / "scalebar_box_beside_label.npy")
    box = (153.0, 33.0, 182.0, 44.0)  # the glyph box of the label line
    hit = TextHit("20NM", 0.99, box)
    bars = [Detection("bar", 0.56, (46.0, 22.0, 178.0, 30.0))]
    r = _candidate(img, ScaleRead(parse_scale_label("20NM"), hit, False, 5.0, None), box, 0.2, bars,
                   via_text_search=False)
    assert r is not None and abs(r.bar_px - 132) <= 1.0, r.bar_bbox



def test_a_bar_of_the_colour_of_its_labels_box_apart_from_it():
    """A solid white bar (69 x 30 px) left of a black label written on a white box (EMPS
    478a6c42ec, with the dark line along its bottom edge): the bar has the colour of the
    label's ground, not of its glyphs, and is still the bar: only a band of the ground's
    colour that touches the label counts as the rest of its box."""
    rng = np.random.default_rng(2)
    img = np.clip(rng.normal(90, 15, (300, 400)), 0, 255).astype(np.uint8)
    img[200:230, 20:89] = 255  # the bar
    img[230, 22:88] = 0  # a dark line along its bottom edge (a shadow of the export)
    img[196:234, 110:270] = 255  # the label's box
    box = _paste_text(img, "100 nm", 120, 203, 0, 255, size=24)
    found = _bar_candidates(img, box)
    assert found, "no bar found"
    m = found[0][1]
    assert m.polarity == "bright" and abs(m.length_px - 69) <= 1.0, m.bbox


def test_a_thin_bar_dimmer_than_the_micrographs_particles_is_found_at_the_labels_contrast():
    """A 1-px line dimmed to grey 100 by resampling, 2 px over a dim white "50 NM" (150) on
    a black box, on a dark micrograph whose particles reach 243 (synthetic 100,000,097):
    the neighbourhood's bright levels (above 140) miss the line; halfway between the
    label's ground and its glyphs finds it."""
    rng = np.random.default_rng(5)
    img = np.clip(rng.normal(37, 10, (300, 400)), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:300, :400]
    for cy, cx in ((60, 80), (120, 300), (230, 60)):
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= 15**2] = 243  # bright particles
    img[196:232, 146:262] = 0  # the box
    box = _paste_text(img, "50 NM", 160, 208, 150, 0, size=16)
    img[205, box[0] - 2 : box[2] + 2] = 100  # the line, 4 px longer than the label is wide
    found = _bar_candidates(img, box)
    assert found, "no bar found"
    m = found[0][1]
    assert m.polarity == "bright" and abs(m.length_px - (box[2] - box[0] + 4)) <= 1.0, m.bbox


def test_a_line_read_where_no_bar_was_found_is_read_again_when_found_again():
    """Synthetic 100,000,199 (rendered here: 450 KB is too much to store): a black "2 µm"
    on a dark, noisy micrograph under a double black line.  The detector's label box, read
    on its own, gives a box that takes in the bar's lower line, so no bar is found beside
    it; only the dark band view finds the line again, with a box of its own.  That line
    used to count as read already and was skipped."""
    from micrometry.calibrate.scalebar.detect import load_detector
    from micrometry.train.scalebar_detector import render_detector_sample

    img, _, info = render_detector_sample(100_000_199)
    truth = info["scalebar"]
    assert (truth["text"], truth["bar_px"]) == ("2 µm", 124.0)  # the generator still draws it
    r = read_scalebar(img, detector=load_detector())
    assert r is not None and r.value_nm == 2000, r
    assert abs(r.nm_per_px / (2000 / 124) - 1) <= 0.02, (r.nm_per_px, r.bar_px)


def test_the_label_reader_reads_a_label_that_pp_ocr_cannot():
    """Synthetic 60,000,124: "1 µm" in 10-px bold monospace glyphs, white, saved as JPEG at
    quality 69; the detector finds the label (0.77) but PP-OCR reads nothing in it or around
    it.  The project's label reader reads it, as the last step; without it, no reading."""
    from micrometry.calibrate.scalebar.detect import load_detector
    from micrometry.train.scalebar_detector import render_detector_sample

    img, _, info = render_detector_sample(60_000_124)
    truth = info["scalebar"]
    assert (truth["text"], truth["bar_px"], truth["font_px"]) == ("1 µm", 72.0, 10)
    det = load_detector()
    assert read_scalebar(img, detector=det, use_label_reader=False) is None
    r = read_scalebar(img, detector=det)
    assert r is not None and r.checks["label_read_by"] == "label-reader", r
    assert (r.value, r.unit) == (1.0, "um")
    assert abs(r.nm_per_px / (1000 / 72) - 1) <= 0.02, (r.nm_per_px, r.bar_px)


def test_the_label_reader_reads_a_line_pp_ocr_found_but_misread():
    """Synthetic 100,000,108: "1 um", white, saved as JPEG at quality 75.  The detector finds
    no label box there; PP-OCR's text detector finds the line but reads no scale label in it.
    The label reader reads that line's box (trusted less: no detector vote)."""
    from micrometry.calibrate.scalebar.detect import load_detector
    from micrometry.train.scalebar_detector import render_detector_sample

    img, _, info = render_detector_sample(100_000_108)
    truth = info["scalebar"]
    assert (truth["text"], truth["bar_px"]) == ("1 um", 180.0)
    r = read_scalebar(img, detector=load_detector())
    assert r is not None and r.checks["label_read_by"] == "label-reader", r
    assert r.checks["label_found_by"] == "text-search"
    assert abs(r.nm_per_px / (1000 / 180) - 1) <= 0.02, (r.nm_per_px, r.bar_px)


def test_extreme_views_stretch_a_faint_white_label_over_the_range():
    """White strokes (255) on a light ground (225 +- 4): in the bright view the ground is
    black and the strokes white, in the dark view the strokes are black; both views are
    zero outside the window; an image of one grey level gives none."""
    from micrometry.calibrate.scalebar.read import _extreme_views

    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(225, 4, (100, 200)), 0, 255).astype(np.uint8)
    img[60:70, 50:52] = img[60:70, 60:62] = 255  # two strokes
    views = list(_extreme_views(img, (0, 40, 200, 100)))
    assert len(views) == 2 and all(v.dtype == np.uint8 and v.shape == img.shape for v in views)
    bright, dark = views
    assert (bright[60:70, 50:52] == 255).all() and np.median(bright[40:]) == 0
    assert not bright[:40].any() and not dark[:40].any()  # outside the window
    assert np.median(dark[40:]) == 0 and dark[60:70, 50:52].max() == 0
    assert list(_extreme_views(np.full((10, 10), 7, np.uint8), (0, 0, 10, 10))) == []


def test_a_faint_black_label_is_found_in_the_extreme_grey_levels():
    """Synthetic 40,000,051 (JPEG): a black "0.5 μm" in 12-px glyphs under a black 72-px
    line on a dark micrograph; PP-OCR reads nothing there in the image as it is, around
    the detector's boxes or in the bands: it finds the label once the bands' darkest
    levels are stretched over the range."""
    from micrometry.calibrate.scalebar.detect import load_detector

    img = np.load(DATA / "scalebar_faint_black_label.npy")
    r = read_scalebar(img, detector=load_detector())
    assert r is not None and r.value_nm == 500, r
    assert abs(r.nm_per_px / (500 / 72) - 1) <= 0.02, (r.nm_per_px, r.bar_px)


def test_label_boxes_beside_a_bar_lie_above_and_below_it():
    """A 100-px bar on rows 200-205 of a 400 x 400 image: boxes for glyphs of 8-33 px
    (up to 0.6 of the bar's length), each 1.4 glyph heights tall, above or below the bar and
    clear of it, reaching no further than the bar's length and a fifth, one centred on it."""
    from micrometry.calibrate.scalebar.read import _BESIDE_BAR_TH, _label_boxes_beside_bar

    bar = (150.0, 200.0, 250.0, 206.0)
    boxes = _label_boxes_beside_bar(bar, (400, 400))
    heights = {round((b[3] - b[1]) / 1.4, 6) for b in boxes}
    assert heights == {float(th) for th in _BESIDE_BAR_TH if th <= 60}
    for x0, y0, x1, y1 in boxes:
        assert y1 <= 200.0 or y0 >= 206.0  # above or below, never over the bar
        assert 0 <= x0 < x1 <= 400 and x1 - x0 <= 120.0 + 1e-9
    assert any(abs((b[0] + b[2]) / 2 - 200.0) < 1e-9 for b in boxes)
    # at the image's top edge only the boxes below are left; a 10-px bar has room for none
    top = _label_boxes_beside_bar((150.0, 0.0, 250.0, 6.0), (400, 400))
    assert top and all(b[1] >= 6.0 for b in top)
    assert _label_boxes_beside_bar((150.0, 200.0, 160.0, 206.0), (400, 400)) == []


def test_label_boxes_at_a_bars_side_lie_on_its_rows_or_beyond_its_ends():
    """A 100-px horizontal bar on rows 200-205: boxes for horizontal labels of 8-33 px glyphs
    before or after it, centred on its rows and clear of it.  A vertical bar (columns
    200-205, rows 150-250): boxes left or right of it, level with its top, middle or bottom,
    and above or below its ends, centred on it."""
    from micrometry.calibrate.scalebar.read import _BESIDE_BAR_TH, _label_boxes_at_bar_side

    boxes = _label_boxes_at_bar_side((150.0, 200.0, 250.0, 206.0), (400, 400))
    assert {round((b[3] - b[1]) / 1.4, 6) for b in boxes} == {float(th) for th in _BESIDE_BAR_TH if th <= 60}
    for x0, y0, x1, y1 in boxes:
        assert x1 <= 150.0 or x0 >= 250.0  # before or after the bar, never over it
        assert abs((y0 + y1) / 2 - 203.0) < 1e-9 or y0 == 0.0 or y1 == 400.0
    assert any(b[2] <= 150.0 for b in boxes) and any(b[0] >= 250.0 for b in boxes)
    vertical = _label_boxes_at_bar_side((200.0, 150.0, 206.0, 250.0), (400, 400))
    beside = [b for b in vertical if b[2] <= 200.0 or b[0] >= 206.0]
    beyond = [b for b in vertical if b[3] <= 150.0 or b[1] >= 250.0]
    assert len(beside) + len(beyond) == len(vertical) and beside and beyond
    assert all(abs((b[0] + b[2]) / 2 - 203.0) < 1e-9 for b in beyond if 0.0 < b[0] and b[2] < 400.0)
    # one box of each glyph height holds the bar's last rows (a label level with its bottom end)
    assert {round((b[3] - b[1]) / 1.4, 6) for b in beside if b[1] < 250.0 < b[3]} \
        == {float(th) for th in _BESIDE_BAR_TH if th <= 60}
    assert _label_boxes_at_bar_side((150.0, 200.0, 160.0, 206.0), (400, 400)) == []


@pytest.mark.parametrize("seed, text, bar_px", [
    (600_000_194, "100 nm", 81.0),  # a white "100 nm" right of its bar, on noise
    (590_000_100, "5 um", 110.0),  # a faint horizontal "5 um" beside a vertical bar's bottom end
])
def test_a_label_no_text_detector_finds_is_read_at_its_bars_side(seed, text, bar_px):
    """Labels no detector finds at the side of their bar (on a horizontal bar's rows, or
    level with a vertical bar's end) are read there by the label reader, trusted little."""
    truth, r = _read_sample(seed)
    assert (truth["text"], truth["bar_px"]) == (text, bar_px)
    assert r is not None and r.checks["label_read_by"] == "label-reader", r
    assert r.confidence < 0.5 and r.value_nm == truth["value_nm"], r
    assert abs(r.nm_per_px / (truth["value_nm"] / bar_px) - 1) <= 0.02, (r.nm_per_px, r.bar_px)


def test_a_faint_label_no_text_detector_finds_is_read_beside_its_bar():
    """Synthetic 80,000,151: a dark-grey "1 µm" over a black bar on a dark micrograph.
    Neither the detector (whole image or zoomed) nor PP-OCR's text detector finds the label;
    the label reader reads it in the boxes above the detected bar (trusted little)."""
    from micrometry.calibrate.scalebar.detect import load_detector
    from micrometry.train.scalebar_detector import render_detector_sample

    img, _, info = render_detector_sample(80_000_151)
    truth = info["scalebar"]
    assert (truth["text"], truth["bar_px"]) == ("1 µm", 74.0)
    det = load_detector()
    assert read_scalebar(img, detector=det, use_label_reader=False) is None
    r = read_scalebar(img, detector=det)
    assert r is not None and r.checks["label_read_by"] == "label-reader", r
    assert r.checks["label_found_by"] == "text-search" and r.confidence < 0.5
    assert (r.value, r.unit) == (1.0, "um")
    assert abs(r.nm_per_px / (1000 / 74) - 1) <= 0.02, (r.nm_per_px, r.bar_px)


def test_a_dispute_between_the_readers_weighs_on_both_readings():
    """Synthetic 110,000,071: a vertical bar with "20 nm" beside its end; PP-OCR reads
    "120nm" (the bar's end taken for a "1"), the label reader "20 nm".  Each reading gets
    the dispute's factor, and the round value wins."""
    from micrometry.calibrate.scalebar.detect import load_detector
    from micrometry.calibrate.scalebar.read import _DISPUTED
    from micrometry.train.scalebar_detector import render_detector_sample

    img, _, info = render_detector_sample(110_000_071)
    truth = info["scalebar"]
    assert (truth["text"], truth["bar_px"]) == ("20 nm", 168.0)
    r = read_scalebar(img, detector=load_detector())
    assert r is not None and r.checks["label_read_by"] == "label-reader", r
    assert r.checks["factors"]["readers_agree"] == _DISPUTED and r.confidence < 0.5
    assert (r.value, r.unit) == (20.0, "nm")
    assert abs(r.nm_per_px / (20 / 168) - 1) <= 0.02, (r.nm_per_px, r.bar_px)


def test_a_bar_end_in_a_label_box_is_cut_off_but_glyphs_beyond_it_are_not():
    """A white 110 x 8 bar ending at column 395 and 2-px wide, 20-px tall "glyphs" 7 px apart
    right of it (dark ground): a glyph box from column 388 holds the bar's last 7 px, and moves in
    to 395; a box cutting the glyph row (more glyphs to its left, gaps between them) and a
    box at the image's edge stay as they are."""
    from micrometry.calibrate.scalebar.read import _cut_bar_ends

    img = np.full((80, 500), 40, np.uint8)
    img[40:48, 285:395] = 255  # the bar
    for x in range(398, 450, 9):
        img[34:54, x:x + 2] = 255  # glyphs ("1"s)
    assert _cut_bar_ends(img, (388.0, 32.0, 452.0, 56.0)) == (395.0, 32.0, 452.0, 56.0)
    assert _cut_bar_ends(img, (420.0, 32.0, 452.0, 56.0)) == (420.0, 32.0, 452.0, 56.0)
    assert _cut_bar_ends(img[:, 380:], (8.0, 32.0, 72.0, 56.0)) == (8.0, 32.0, 72.0, 56.0)
    # a label left of a bar that starts 4 px beyond its box (glyphs 2 px in from the box's
    # side): no bar's end runs through the side (synthetic 340,000,023 was cut there)
    left = np.full((80, 500), 40, np.uint8)
    for x in range(200, 250, 9):
        left[34:54, x:x + 2] = 255
    left[40:48, 255:365] = 255  # the bar, from column 255; the box ends at 251
    assert _cut_bar_ends(left, (198.0, 32.0, 251.0, 56.0)) == (198.0, 32.0, 251.0, 56.0)
    # the same on a float image with the opposite polarity (dark bar and glyphs, light ground)
    inv = 1.0 - img.astype(np.float32) / 255
    assert _cut_bar_ends(inv, (388.0, 32.0, 452.0, 56.0)) == (395.0, 32.0, 452.0, 56.0)


def test_glyphs_cut_by_a_label_box_and_a_gap_before_a_bar_are_no_bar_end():
    """A box ending inside the last glyph of a label whose unit is followed, 2 px on, by a bar
    on the glyphs' rows: the ink through the box's side breaks at the gap, so the box is not
    cut (synthetic 600,000,033 was cut before its "nm", and the bar then found beside the
    digits was the unit's glyphs); with no gap the same ink is a bar's end."""
    from micrometry.calibrate.scalebar.read import _cut_bar_ends

    img = np.full((80, 500), 20, np.uint8)
    for x in (160, 170):
        img[34:54, x:x + 2] = 255  # two digits ("11")
    for x in range(200, 232, 8):
        img[34:54, x:x + 2] = 255  # four glyph stems, 6 px apart
    img[34:37, 200:234] = 255  # joined at their tops, as "nm" is by its arches
    img[34:42, 236:346] = 255  # the bar, 2 px after the last glyph
    box = (150.0, 30.0, 228.0, 58.0)  # ends inside the unit's glyphs
    assert _cut_bar_ends(img, box) == box
    touching = img.copy()
    touching[34:42, 234:236] = 255  # no gap: the ink runs on into the bar
    assert _cut_bar_ends(touching, box) == (150.0, 30.0, 200.0, 58.0)


def test_a_vertical_bar_passing_a_label_box_s_end_is_cut_off():
    """A white vertical bar (columns 100-104, rows 40-140) whose top a label's glyph box
    (rows 38-55) took in, 2 px in from its side: the box moves in past the bar, also with
    the bar running up from the box instead; the same box over a "1" as tall as the glyphs,
    which goes on neither above nor below, stays."""
    from micrometry.calibrate.scalebar.read import _cut_bar_ends

    img = np.full((200, 300), 40, np.uint8)
    for x in range(108, 150, 8):
        img[42:52, x:x + 2] = 255  # glyphs
    bar = img.copy()
    bar[40:140, 100:105] = 255
    box = (98.0, 38.0, 152.0, 55.0)
    assert _cut_bar_ends(bar, box) == (105.0, 38.0, 152.0, 55.0)
    assert _cut_bar_ends(bar[::-1], (98.0, 145.0, 152.0, 162.0)) == (105.0, 145.0, 152.0, 162.0)
    one = img.copy()
    one[42:52, 100:102] = 255  # a "1" where the bar was
    assert _cut_bar_ends(one, box) == box


def test_a_dark_noisy_ground_around_large_black_glyphs_is_no_bar_end():
    """Synthetic 400,000,153: a black 26-px "0,1UM" on a dark noisy ground.  The glyphs
    fill half of PP-OCR's box, so the box's own levels take the ground for ink, which runs
    on past both ends and above; the ground around the box sets the polarity, and the box
    stays whole (cut to "1U" it was read "0,1UM" only by the label reader, 0.44)."""
    from micrometry.calibrate.scalebar.read import _cut_bar_ends
    from micrometry.train.scalebar_detector import render_detector_sample

    img, _, info = render_detector_sample(400_000_153)
    assert info["scalebar"]["text"] == "0,1UM"
    box = (889.0, 480.0, 975.0, 501.0)  # PP-OCR's glyph box of the line
    assert _cut_bar_ends(img, box) == box


def test_a_vertical_bar_is_not_measured_beside_itself_when_its_top_is_in_the_label_box():
    """Synthetic 560,000,021: a black vertical bar at the image's left edge, a horizontal
    "0.5 µm" beside its top.  The label's box took in the bar's top, and the bar searched for
    outside the box was the light strip beside the bar (36.5 px for 48, confidence 0.64)."""
    truth, r = _read_sample(560_000_021)
    assert (truth["text"], truth["bar_px"], truth["orientation"]) == ("0.5 µm", 48.0, "vertical")
    assert r is not None and r.value_nm == 500, r
    assert abs(r.nm_per_px / (500 / 48) - 1) <= 0.02, (r.nm_per_px, r.bar_px, r.text_bbox)


def test_a_unit_cut_by_a_label_box_is_not_measured_as_the_bar():
    """Synthetic 600,000,033: a white "500 nm" left of a white bar 2 px after its "m", in a
    black box.  A zoomed label box ending inside the "nm" was trimmed before it, and the bar
    found beside those digits was the unit's glyphs (13.8 px for 83, confidence 0.52)."""
    truth, r = _read_sample(600_000_033)
    assert (truth["text"], truth["bar_px"], truth["label_pos"]) == ("500 nm", 83.0, "left")
    assert r is not None and r.value_nm == 500, r
    assert abs(r.nm_per_px / (500 / 83) - 1) <= 0.02, (r.nm_per_px, r.bar_px, r.text_bbox)
    assert r.text_bbox[2] >= truth["text_bbox"][3] - 2  # the glyph box holds the unit


def test_a_weak_label_box_after_the_first_three_is_read_when_nothing_else_is():
    """Synthetic 620,000,123: a clear 49-px "1 µm" left of a thin bar with end ticks, on
    noise.  The detector scores its box 0.075, fourth after boxes on noise and on a "20.0 kV";
    no other step reads it, so it is read once nothing else was."""
    from micrometry.calibrate.scalebar.detect import load_detector
    from micrometry.train.scalebar_detector import render_detector_sample

    img, _, info = render_detector_sample(620_000_123)
    truth = info["scalebar"]
    assert (truth["text"], truth["bar_px"]) == ("1 µm", 183.0)
    det = load_detector()
    label_boxes = [d.box for d in det.detect(img) if d.cls == "label"]
    ty0, tx0, ty1, tx1 = truth["text_bbox"]
    on_label = [i for i, b in enumerate(label_boxes) if b[0] < tx1 and b[2] > tx0 and b[1] < ty1 and b[3] > ty0]
    assert on_label and min(on_label) >= 3, label_boxes
    r = read_scalebar(img, detector=det)
    assert r is not None and r.value_nm == 1000, r
    assert abs(r.nm_per_px / (1000 / 183) - 1) <= 0.02, (r.nm_per_px, r.bar_px)


def test_no_dispute_when_the_label_reader_also_reads_pp_ocrs_value():
    """Synthetic 610,000,058: a vertical "2.5um" beside a vertical line.  PP-OCR reads it
    whole, and so does the label reader in one of its boxes; in a zoomed box cut at the
    point it reads "25um".  That reading is disputed, PP-OCR's is not, and it wins."""
    truth, r = _read_sample(610_000_058)
    assert (truth["text"], truth["bar_px"], truth["orientation"]) == ("2.5um", 150.0, "vertical")
    assert r is not None and r.value_nm == 2500, r
    assert r.checks["factors"]["readers_agree"] == 1.0, r.checks
    assert abs(r.nm_per_px / (2500 / 150) - 1) <= 0.02, (r.nm_per_px, r.bar_px)


def test_a_label_read_beside_a_bar_s_end_leaves_the_bar_whole():
    """Synthetic 440,000,083: "5 µm" right of a white 110-px bar, read by the label reader in
    a box widened over the bar's last 8 px; the bar searched for beside that box was cut
    there and measured 94.7 px."""
    from micrometry.calibrate.scalebar.detect import load_detector
    from micrometry.train.scalebar_detector import render_detector_sample

    img, _, info = render_detector_sample(440_000_083)
    truth = info["scalebar"]
    assert (truth["text"], truth["bar_px"], truth["label_pos"]) == ("5 μm", 110.0, "right")
    r = read_scalebar(img, detector=load_detector())
    assert r is not None and r.value_nm == 5000, r
    assert abs(r.nm_per_px / (5000 / 110) - 1) <= 0.02, (r.nm_per_px, r.bar_px, r.text_bbox)


def test_the_label_reader_disputes_a_pp_ocr_reading_it_reads_otherwise():
    """Synthetic 400,000,103: a black "2.5 μm" (18-px serif glyphs) in an outline box beside
    a 100-px bar.  PP-OCR reads "25um" (the point dropped) and the reading had 0.64: wrong and
    trusted.  The label reader, asked for a second opinion on readings trusted from 0.5 to
    0.8, reads "2.5 µm": both readings are disputed and neither is trusted."""
    from micrometry.calibrate.scalebar.detect import load_detector
    from micrometry.calibrate.scalebar.read import _DISPUTED
    from micrometry.train.scalebar_detector import render_detector_sample

    img, _, info = render_detector_sample(400_000_103)
    truth = info["scalebar"]
    assert (truth["text"], truth["bar_px"]) == ("2.5 μm", 100.0)
    det = load_detector()
    alone = read_scalebar(img, detector=det, use_label_reader=False)
    assert alone is not None and alone.value_nm == 25_000 and 0.5 <= alone.confidence < 0.8, alone
    r = read_scalebar(img, detector=det)
    assert r is not None and r.checks["factors"]["readers_agree"] == _DISPUTED and r.confidence < 0.5, r


def test_frame_band_is_a_thin_closed_ring_only():
    """A 2-px rectangular ring is a frame (its pixels come back, a bar touching it inside
    left out); a filled box, a ring open on one side and a thick ring are not."""
    from micrometry.calibrate.scalebar.read import _frame_band

    ring = np.zeros((30, 100), bool)
    ring[:2], ring[-2:], ring[:, :2], ring[:, -2:] = True, True, True, True
    inside = ring.copy()
    inside[10:13, 5:95] = True  # a bar inside, joined to the ring by a bridge
    inside[10:13, 2:5] = True
    band = _frame_band(inside)
    assert band is not None and band.sum() == ring.sum() and not band[10:13, 5:95].any()
    assert _frame_band(np.ones((30, 100), bool)) is None
    open_ring = ring.copy()
    open_ring[2:-2, -2:] = False
    assert _frame_band(open_ring) is None
    thick = np.ones((30, 100), bool)
    thick[8:-8, 8:-8] = False
    assert _frame_band(thick) is None


def test_a_frame_around_the_bar_and_its_label_is_painted_over():
    """Synthetic 140,000,014: a black vertical double line (128 px) and "1 µm" beside it in
    a 1-px black outline box (142 px tall), whose right side the label's (detected) box
    takes in.  The box's frame was taken for a ticked bar 142 px long; painted over, the
    double line is the bar."""
    from micrometry.calibrate.scalebar.read import _bar_candidates_any_text
    from micrometry.train.scalebar_detector import render_detector_sample

    img, _, info = render_detector_sample(140_000_014)
    truth = info["scalebar"]
    assert (truth["bar_px"], truth["box_style"]) == (128.0, "outline")
    cands = _bar_candidates_any_text(np.asarray(img, dtype=float), (27.0, 77.0, 88.0, 100.0))
    assert cands and abs(cands[0][1].length_px / 128 - 1) <= 0.02, [(c, m.bbox) for c, m, _ in cands]


def _rendered(seed: int, bar_px: float) -> np.ndarray:
    """The generator's detector sample `seed` as a float image, checked to still draw its
    scale bar `bar_px` long (the tests below name what they see in it)."""
    from micrometry.train.scalebar_detector import render_detector_sample

    img, _, info = render_detector_sample(seed)
    assert info["scalebar"]["bar_px"] == bar_px
    return np.asarray(img, dtype=float)


@pytest.mark.parametrize("seed, bar_px, box", [
    # a dark 58-px line 4-6 px inside the dark frame of an outline box, the box light inside:
    # the light gap at each end, with the frame beyond it, was taken for the light outline of
    # a hollow bar (66 px)
    (150_000_094, 58.0, (487, 377, 549, 384)),
    # a black 1-px ticked vertical line on a very noisy micrograph: the largest of the few
    # noisy pixels beyond each end passed as a light outline 3 px wide (63.4 px); on average
    # those pixels are background
    (130_000_019, 58.0, (657, 162, 665, 224)),
])
def test_what_lies_beyond_a_bars_ends_is_no_outline(seed, bar_px, box):
    """Synthetic 150,000,094 and 130,000,019: a bar measured right is not grown by an
    "outline" that is the gap to a box's frame, or noise."""
    from micrometry.calibrate.scalebar.measure import measure_bar
    from micrometry.calibrate.scalebar.read import _outlined

    arr = _rendered(seed, bar_px)
    m = measure_bar(arr, box)
    assert abs(m.length_px - bar_px) <= 1.0
    assert _outlined(arr, m) is m


def test_a_faint_thin_line_between_its_end_ticks_is_found_at_loose_levels():
    """Synthetic 130,000,079: a 1-px black line blurred to 47 % of the contrast of its end
    ticks, 171 px from tick to tick.  At the usual levels the line joins neither tick and
    nothing bar-like is found (the detector's box, measured, gave the light band under the
    line: 165 px); at the loose levels the ticked line is found and measured whole."""
    arr = _rendered(130_000_079, 171.0)
    text_box = (371.4, 58.4, 500.6, 83.6)
    assert _bar_candidates(arr, text_box) == []
    cands = _bar_candidates(arr, text_box, loose=True)
    assert cands and abs(cands[0][1].length_px / 171 - 1) <= 0.02, [(c, m.bbox) for c, m, _ in cands]


def test_a_vertical_bar_cut_just_above_the_labels_rows_is_beside_it():
    """Synthetic 170,000,068: the label's rectangle, grown by a pixel to whole pixels, cut
    the lower end of a thin vertical bar beside it; the piece left ends 1.8 px above the
    label's rows and is still beside it.  Further up it is not."""
    label = (14.38, 53.77, 66.41, 65.03)
    assert _placement_cost((13, 13, 14, 52), label) is not None
    assert _placement_cost((13, 13, 14, 50), label) is None


def test_a_long_vertical_bar_beside_its_label_is_followed_past_the_search_window():
    """Synthetic 150,000,155: a black 1-px line 156 px (11 label heights) tall in a white box,
    "1µm" beside its lower end.  The search window cut it; it is followed up the image."""
    cands = _bar_candidates(_rendered(150_000_155, 156.0), (350.0, 153.0, 387.0, 167.0))
    assert cands and abs(cands[0][1].length_px - 156) <= 1.0, [(c, m.bbox) for c, m, _ in cands]


def test_a_vertical_bar_the_labels_rectangle_cuts_in_two_is_measured_across_it():
    """A white 4 x 100 px vertical bar beside "2 µm", the label's box wider than its glyphs
    and over the bar's columns: masking the box cuts the bar in two; each piece is
    followed across the box to the other."""
    img = np.full((260, 300), 60, np.uint8)
    img[50:150, 150:154] = 255
    box = _paste_text(img, "2 µm", 90, 92, 255, 60, size=18)
    cands = _bar_candidates(img, (box[0] - 3.0, box[1] - 2.0, 157.0, box[3] + 2.0))
    assert cands and cands[0][1].bbox == (150, 50, 154, 150) and cands[0][1].length_px == pytest.approx(100.0, abs=0.2)


def test_a_faint_line_on_the_labels_box_is_found_at_the_labels_loose_level():
    """Synthetic 130,000,141: a black 1-px line blurred to 30 % contrast on a grey box
    (160) that holds the black label, on a dark micrograph (median 32).  Levels from
    the neighbourhood take the whole box for bright; 30 % of the way from the label's
    ground to its glyphs finds the line (174 px)."""
    cands = _bar_candidates(_rendered(130_000_141, 174.0), (694.0, 15.0, 767.0, 34.0), loose=True)
    assert cands and abs(cands[0][1].length_px / 174 - 1) <= 0.02, [(c, m.bbox) for c, m, _ in cands]


def test_a_small_bar_in_a_large_uniform_box_is_found_at_the_rare_extreme():
    """Synthetic 170,000,005: a white ticked vertical bar (98 px) on a flat grey box, its
    white pixels 0.3 % of the neighbourhood (the label's are masked): halfway to the 99.5th
    percentile takes in the box with the bar; halfway to the 99.95th separates them.  The
    label's box is wider than its glyphs and cuts the bar in two as well."""
    cands = _bar_candidates(_rendered(170_000_005, 98.0), (6.0, 45.0, 69.0, 68.0))
    assert cands and abs(cands[0][1].length_px - 98) <= 1.0, [(c, m.bbox) for c, m, _ in cands]



def test_a_double_line_with_speckle_joined_to_it_is_bar_shaped():
    """Two 2-px lines 2 px apart (a double bar), 100 px long, with a chain of noise specks
    joined to the lower one: bar-shaped, whole.  Two lines a label height apart (a frame's
    sides) are not, nor two close lines with tall "ticks" at their ends."""
    comp = np.zeros((20, 100), bool)
    comp[0:2] = comp[4:6] = True
    for r, c in ((6, 30), (7, 31), (8, 30), (9, 29), (10, 30)):
        comp[r, c] = True
    assert _bar_extent(comp, th=17.0) == (0, 0, 20, 100)
    frame = np.zeros((20, 100), bool)
    frame[0:2] = frame[14:16] = True
    frame[:16, 0] = frame[:16, 99] = True
    assert _bar_extent(frame, th=12.0) is None
    # a double bar has no ticks: a frame's side with a line 2 px inside it, the frame's other
    # sides rising from their ends (a double bar in an outline box, synthetic 270,000,135)
    framed = np.zeros((40, 145), bool)
    framed[38:40] = framed[34:36] = True
    framed[:, 0:2] = framed[:, 143:145] = True
    assert _bar_extent(framed, th=19.0) is None


def test_a_faint_line_under_its_label_is_not_the_light_gap_above_it():
    """Synthetic 250,000,170: a faint black 1-px line (87 px) under "50 nm" on a noisy
    micrograph.  Found dark at the usual levels, a piece of it measured as the light gap
    between the glyphs and the line (16 px, low contrast), which was taken; now nothing
    bar-like is found at the usual levels, and the loose levels find the line."""
    from micrometry.calibrate.scalebar import ocr

    arr = _rendered(250_000_170, 87.0)
    box = (30.0, 16.0, 91.0, 35.0)
    assert not [m for _, m, _ in _bar_candidates(arr, box) if m.polarity == "bright"]
    sr = ocr.ScaleRead(parse_scale_label("50nm"), ocr.TextHit("50nm", 0.95, box), False, 8.0)
    r = _candidate(arr, sr, box, 0.5, [], via_text_search=False)
    assert r is not None and abs(r.bar_px / 87 - 1) <= 0.02, (r.bar_px, r.bar_bbox)


def test_a_white_bar_beside_its_label_is_not_the_black_between_its_ticks():
    """Synthetic 250,000,086: a white ticked bar (106 px, 2-px line, 16-px ticks) beside
    "5000nm" in a black data bar.  Its box, measured, gave the black between the ticks
    above the line (99 px, low contrast); the white bar is taken."""
    cands = _bar_candidates(_rendered(250_000_086, 106.0), (421.0, 937.0, 559.0, 966.0))
    assert cands and cands[0][1].polarity == "bright" and abs(cands[0][1].length_px - 106) <= 1.0, \
        [(c, m.bbox, m.polarity) for c, m, _ in cands]


def test_a_double_white_line_beside_its_label_wins_over_a_particle_above_it():
    """Synthetic 260,000,085: a white double line (108 px) right of "500nm" on a light
    noisy micrograph, noise specks joined to its lines; a dark rod-shaped particle stands
    two label heights above the label."""
    cands = _bar_candidates(_rendered(260_000_085, 108.0), (11.54, 375.97, 81.39, 392.98))
    assert cands and abs(cands[0][1].length_px - 108) <= 1.0, [(c, m.bbox) for c, m, _ in cands]


def test_a_poorly_placed_object_lets_the_loose_levels_compete():
    """Synthetic 110,000,137: a faint 1-px vertical line (83 px) right beside "50 nm".  At
    the usual levels only a dark rod 1.5 label heights away is found (23 px, cost 2.3;
    taken with confidence 0.64 before); the loose levels, tried because it sits poorly,
    find the line, better placed."""
    from micrometry.calibrate.scalebar import ocr

    arr = _rendered(110_000_137, 83.0)
    box = (773.0, 419.0, 845.0, 443.0)
    usual = _bar_candidates(arr, box)
    assert usual and usual[0][0] >= 1.0 and usual[0][1].length_px < 30, [(c, m.bbox) for c, m, _ in usual]
    sr = ocr.ScaleRead(parse_scale_label("50nm"), ocr.TextHit("50nm", 0.95, box), False, 8.0)
    r = _candidate(arr, sr, box, 0.9, [], via_text_search=False)
    assert r is not None and abs(r.bar_px / 83 - 1) <= 0.02, (r.bar_px, r.bar_bbox)


def test_a_frame_around_the_label_is_no_ticked_bar():
    """Synthetic 340,000,084: a white 168-px bar right of "0,5 um" inside a 1-px white
    outline box that resampling dimmed (155 at the top, 105 at the bottom: too faint to be
    found as a frame).  The outline, its sides taken for end ticks, was measured as a
    280-px bar around the label and read with confidence 0.96; a bar is never around its
    label on all four sides."""
    cands = _bar_candidates(_rendered(340_000_084, 168.0), (340.0, 746.0, 419.0, 766.0))
    assert cands and abs(cands[0][1].length_px - 168) <= 1.0, [(c, m.bbox) for c, m, _ in cands]
    assert all(m.length_px < 200 for _, m, _ in cands)


def test_a_measurement_beside_the_bar_component_is_not_taken_for_it():
    """Synthetic 510,000,105: a white 3-px line (118 px) over "2,5 µm", a bright particle just
    above it.  The dark gap between the line and the label, measured through the label's
    rectangle, gave way to the dark rows between the particle and the line (63 px, beside
    the gap, not on it), and that was the reading (confidence 1.0); the line is measured."""
    from micrometry.train.scalebar_detector import render_detector_sample

    img, _, info = render_detector_sample(510_000_105)
    assert (info["scalebar"]["text"], info["scalebar"]["bar_px"]) == ("2,5 µm", 118.0)
    cands = _bar_candidates(img, (399.0, 639.0, 462.0, 657.0))
    assert cands and abs(cands[0][1].length_px - 118) <= 1.0, [(c, m.length_px, m.bbox) for c, m, _ in cands]


def test_a_white_line_measured_from_its_shadows_component_is_kept():
    """EMPS 0a55e7c93f (JEOL data text): a white 56-px line with a dark drop shadow right
    under it, above "200 μm".  The shadow's component, measured, gives the white line one
    row above it (the edge between them in between): that is the bar, not a measurement
    beside the component."""
    from PIL import Image

    from micrometry.train.realdata import emps_dir

    emps = emps_dir()
    if emps is None:
        pytest.skip("EMPS images (../shared/data/emps-train) are not present")
    img = np.asarray(Image.open(emps / "images" / "0a55e7c93f.png").convert("L"))
    cands = _bar_candidates(img, (123.0, 480.0, 203.0, 503.0))
    assert cands and abs(cands[0][1].length_px - 56) <= 1.0, [(c, m.length_px, m.bbox) for c, m, _ in cands]


def test_glyphs_a_line_left_out_at_its_start_are_taken_in():
    """"2 . 5 µm" in a wide font (18-px DejaVu glyphs, 12-13 px of gap around the point, 28
    between the digits): a line box from the "5" is carried over the point to the "2"; a
    frame's side (taller than a glyph) is not taken in, nor a digit further than 1.5 glyph
    heights; a vertical line (the image turned) is carried on at whichever end has glyphs."""
    from micrometry.calibrate.scalebar.read import _left_out_glyphs

    img = np.full((100, 400), 30, np.uint8)
    _paste_text(img, "2", 100, 40, 230, 30)  # columns 100-108
    _paste_text(img, ".", 121, 51, 230, 30)  # the point's ink: columns 122-123, rows 51-52
    box = tuple(float(v) for v in _paste_text(img, "5 µm", 137, 40, 230, 30))  # (137, 40, 181, 57)
    (grown,) = _left_out_glyphs(img, box)
    th = box[3] - box[1]
    assert grown[0] == pytest.approx(100 - 0.2 * th) and grown[1:] == box[1:]
    # without the point, the "2" is too far (28 px, over 1.5 glyph heights)
    no_point = img.copy()
    no_point[49:55, 118:128] = 30
    assert _left_out_glyphs(no_point, box) == []
    # nothing beside the start: nothing to take in
    assert _left_out_glyphs(img, (99.0, 40.0, 181.0, 57.0)) == []
    # a frame's side 4 px before the "2": not a glyph; the "2" is still taken in
    img[20:80, 94:96] = 230
    (grown,) = _left_out_glyphs(img, box)
    assert grown[0] == pytest.approx(100 - 0.2 * th)
    # turned: the line runs down the image, its left-out "2" above it (or below, turned back)
    turned = np.ascontiguousarray(img.T)
    (grown,) = _left_out_glyphs(turned, (40.0, 137.0, 57.0, 181.0))
    assert grown == pytest.approx((40.0, 100 - 0.2 * th, 57.0, 181.0))
    flipped = np.ascontiguousarray(turned[::-1])
    (grown,) = _left_out_glyphs(flipped, (40.0, 400 - 181.0, 57.0, 400 - 137.0))
    assert grown == pytest.approx((40.0, 400 - 181.0, 57.0, 400 - 100 + 0.2 * th))


@pytest.mark.parametrize("seed, value_nm, bar_px", [
    (510_000_116, 2500, 84),  # "2.5 µm", PP-OCR's line from the "5": "5μm" (0.64)
    (460_000_010, 250, 52),  # "0.25 μm" turned beside a vertical bar: "25μm" (0.60)
    (490_000_143, 500, 55),  # "0.5 um" in a frame, 8-px glyphs: "5.um" (1.0)
])
def test_a_number_split_at_its_decimal_point_is_read_whole(seed, value_nm, bar_px):
    """Fonts that leave a wide gap around the decimal point: PP-OCR's text detector split
    the line there and the reading was 10 or 100 times too large, trusted.  The glyphs left
    out before the line are read with it (or, "0.5.um", a stray point before the unit is
    parsed)."""
    from micrometry.calibrate.scalebar.detect import load_detector
    from micrometry.train.scalebar_detector import render_detector_sample

    img, _, info = render_detector_sample(seed)
    assert info["scalebar"]["bar_px"] == bar_px
    r = read_scalebar(img, detector=load_detector())
    assert r is not None and r.value_nm == pytest.approx(value_nm), r
    assert abs(r.nm_per_px / (value_nm / bar_px) - 1) <= 0.02, (r.bar_px, r.text)


def test_a_bracket_beside_its_label_is_measured_along_its_line_not_across_its_tick():
    """Synthetic 740,000,014: a vertical 48-px bracket, its ticks pointing left, "1µm"
    beside its top.  The label's rows, masked in the search, cut the bracket; the top tick
    left above them was measured as a 16-px horizontal bar (2.9 times the scale, confidence
    0.52).  The line through the tick's end is the bar."""
    truth, r = _read_sample(740_000_014)
    assert (truth["text"], truth["bar_px"], truth["orientation"]) == ("1µm", 48.0, "vertical")
    assert r is not None and r.value_nm == 1000, r
    assert abs(r.nm_per_px / (1000 / 48) - 1) <= 0.02, (r.nm_per_px, r.bar_px, r.bar_bbox)


def test_bar_of_tick_needs_a_bracket():
    """:func:`_bar_of_tick` on a short horizontal bar: with a vertical line through its end
    and a tick as long at the line's other end (a bracket) the line is measured; not with
    only a short stroke there, nor without the other tick, nor when the short bar's far end
    meets a line too (the top edge of an outline box, synthetic 640,000,178)."""
    from micrometry.calibrate.scalebar.measure import measure_bar
    from micrometry.calibrate.scalebar.read import _bar_of_tick

    def bracket():
        img = np.full((120, 80), 40, np.uint8)
        img[20:22, 20:36] = 230  # the top tick, 16 px
        img[20:84, 34:36] = 230  # the line down from its end, 64 px
        img[82:84, 20:36] = 230  # the bottom tick
        return img

    img = bracket()
    tick = measure_bar(img, (18, 18, 38, 24), orientation="h")
    assert tick.orientation == "h" and abs(tick.length_px - 16) <= 0.5, tick
    bar = _bar_of_tick(img, tick)
    assert bar is not None and bar.orientation == "v" and abs(bar.length_px - 64) <= 0.5, bar
    img[82:84, 20:34] = 40  # no bottom tick
    assert _bar_of_tick(img, tick) is None
    img = bracket()
    img[40:84, 34:36] = 40  # the stroke down is 20 px: not twice the tick's length beyond it
    assert _bar_of_tick(img, tick) is None
    img = bracket()
    img[20:84, 20:22] = 230  # a closed box: the top edge's far end meets a side
    assert _bar_of_tick(img, tick) is None


@pytest.mark.parametrize("seed, text, value_nm, bar_px", [(710_000_148, "100 NM", 100, 91.0),
                                                          (740_000_044, "20 NM", 20, 59.0)])
def test_a_unit_in_capitals_is_scored_in_capitals(seed, text, value_nm, bar_px):
    """A 9-px "100 NM" read by PP-OCR as such: its units were scored in lower case only, and
    a capital "NM" was likelier an "A" than an "nm" (read in Å, 10 times too small)."""
    truth, r = _read_sample(seed)
    assert (truth["text"], truth["bar_px"]) == (text, bar_px)
    assert r is not None and r.value_nm == value_nm and r.unit == "nm", r
    assert abs(r.nm_per_px / (value_nm / bar_px) - 1) <= 0.02, (r.nm_per_px, r.bar_px)
