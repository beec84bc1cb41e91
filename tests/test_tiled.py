"""Tests for micrometry.segment.tiled: tiled == untiled, no seams, one call per tile."""

from __future__ import annotations

import threading

import dask
import dask.array as da
import numpy as np
import pytest
from scipy import ndimage as ndi

from micrometry.segment import tiled
from micrometry.segment.tiled import (
    normalize_image,
    normalize_percentiles,
    predict_full,
    predict_tiled,
    taper_window,
    tile_grid,
)

SIGMA_PX = 2.0  # gaussian "network"; scipy's default truncate=4 gives a reach of 8 px


class CountingFn:
    """A predict_fn that counts its calls (thread-safe) and records tile shapes."""

    def __init__(self, fn):
        self.fn = fn
        self.calls = 0
        self.shapes = []
        self._lock = threading.Lock()

    def __call__(self, tile):
        with self._lock:
            self.calls += 1
            self.shapes.append(tile.shape)
        assert tile.dtype == np.float32 and tile.flags.c_contiguous
        return self.fn(tile)


def pointwise(tile):
    """(h, w) -> (2, h, w): [x, 2x], exact in float32."""
    return np.stack([tile, 2 * tile])


def gaussian(tile):
    return ndi.gaussian_filter(tile, SIGMA_PX, mode="reflect")[None]


def _image(shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _as_input(img, chunks):
    return img if chunks is None else da.from_array(img, chunks=chunks)


@pytest.fixture(autouse=True)
def _synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


# --------------------------------------------------------------------------- normalisation
def test_normalize_percentiles_ramp_known_answer():
    ramp = np.arange(120 * 50, dtype=np.float64).reshape(120, 50)
    lo, hi = normalize_percentiles(ramp, low=1.0, high=99.8)
    assert (lo, hi) == (np.percentile(ramp, 1.0), np.percentile(ramp, 99.8))
    # 1 % of 0..5999 with linear interpolation is 59.99
    assert lo == pytest.approx(59.99) and hi == pytest.approx(0.998 * 5999)
    assert isinstance(lo, float) and isinstance(hi, float)


def test_normalize_percentiles_ignores_nan_inf_and_excluded():
    ramp = np.arange(101.0)[None, :].repeat(3, axis=0)
    with_bad = np.concatenate([ramp, np.full((2, 101), np.nan)], axis=0)
    with_bad[0, :5] = np.inf
    with_bad[1, :5] = -np.inf
    exclude = np.zeros(with_bad.shape, bool)
    exclude[2, 50:] = True
    expected_values = np.concatenate([ramp[0, 5:], ramp[1, 5:], ramp[2, :50]])
    got = normalize_percentiles(with_bad, low=10, high=90, exclude=exclude)
    assert got == tuple(np.percentile(expected_values, [10, 90]))


def test_normalize_percentiles_dask_and_subsample():
    img = np.arange(1000 * 1000, dtype=np.float32).reshape(1000, 1000)
    lazy = da.from_array(img, chunks=(300, 400))
    assert normalize_percentiles(lazy) == normalize_percentiles(img)
    # 10 000 pixels allowed -> stride 10: exactly the percentiles of img[::10, ::10]
    sub = normalize_percentiles(lazy, low=5, high=95, max_sample_px=10_000)
    assert sub == tuple(np.percentile(img[::10, ::10].astype(np.float64), [5, 95]))
    full = normalize_percentiles(img, low=5, high=95)
    assert sub == pytest.approx(full, rel=0.01)


@pytest.mark.parametrize(
    "image, kwargs, match",
    [
        (np.full((4, 4), np.nan), {}, "no finite"),
        (np.ones((4, 4)), {"low": 50, "high": 50}, "low < high"),
        (np.ones((4, 4)), {"high": 101}, "low < high"),
        (np.ones((2, 4, 4)), {}, "2-D"),
        (np.ones((4, 4)), {"exclude": np.zeros((4, 5), bool)}, "does not match"),
    ],
)
def test_normalize_percentiles_errors(image, kwargs, match):
    with pytest.raises(ValueError, match=match):
        normalize_percentiles(image, **kwargs)


def test_normalize_image_maps_lo_hi_and_zeroes_nan():
    img = np.array([[10.0, 20.0, 30.0], [np.nan, 0.0, np.inf]])
    out = normalize_image(img, 10.0, 30.0)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([[0, 0.5, 1], [0, -0.5, 0]], np.float32))
    lazy = normalize_image(da.from_array(img, chunks=1), 10.0, 30.0)
    assert isinstance(lazy, da.Array) and lazy.dtype == np.float32
    np.testing.assert_array_equal(lazy.compute(), out)
    # a flat image: scale 1
    np.testing.assert_array_equal(normalize_image(np.full((2, 2), 3.0), 3.0, 3.0), np.zeros((2, 2)))


