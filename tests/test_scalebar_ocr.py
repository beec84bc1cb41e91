"""micrometry.calibrate.scalebar.ocr: PP-OCR (rapidocr-onnxruntime) reads of scale-bar labels.

Skipped without the ``scalebar`` extra.  Labels are rendered with the TTF fonts
bundled with matplotlib (no downloads); the EMPS check reads the label boxes of
tests/data/scalebar_truth_real.csv (skipped without the shared data).
"""

from __future__ import annotations

import csv
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

pytest.importorskip("rapidocr_onnxruntime")

from micrometry.calibrate.scalebar import ocr  # noqa: E402
from micrometry.calibrate.scalebar.ocr import (  # noqa: E402
    ScaleRead,
    TextHit,
    _CTCScorer,
    _join_split_labels,
    read_scale_label,
    read_text,
)
from micrometry.calibrate.scalebar.parse import parse_scale_label  # noqa: E402
from micrometry.train.realdata import emps_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "tests" / "data" / "scalebar_truth_real.csv"
THREADS = 1  # keep the CPU use of the test moderate
MU, MICRO = "\u03bc", "\u00b5"


def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    import matplotlib

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)


def render_label(text, *, font="DejaVuSans.ttf", size=16, light_text=True, shape=(80, 220), at=(40, 30)):
    """A label drawn on a noisy grey micrograph-like background; returns (image, text box)."""
    rng = np.random.default_rng(len(text) * 31 + size)
    bg, fg = (40, 240) if light_text else (215, 15)
    canvas = Image.new("L", (shape[1], shape[0]), bg)
    draw = ImageDraw.Draw(canvas)
    f = _font(font, size)
    draw.text(at, text, fill=fg, font=f)
    x0, y0, x1, y1 = draw.textbbox(at, text, font=f)
    img = np.asarray(canvas, dtype=np.float64) + rng.normal(0, 6, shape)
    return np.clip(img, 0, 255).astype(np.uint8), (x0, y0, x1, y1)


def grow(box, px):
    x0, y0, x1, y1 = box
    return (x0 - px, y0 - px, x1 + px, y1 + px)


LABELS = [
    ("200 nm", 200, "nm"), ("1 " + MICRO + "m", 1, "um"), ("50nm", 50, "nm"), ("0.5 " + MU + "m", 0.5, "um"),
    ("100 nm", 100, "nm"), ("2 " + MU + "m", 2, "um"), ("20 nm", 20, "nm"), ("500 nm", 500, "nm"),
    ("10 " + MU + "m", 10, "um"), ("5 nm", 5, "nm"), ("1 mm", 1, "mm"), ("25 nm", 25, "nm"),
]
RENDERS = [
    (text, value, unit, font, size, light)
    for i, (text, value, unit) in enumerate(LABELS)
    for light in (True, False)
    for font, size in [(("DejaVuSans.ttf", 14), ("DejaVuSans-Bold.ttf", 18), ("DejaVuSerif.ttf", 16))[i % 3]]
]


@pytest.fixture(scope="module", autouse=True)
def _warm_engine():
    read_text(np.full((20, 40), 255, np.uint8), (0, 0, 40, 20), threads=THREADS)


def test_synthetic_labels():
    assert len(RENDERS) >= 20
    misses, raw_misses, times = [], [], []
    for text, value, unit, font, size, light in RENDERS:
        img, box = render_label(text, font=font, size=size, light_text=light)
        t0 = time.perf_counter()
        hits = read_text(img, grow(box, 3), threads=THREADS)
        times.append(time.perf_counter() - t0)
        assert all(isinstance(h, TextHit) for h in hits)
        label = parse_scale_label(hits[0].text) if hits else None
        if label is None or label.value != value or label.unit != unit:
            raw_misses.append((text, font, size, light, [h.text for h in hits]))
        read = read_scale_label(img, grow(box, 3), threads=THREADS)
        if read is None or read.label.value != value or read.label.unit != unit:
            misses.append((text, font, size, light, read and read.hit.text))
    share_raw = 1 - len(raw_misses) / len(RENDERS)
    share = 1 - len(misses) / len(RENDERS)
    print(f"synthetic labels: read_text+parse {share_raw:.0%}, read_scale_label {share:.0%} of {len(RENDERS)}; "
          f"median {np.median(times):.3f} s per read_text call")
    for miss in raw_misses:
        print("  read_text miss:", miss)
    for miss in misses:
        print("  read_scale_label miss:", miss)
    assert share_raw >= 0.9, raw_misses
    assert share >= 0.9, misses


