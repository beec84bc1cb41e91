"""Tests for micrometry.segment.tracking and the back-end dispatch in micrometry._backend."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from micrometry import _backend
from micrometry._backend import BACKENDS, available_backends, get_kernels, resolve_backend
from micrometry.segment.flows import flows_to_labels, labels_to_flows
from micrometry.segment.tracking import (
    _follow_flows_numpy,
    _validate_flows,
    default_min_seed_count,
    default_n_iter,
    default_seed_radius_px,
    follow_flows,
    labels_from_endpoints,
)


def packed_discs(shape=(160, 160), n=40, seed=1):
    """Touching discs of radius 4-14 (overlaps split by power distance)."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.int32)
    power = np.full(shape, np.inf)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    placed = []
    for _ in range(2000):
        r = rng.uniform(4, 14)
        c = rng.uniform(r, np.array(shape) - 1 - r)
        if any(np.hypot(*(c - pc)) < 0.85 * (r + pr) for pc, pr in placed):
            continue
        placed.append((c, r))
        d2 = (yy - c[0]) ** 2 + (xx - c[1]) ** 2
        take = (d2 <= r * r) & (d2 - r * r < power)
        power[take] = (d2 - r * r)[take]
        lab[take] = len(placed)
        if len(placed) == n:
            break
    return lab


@pytest.fixture(scope="module")
def scene():
    lab = packed_discs()
    flows, _ = labels_to_flows(lab)
    return lab, flows


# --------------------------------------------------------------------------- follow_flows
def test_single_disc_pixels_converge_to_centre():
    lab = np.zeros((48, 48), np.int32)
    lab[disk((20, 26), 12)] = 1
    flows, _ = labels_to_flows(lab)
    ends = follow_flows(flows, lab > 0, n_iter=40, backend="numpy")
    assert ends.shape == (2, int(lab.sum())) and ends.dtype == np.float32
    assert np.hypot(ends[0] - 20, ends[1] - 26).max() <= 1.0


def test_constant_flow_known_positions_and_clipping():
    flows = np.zeros((2, 6, 10), np.float32)
    flows[1] = 1.0  # one pixel to the right per step
    mask = np.zeros((6, 10), bool)
    mask[2, 0] = mask[4, 8] = True
    ends = follow_flows(flows, mask, n_iter=3, backend="numpy")
    np.testing.assert_array_equal(ends, [[2, 4], [3, 9]])  # the second is clipped at x = X - 1
    ends = follow_flows(flows, mask, n_iter=3, step_px=0.5, backend="numpy")
    np.testing.assert_array_equal(ends, [[2, 4], [1.5, 9]])


def test_bilinear_interpolation_pixel_centre_convention():
    flows = np.zeros((2, 4, 6), np.float32)
    flows[1] = np.arange(6, dtype=np.float32) * 0.1  # x-flow = 0.1 * column index
    flows[0] = np.arange(4, dtype=np.float32)[:, None] * -0.2  # y-flow = -0.2 * row index
    ends = follow_flows(flows, n_iter=1, backend="numpy", starts=[[1.5, 3.0], [2.5, 5.0]])
    # at (1.5, 2.5): x-flow 0.25, y-flow -0.3; at (3, 5) (a corner pixel): 0.5 and -0.6
    np.testing.assert_allclose(ends, [[1.2, 2.4], [2.75, 5.0]], atol=1e-6)


def test_endpoints_in_c_order_of_mask():
    rng = np.random.default_rng(0)
    flows = rng.normal(size=(2, 9, 7)).astype(np.float32)
    mask = rng.random((9, 7)) > 0.5
    ends = follow_flows(flows, mask, n_iter=0, backend="numpy")
    np.testing.assert_array_equal(ends, np.stack(np.nonzero(mask)))


