"""The YOLO scale-bar detector: build, save/load as safetensors, offline, training loop, reading."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ultralytics")
pytest.importorskip("rapidocr_onnxruntime")

from micrometry.calibrate.scalebar.detect import (  # noqa: E402
    CLASSES,
    Detection,
    build_detection_model,
    default_detector_dir,
    load_detector,
    save_detector,
)
from micrometry.calibrate.scalebar.read import (  # noqa: E402
    CONFIDENCE_EXPONENT,
    is_round_value,
    read_scalebar,
    reading_confidence,
)

REPO = Path(__file__).resolve().parents[1]
ARCH = REPO / "config" / "scalebar-yolo.yaml"
SHIPPED = default_detector_dir()


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    import torch

    torch.manual_seed(0)
    model = build_detection_model(ARCH)
    save_detector(model, tmp_path / "det", ARCH, {"imgsz": 320})
    meta = json.loads((tmp_path / "det" / "detector.json").read_text())
    assert meta["classes"] == list(CLASSES) and len(meta["weights_sha256"]) == 64
    det = load_detector(tmp_path / "det")
    x = torch.rand(1, 3, 320, 320)
    model.eval()
    with torch.inference_mode():
        ref = model.fuse(verbose=False)(x)[0]
        got = det.model(x)[0]
    assert torch.allclose(ref, got, atol=1e-5)
    # detect() accepts any dtype and shape and returns boxes inside the image
    img16 = (np.random.default_rng(0).random((300, 410)) * 60000).astype(np.uint16)
    for d in det.detect(img16, conf=0.0):
        assert d.cls in CLASSES and 0 <= d.box[0] < d.box[2] <= 410 and 0 <= d.box[1] < d.box[3] <= 300


def test_load_refuses_mismatched_or_incomplete_directories(tmp_path):
    model = build_detection_model(ARCH)
    save_detector(model, tmp_path / "det", ARCH, {"imgsz": 320})
    (tmp_path / "det" / "model.yaml").write_text(ARCH.read_text().replace("[0.33, 0.125, 256]", "[0.33, 0.25, 256]"))
    with pytest.raises(ValueError, match="do not fit"):
        load_detector(tmp_path / "det")
    (tmp_path / "det" / "detector.json").unlink()
    with pytest.raises(FileNotFoundError, match="detector.json"):
        load_detector(tmp_path / "det")


def test_training_loop_runs_and_writes_a_loadable_detector(tmp_path):
    from micrometry.train.scalebar_detector import train_detector

    meta = train_detector(
        {"data": {"n_train": 6, "n_val": 2, "workers": 1},
         "train": {"epochs": 1, "imgsz": 160, "batch": 4, "workers": 0, "close_mosaic": 0, "cache": False}},
        tmp_path / "det", work_dir=tmp_path / "work",
    )
    assert meta["best_epoch"] == 1 and meta["imgsz"] == 160
    assert (tmp_path / "det" / "train_log.csv").read_text().count("\n") == 2  # header + one epoch
    assert not (tmp_path / "work").exists()  # the rendered dataset and Ultralytics' run are removed
    det = load_detector(tmp_path / "det")
    assert isinstance(det.detect(np.zeros((200, 240), np.uint8)), list)


def test_warm_start_without_weights_fails_before_rendering(tmp_path):
    from micrometry.train.scalebar_detector import train_detector

    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"init_from .*empty: no model\.safetensors"):
        train_detector({"init_from": str(tmp_path / "empty"), "data": {"n_train": 2, "n_val": 1}},
                       tmp_path / "det", work_dir=tmp_path / "work")
    assert not (tmp_path / "work").exists() and not (tmp_path / "det").exists()


def test_yolo_dataset_boxes_hold_the_bar_and_label_ink(tmp_path):
    from micrometry.train.scalebar_detector import render_detector_sample

    for seed in range(6):
        img, targets, info = render_detector_sample(seed, {"jpeg_fraction": 0.0, "blur_fraction": 0.0})
        sb = info["scalebar"]
        if sb is None:
            assert targets == []
            continue
        assert [c for c, _ in targets] == [0, 1]
        (bx0, by0, bx1, by1), _ = targets[0][1], targets[1][1]
        fg = 255 if sb["color"] == "white" else 0
        ink = img[by0:by1, bx0:bx1] == fg
        # the box is tight around bar ink: each of its four edges touches ink
        assert ink[0].any() and ink[-1].any() and ink[:, 0].any() and ink[:, -1].any(), seed


def test_detector_import_and_inference_open_no_network_connection(tmp_path):
    code = f"""
