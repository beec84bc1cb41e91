"""Augmentations keep image, labels and validity aligned; intensity transforms do what they say."""

from __future__ import annotations

import numpy as np
import pytest

from micrometry.train import augment as A

_NO_INTENSITY = {
    "invert_prob": 0.0,
    "gamma": (1.0, 1.0),
    "contrast": (1.0, 1.0),
    "brightness": (0.0, 0.0),
    "blur_prob": 0.0,
    "gauss_noise_prob": 0.0,
    "poisson_noise_prob": 0.0,
}


def _disc(shape, centre, radius, value=1):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.where((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2, value, 0)


@pytest.mark.parametrize("k", range(4))
@pytest.mark.parametrize("flip_y", [False, True])
@pytest.mark.parametrize("flip_x", [False, True])
def test_flip_rotate_keeps_marker_aligned(k, flip_y, flip_x):
    img = np.zeros((7, 11), np.float32)
    lab = np.zeros((7, 11), np.uint32)
    img[2, 5] = 1.0
    lab[2, 5] = 9
    out_img, out_lab = A.flip_rotate([img, lab], k=k, flip_y=flip_y, flip_x=flip_x)
    assert out_img.shape == out_lab.shape == ((7, 11) if k % 2 == 0 else (11, 7))
    assert np.argwhere(out_img == 1.0).tolist() == np.argwhere(out_lab == 9).tolist()
    assert out_img.flags.c_contiguous


def test_flip_rotate_known_positions():
    a = np.zeros((3, 4), int)
    a[0, 1] = 1
    # one quarter turn counter-clockwise: (r, c) -> (W - 1 - c, r)
    assert np.argwhere(A.flip_rotate([a], k=1)[0] == 1).tolist() == [[2, 0]]
    assert np.argwhere(A.flip_rotate([a], flip_y=True)[0] == 1).tolist() == [[2, 1]]
    assert np.argwhere(A.flip_rotate([a], flip_x=True)[0] == 1).tolist() == [[0, 2]]
    with pytest.raises(ValueError, match="same shape"):
        A.flip_rotate([a, np.zeros((4, 3))])


def test_scaled_crop_identity_and_magnification():
    lab = _disc((100, 100), (50, 50), 10).astype(np.uint32) * 4
    img = lab.astype(np.float32) / 4
    ci, cl, cv = A.scaled_crop(img, lab, None, top_left=(10, 20), window_px=64, crop_px=64)
    np.testing.assert_array_equal(ci, img[10:74, 20:84])
    np.testing.assert_array_equal(cl, lab[10:74, 20:84])
    assert cv.all() and cl.dtype == np.uint32 and ci.dtype == np.float32
    # a window of half the crop size magnifies 2x: the disc's area grows 4x
    ci, cl, cv = A.scaled_crop(img, lab, None, top_left=(25, 25), window_px=50, crop_px=100)
    assert (cl == 4).sum() == pytest.approx(4 * np.pi * 10**2, rel=0.05)
    assert set(np.unique(cl)) == {0, 4}  # ids never blended
    assert ((ci > 0.5) == (cl > 0)).mean() > 0.99


def test_scaled_crop_outside_is_invalid():
    img = np.ones((20, 20), np.float32)
    lab = np.ones((20, 20), np.uint32)
    valid = np.ones((20, 20), bool)
    valid[:, :5] = False
    ci, cl, cv = A.scaled_crop(img, lab, valid, top_left=(-10, -10), window_px=40, crop_px=40, fill=0.25)
    assert not cv[:10].any() and not cv[:, :15].any()
    assert cv[10:30, 15:30].all() and not cv[30:].any()
    assert (cl[~cv & (ci == 0.25)] == 0).all() and (ci[:10] == 0.25).all()
    # the input's own invalid columns stay invalid
    assert not cv[10:30, 10:15].any()


@pytest.mark.parametrize("seed", range(6))
def test_augment_sample_keeps_image_and_labels_aligned(seed):
    rng = np.random.default_rng(seed)
    lab = np.zeros((120, 90), np.uint32)
    for i, (cy, cx) in enumerate([(30, 30), (30, 65), (85, 40), (95, 70)], start=1):
        lab[_disc(lab.shape, (cy, cx), 11) > 0] = i
    img = (lab > 0).astype(np.float32)
    out_img, out_lab, out_valid = A.augment_sample(img, lab, None, rng, crop_px=64, params=_NO_INTENSITY)
    assert out_img.shape == out_lab.shape == out_valid.shape == (64, 64)
    assert set(np.unique(out_lab)) <= {0, 1, 2, 3, 4}
    inside = out_valid
    agree = ((out_img > 0.5) == (out_lab > 0))[inside].mean()
    assert agree > 0.97


def test_invert_gamma_contrast_noise():
    x = np.linspace(0, 1, 101, dtype=np.float32)[None].repeat(3, 0)
    np.testing.assert_allclose(A.invert(x), 1 - x)
    np.testing.assert_allclose(A.invert(A.invert(x)), x, atol=1e-7)
    np.testing.assert_allclose(A.adjust_gamma_contrast(x), x, atol=1e-6)
    g = A.adjust_gamma_contrast(x, gamma=2.0)
    np.testing.assert_allclose(g, x**2, atol=1e-6)
    c = A.adjust_gamma_contrast(x, contrast=0.5, brightness=0.1)
    np.testing.assert_allclose(c, (x - x.mean()) * 0.5 + x.mean() + 0.1, atol=1e-6)
    rng = np.random.default_rng(0)
    flat = np.full((200, 200), 0.5, np.float32)
    n = A.add_noise(flat, rng, gauss_sigma=0.1)
    assert n.std() == pytest.approx(0.1, rel=0.05) and n.mean() == pytest.approx(0.5, abs=0.01)
    p = A.add_noise(flat, rng, poisson_peak=20.0)
    # Poisson counts: mean 10, variance 10 -> std of p = sqrt(10) / 20
    assert p.mean() == pytest.approx(0.5, abs=0.01) and p.std() == pytest.approx(np.sqrt(10) / 20, rel=0.05)
    b = A.blur(np.pad(np.ones((1, 1), np.float32), 10), 2.0)
    assert b.sum() == pytest.approx(1.0, rel=1e-3) and b.max() < 0.05


def test_random_intensity_inverts_polarity():
    img = np.full((16, 16), 0.1, np.float32)
    img[4:12, 4:12] = 0.9
    params = {**_NO_INTENSITY, "invert_prob": 1.0}
    out = A.random_intensity(img, np.random.default_rng(0), params)
    assert out[8, 8] < out[0, 0]
    same = A.random_intensity(img, np.random.default_rng(0), _NO_INTENSITY)
    np.testing.assert_allclose(same, img, atol=1e-6)


def test_inputs_not_modified():
    rng = np.random.default_rng(3)
    img = rng.random((50, 50)).astype(np.float32)
    lab = (img > 0.7).astype(np.uint32)
    i0, l0 = img.copy(), lab.copy()
    A.augment_sample(img, lab, None, rng, crop_px=32)
    np.testing.assert_array_equal(img, i0)
    np.testing.assert_array_equal(lab, l0)