@pytest.mark.parametrize("n_iter", [0, 1, 2, 5, 50, 201])
def test_shortcut_is_exact(scene, n_iter):
    lab, flows = scene
    starts = np.stack(np.nonzero(lab)).astype(np.float32)
    full = _follow_flows_numpy(flows, starts, n_iter, 0.8, shortcut=False)
    fast = _follow_flows_numpy(flows, starts, n_iter, 0.8)
    assert np.array_equal(full, fast)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_matches_numpy(scene, backend):
    """One test for every registered back-end: NumPy is the oracle."""
    if backend not in available_backends():
        pytest.skip(f"{backend} not available here")
    lab, flows = scene
    fg = lab > 0
    for n_iter, step in [(0, 1.0), (1, 1.0), (37, 1.0), (200, 1.0), (60, 0.7)]:
        ref = follow_flows(flows, fg, n_iter=n_iter, step_px=step, backend="numpy")
        got = follow_flows(flows, fg, n_iter=n_iter, step_px=step, backend=backend)
        if backend == "cupy":
            np.testing.assert_allclose(got, ref, atol=1e-4)
        else:
            assert np.array_equal(got, ref), f"{backend} endpoints differ from numpy (n_iter={n_iter})"
    ref_lab = flows_to_labels(flows, fg, backend="numpy")
    got_lab = flows_to_labels(flows, fg, backend=backend)
    if backend == "cupy":
        assert (ref_lab == got_lab).mean() > 0.999
    else:
        assert np.array_equal(ref_lab, got_lab)
    # random, non-ideal flows too
    rng = np.random.default_rng(3)
    noisy = (flows + rng.normal(scale=0.3, size=flows.shape)).astype(np.float32)
    ref = follow_flows(noisy, fg, n_iter=80, backend="numpy")
    got = follow_flows(noisy, fg, n_iter=80, backend=backend)
    if backend == "cupy":
        np.testing.assert_allclose(got, ref, atol=1e-4)
    else:
        assert np.array_equal(got, ref)


def test_packed_discs_all_found(scene):
    lab, flows = scene
    out = flows_to_labels(flows, lab > 0)
    assert out.max() == lab.max()
    pairs = np.unique(np.stack([lab[lab > 0], out[lab > 0]]), axis=1)
    assert pairs.shape[1] == lab.max()  # a bijection: no split, no merge


def test_input_not_modified(scene):
    lab, flows = scene
    before = flows.copy()
    mask = lab > 0
    follow_flows(flows, mask, n_iter=20)
    assert np.array_equal(flows, before)


def test_one_pixel_wide_image():
    flows = np.zeros((2, 1, 5), np.float32)
    flows[1] = -1.0
    ends = follow_flows(flows, np.ones((1, 5), bool), n_iter=2, backend="numpy")
    np.testing.assert_array_equal(ends, [[0, 0, 0, 0, 0], [0, 0, 0, 1, 2]])


# --------------------------------------------------------------------------- clustering
def test_labels_from_endpoints_clusters_threshold_and_radius():
    mask = np.zeros((20, 20), bool)
    mask[:, :10] = True  # 200 pixels
    n = int(mask.sum())
    ends = np.zeros((2, n), np.float32)
    ends[:, :100] = np.array([[5.0], [5.0]])  # cluster A: 100 endpoints at (5, 5)
    ends[:, 100:192] = np.array([[15.2], [4.8]])  # cluster B: 92 endpoints near (15, 5)
    ends[:, 192:194] = np.array([[17.0], [8.0]])  # 2.2 px from the nearest seed bin of B: beyond the radius
    ends[:, 194:197] = np.array([[10.0], [15.0]])  # 3 lone endpoints: below the seed threshold
    ends[:, 197:] = np.array([[5.0], [9.0]])  # 4 px from A's seed: beyond the radius
    lab = labels_from_endpoints(ends, mask, min_seed_count=4, seed_radius_px=2.0)
    flat = lab[mask]
    assert lab.dtype == np.uint32 and set(np.unique(lab)) == {0, 1, 2}
    assert np.all(flat[:100] == flat[0]) and np.all(flat[100:192] == flat[100]) and flat[0] != flat[100]
    assert np.all(flat[192:] == 0)
    assert not lab[~mask].any()
    # a larger radius lets the near stragglers join their seeds; the lone ones stay out
    lab = labels_from_endpoints(ends, mask, min_seed_count=4, seed_radius_px=4.5)
    flat = lab[mask]
    assert np.all(flat[197:] == flat[0]) and np.all(flat[192:194] == flat[100]) and np.all(flat[194:197] == 0)
    # a higher threshold leaves only cluster A
    lab = labels_from_endpoints(ends, mask, min_seed_count=95, seed_radius_px=2.0)
    assert lab.max() == 1 and np.all(lab[mask][:100] == 1) and not lab[mask][100:].any()