def test_hit_box_is_in_image_pixels():
    img, box = render_label("200 nm", size=18, shape=(120, 300), at=(120, 70))
    hits = read_text(img, grow(box, 4), threads=THREADS)
    assert hits and parse_scale_label(hits[0].text) is not None
    x0, y0, x1, y1 = hits[0].bbox
    assert x0 <= box[0] + 1 and y0 <= box[1] + 1 and x1 >= box[2] - 1 and y1 >= box[3] - 1
    assert x1 - x0 < 2 * (box[2] - box[0]) and 0 <= hits[0].score <= 1


def test_whole_image_and_loose_box_use_the_detector():
    img, box = render_label("500 nm", size=20, shape=(160, 360), at=(200, 110))
    hits = read_text(img, threads=THREADS)  # no box: detection + recognition
    labels = [parse_scale_label(h.text) for h in hits]
    assert any(lab is not None and lab.value_nm == 500 for lab in labels), hits
    hit = next(h for h, lab in zip(hits, labels) if lab is not None)
    assert hit.bbox[0] <= box[0] + 3 and hit.bbox[2] >= box[2] - 3
    assert hit.bbox[1] <= box[1] + 3 and hit.bbox[3] >= box[3] - 3


def test_label_with_the_bar_in_a_loose_box():
    img, box = render_label("100 nm", size=16, light_text=False, shape=(90, 240), at=(60, 20))
    img = img.copy()
    img[box[3] + 5: box[3] + 10, box[0] - 10: box[2] + 10] = 15  # the bar, just below the label
    read = read_scale_label(img, (box[0] - 14, box[1] - 6, box[2] + 14, box[3] + 14), threads=THREADS)
    assert isinstance(read, ScaleRead)
    assert (read.label.value, read.label.unit) == (100, "nm")


def test_trimmed_box_leaves_out_a_bar_touching_or_beside_the_label():
    """The box the recognizer reads (the hit's bbox) ends at the glyphs, not at a bar
    that touches a descender below them or runs into the box from the side."""
    img, box = render_label("1 µm", size=18, light_text=False, shape=(100, 300), at=(150, 30))
    img = img.copy()
    under = img.copy()
    under[box[3] - 1 : box[3] + 4, box[0] - 20 : box[2] + 20] = 15  # a bar under the label, touching it
    read = read_scale_label(under, (box[0] - 6, box[1] - 6, box[2] + 6, box[3] + 8), threads=THREADS)
    assert read is not None and read.label.value_nm == 1000
    assert read.hit.bbox[3] <= box[3] + 3
    beside = img.copy()
    beside[box[1] + 4 : box[1] + 10, box[0] - 120 : box[0] - 6] = 15  # a bar ending 6 px left of the label
    read = read_scale_label(beside, (box[0] - 30, box[1] - 4, box[2] + 4, box[3] + 4), threads=THREADS)
    assert read is not None and read.label.value_nm == 1000
    assert read.hit.bbox[0] >= box[0] - 6


def test_trim_leaves_out_the_blurred_tip_of_a_bar_at_the_crops_side():
    """A box widened past "1 µm" catches the first 5 px of a 2-px line beside it, blurred to
    4 px thick (synthetic 80,000,176): thicker than half its length, but less than half a
    glyph high and against the crop's side, it is a bar's tip, not a glyph."""
    from micrometry.calibrate.scalebar.ocr import _trim

    img, box = render_label("1 µm", size=14, light_text=True, shape=(40, 120), at=(10, 12))
    img = img.copy()
    x_tip = box[2] + 5
    img[box[1] + 5 : box[1] + 9, x_tip:] = 220  # a bar starting 5 px right of the label, 4 px thick
    xa, ya, xb, yb = box[0] - 4, box[1] - 3, x_tip + 5, box[3] + 3  # the crop ends 5 px into the bar
    crop = img[ya:yb, xa:xb]
    x0, _, x1, _ = _trim(crop, xa, ya, xb, yb)
    assert x1 <= x_tip, (x1, x_tip)
    assert x0 <= box[0] + 1


