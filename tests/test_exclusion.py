"""Tests for micrometry.segment.exclusion: data bars, annotations, ROI masks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from skimage.draw import disk

from micrometry.segment.classical import segment_classical
from micrometry.segment.exclusion import (
    detect_annotations,
    detect_data_bar,
    exclusion_mask,
    load_roi_mask,
)


def _particles(shape=(400, 500), *, bg=60.0, fg=170.0, n=25, seed=0, noise_sd=8.0):
    rng = np.random.default_rng(seed)
    img = np.full(shape, bg)
    for _ in range(n):
        img[disk(rng.uniform(0, shape), rng.uniform(8, 18), shape=shape)] = fg
    return np.clip(img + rng.normal(0, noise_sd, shape), 0, 255).astype(np.uint8)


def _font(size_px: int):
    return ImageFont.load_default(size=size_px)


def _with_data_bar(img: np.ndarray, *, rows: int, bar=0, text=255) -> np.ndarray:
    ny, nx = img.shape
    pil = Image.fromarray(img)
    d = ImageDraw.Draw(pil)
    d.rectangle([0, ny - rows, nx - 1, ny - 1], fill=bar)
    d.text((10, ny - rows + 10), "HV 5.00 kV  WD 4.9 mm  mag 50 000 x  HFW 5.97 um", fill=text, font=_font(14))
    d.rectangle([nx - 110, ny - rows + 12, nx - 20, ny - rows + 16], fill=text)  # its scale bar
    return np.asarray(pil).copy()


@pytest.mark.parametrize("bar,text", [(0, 255), (255, 0)])
def test_data_bar_rows_detected(bar, text):
    img = _with_data_bar(_particles(), rows=50, bar=bar, text=text)
    mask = detect_data_bar(img)
    rows = np.flatnonzero(mask.any(axis=1))
    assert rows.min() == 350 and rows.max() == 399
    assert mask[350:].all() and not mask[:350].any()


def test_data_bar_in_16_bit_image():
    img = _with_data_bar(_particles(), rows=40).astype(np.uint16) * 257
    assert np.flatnonzero(detect_data_bar(img).any(axis=1)).min() == 360


def test_no_data_bar_without_band():
    assert not detect_data_bar(_particles()).any()
    # bright particles touching the bottom edge on a black, flat substrate
    img = np.zeros((300, 300), np.uint8)
    for x in range(20, 300, 50):
        img[disk((295, x), 15, shape=img.shape)] = 220
    img[disk((100, 100), 20)] = 220
    assert not detect_data_bar(img).any()
    # TEM-like: dark particles cut by the bottom edge on a noisy bright film
    tem = 255 - _particles(seed=4)
    for x in range(30, 500, 70):
        tem[disk((398, x), 14, shape=tem.shape)] = 40
    assert not detect_data_bar(tem).any()
    # constant and tiny images
    assert not detect_data_bar(np.full((64, 64), 10.0)).any()
    assert not detect_data_bar(np.zeros((5, 5))).any()


def test_particles_never_labelled_in_data_bar():
    img = _with_data_bar(_particles(), rows=50)
    excluded = exclusion_mask(img)
    assert excluded[350:].all()
    labels = segment_classical(img, exclude=excluded)
    assert labels.max() > 10
    assert not labels[350:].any()
    # without the mask the text and the bar's scale bar are segmented as particles
    assert segment_classical(img)[350:].any()


def _tem_with_scale_bar(*, seed=1):
    img = _particles(bg=200.0, fg=90.0, seed=seed)
    img = np.minimum(img, 250).astype(np.uint8)
    pil = Image.fromarray(img)
    d = ImageDraw.Draw(pil)
    d.rectangle([370, 330, 490, 390], fill=int(img[350:380, 380:480].mean()))  # keep particles off the corner
    d.rectangle([380, 370, 470, 376], fill=255)  # solid white scale bar
    d.fontmode = "1"  # burned in without anti-aliasing, as instruments do
    d.text((395, 345), "200 nm", fill=255, font=_font(18))
    return np.asarray(pil).copy()


def test_scale_bar_and_label_are_excluded_and_not_labelled():
    img = _tem_with_scale_bar()
    ann = detect_annotations(img)
    assert ann[370:377, 380:471].all()  # the bar
    text = img[340:368, 390:475] == 255
    assert text.any() and ann[340:368, 390:475][text].all()  # every text pixel
    assert ann.sum() < 0.05 * img.size  # boxed tightly, not half the image
    excluded = exclusion_mask(img)
    labels = segment_classical(img, exclude=excluded)
    assert labels.max() > 10 and not labels[ann].any()


def test_sem_scale_bar_would_be_a_particle_unless_excluded():
    img = np.minimum(_particles(bg=50.0, fg=180.0, seed=5), 240).astype(np.uint8)
    pil = Image.fromarray(img)
    d = ImageDraw.Draw(pil)
    d.rectangle([370, 330, 490, 390], fill=50)
    d.rectangle([380, 370, 470, 376], fill=255)
    d.fontmode = "1"
    d.text((395, 345), "1 um", fill=255, font=_font(18))
    img = np.asarray(pil)
    assert segment_classical(img)[373, 420] > 0  # the bar looks like a bright particle
    excluded = exclusion_mask(img)
    assert excluded[368:379, 378:473].all()
    labels = segment_classical(img, exclude=excluded)
    assert labels.max() > 10 and not labels[335:380, 375:480].any()


def test_saturated_particle_is_not_an_annotation():
    img = _tem_with_scale_bar()
    img[disk((100, 100), 15)] = 0  # a saturated black particle
    img[disk((250, 200), 9)] = 0
    img[40:52, 250:300] = 0  # ... and a saturated rod with round ends
    img[disk((46, 250), 6)] = 0
    img[disk((46, 300), 6)] = 0
    ann = detect_annotations(img)
    assert not ann[100, 100] and not ann[250, 200] and not ann[46:47, 245:306].any()
    labels = segment_classical(img, exclude=exclusion_mask(img))
    assert labels[100, 100] > 0 and labels[250, 200] > 0 and labels[46, 275] > 0


def test_bright_saturated_particles_are_not_annotations():
    # SEM-like: saturated white particles, some side by side in a corner
    img = np.full((300, 300), 50, np.uint8)
    for c in [(30, 30), (30, 58), (150, 150), (270, 270), (270, 244)]:
        img[disk(c, 12, shape=img.shape)] = 255
    assert not detect_annotations(img).any()


def test_panel_letter_in_corner_and_boxed_label():
    img = _particles(bg=200.0, fg=90.0, seed=2, shape=(300, 400))
    img = np.minimum(img, 250).astype(np.uint8)
    pil = Image.fromarray(img)
    d = ImageDraw.Draw(pil)
    d.rectangle([0, 0, 40, 40], fill=200)
    d.text((10, 5), "a", fill=0, font=_font(28))  # panel letter, black
    d.rectangle([280, 240, 390, 290], fill=255)  # white box ...
    d.rectangle([295, 275, 375, 280], fill=0)  # ... with a black bar
    d.text((305, 248), "1 um", fill=0, font=_font(18))  # ... and label
    img = np.asarray(pil)
    ann = detect_annotations(img)
    assert ann[280 - 2:290, 280:390].all()  # the box with its content
    letter = img[0:40, 0:40] == 0
    assert letter.any() and ann[0:40, 0:40][letter].all()


def test_no_annotations_on_plain_particles():
    for seed in range(3):
        assert not detect_annotations(_particles(seed=seed)).any()
        assert not detect_annotations(255 - _particles(seed=seed)).any()
    assert not detect_annotations(np.full((32, 32), 3.0)).any()


def test_exclusion_mask_options_and_nonfinite():
    img = _with_data_bar(_particles(), rows=50).astype(np.float32)
    img[10:20, 10:20] = np.nan
    m = exclusion_mask(img)
    assert m[10:20, 10:20].all() and m[350:].all()
    assert not exclusion_mask(img, data_bar=False, annotations=False)[350:].any()
    roi = np.zeros(img.shape, bool)
    roi[:, :100] = True
    with_roi = exclusion_mask(img, data_bar=False, annotations=False, roi=roi)
    assert with_roi[:, :100].all() and not with_roi[:340, 100:][~np.isnan(img[:340, 100:])].any()
    with pytest.raises(ValueError, match="roi mask shape"):
        exclusion_mask(img, roi=np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="2-D"):
        exclusion_mask(np.zeros((4, 4, 3)))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_load_roi_mask(tmp_path, suffix):
    roi = np.zeros((40, 60), np.uint8)
    roi[5:30, 10:50] = 255
    path = tmp_path / f"roi{suffix}"
    if suffix == ".tif":
        import tifffile

        tifffile.imwrite(path, roi)
    else:
        Image.fromarray(roi).save(path)
    excluded = load_roi_mask(path, (40, 60))
    assert excluded.dtype == bool and excluded.shape == (40, 60)
    np.testing.assert_array_equal(excluded, roi == 0)


def test_load_roi_mask_rgb(tmp_path):
    roi = np.zeros((20, 30, 3), np.uint8)
    roi[2:10, 3:20, 1] = 1  # painted in green
    path = tmp_path / "roi_rgb.png"
    Image.fromarray(roi).save(path)
    np.testing.assert_array_equal(load_roi_mask(path, (20, 30)), roi[..., 1] == 0)


def test_load_roi_mask_errors_name_the_file(tmp_path):
    path = tmp_path / "roi_small.png"
    Image.fromarray(np.ones((10, 12), np.uint8)).save(path)
    with pytest.raises(ValueError, match="roi_small.png") as err:
        load_roi_mask(path, (40, 60))
    assert "(10, 12)" in str(err.value) and "(40, 60)" in str(err.value)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_roi_mask(tmp_path / "missing.png", (4, 4))
    bad = tmp_path / "not_an_image.png"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="not_an_image.png"):
        load_roi_mask(bad, (4, 4))


def test_inputs_not_modified():
    img = _with_data_bar(_particles(), rows=50)
    before = img.copy()
    exclusion_mask(img)
    detect_annotations(img)
    detect_data_bar(img)
    np.testing.assert_array_equal(img, before)
