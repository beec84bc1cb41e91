"""Tests for micrometry.aggregate.qc."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image
from skimage.draw import disk
from skimage.segmentation import find_boundaries

from micrometry.aggregate.qc import EXCLUDED_TINT, label_colors, normalize_grey, qc_overlay


def _labels(shape=(64, 80)):
    lab = np.zeros(shape, np.uint32)
    lab[disk((20, 20), 10, shape=shape)] = 1
    lab[disk((40, 55), 12, shape=shape)] = 7
    lab[50:60, 5:15] = 3
    lab[50:60, 15:25] = 4  # touches label 3
    return lab


def _read(path):
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        return np.asarray(im)


def test_label_colors_distinct_and_never_grey():
    c = label_colors(np.arange(1, 21))
    assert c.shape == (20, 3) and c.dtype == np.uint8
    assert len({tuple(x) for x in c}) == 20
    assert (c.max(axis=1).astype(int) - c.min(axis=1) > 100).all()
    np.testing.assert_array_equal(label_colors(np.array([7])), label_colors(np.array([7])))


def test_normalize_grey():
    ramp = np.tile(np.arange(1000, 1100, dtype=np.uint16), (5, 1))
    g = normalize_grey(ramp)
    assert g.dtype == np.uint8 and g.min() == 0 and g.max() == 255
    assert (np.diff(g.astype(int), axis=1) >= 0).all()
    img = np.full((4, 4), 3.5)
    img[0, 0] = np.nan
    g = normalize_grey(img)
    assert g[0, 0] == 0 and (g.ravel()[1:] == 128).all()
    assert (normalize_grey(np.full((3, 3), np.nan)) == 0).all()


def test_outlines_exactly_at_label_boundaries(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.normal(100, 10, (64, 80)).astype(np.float32)
    image[0:3, :] = np.nan
    lab = _labels()
    image_before, lab_before = image.copy(), lab.copy()
    qc_overlay(image, lab, tmp_path / "qc.png", nm_per_px=2.5)
    np.testing.assert_array_equal(image, image_before)  # inputs untouched
    np.testing.assert_array_equal(lab, lab_before)

    out = _read(tmp_path / "qc.png")
    assert out.shape[1] == 80 and out.shape[0] > 64  # caption strip below
    body = out[:64]
    edge = find_boundaries(lab, mode="inner") & (lab > 0)
    np.testing.assert_array_equal(body[edge], label_colors(lab[edge]))
    grey = (body[..., 0] == body[..., 1]) & (body[..., 1] == body[..., 2])
    np.testing.assert_array_equal(grey, ~edge)
    # the touching pair 3|4 has both sides outlined in their own colours
    assert tuple(body[55, 14]) == tuple(label_colors(np.array([3]))[0])
    assert tuple(body[55, 15]) == tuple(label_colors(np.array([4]))[0])
    assert (body[0:3, :, 0][~edge[0:3]] == 0).all()  # NaN drawn black
    assert out[64:].max() > 200  # caption text drawn


def test_excluded_region_tinted(tmp_path):
    image = np.full((64, 80), 50, np.uint8)
    image[::2] = 200
    lab = _labels()
    excluded = np.zeros(lab.shape, bool)
    excluded[:, 70:] = True
    qc_overlay(image, lab, tmp_path / "qc.png", excluded=excluded, title="t")
    body = _read(tmp_path / "qc.png")[:64].astype(int)
    edge = find_boundaries(lab, mode="inner") & (lab > 0)
    tinted = body[excluded & ~edge]
    assert (tinted[:, 2] > tinted[:, 0]).all()  # blue tint
    expected_blue = np.round(0.55 * 0 + 0.45 * EXCLUDED_TINT[2])  # black pixels -> pure tint share
    assert tinted[:, 2].min() >= expected_blue - 1
    plain = body[~excluded & ~edge]
    assert (plain[:, 0] == plain[:, 2]).all()


def test_output_size_capped(tmp_path):
    image = np.random.default_rng(1).integers(0, 4096, (3000, 1000), dtype=np.uint16)
    lab = np.zeros(image.shape, np.uint32)
    lab[1000:1600, 200:800] = 5
    qc_overlay(image, lab, tmp_path / "big.png", max_side_px=256)
    out = _read(tmp_path / "big.png")
    assert max(out.shape[:2]) <= 256
    # the image part keeps the aspect ratio: width = ceil(1000 / f) with f the smallest fitting factor
    for f in range(12, 20):
        if math.ceil(1000 / f) == out.shape[1]:
            break
    else:
        pytest.fail(f"unexpected width {out.shape[1]}")
    h = math.ceil(3000 / f)
    assert h < out.shape[0] <= 256
    # the object is still outlined in its colour after downsampling
    colour = label_colors(np.array([5]))[0]
    assert (out[:h] == colour).all(axis=2).sum() > 50
    # small input is not upscaled
    qc_overlay(image[:40, :50], lab[:40, :50], tmp_path / "small.png", max_side_px=256)
    assert _read(tmp_path / "small.png").shape[1] == 50


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"labels": np.zeros((5, 6), np.uint32)}, "shape"),
        ({"labels": np.zeros((6, 6), np.float32)}, "integer"),
        ({"labels": -np.ones((6, 6), np.int32)}, ">= 0"),
        ({"image": np.zeros((6, 6, 3))}, "2-D"),
        ({"excluded": np.zeros((2, 2), bool)}, "excluded shape"),
        ({"nm_per_px": -1.0}, "nm_per_px"),
        ({"nm_per_px": float("nan")}, "nm_per_px"),
        ({"max_side_px": 8}, "max_side_px"),
    ],
)
def test_bad_input_raises(tmp_path, kwargs, match):
    args = {"image": np.zeros((6, 6)), "labels": np.zeros((6, 6), np.uint32)}
    args.update(kwargs)
    image, labels = args.pop("image"), args.pop("labels")
    with pytest.raises(ValueError, match=match):
        qc_overlay(image, labels, tmp_path / "x.png", **args)
    assert not (tmp_path / "x.png").exists()


def test_block_mean_ragged_and_nan():
    from micrometry.aggregate.qc import _block_mean

    img = np.arange(7 * 5, dtype=np.float64).reshape(7, 5)
    out = _block_mean(img, 3)
    assert out.shape == (3, 2) and out.dtype == np.float32
    assert out[0, 0] == pytest.approx(img[:3, :3].mean())
    assert out[2, 1] == pytest.approx(img[6:, 3:].mean())  # ragged corner: only existing pixels
    assert out[1, 1] == pytest.approx(img[3:6, 3:].mean())
    img[0, 0] = np.nan
    out = _block_mean(img, 3)
    assert out[0, 0] == pytest.approx(np.nanmean(img[:3, :3]))
    assert out[2, 1] == pytest.approx(img[6:, 3:].mean())


def test_caption_counts_distinct_labels():
    from micrometry.aggregate.qc import _count_labels

    lab = np.zeros((10, 10), np.uint32)
    lab[0, 0], lab[5, 5], lab[9, 9] = 3, 3, 8
    assert _count_labels(lab) == 2
    lab[1, 1] = 4_000_000_000  # sparse huge ids take the np.unique path
    assert _count_labels(lab) == 3
    assert _count_labels(np.zeros((0, 0), np.int32)) == 0