def test_trim_keeps_glyphs_cut_by_the_crops_side():
    """A crop ending inside "nm" (synthetic 600,000,033: 8-px glyphs, their stems apart): the
    cut glyphs are as low and wide as a bar's tip at the side, but hollow, and a row crosses
    their four stems, so they stay in the glyph box; a solid tip is left out."""
    from micrometry.calibrate.scalebar.ocr import _trim

    crop = np.zeros((12, 44), np.uint8)
    for x in (4, 10):
        crop[2:10, x:x + 3] = 230  # two digits ("11")
    for x in (26, 31, 36, 41):
        crop[4:10, x:x + 2] = 230  # the stems of "nm", cut by the crop's side
    crop[4:6, 26:44] = 230  # their arches
    x0, _, x1, _ = _trim(crop, 100, 50, 144, 62)
    assert x1 == 144, (x0, x1)
    solid = crop.copy()
    solid[4:10, 26:44] = 0
    solid[5:9, 26:44] = 230  # a bar's blurred tip instead, half a glyph high
    x0, _, x1, _ = _trim(solid, 100, 50, 144, 62)
    assert x1 <= 126, (x0, x1)


def test_window_search_goes_straight_to_text_detection():
    img, box = render_label("500 nm", size=14, shape=(160, 360), at=(200, 110))
    window = (box[0] - 60, box[1] - 30, box[2] + 60, box[3] + 30)
    hits = read_text(img, window, single_line=False, upscale=2.0, trim=False, margin_px=0, threads=THREADS)
    hit = next(h for h in hits if parse_scale_label(h.text) is not None)
    assert parse_scale_label(hit.text).value_nm == 500
    # the line's box, in image pixels, holds the label and is far smaller than the window
    assert hit.bbox[0] <= box[0] + 3 and hit.bbox[2] >= box[2] - 3
    assert (hit.bbox[2] - hit.bbox[0]) < 0.8 * (window[2] - window[0])
    with pytest.raises(ValueError, match="upscale"):
        read_text(img, window, upscale=0.5, threads=THREADS)


def test_non_labels_are_not_read_as_labels():
    for text in ("HV 20.0 kV", "WD 10.2 mm", "x50,000"):
        img, box = render_label(text, size=16)
        assert read_scale_label(img, grow(box, 3), threads=THREADS) is None, text


def test_ctc_scorer_matches_brute_force():
    import itertools

    rng = np.random.default_rng(0)
    probs = rng.random((5, 3))
    probs /= probs.sum(axis=1, keepdims=True)
    chars = ["<blank>", "a", "b"]
    total: dict[str, float] = {}
    for path in itertools.product(range(3), repeat=5):
        out, prev = [], None
        for k in path:
            if k != prev and k != 0:
                out.append(chars[k])
            prev = k
        key = "".join(out)
        total[key] = total.get(key, 0.0) + float(np.prod([probs[t, k] for t, k in enumerate(path)]))
    scorer = _CTCScorer(probs, chars)
    for text in ("", "a", "ab", "aa", "aba", "bab", "abab"):
        assert scorer(text) == pytest.approx(np.log(total[text]), rel=1e-9)
    assert scorer("c") is None