import socket, sys
calls = []
def refuse(*a, **k):
    calls.append(a[:1])
    raise OSError("network disabled by the test")
socket.getaddrinfo = refuse
socket.create_connection = refuse
socket.socket.connect = lambda self, *a: refuse(*a)
import numpy as np
from micrometry.calibrate.scalebar.detect import build_detection_model, save_detector, load_detector
save_detector(build_detection_model({str(ARCH)!r}), {str(tmp_path / 'det')!r}, {str(ARCH)!r}, {{"imgsz": 160}})
load_detector({str(tmp_path / 'det')!r}).detect(np.zeros((100, 120), np.uint8))
import ultralytics.utils as u
print("ONLINE", u.ONLINE, "CALLS", len(calls))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ONLINE False CALLS 0" in out.stdout


@pytest.mark.parametrize("value, expected", [(200, True), (0.5, True), (25, True), (1000, True), (1.5, False),
                                             (37, False), (0, False), (float("nan"), False)])
def test_round_values(value, expected):
    assert is_round_value(value) is expected


def test_confidence_drops_with_each_failed_check():
    base = dict(label_score=0.9, bar_score=0.9, ocr_score=0.98, gap_in_label_heights=0.5, corrections=0,
                unit_log_margin=None, round_value=True, nm_per_px=2.0, bar_notes=0, via_text_search=False)
    top, _ = reading_confidence(**base)
    assert top > 0.85
    for change in ({"bar_score": None}, {"gap_in_label_heights": 6.0}, {"corrections": 1}, {"round_value": False},
                   {"nm_per_px": 1e5}, {"bar_notes": 1}, {"via_text_search": True, "label_score": 0.0},
                   {"ocr_score": 0.7}, {"unit_log_margin": 0.5}, {"number_cut": True}, {"disputed": True},
                   {"by_label_reader": True}):
        c, factors = reading_confidence(**{**base, **change})
        assert c < top, change
        assert math.isclose(c, math.prod(factors.values()) ** CONFIDENCE_EXPONENT, rel_tol=1e-3)


class _BoxesDetector:
    """A detector that returns fixed boxes: isolates the reading chain from the network."""

    def __init__(self, dets):
        self.dets = dets

    def detect(self, image, **kw):
        return list(self.dets)

    def detect_zoomed(self, image, **kw):
        return list(self.dets)  # the same boxes again: nothing new for the chain's zoomed step


def _bar_image(bar_px=100, text="200 nm"):
    from micrometry.train.synth import _text_patch

    img = np.full((240, 320), 40, np.uint8)
    img[200:206, 60 : 60 + bar_px] = 255
    patch = _text_patch(text, "DejaVuSans", 18)
    th, tw = patch.shape
    y, x = 212, 60 + (bar_px - tw) // 2
    img[y : y + th, x : x + tw] = np.round(40 * (1 - patch) + 255 * patch).astype(np.uint8)
    return img, (x, y, x + tw, y + th)


def test_reading_chain_gives_known_pixel_size_from_given_boxes():
    img, text_box = _bar_image(100, "200 nm")
    det = _BoxesDetector([Detection("label", 0.9, tuple(map(float, text_box))), Detection("bar", 0.9, (58.0, 198.0, 162.0, 208.0))])
    r = read_scalebar(img, detector=det, text_search=False)
    assert r is not None
    assert r.value_nm == 200.0 and r.unit == "nm"
    assert abs(r.bar_px - 100.0) <= 0.5
    assert abs(r.nm_per_px - 2.0) <= 0.02  # a 200 nm bar of 100 px gives 2 nm/px
    assert r.confidence >= 0.8 and r.checks["bar_found_by"] == "detector"
    j = r.to_json()
    assert set(j) >= {"value", "unit", "text", "bar_px", "bar_bbox", "text_bbox", "confidence"}


