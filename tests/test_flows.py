"""Tests for micrometry.segment.flows: flow targets and their inverse, on shapes with known centres."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from skimage.draw import disk, ellipse

from micrometry.segment.flows import LABEL_DTYPE, flow_error, flows_to_labels, labels_to_flows, remove_flow_errors


# --------------------------------------------------------------------------- shapes
def discs(shape=(128, 128), spec=((30, 30, 12), (30, 90, 8), (90, 40, 15), (95, 100, 10), (60, 64, 5))):
    lab = np.zeros(shape, np.int32)
    for i, (y, x, r) in enumerate(spec, start=1):
        lab[disk((y, x), r, shape=shape)] = i
    return lab


def ellipses(shape=(128, 128)):
    lab = np.zeros(shape, np.int32)
    lab[ellipse(35, 35, 25, 9, shape=shape, rotation=0.5)] = 1
    lab[ellipse(90, 90, 12, 28, shape=shape, rotation=-0.3)] = 2
    lab[ellipse(95, 25, 6, 14, shape=shape)] = 3
    return lab


def touching_discs(shape=(96, 128)):
    """Three discs whose overlaps are split along the bisectors (each piece convex)."""
    centres = np.array([(48.0, 30.0), (48.0, 60.0), (40.0, 92.0)])
    radii = np.array([17.0, 15.0, 18.0])
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    d2 = (yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2
    power = np.where(d2 <= radii[:, None, None] ** 2, d2 - radii[:, None, None] ** 2, np.inf)
    lab = (np.argmin(power, axis=0) + 1).astype(np.int32)
    lab[np.isinf(power.min(axis=0))] = 0
    return lab


def l_shape(shape=(64, 64)):
    lab = np.zeros(shape, np.int32)
    lab[10:50, 10:22] = 1
    lab[38:50, 10:50] = 1
    return lab


def c_shape(shape=(64, 64), centre=(32, 32), r_in=10, r_out=18, gap_deg=90):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    r = np.hypot(yy - centre[0], xx - centre[1])
    angle = np.degrees(np.arctan2(yy - centre[0], xx - centre[1]))
    return ((r >= r_in) & (r <= r_out) & (np.abs(angle) > gap_deg / 2)).astype(np.int32)


SHAPES = {"discs": discs, "ellipses": ellipses, "touching_discs": touching_discs, "l_shape": l_shape, "c_shape": c_shape}


def assert_equivalent_labeling(a: np.ndarray, b: np.ndarray) -> None:
    """Same partition of the pixels, up to renaming the ids (0 stays 0)."""
    assert a.shape == b.shape
    assert np.array_equal(a == 0, b == 0), "different foreground"
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]]), axis=1)
    assert len(np.unique(pairs[0])) == pairs.shape[1], "an object of the first labeling is split"
    assert len(np.unique(pairs[1])) == pairs.shape[1], "objects of the first labeling are merged"


def iou_per_object(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    out = []
    for t in np.unique(truth[truth > 0]):
        tm = truth == t
        ids, counts = np.unique(pred[tm], return_counts=True)
        best = ids[np.argmax(np.where(ids > 0, counts, -1))]
        pm = pred == best
        out.append((tm & pm).sum() / (tm | pm).sum() if best > 0 else 0.0)
    return np.asarray(out)


# --------------------------------------------------------------------------- targets
@pytest.mark.parametrize("name", sorted(SHAPES))
def test_flows_unit_inside_zero_outside(name):
    lab = SHAPES[name]()
    flows, distance = labels_to_flows(lab)
    assert flows.shape == (2, *lab.shape) and flows.dtype == np.float32
    assert distance.shape == lab.shape and distance.dtype == np.float32
    norm = np.hypot(flows[0], flows[1])
    assert np.all(norm[lab == 0] == 0) and np.all(distance[lab == 0] == 0)
    inside = norm[lab > 0]
    # unit everywhere inside, except possibly one centre pixel per object (zero there)
    not_unit = np.abs(inside - 1) > 1e-5
    assert not_unit.sum() <= lab.max()
    assert np.all(inside[not_unit] == 0)
    # distance: per-object maximum exactly 1, values in (0, 1]
    for i in np.unique(lab[lab > 0]):
        d = distance[lab == i]
        assert d.max() == 1.0 and d.min() > 0


def test_disc_flows_point_to_its_centre():
    lab = np.zeros((41, 41), np.int32)
    lab[disk((20, 20), 9.5)] = 7  # symmetric about (20, 20)
    flows, distance = labels_to_flows(lab)
    ys, xs = np.nonzero(lab)
    away = (ys != 20) | (xs != 20)
    expected = np.stack([20 - ys, 20 - xs]).astype(float)
    expected[:, away] /= np.hypot(*expected[:, away])
    np.testing.assert_allclose(flows[:, ys, xs], expected, atol=1e-6)
    assert np.all(flows[:, 20, 20] == 0)
    # distance transform by brute force: distance to the nearest outside pixel
    oy, ox = np.nonzero(lab == 0)
    r_centre = np.hypot(oy - 20, ox - 20).min()  # 9.85 px for this digital disc
    assert distance[20, 20] == 1.0
    assert distance[20, 29] == pytest.approx(1 / r_centre, rel=1e-6)  # rim pixel: 1 px from the outside


def test_even_sized_disc_centre_is_its_centroid():
    lab = np.zeros((30, 30), np.int32)
    yy, xx = np.mgrid[:30, :30]
    lab[np.hypot(yy - 14.5, xx - 14.5) < 8] = 1  # centre between pixels
    flows, _ = labels_to_flows(lab)
    ys, xs = np.nonzero(lab)
    expected = np.stack([14.5 - ys, 14.5 - xs])
    expected /= np.hypot(*expected)
    np.testing.assert_allclose(flows[:, ys, xs], expected, atol=1e-6)


def test_touching_objects_get_separate_targets():
    lab = np.zeros((20, 40), np.int32)
    lab[5:15, 5:20] = 1
    lab[5:15, 20:35] = 2  # shares an edge with 1
    flows, distance = labels_to_flows(lab)
    # at the shared edge, the flows point away from each other, towards each own centre
    assert np.all(flows[1, 6:14, 19] < 0) and np.all(flows[1, 6:14, 20] > 0)
    # distance treats the other object as outside
    assert distance[10, 19] == pytest.approx(1 / 5) and distance[10, 20] == pytest.approx(1 / 5)


@pytest.mark.parametrize("name", ["l_shape", "c_shape"])
def test_non_convex_flows_lead_inside_to_one_point(name):
    from micrometry.segment.tracking import follow_flows

    lab = SHAPES[name]()
    flows, _ = labels_to_flows(lab)
    ends = follow_flows(flows, lab > 0, n_iter=300, backend="numpy")
    iy, ix = np.rint(ends).astype(int)
    assert np.all(lab[iy, ix] == 1), "a pixel's path ended outside the object"
    assert np.ptp(ends, axis=1).max() <= 2.0  # all pixels meet at the centre


def test_non_consecutive_ids_and_empty():
    lab = discs()
    lab[lab == 2] = 40
    lab[lab == 4] = 0
    flows, distance = labels_to_flows(lab)
    assert np.all(np.hypot(*flows)[lab == 0] == 0)
    assert np.all(distance[lab == 40] > 0)
    f0, d0 = labels_to_flows(np.zeros((7, 9), np.uint16))
    assert f0.shape == (2, 7, 9) and not f0.any() and not d0.any()


def test_disconnected_object_keeps_straight_flows_in_its_far_part():
    lab = np.zeros((30, 60), np.int32)
    lab[5:25, 5:25] = 1
    lab[10:16, 45:55] = 1  # a second, disconnected part with the same id
    flows, distance = labels_to_flows(lab)
    norm = np.hypot(*flows)[lab > 0]
    assert np.all((np.abs(norm - 1) < 1e-5) | (norm == 0))
    assert np.all(flows[1, 10:16, 45:55] < 0)  # the far part points back towards the main part
    assert distance[lab > 0].max() == 1.0


def test_object_on_image_border():
    lab = np.zeros((20, 20), np.int32)
    lab[0:6, 0:20] = 1  # the image border counts as outside
    flows, distance = labels_to_flows(lab)
    assert distance[0, 10] == pytest.approx(1 / 3)
    assert flows[0, 0, 10] > 0  # points down, into the object


# --------------------------------------------------------------------------- inverse
@pytest.mark.parametrize("backend", ["numpy", "auto"])
def test_n_discs_give_n_labels(backend):
    lab = discs()
    flows, _ = labels_to_flows(lab)
    out = flows_to_labels(flows, lab > 0, backend=backend)
    assert out.dtype == LABEL_DTYPE
    assert out.max() == lab.max() == 5
    assert np.array_equal(np.unique(out), np.arange(6))
    assert iou_per_object(lab, out).min() > 0.95


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_round_trip(name):
    lab = SHAPES[name]()
    flows, _ = labels_to_flows(lab)
    out = flows_to_labels(flows, lab > 0, backend="numpy", min_area_px=8)
    assert_equivalent_labeling(lab, out)


def test_round_trip_relabels_consecutively_and_filters_by_size():
    lab = discs()
    flows, _ = labels_to_flows(lab)
    area = np.bincount(lab.ravel())
    out = flows_to_labels(flows, lab > 0, backend="numpy", min_area_px=int(area[5]) + 1)  # disc 5 is the smallest
    assert out.max() == 4 and not out[lab == 5].any()
    out = flows_to_labels(flows, lab > 0, backend="numpy", max_area_px=int(area[3]) - 1)  # disc 3 is the largest
    assert out.max() == 4 and not out[lab == 3].any()


def test_flow_error_known_values():
    lab = np.zeros((40, 40), np.int32)
    lab[4:14, 4:14] = 1  # even-sized squares: centres between pixels, every flow is unit
    lab[20:30, 20:30] = 2
    flows, _ = labels_to_flows(lab)
    np.testing.assert_allclose(flow_error(lab, flows), [0.0, 0.0], atol=1e-10)
    reversed_2 = flows.copy()
    reversed_2[:, lab == 2] *= -1
    np.testing.assert_allclose(flow_error(lab, reversed_2), [0.0, 4.0], atol=1e-6)
    assert flow_error(np.zeros((5, 5), int), np.zeros((2, 5, 5))).shape == (0,)


def test_flow_error_qc_drops_inconsistent_object():
    lab = discs()
    flows, _ = labels_to_flows(lab)
    # rotate disc 3's flows by 60 degrees: they still spiral into its centre,
    # but each vector is off by |u - R u|^2 = 2 - 2 cos 60 = 1
    c, s = np.cos(np.pi / 3), np.sin(np.pi / 3)
    m = lab == 3
    fy, fx = flows[0, m].copy(), flows[1, m].copy()
    flows[0, m], flows[1, m] = c * fy - s * fx, s * fy + c * fx
    kept = flows_to_labels(flows, lab > 0, backend="numpy")
    assert kept.max() == 5
    err = flow_error(kept, flows)
    assert err.max() > 0.5 and np.sort(err)[-2] < 0.05
    qc = flows_to_labels(flows, lab > 0, backend="numpy", flow_error_max=0.4)
    assert qc.max() == 4 and not qc[m].any()


def test_remove_flow_errors_keeps_order_and_inputs():
    lab = touching_discs()
    flows, _ = labels_to_flows(lab)
    m = lab == 2
    flows[:, m] *= -1  # reversed flows: error 4
    lab_copy = lab.copy()
    out = remove_flow_errors(lab, flows, 0.4)
    assert np.array_equal(lab, lab_copy) and out.dtype == np.uint32
    assert not out[m].any() and out.max() == lab.max() - 1
    assert np.array_equal(out > 0, (lab > 0) & ~m)
    assert np.array_equal(remove_flow_errors(lab, flows, 5.0) > 0, lab > 0)
    assert not remove_flow_errors(np.zeros((5, 5), int), np.zeros((2, 5, 5), np.float32), 0.4).any()
    with pytest.raises(ValueError, match="flow_error_max"):
        remove_flow_errors(lab, flows, float("nan"))


def test_inputs_not_modified():
    lab = touching_discs()
    lab_copy = lab.copy()
    flows, _ = labels_to_flows(lab)
    assert np.array_equal(lab, lab_copy)
    fg = lab > 0
    flows_copy, fg_copy = flows.copy(), fg.copy()
    flows_to_labels(flows, fg, backend="numpy", flow_error_max=1.0)
    assert np.array_equal(flows, flows_copy) and np.array_equal(fg, fg_copy)


def test_flows_outside_foreground_are_ignored():
    lab = discs()
    flows, _ = labels_to_flows(lab)
    noisy = flows + np.where(lab > 0, 0, 1).astype(np.float32)  # garbage outside
    out = flows_to_labels(noisy, lab > 0, backend="numpy")
    assert_equivalent_labeling(lab, out)


# --------------------------------------------------------------------------- validation
def test_validation_errors_name_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 5\)"):
        labels_to_flows(np.zeros((2, 3, 4, 5), int))
    with pytest.raises(TypeError, match="integer"):
        labels_to_flows(np.zeros((4, 4), float))
    with pytest.raises(ValueError, match="non-negative"):
        labels_to_flows(-np.ones((4, 4), int))
    with pytest.raises(ValueError, match=r"\(3, 16, 16\)"):
        flows_to_labels(np.zeros((3, 16, 16)), np.ones((16, 16), bool))
    with pytest.raises(ValueError, match=r"\(16, 15\).*\(2, 16, 16\)"):
        flows_to_labels(np.zeros((2, 16, 16)), np.ones((16, 15), bool))
    with pytest.raises(ValueError, match="NaN"):
        flows_to_labels(np.full((2, 4, 4), np.nan), np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="flow_error_max"):
        lab = discs()
        flows_to_labels(labels_to_flows(lab)[0], lab > 0, backend="numpy", flow_error_max=-1)


def test_import_does_not_load_torch_cupy_or_numba():
    code = (
        "import sys, micrometry, micrometry.segment.flows, micrometry.segment.tracking, micrometry._backend;"
        "print(sorted(m for m in ('torch', 'cupy', 'numba') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