def test_unit_prefix_read_as_nothing_is_chosen_by_likelihood(monkeypatch):
    """A turned, blurred "5 µm" read "5m" (synthetic seed 10,000,116): the µ's frames
    hold more µ than n or m, so "5 µm" is the label, marked as a correction, with the
    margin over "5 nm" as its unit's uncertainty; "5 nm" is the runner-up."""
    chars = ["<blank>", "5", "m", "n", MU, " "]
    frames = [  # 5, blank, a faint prefix (mostly blank), blank, m
        {"5": 0.9, "<blank>": 0.1},
        {"<blank>": 0.95, " ": 0.05},
        {"<blank>": 0.55, MU: 0.3, "n": 0.05, "m": 0.05, " ": 0.05},
        {"<blank>": 0.95, " ": 0.05},
        {"m": 0.9, "<blank>": 0.1},
    ]
    probs = np.array([[f.get(c, 1e-6) for c in chars] for f in frames])
    probs /= probs.sum(axis=1, keepdims=True)
    hit = TextHit("5m", 0.87, (0.0, 0.0, 40.0, 16.0))
    monkeypatch.setattr(ocr, "_read", lambda *a, **k: [(hit, _CTCScorer(probs, chars))])
    sr = ocr.read_scale_label(np.zeros((16, 40), np.uint8), (0, 0, 40, 16))
    assert sr is not None and sr.label.unit == "um" and sr.label.value_nm == 5000.0 and sr.rescored
    assert sr.label.corrections == ("m->um (unit prefix not read)",)
    assert sr.runner_up.unit == "nm" and sr.log_margin == pytest.approx(np.log(0.3 / 0.05), abs=0.05)
    # a detector-found line has no per-frame likelihoods: "5m" is then not a label
    monkeypatch.setattr(ocr, "_read", lambda *a, **k: [(hit, None)])
    assert ocr.read_scale_label(np.zeros((16, 40), np.uint8), (0, 0, 40, 16)) is None


def test_models_are_files_of_the_wheel():
    import rapidocr_onnxruntime

    root = Path(rapidocr_onnxruntime.__file__).resolve().parent
    paths = ocr.rapidocr_model_paths()
    assert set(paths) == {"det", "cls", "rec"}
    for p in paths.values():
        assert Path(p).is_file() and Path(p).suffix == ".onnx"
        assert root in Path(p).resolve().parents