def test_bar_is_searched_next_to_a_label_when_the_detector_misses_it():
    img, text_box = _bar_image(150, "1 µm")
    det = _BoxesDetector([Detection("label", 0.8, tuple(map(float, text_box)))])
    r = read_scalebar(img, detector=det, text_search=False)
    assert r is not None and r.checks["bar_found_by"] == "search"
    assert abs(r.nm_per_px - 1000 / 150) / (1000 / 150) < 0.01
    assert r.confidence < 0.7  # trusted less than a detected bar


class _FixedReader:
    """A label reader that reads every crop as one text; counts its calls."""

    def __init__(self, text, score=0.99):
        self.text, self.score, self.calls = text, score, 0

    def read_batch(self, crops):
        self.calls += 1
        return [(self.text, self.score) for _ in crops]


def test_the_label_reader_is_asked_only_when_nothing_is_trusted():
    img, text_box = _bar_image(100, "200 nm")
    det = _BoxesDetector([Detection("label", 0.9, tuple(map(float, text_box))), Detection("bar", 0.9, (58.0, 198.0, 162.0, 208.0))])
    reader = _FixedReader("50 nm")
    r = read_scalebar(img, detector=det, text_search=False, label_reader=reader)
    assert r.value_nm == 200.0 and r.confidence >= 0.8 and r.checks["label_read_by"] == "pp-ocr"
    assert reader.calls == 0
    # the label's glyphs wiped: PP-OCR reads nothing in the box, the label reader's reading is paired
    x0, y0, x1, y1 = text_box
    img[y0:y1, x0:x1] = 40
    r = read_scalebar(img, detector=det, text_search=False, label_reader=reader)
    assert reader.calls == 1 and r.checks["label_read_by"] == "label-reader"
    assert r.value_nm == 50.0 and abs(r.nm_per_px - 0.5) <= 0.005  # 50 nm over the 100-px bar
    assert read_scalebar(img, detector=det, text_search=False, use_label_reader=False) is None


def test_no_label_no_reading():
    img = np.full((200, 260), 90, np.uint8)
    img[150:156, 40:140] = 255  # a bar without any label
    assert read_scalebar(img, detector=_BoxesDetector([Detection("bar", 0.9, (38.0, 148.0, 142.0, 158.0))])) is None


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="no shipped detector")
def test_shipped_detector_calibrates_fresh_synthetic_micrographs():
    """Seeds far from the training ones (< 2e6): nm/px within 2 % on most, no confident invention."""
    from micrometry.train.synth import render_micrograph

    det = load_detector(SHIPPED)
    good = n = 0
    for seed in range(10):
        rng = np.random.default_rng([seed, 424242])
        m = render_micrograph(rng, shape=(512, 640), scalebar_variety=True)
        r = read_scalebar(m.image, detector=det)
        n += 1
        if r is not None and abs(r.nm_per_px / m.nm_per_px - 1) <= 0.02:
            good += 1
        elif r is not None:
            assert r.confidence < 0.5, (seed, r.text, r.nm_per_px, m.nm_per_px)
    assert good >= 8, f"{good}/{n} within 2 %"
    for seed in range(4):
        m = render_micrograph(np.random.default_rng([seed, 515151]), shape=(512, 640), scalebar=False)
        r = read_scalebar(m.image, detector=det)
        assert r is None or r.confidence < 0.5


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="no shipped detector")
def test_calibrate_command_reads_a_plain_scale_bar(tmp_path, capsys):
    """`micrometry calibrate IMAGE...`: one JSON line per image; a plain bar calibrates, a bare image does not."""
    from PIL import Image

    from micrometry.cli import main
    from micrometry.train.synth import render_micrograph

    m = render_micrograph(7, shape=(512, 640), modality="tem", nm_per_px=2.0, jpeg_prob=0.0, panel_label_prob=0.0,
                          scalebar={"style": "solid", "color": "black", "box": False, "corner": "bottom-right",
                                    "value_nm": 200.0, "unit": "nm", "label_pos": "above"})
    Image.fromarray(m.image).save(tmp_path / "bar.png")
    bare = render_micrograph(8, shape=(512, 640), modality="tem", scalebar=False, panel_label_prob=0.0)
    Image.fromarray(bare.image).save(tmp_path / "bare.png")
    assert main(["calibrate", str(tmp_path / "bar.png"), str(tmp_path / "bare.png")]) == 0
    bar, none = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert bar["source"] == "scalebar" and bar["confidence"] >= 0.5
    assert abs(bar["nm_per_px"] / 2.0 - 1) <= 0.02  # a 200 nm bar of 100 px: 2 nm/px
    sb = bar["scalebar"]
    assert sb["value"] == 200 and sb["unit"] == "nm" and abs(sb["bar_px"] - 100) <= 2
    assert len(sb["bar_bbox"]) == 4 and len(sb["text_bbox"]) == 4
    assert none["source"] == "none" and none["nm_per_px"] is None and none["scalebar"] is None