def test_labels_from_endpoints_tied_maxima_are_one_seed():
    mask = np.ones((10, 10), bool)
    ends = np.empty((2, 100), np.float32)
    ends[:, :50] = [[4.0], [4.0]]
    ends[:, 50:] = [[4.0], [6.0]]  # a 2-cycle: equal counts two bins apart
    lab = labels_from_endpoints(ends, mask, min_seed_count=4, seed_radius_px=2.0)
    assert lab.max() == 1 and lab.all()


def test_defaults_scale_with_smallest_object():
    assert default_min_seed_count(8) == 4 and default_min_seed_count(0) == 3 and default_min_seed_count(100) == 50
    assert default_seed_radius_px(8) == 2.0
    assert default_seed_radius_px(314) == pytest.approx(np.sqrt(314 / np.pi))


def test_default_n_iter():
    disc = np.zeros((60, 60), bool)
    disc[disk((30, 30), 12.5)] = True
    assert default_n_iter(disc) == 50  # bounding box 25 x 25
    assert default_n_iter(disc, step_px=2.0) == 25
    rod = np.zeros((20, 200), bool)
    rod[8:12, 10:190] = True  # 4 x 180: capped at 16 x inscribed radius (2 px)
    assert default_n_iter(rod) == 32
    assert default_n_iter(rod, max_diameter_px=180) == 180
    assert default_n_iter(np.zeros((5, 5), bool)) == 10


# --------------------------------------------------------------------------- validation
def test_validate_flows_names_shapes():
    with pytest.raises(ValueError, match=r"\(2, 5\)"):
        _validate_flows(np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"\(3, 4, 4\)"):
        _validate_flows(np.zeros((3, 4, 4)))
    with pytest.raises(ValueError, match=r"mask has shape \(4, 5\).*\(2, 4, 4\)"):
        _validate_flows(np.zeros((2, 4, 4)), np.ones((4, 5), bool))
    with pytest.raises(ValueError, match="NaN"):
        _validate_flows(np.full((2, 3, 3), np.inf))
    with pytest.raises(TypeError, match="dtype"):
        _validate_flows(np.zeros((2, 3, 3), complex))
    flows, mask = _validate_flows(np.zeros((2, 3, 3), np.float64), np.eye(3, dtype=int))
    assert flows.dtype == np.float32 and flows.flags.c_contiguous and mask.dtype == bool


def test_follow_flows_argument_errors():
    flows = np.zeros((2, 4, 4), np.float32)
    with pytest.raises(ValueError, match="n_iter"):
        follow_flows(flows, n_iter=-1)
    with pytest.raises(TypeError, match="n_iter"):
        follow_flows(flows, n_iter=2.5)
    with pytest.raises(ValueError, match="step_px"):
        follow_flows(flows, n_iter=1, step_px=0)
    with pytest.raises(ValueError, match=r"starts must have shape \(2, N\)"):
        follow_flows(flows, n_iter=1, starts=np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"endpoints_yx must have shape \(2, 16\)"):
        labels_from_endpoints(np.zeros((2, 3)), np.ones((4, 4), bool))


# --------------------------------------------------------------------------- back-end dispatch
def test_resolve_backend():
    assert resolve_backend("numpy") == "numpy"
    assert resolve_backend("auto") in available_backends()
    assert resolve_backend("AUTO") == resolve_backend("auto")
    with pytest.raises(ValueError, match="unknown backend 'opencl'"):
        resolve_backend("opencl")
    for name in BACKENDS:
        if name not in available_backends():
            with pytest.raises(ValueError, match="not available"):
                resolve_backend(name)


def test_kernel_table_built_once_and_complete():
    table = get_kernels("numpy")
    assert table is get_kernels("numpy")
    assert table.backend == "numpy" and "follow_flows" in table.names
    assert table["follow_flows"] is table.follow_flows
    with pytest.raises(AttributeError, match="no kernel"):
        table.not_a_kernel
    # every registered kernel has a NumPy reference
    for name, by_backend in _backend._BUILDERS.items():
        assert "numpy" in by_backend, name
        assert set(by_backend) <= set(BACKENDS)