def test_no_network_at_load_or_read(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    saved = dict(ocr._ENGINES)
    ocr.clear_engine_cache()
    try:
        img, box = render_label("200 nm")
        assert read_text(img, grow(box, 3), threads=THREADS)
        assert read_text(img, threads=THREADS) is not None
    finally:
        ocr._ENGINES.update(saved)


def test_no_onnxruntime_telemetry(tmp_path):
    """onnxruntime queues usage telemetry under ~/.cache unless it is switched off."""
    import os
    import subprocess

    code = (
        "import numpy as np\n"
        "from micrometry.calibrate.scalebar.ocr import read_text\n"
        "img = np.full((40, 120), 255, np.uint8); img[15:25, 10:60] = 0\n"
        "read_text(img, (5, 5, 80, 35), threads=1)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env.update(HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / ".cache"))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    assert not list(tmp_path.rglob("*onnxruntime*")), sorted(map(str, tmp_path.rglob("*")))


def test_missing_extra_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)
    saved = dict(ocr._ENGINES)
    ocr.clear_engine_cache()
    try:
        with pytest.raises(ImportError, match=r"pip install micrometry\[scalebar\]"):
            read_text(np.zeros((20, 20), np.uint8), threads=THREADS)
    finally:
        ocr._ENGINES.update(saved)


def test_paddleocr_backend_without_paddleocr(monkeypatch):
    monkeypatch.setitem(sys.modules, "paddleocr", None)
    with pytest.raises(ImportError, match="paddleocr"):
        read_text(np.zeros((20, 20), np.uint8), backend="paddleocr")


def test_errors():
    with pytest.raises(ValueError, match="backend"):
        read_text(np.zeros((20, 20), np.uint8), backend="tesseract")
    with pytest.raises(ValueError):
        read_text(np.zeros((2, 3, 5)), (0, 0, 1, 1))
    with pytest.raises(ValueError, match="overlap"):
        read_text(np.zeros((20, 20), np.uint8), (50, 50, 60, 60), threads=THREADS)


def test_emps_label_boxes():
    emps = emps_dir()
    if emps is None:
        pytest.skip("EMPS images (../shared/data/emps-train) are not present")
    with open(TABLE, encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["has_scalebar"] == "1"]
    raw_misses, misses, times = [], [], []
    for r in rows:
        img = np.asarray(Image.open(emps / "images" / f"{r['id']}.png").convert("L"))
        box = grow(tuple(int(r[k]) for k in ("text_x0", "text_y0", "text_x1", "text_y1")), 4)
        want = (float(r["value"]), r["unit"])
        t0 = time.perf_counter()
        # one pass: read_text(accept=parses) inside; the raw parse of its line is what
        # read_text + parse_scale_label give, the label is after the unit rescoring
        read = read_scale_label(img, box, threads=THREADS)
        times.append(time.perf_counter() - t0)
        raw = parse_scale_label(read.hit.text) if read is not None else None
        if raw is None or (raw.value, raw.unit) != want:
            raw_misses.append(f"{r['id']} {r['label_text']!r} read {read and read.hit.text!r}")
        if read is None or (read.label.value, read.label.unit) != want:
            misses.append(f"{r['id']} {r['label_text']!r} read {read and read.hit.text!r}")
    share_raw = 1 - len(raw_misses) / len(rows)
    share = 1 - len(misses) / len(rows)
    print(f"EMPS label boxes (+4 px), {len(rows)} labels: read_text+parse exact {share_raw:.1%}, "
          f"read_scale_label exact {share:.1%}; median {np.median(times):.3f} s per call")
    for line in raw_misses:
        print("  read_text miss:", line)
    for line in misses:
        print("  read_scale_label miss:", line)
    assert share_raw >= 0.8, raw_misses
    assert share >= 0.8, misses


def test_number_and_unit_found_apart_are_joined():
    """A large label with a wide space found by the text detector as two boxes, "2" and
    "µm", is one label; a number beside a data-bar item or far from a unit is not."""
    def hits(*items):
        return [(TextHit(t, sc, box), None) for t, sc, box in items]

    joined = _join_split_labels(hits(("2", 0.99, (414, 447, 446, 485)), (f"{MU}m", 0.98, (450, 446, 535, 493))),
                                ocr._is_label)
    assert [(h.text, h.score, h.bbox) for h, _ in joined] == [(f"2 {MU}m", 0.98, (414, 446, 535, 493))]
    far = hits(("2", 0.99, (10, 10, 30, 50)), ("nm", 0.98, (90, 10, 130, 50)))  # 60 px apart, 40 px tall
    assert len(_join_split_labels(far, ocr._is_label)) == 2
    other_row = hits(("2", 0.99, (10, 10, 30, 50)), ("nm", 0.98, (35, 60, 75, 100)))
    assert len(_join_split_labels(other_row, ocr._is_label)) == 2
    data_bar = hits(("20", 0.99, (10, 10, 40, 30)), ("kV", 0.98, (45, 10, 70, 30)), ("200 nm", 0.9, (200, 10, 280, 30)))
    assert [h.text for h, _ in _join_split_labels(data_bar, ocr._is_label)] == ["20", "kV", "200 nm"]


@pytest.mark.parametrize(("text", "runner_up"), [("500mm", "nm"), ("50 nm", "mm"), ("5 um", None)])
def test_a_label_read_without_likelihoods_has_the_confused_unit_as_runner_up(monkeypatch, text, runner_up):
    """A line found by PP-OCR's text detector carries no per-frame likelihoods: no unit
    margin, and nm and mm, which PP-OCR confuses, are each other's runner-up."""
    hit = TextHit(text, 0.9, (0.0, 0.0, 40.0, 16.0))
    monkeypatch.setattr(ocr, "_read", lambda *a, **k: [(hit, None)])
    sr = ocr.read_scale_label(np.zeros((16, 40), np.uint8), (0, 0, 40, 16))
    assert sr is not None and sr.log_margin is None and not sr.rescored
    assert (sr.runner_up.unit if sr.runner_up else None) == runner_up
    if runner_up:
        assert sr.runner_up.value == sr.label.value and sr.runner_up.corrections[-1].endswith("(runner-up unit)")