def test_a_weak_detector_vote_is_no_worse_than_none():
    """A bar found by its shape with a detector score of 0.05 counts as much as one no box
    voted for (it counted 0.64 against 0.8), a label read in a box of score 0.05 as much as
    one PP-OCR's text detector found alone; a bar only measured inside a weak box does not."""
    base = dict(label_score=0.9, bar_score=0.05, ocr_score=0.98, gap_in_label_heights=0.5, corrections=0,
                unit_log_margin=None, round_value=True, nm_per_px=2.0, bar_notes=0, via_text_search=False)
    weak_bar, f_weak = reading_confidence(**base)
    no_vote, f_none = reading_confidence(**{**base, "bar_score": None})
    assert f_weak["bar_detected"] == f_none["bar_detected"] == 0.8 and weak_bar == no_vote
    _, f_inside = reading_confidence(**base, bar_by_shape=False)
    assert f_inside["bar_detected"] == pytest.approx(0.64)
    _, f_label = reading_confidence(**{**base, "label_score": 0.05})
    _, f_text = reading_confidence(**{**base, "label_score": 0.0, "via_text_search": True})
    assert f_label["label_detected"] == f_text["label_detected"] == 0.75


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="no shipped detector")
def test_zoomed_detection_maps_window_boxes_back_to_the_image():
    """A 9-px label on an 844-px-wide image (synthetic 60,000,188, "20 nm" beside its bar at
    the bottom left): the detector misses the label in the whole image's view and finds it in
    an enlarged corner window, at its place in the image; the chain's zoomed step reads it
    and trusts it."""
    from micrometry.train.scalebar_detector import render_detector_sample

    img, _, info = render_detector_sample(60_000_188)
    truth = info["scalebar"]
    assert (truth["text"], truth["font_px"], img.shape[:2]) == ("20 nm", 9, (375, 844))
    r0, c0, r1, c1 = truth["text_bbox"]
    label = (c0, r0, c1, r1)

    def iou(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        return iw * ih / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih)

    det = load_detector(SHIPPED)
    assert not any(d.cls == "label" and iou(d.box, label) > 0.3 for d in det.detect(img))
    zoomed = det.detect_zoomed(img)
    assert all(0 <= d.box[0] < d.box[2] <= 844 and 0 <= d.box[1] < d.box[3] <= 375 for d in zoomed)
    assert [d.score for d in zoomed] == sorted((d.score for d in zoomed), reverse=True)
    assert any(d.cls == "label" and iou(d.box, label) > 0.6 for d in zoomed)
    with pytest.raises(ValueError, match="fraction"):
        det.detect_zoomed(img, fraction=0.5)
    # without the zoomed step only the last one reads it, at its bar's side, and trusts it little
    r = read_scalebar(img, detector=det, zoom=False)
    assert r is not None and r.checks["label_found_by"] == "text-search" and r.confidence < 0.5, r
    r = read_scalebar(img, detector=det)
    assert r is not None and (r.value, r.unit) == (20.0, "nm")
    assert r.checks["label_found_by"] == "detector" and r.confidence >= 0.5, r
    assert abs(r.nm_per_px / (20 / truth["bar_px"]) - 1) <= 0.02, (r.nm_per_px, r.bar_px)