# --------------------------------------------------------------------------- window and grid
def test_taper_window_properties():
    tile_px, overlap_px = 64, 16
    w = taper_window(tile_px, overlap_px)
    assert w.shape == (tile_px, tile_px) and w.dtype == np.float32
    assert w.min() > 0
    np.testing.assert_array_equal(w, w.T)
    np.testing.assert_array_equal(w, w[::-1, ::-1])
    w1 = w[tile_px // 2] / w[tile_px // 2].max()
    np.testing.assert_allclose(w, np.outer(w1, w1), rtol=1e-6)  # separable
    assert (w1[overlap_px:tile_px - overlap_px] == 1).all()  # flat centre
    assert (np.diff(w1[:overlap_px]) > 0).all()  # strictly rising ramp
    # two ramps meeting over exactly overlap_px sum to 1 (partition of unity)
    np.testing.assert_allclose(w1[:overlap_px] + w1[tile_px - overlap_px:], 1.0, atol=2e-6)
    # the first pixel of a ramp weighs (almost) nothing
    assert w1[0] <= 1e-5
    np.testing.assert_array_equal(taper_window(10, 0), np.ones((10, 10), np.float32))
    with pytest.raises(ValueError, match="half of tile_px"):
        taper_window(64, 33)


@pytest.mark.parametrize(
    "shape, tile_px, overlap_px",
    [((100, 100), 512, 64), ((1000, 700), 256, 32), ((1300, 2500), 128, 16), ((129, 128), 128, 8),
     ((7, 300), 64, 32)],
)
def test_tile_grid_covers_flush_and_overlaps(shape, tile_px, overlap_px):
    tiles = tile_grid(shape, tile_px, overlap_px)
    cover = np.zeros(shape, int)
    for ty, tx in tiles:
        assert 0 < ty.stop - ty.start <= tile_px and 0 < tx.stop - tx.start <= tile_px
        cover[ty, tx] += 1
    assert cover.min() >= 1
    for axis in (0, 1):
        starts = sorted({t[axis].start for t in tiles})
        stops = sorted({t[axis].stop for t in tiles})
        assert starts[0] == 0 and stops[-1] == shape[axis]
        assert all(b - a >= min(overlap_px, 0 if len(starts) == 1 else overlap_px)
                   for a, b in zip(starts[1:], stops[:-1]))  # neighbours overlap enough
        if shape[axis] >= tile_px:
            assert all(b - a == tile_px for a, b in zip(starts, stops))
        else:
            assert (starts, stops) == ([0], [shape[axis]])


def test_ramps_span_the_actual_overlaps():
    tiles = tiled._axis_tiles(1000, 256, 32)
    assert [t[:2] for t in tiles] == [(0, 256), (186, 442), (372, 628), (558, 814), (744, 1000)]
    assert tiles[0][2] == 0 and tiles[-1][3] == 0  # no ramp at the image edges
    for (_, stop, _, ramp_hi), (start, _, ramp_lo, _) in zip(tiles[:-1], tiles[1:]):
        assert ramp_hi == ramp_lo == stop - start == 70
    # two ramps of the same overlap sum to one there
    a, b = tiled._taper_1d(256, 0, 70), tiled._taper_1d(256, 70, 70)
    np.testing.assert_allclose(a[-70:] + b[:70], 1.0, atol=2e-6)
    assert (a[:-70] == 1).all()


def test_tile_grid_known_answer():
    tiles = tile_grid((1000, 100), 256, 32)
    assert [(ty.start, ty.stop) for ty, _ in tiles] == [(0, 256), (186, 442), (372, 628), (558, 814), (744, 1000)]
    assert all(tx == slice(0, 100) for _, tx in tiles)
    assert tile_grid((100, 100), 512, 64) == [(slice(0, 100), slice(0, 100))]


# --------------------------------------------------------------------------- tiled == untiled
POINTWISE_CASES = [
    # shape, tile_px, overlap_px, input chunks (None: NumPy input)
    ((100, 100), 512, 64, None),
    ((100, 100), 512, 64, (100, 100)),  # one chunk
    ((1000, 700), 256, 32, None),
    ((1000, 700), 256, 32, ((300, 700), (350, 350))),  # ragged
    ((1300, 2500), 128, 16, (512, 1000)),  # ragged last chunks
]


@pytest.mark.parametrize("shape, tile_px, overlap_px, chunks", POINTWISE_CASES)
def test_pointwise_tiled_equals_untiled_exactly(shape, tile_px, overlap_px, chunks):
    img = _image(shape)
    fn = CountingFn(pointwise)
    lazy = predict_tiled(_as_input(img, chunks), fn, n_channels=2, tile_px=tile_px,
                         overlap_px=overlap_px, out_chunks_px=512)
    # lazy: shape/dtype/chunks declared, nothing run
    assert fn.calls == 0
    assert isinstance(lazy, da.Array)
    assert lazy.shape == (2, *shape) and lazy.dtype == np.float32
    assert lazy._meta.dtype == np.float32 and lazy._meta.ndim == 3
    assert lazy.chunks[0] == (2,) and max(lazy.chunks[1]) <= 512 and max(lazy.chunks[2]) <= 512
    out = lazy.compute()
    assert out.dtype == np.float32 and out.shape == (2, *shape)
    np.testing.assert_array_equal(out, predict_full(img, pointwise, n_channels=2))
    # every tile predicted exactly once, none larger than a tile
    n_tiles = len(tile_grid(shape, tile_px, overlap_px))
    assert fn.calls == n_tiles
    assert all(h <= tile_px and w <= tile_px for h, w in fn.shapes)


@pytest.mark.parametrize(
    "size_px, overlap_px, tol",
    [(608, 32, 1e-4), (576, 16, 2e-3), (608, 8, 1e-2)],  # tile 128: overlaps are exactly overlap_px
)
def test_gaussian_tiled_matches_untiled(size_px, overlap_px, tol):
    """A local 'network' (gaussian sigma 2 px, reach 8 px) on white noise in [0, 1].

    Only pixels within 8 px of an interior tile edge differ between a tile and
    the whole image; the blend weighs them by the smooth step, so the error
    is largest near the middle of an overlap of L pixels, about the kernel's
    tail beyond L/2 (times the local contrast, <= 1): Q(2.25) ~ 1e-2 for
    L = 8 px (4 sigma), Q(4.25) ~ 1e-5 for L = 16 px; for L = 32 px the kernel
    never reaches past half the overlap and only the smooth step's few-percent
    weights near the ramp ends carry any error.  Measured: 7.3e-3, 8.2e-4,
    1.4e-5.  The image border is treated exactly as untiled (tiles are flush
    with it; no ramp there).
    """
    img = _image((size_px, size_px), seed=3)
    full = predict_full(img, gaussian, n_channels=1)
    out = predict_tiled(img, gaussian, n_channels=1, tile_px=128, overlap_px=overlap_px,
                        out_chunks_px=256).compute()
    err = np.abs(out - full)[0]
    assert err.max() <= tol, err.max()
    edge = np.ones(img.shape, bool)
    edge[8:-8, 8:-8] = False
    assert err[edge].max() <= tol


def _tile_edge_mask(shape, tiles, width_px=2):
    """True within width_px of a tile edge that lies inside the image."""
    mask = np.zeros(shape, bool)
    for ty, tx in tiles:
        for s in (ty.start, ty.stop):
            if 0 < s < shape[0]:
                mask[max(s - width_px, 0):s + width_px, tx] = True
        for s in (tx.start, tx.stop):
            if 0 < s < shape[1]:
                mask[ty, max(s - width_px, 0):s + width_px] = True
    return mask


def _seam_errors(img, tile_px, overlap_px):
    full = predict_full(img, gaussian, n_channels=1)[0]
    out = predict_tiled(img, gaussian, n_channels=1, tile_px=tile_px, overlap_px=overlap_px).compute()[0]
    err = np.abs(out - full)
    at_edges = _tile_edge_mask(img.shape, tile_grid(img.shape, tile_px, overlap_px))
    return err[at_edges].max(), err[~at_edges].max()


def test_no_seams_at_tile_edges(monkeypatch):
    """|tiled - untiled| at the tile edges is no larger than elsewhere.

    Rows only (one tile across X), so the edge lines are not crossed by other
    overlaps; overlaps are exactly 16 px (464 = 128 + 3 x 112).
    """
    img = _image((464, 100), seed=5)
    at_edges, elsewhere = _seam_errors(img, 128, 16)
    assert at_edges <= elsewhere
    assert at_edges < 1e-5 < elsewhere < 2e-3
    # the test can fail: without a taper (plain averaging) the tile edges show
    flat = lambda n_px, ramp_lo_px, ramp_hi_px: np.ones(n_px, np.float32)  # noqa: E731
    monkeypatch.setattr(tiled, "_taper_1d", flat)
    at_edges_flat, elsewhere_flat = _seam_errors(img, 128, 16)
    assert at_edges_flat > 2 * elsewhere_flat and at_edges_flat > 1e-2


def test_blend_is_smooth_for_tile_dependent_outputs():
    """A 'network' that adds a different offset to every tile: hard stitching
    would jump by up to 1 at tile edges; the taper spreads the change over
    the overlap (max slope of the smooth step: 2 / overlap per unit offset)."""
    rng = np.random.default_rng(1)
    lock = threading.Lock()

    def offset_fn(tile):
        with lock:
            offset = rng.random()
        return np.full((1, *tile.shape), offset, np.float32)

    overlap_px = 32
    out = predict_tiled(np.zeros((700, 600), np.float32), offset_fn, n_channels=1, tile_px=128,
                        overlap_px=overlap_px).compute()[0]
    max_step = max(np.abs(np.diff(out, axis=0)).max(), np.abs(np.diff(out, axis=1)).max())
    assert 0 < max_step <= 2.5 / overlap_px


# --------------------------------------------------------------------------- padding, dtype, errors
def test_pad_multiple_for_small_image():
    img = _image((100, 90), seed=7)
    fn = CountingFn(gaussian)
    out = predict_tiled(img, fn, n_channels=1, tile_px=512, overlap_px=64, pad_multiple_px=16).compute()
    assert fn.shapes == [(112, 96)]  # one tile, padded to multiples of 16
    assert out.shape == (1, 100, 90)
    full = ndi.gaussian_filter(img, SIGMA_PX, mode="reflect")
    np.testing.assert_array_equal(out[0], predict_full(img, gaussian, n_channels=1, pad_multiple_px=16)[0])
    err = np.abs(out[0] - full)
    # padding of >= 8 px (bottom: 12) reproduces the reflection exactly; a 6 px
    # pad (right) misses the kernel's last two taps: <= (g(7) + g(8)) ~ 5e-4
    assert err[:, :-8].max() <= 1e-6
    assert err.max() <= 1e-3
    np.testing.assert_array_equal(
        predict_tiled(img, pointwise, n_channels=2, tile_px=64, overlap_px=8, pad_multiple_px=16).compute(),
        predict_full(img, pointwise, n_channels=2),
    )


def test_output_dtype_and_input_unchanged():
    img = _image((300, 200))
    before = img.copy()
    out = predict_tiled(img, pointwise, n_channels=2, tile_px=128, overlap_px=16, dtype=np.float16)
    assert out.dtype == np.float16
    res = out.compute()
    assert res.dtype == np.float16
    np.testing.assert_array_equal(res, predict_full(img, pointwise, n_channels=2).astype(np.float16))
    np.testing.assert_array_equal(img, before)


def test_integer_image_is_cast_to_float32():
    img = (np.arange(150 * 130) % 251).astype(np.uint8).reshape(150, 130)
    fn = CountingFn(pointwise)
    out = predict_tiled(img, fn, n_channels=2, tile_px=64, overlap_px=8).compute()
    np.testing.assert_array_equal(out, predict_full(img.astype(np.float32), pointwise, n_channels=2))


def test_wrong_prediction_shape_is_reported():
    lazy = predict_tiled(_image((64, 64)), pointwise, n_channels=3, tile_px=32, overlap_px=4)
    with pytest.raises(ValueError, match=r"predict_fn returned an array of shape \(2, 32, 32\)"):
        lazy.compute()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"n_channels": 0}, ValueError, "n_channels"),
        ({"n_channels": 1, "tile_px": 64, "overlap_px": 40}, ValueError, "half of tile_px"),
        ({"n_channels": 1, "overlap_px": -1}, ValueError, "overlap_px"),
        ({"n_channels": 1, "out_chunks_px": 0}, ValueError, "out_chunks_px"),
        ({"n_channels": 1, "pad_multiple_px": 0}, ValueError, "pad_multiple_px"),
    ],
)
def test_predict_tiled_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        predict_tiled(_image((32, 32)), pointwise, **kwargs)


def test_image_errors():
    with pytest.raises(ValueError, match="2-D"):
        predict_tiled(np.zeros((2, 3, 4), np.float32), pointwise, n_channels=2)
    with pytest.raises(ValueError, match="empty"):
        predict_tiled(np.zeros((0, 4), np.float32), pointwise, n_channels=2)
    with pytest.raises(TypeError, match="callable"):
        predict_tiled(np.zeros((4, 4), np.float32), None, n_channels=2)
    with pytest.raises(TypeError, match="NumPy"):
        predict_full(da.zeros((4, 4)), pointwise, n_channels=2)


def test_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import micrometry.segment.tiled, micrometry._dask, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
