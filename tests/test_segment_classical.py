"""Tests for micrometry.segment.classical: known answers on drawn images."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk, ellipse

from micrometry.segment.classical import (
    LABEL_DTYPE,
    estimate_polarity,
    remove_small_and_large,
    segment_classical,
)

# (row, col, radius_px) of separated discs in a 256 x 256 image
DISCS = [(40, 40, 15), (40, 120, 12), (50, 200, 18), (130, 60, 10),
         (140, 150, 20), (210, 50, 14), (210, 140, 9), (200, 210, 16)]


def _disc_image(*, polarity: str, noise_sd: float = 12.0, seed: int = 0, shape=(256, 256)):
    """uint8 image of DISCS on a noisy background and the true label image."""
    rng = np.random.default_rng(seed)
    bg, fg = (190.0, 70.0) if polarity == "dark" else (60.0, 180.0)
    img = np.full(shape, bg)
    truth = np.zeros(shape, np.int32)
    for i, (y, x, r) in enumerate(DISCS, start=1):
        rr, cc = disk((y, x), r, shape=shape)
        img[rr, cc] = fg
        truth[rr, cc] = i
    img += rng.normal(0.0, noise_sd, shape)
    return np.clip(img, 0, 255).astype(np.uint8), truth


def _best_iou(labels: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """For each true object, the IoU with the predicted object overlapping it most."""
    out = []
    for t in range(1, truth.max() + 1):
        tm = truth == t
        ids, counts = np.unique(labels[tm], return_counts=True)
        counts = counts[ids > 0]
        ids = ids[ids > 0]
        if ids.size == 0:
            out.append(0.0)
            continue
        pm = labels == ids[np.argmax(counts)]
        out.append((tm & pm).sum() / (tm | pm).sum())
    return np.asarray(out)


@pytest.mark.parametrize("polarity", ["dark", "bright"])
def test_separated_discs_both_polarities(polarity):
    img, truth = _disc_image(polarity=polarity)
    assert estimate_polarity(img) == polarity
    labels = segment_classical(img)
    assert labels.dtype == LABEL_DTYPE and labels.shape == img.shape
    assert labels.max() == len(DISCS)
    assert np.array_equal(np.unique(labels), np.arange(len(DISCS) + 1))  # consecutive ids
    iou = _best_iou(labels, truth)
    assert iou.min() > 0.9, iou


def test_wrong_polarity_forced_gives_different_result():
    img, truth = _disc_image(polarity="dark")
    forced = segment_classical(img, polarity="bright")
    assert _best_iou(forced, truth).max() < 0.5  # background found instead of particles


def test_disc_area_matches_pi_r_squared():
    img, truth = _disc_image(polarity="dark", noise_sd=4.0)
    labels = segment_classical(img)
    y, x, r = DISCS[4]
    area_px = (labels == labels[y, x]).sum()
    assert area_px == pytest.approx(np.pi * r * r, rel=0.05)


def test_touching_discs_are_split():
    rng = np.random.default_rng(1)
    r = 20
    img = np.full((128, 160), 200.0)
    centres = [(64, 50), (64, 50 + 1.8 * r)]  # overlapping by 20 % of the radius
    for c in centres:
        img[disk(c, r, shape=img.shape)] = 60
    img += rng.normal(0, 10, img.shape)
    labels = segment_classical(img)
    assert labels.max() == 2
    assert labels[64, 50] != labels[64, int(50 + 1.8 * r)]
    assert labels[64, 50] > 0 and labels[64, int(50 + 1.8 * r)] > 0


@pytest.mark.parametrize("rotation", [0.0, 0.5, np.pi / 2])
def test_ellipse_aspect_two_not_over_split(rotation):
    rng = np.random.default_rng(2)
    img = np.full((128, 160), 200.0)
    img[ellipse(64, 80, 15, 30, shape=img.shape, rotation=rotation)] = 60
    img += rng.normal(0, 10, img.shape)
    assert segment_classical(img).max() == 1


def test_split_touching_false_keeps_clusters():
    img = np.full((128, 160), 200.0)
    for c in [(64, 50), (64, 86)]:
        img[disk(c, 20, shape=img.shape)] = 60
    assert segment_classical(img, split_touching=False).max() == 1


def test_illumination_gradient():
    img, truth = _disc_image(polarity="dark", noise_sd=6.0)
    ny, nx = img.shape
    # background brightness drops from 190 to about 60 across the image, so a
    # global threshold would take the darker half of the background as particles
    ramp = np.linspace(0.0, 130.0, nx)[None, :] + np.linspace(0.0, 20.0, ny)[:, None]
    shaded = np.clip(img - ramp * (img > 120) - 0.4 * ramp * (img <= 120), 0, 255)
    flat_only = segment_classical(shaded, background_sigma_px=0)
    assert flat_only.max() != len(DISCS) or _best_iou(flat_only, truth).min() < 0.9  # needs flattening
    labels = segment_classical(shaded)
    assert labels.max() == len(DISCS)
    assert _best_iou(labels, truth).min() > 0.85


def test_excluded_pixels_never_labelled_and_ignored():
    img, truth = _disc_image(polarity="dark")
    exclude = np.zeros(img.shape, bool)
    exclude[:, :100] = True  # removes discs at x = 40 and 60 and cuts none of the others fully
    labels = segment_classical(img, exclude=exclude)
    assert not labels[exclude].any()
    kept = [i for i, (y, x, r) in enumerate(DISCS, 1) if x - r >= 100]
    assert labels.max() == len(kept) + sum(1 for (y, x, r) in DISCS if x - r < 100 <= x + r)


def test_drop_border_removes_cut_objects():
    img = np.full((100, 100), 200.0)
    img[disk((50, 50), 10)] = 50
    img[disk((5, 50), 12, shape=img.shape)] = 50  # cut by the top edge
    img[disk((50, 80), 8)] = 50  # cut by the excluded region below
    exclude = np.zeros(img.shape, bool)
    exclude[:, 85:] = True
    assert segment_classical(img, exclude=exclude).max() == 3
    labels = segment_classical(img, exclude=exclude, drop_border=True)
    assert labels.max() == 1 and labels[50, 50] == 1


def test_input_not_modified():
    img, _ = _disc_image(polarity="bright")
    img = img.astype(np.float32)
    img[0, 0] = np.nan
    before = img.copy()
    exclude = np.zeros(img.shape, bool)
    segment_classical(img, exclude=exclude)
    np.testing.assert_array_equal(img, before)
    assert not exclude.any()


def test_nan_and_inf_pixels_are_excluded():
    img, truth = _disc_image(polarity="dark")
    img = img.astype(np.float64)
    img[:, 230:] = np.nan
    img[0:5, :] = np.inf
    img[100, 100] = -np.inf
    labels = segment_classical(img)
    assert not labels[:, 230:].any() and not labels[0:5, :].any() and labels[100, 100] == 0
    assert labels.max() == len(DISCS)  # the disc at x = 210, r = 16 is cut, not lost


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.int16])
def test_dtypes(dtype):
    img, _ = _disc_image(polarity="dark")
    scaled = img.astype(np.float64) * (200 if dtype == np.uint16 else 1)
    assert segment_classical(scaled.astype(dtype)).max() == len(DISCS)


@pytest.mark.parametrize("value", [0.0, 7.0, np.nan])
def test_constant_image_gives_no_labels(value):
    img = np.full((64, 64), value)
    labels = segment_classical(img)
    assert labels.dtype == LABEL_DTYPE and labels.max() == 0
    assert estimate_polarity(img) in ("dark", "bright")


def test_fixed_threshold():
    img, truth = _disc_image(polarity="dark", noise_sd=3.0)
    labels = segment_classical(img, threshold=0.5, background_sigma_px=0)
    assert labels.max() == len(DISCS)
    assert _best_iou(labels, truth).min() > 0.9


def test_size_filter_options():
    img, _ = _disc_image(polarity="dark")
    # disc radius 9 (254 px) and 10 (314 px) are below 400 px
    assert segment_classical(img, min_area_px=400).max() == len(DISCS) - 2
    # the largest disc (r = 20, ~1257 px) is 1.9 % of the image, the next (r = 18) 1.55 %
    assert segment_classical(img, max_area_fraction=0.017).max() == len(DISCS) - 1


def test_fill_holes():
    img = np.full((100, 100), 200.0)
    img[disk((50, 50), 20)] = 50
    img[disk((50, 50), 6)] = 200  # hollow particle
    filled = segment_classical(img, smoothing_sigma_px=0)
    assert filled[50, 50] > 0
    hollow = segment_classical(img, smoothing_sigma_px=0, fill_holes=False)
    assert hollow[50, 50] == 0 and hollow.max() >= 1


def test_ring_of_particles_does_not_fill_its_centre_as_one_object():
    img = np.full((160, 160), 200.0)
    for a in np.linspace(0, 2 * np.pi, 8, endpoint=False):
        img[disk((80 + 40 * np.sin(a), 80 + 40 * np.cos(a)), 14, shape=img.shape)] = 50
    labels = segment_classical(img)
    assert labels.max() == 8
    assert labels[80, 80] == 0


def test_bad_inputs():
    with pytest.raises(ValueError, match="2-D"):
        segment_classical(np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="exclude mask shape"):
        segment_classical(np.zeros((8, 8)), exclude=np.zeros((8, 9), bool))
    with pytest.raises(ValueError, match="polarity"):
        segment_classical(np.zeros((8, 8)), polarity="white")
    with pytest.raises(ValueError, match="threshold"):
        segment_classical(np.zeros((8, 8)), threshold="magic")
    with pytest.raises(TypeError, match="dtype"):
        segment_classical(np.zeros((8, 8), complex))


def test_remove_small_and_large():
    labels = np.zeros((10, 10), np.int32)
    labels[0, 0] = 5  # 1 px
    labels[2:4, 2:4] = 9  # 4 px
    labels[5:10, 5:10] = 2  # 25 px
    before = labels.copy()
    out = remove_small_and_large(labels, min_area_px=2, max_area_px=10)
    assert out.dtype == LABEL_DTYPE
    np.testing.assert_array_equal(np.unique(out), [0, 1])
    assert (out == 1).sum() == 4 and out[2, 2] == 1
    np.testing.assert_array_equal(labels, before)
    both = remove_small_and_large(labels, min_area_px=2, max_area_px=None)
    assert both[5, 5] == 1 and both[2, 2] == 2  # consecutive, in order of original id
    assert remove_small_and_large(np.zeros((3, 3), int), min_area_px=1, max_area_px=5).max() == 0
    with pytest.raises(TypeError):
        remove_small_and_large(np.zeros((3, 3)), min_area_px=1, max_area_px=5)


def test_speed_512_under_a_second():
    import time

    rng = np.random.default_rng(3)
    img = np.full((512, 512), 180.0)
    for _ in range(60):
        img[disk(rng.uniform(0, 512, 2), rng.uniform(6, 20), shape=img.shape)] = 80
    img += rng.normal(0, 10, img.shape)
    segment_classical(img)  # warm imports
    t0 = time.perf_counter()
    segment_classical(img)
    assert time.perf_counter() - t0 < 1.0


def test_background_fit_reproduces_a_plane_exactly():
    from micrometry.segment.classical import _local_linear_background

    yy, xx = np.mgrid[0:300, 0:411].astype(np.float32)
    plane = 0.3 * yy - 0.2 * xx + 50.0
    weight = np.ones(plane.shape, bool)
    weight[100:200, 150:260] = False  # a "particle" that does not enter the fit
    img = np.where(weight, plane, 1000.0).astype(np.float32)
    bg = _local_linear_background(img, weight, sigma_px=60.0)
    np.testing.assert_allclose(bg, plane, atol=0.1)  # the plane spans -32 .. 140


def test_package_exports_lazily_without_heavy_imports():
    import subprocess
    import sys

    code = (
        "import sys, micrometry.segment as S, micrometry.segment.classical, micrometry.segment.exclusion;"
        "assert S.segment_classical is micrometry.segment.classical.segment_classical;"
        "assert S.load_roi_mask is micrometry.segment.exclusion.load_roi_mask;"
        "print(sorted(m for m in ('torch', 'cupy', 'dask', 'zarr', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
