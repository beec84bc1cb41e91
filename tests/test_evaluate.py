"""Tests for micrometry.evaluate: IoU matrix, Hungarian matching, AP_cp, files."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from micrometry.evaluate import (
    average_precision,
    evaluate_paths,
    find_label_samples,
    iou_matrix,
    match_instances,
)


def _rect(shape, boxes):
    """Label image with box k (y0, y1, x0, x1) given label k+1 (later boxes overwrite)."""
    out = np.zeros(shape, np.int32)
    for k, (y0, y1, x0, x1) in enumerate(boxes):
        out[y0:y1, x0:x1] = k + 1
    return out


# ---------------------------------------------------------------- iou_matrix


def test_iou_matrix_known_values_noncontiguous_ids():
    gt = np.zeros((10, 30), np.uint16)
    gt[:, 0:10] = 4
    gt[:, 20:30] = 9
    pred = np.zeros((10, 30), np.int64)
    pred[:, 5:15] = 100  # 50 px overlap with gt 4; union 150
    pred[:, 20:30] = 2
    iou = iou_matrix(gt, pred)
    # rows: gt ids (4, 9); cols: pred ids (2, 100)
    np.testing.assert_allclose(iou, [[0.0, 50 / 150], [1.0, 0.0]])
    sp = iou_matrix(gt, pred, sparse=True)
    np.testing.assert_allclose(sp.toarray(), iou)
    assert sp.nnz == 2


def test_iou_matrix_matches_direct_computation():
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 6, (20, 20))
    pred = rng.integers(0, 5, (20, 20)) * 7
    iou = iou_matrix(gt, pred)
    for i, g in enumerate(range(1, 6)):
        for j, p in enumerate(range(7, 35, 7)):
            a, b = gt == g, pred == p
            assert iou[i, j] == pytest.approx((a & b).sum() / (a | b).sum())


def test_iou_matrix_huge_label_ids_and_empty():
    gt = np.zeros((4, 4), np.uint32)
    gt[:2] = 4_000_000_000
    pred = gt.copy()
    np.testing.assert_allclose(iou_matrix(gt, pred), [[1.0]])
    assert iou_matrix(np.zeros((3, 3), int), gt[:3, :3]).shape == (0, 1)


@pytest.mark.parametrize(
    "gt, pred, exc, msg",
    [
        (np.zeros((3, 3), int), np.zeros((3, 4), int), ValueError, r"\(3, 3\) vs \(3, 4\)"),
        (np.zeros((3, 3)), np.zeros((3, 3), int), TypeError, "gt labels must be an integer"),
        (np.zeros((3, 3), int), -np.ones((3, 3), int), ValueError, "pred labels must be >= 0"),
    ],
)
def test_iou_matrix_errors(gt, pred, exc, msg):
    with pytest.raises(exc, match=msg):
        iou_matrix(gt, pred)


def test_inputs_not_modified():
    gt = _rect((20, 20), [(0, 5, 0, 5), (10, 15, 10, 15)])
    pred = _rect((20, 20), [(1, 6, 0, 5)])
    g0, p0 = gt.copy(), pred.copy()
    match_instances(gt, pred)
    np.testing.assert_array_equal(gt, g0)
    np.testing.assert_array_equal(pred, p0)


# ---------------------------------------------------------------- match_instances


def test_identical_scores_one_even_relabelled():
    gt = _rect((40, 40), [(0, 10, 0, 10), (15, 30, 2, 8), (20, 40, 20, 40)])
    pred = np.where(gt > 0, 50 - gt, 0)  # same objects, other ids
    m = match_instances(gt, pred)
    assert m["n_gt"] == m["n_pred"] == 3
    assert m["tp"] == {0.5: 3, 0.75: 3, 0.9: 3}
    assert m["fp"] == m["fn"] == {0.5: 0, 0.75: 0, 0.9: 0}
    np.testing.assert_allclose(m["matched_iou"], 1.0)
    assert {tuple(r) for r in m["matches"][0.5]} == {(1, 49), (2, 48), (3, 47)}
    r = average_precision([gt], [pred])
    assert r["ap"] == {0.5: 1.0, 0.75: 1.0, 0.9: 1.0}
    assert r["f1@0.5"] == 1.0 and r["mean_matched_iou"] == 1.0


def test_shift_to_iou_0_6():
    gt = _rect((20, 40), [(5, 15, 0, 20)])
    pred = _rect((20, 40), [(5, 15, 5, 25)])  # overlap 15 cols, union 25 -> 0.6
    m = match_instances(gt, pred)
    np.testing.assert_allclose(m["matched_iou"], [0.6])
    assert m["tp"] == {0.5: 1, 0.75: 0, 0.9: 0}
    assert m["fp"] == {0.5: 0, 0.75: 1, 0.9: 1}
    assert m["fn"] == {0.5: 0, 0.75: 1, 0.9: 1}
    r = average_precision([gt], [pred])
    assert r["ap"] == {0.5: 1.0, 0.75: 0.0, 0.9: 0.0}


def test_split_object_matches_at_most_once():
    gt = _rect((10, 20), [(0, 10, 0, 20)])
    pred = _rect((10, 20), [(0, 10, 0, 10), (0, 10, 10, 20)])  # each half IoU exactly 0.5
    np.testing.assert_allclose(iou_matrix(gt, pred), [[0.5, 0.5]])
    m = match_instances(gt, pred)
    assert m["tp"][0.5] == 1 and m["fp"][0.5] == 1 and m["fn"][0.5] == 0
    assert m["tp"][0.75] == 0 and m["fp"][0.75] == 2 and m["fn"][0.75] == 1
    assert average_precision([gt], [pred])["ap"][0.5] == pytest.approx(0.5)


def test_merged_prediction_matches_at_most_once():
    gt = _rect((10, 30), [(0, 10, 0, 10), (0, 10, 10, 30)])
    pred = _rect((10, 30), [(0, 10, 0, 30)])  # IoUs 1/3 and 2/3
    m = match_instances(gt, pred, thresholds=(0.3, 0.5))
    assert m["tp"] == {0.3: 1, 0.5: 1}
    assert m["matches"][0.3].tolist() == [[2, 1]]  # tie-break: the larger IoU


def test_empty_prediction_and_empty_image():
    gt = _rect((10, 10), [(0, 5, 0, 5)])
    empty = np.zeros((10, 10), np.uint8)
    m = match_instances(gt, empty)
    assert m["tp"][0.5] == 0 and m["fn"][0.5] == 1 and m["fp"][0.5] == 0
    assert m["matched_iou"].shape == (0,)
    r = average_precision([gt], [empty])
    assert r["ap"] == {0.5: 0.0, 0.75: 0.0, 0.9: 0.0} and r["f1@0.5"] == 0.0
    assert np.isnan(r["mean_matched_iou"])
    # no GT and no prediction: documented as a perfect score
    r = average_precision([empty], [empty])
    assert r["ap"][0.5] == 1.0 and r["f1@0.5"] == 1.0
    # prediction where there is no GT: zero
    assert average_precision([empty], [gt])["ap"][0.5] == 0.0


def _greedy_tp(iou: np.ndarray, t: float) -> int:
    """Best-IoU-first greedy matching (the method Hungarian must beat)."""
    used_r, used_c, tp = set(), set(), 0
    order = np.dstack(np.unravel_index(np.argsort(-iou, axis=None), iou.shape))[0]
    for r, c in order:
        if iou[r, c] < t:
            break
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            tp += 1
    return tp


def test_hungarian_beats_greedy():
    # 1-D strips 3 px tall: gt1 = [0, 10), gt2 = [10, 20); pred2 = [0, 4), pred1 = [4, 14)
    gt = _rect((3, 20), [(0, 3, 0, 10), (0, 3, 10, 20)])
    pred = _rect((3, 20), [(0, 3, 4, 14), (0, 3, 0, 4)])
    iou = iou_matrix(gt, pred)
    np.testing.assert_allclose(iou, [[6 / 14, 4 / 10], [4 / 16, 0.0]])
    t = 0.2
    assert _greedy_tp(iou, t) == 1  # greedy takes gt1-pred1 (0.43) and strands gt2
    m = match_instances(gt, pred, thresholds=(t,))
    assert m["tp"][t] == 2
    assert {tuple(r) for r in m["matches"][t]} == {(1, 2), (2, 1)}


def test_more_pairs_beat_larger_iou_sum():
    # gt1 = [0, 100), gt2 = [100, 110); pred2 = [0, 20), pred1 = [20, 110)
    gt = _rect((2, 110), [(0, 2, 0, 100), (0, 2, 100, 110)])
    pred = _rect((2, 110), [(0, 2, 20, 110), (0, 2, 0, 20)])
    iou = iou_matrix(gt, pred)
    np.testing.assert_allclose(iou, [[80 / 110, 20 / 100], [10 / 90, 0.0]])
    # one pair of IoU 0.73 outweighs two of 0.2 + 0.11 by IoU sum, not by count
    m = match_instances(gt, pred, thresholds=(0.1,))
    assert m["tp"][0.1] == 2
    assert _greedy_tp(iou, 0.1) == 1


def _brute_force(iou: np.ndarray, t: float) -> tuple[int, float]:
    """Max number of one-to-one pairs with IoU >= t, then max IoU sum (exhaustive)."""
    n_gt, n_pred = iou.shape
    best = (0, 0.0)
    cols = list(range(n_pred)) + [None] * n_gt
    for perm in itertools.permutations(cols, n_gt):
        pairs = [(r, c) for r, c in enumerate(perm) if c is not None and iou[r, c] >= t]
        score = (len(pairs), sum(iou[r, c] for r, c in pairs))
        if score[0] > best[0] or (score[0] == best[0] and score[1] > best[1] + 1e-12):
            best = score
    return best


def _random_labels(rng, shape, n):
    out = np.zeros(shape, np.int32)
    for k in range(n):
        y, x = rng.integers(0, shape[0] - 2), rng.integers(0, shape[1] - 2)
        h, w = rng.integers(2, 8, size=2)
        out[y : y + h, x : x + w] = rng.integers(1, 50) if k else k + 1
    return out


@pytest.mark.parametrize("seed", range(12))
def test_matches_brute_force_on_random_images(seed):
    rng = np.random.default_rng(seed)
    gt = _random_labels(rng, (14, 14), int(rng.integers(1, 6)))
    pred = _random_labels(rng, (14, 14), int(rng.integers(1, 6)))
    iou = iou_matrix(gt, pred)
    thresholds = (0.1, 0.25, 0.5, 0.75)
    m = match_instances(gt, pred, thresholds=thresholds)
    gt_ids = np.unique(gt[gt > 0])
    pred_ids = np.unique(pred[pred > 0])
    for t in thresholds:
        n, s = _brute_force(iou, t)
        assert m["tp"][t] == n, (seed, t)
        pairs = m["matches"][t]
        assert len({g for g, _ in pairs}) == len(pairs) == len({p for _, p in pairs})
        got = sum(iou[np.searchsorted(gt_ids, g), np.searchsorted(pred_ids, p)] for g, p in pairs)
        assert got == pytest.approx(s)
        assert m["fp"][t] == len(pred_ids) - n and m["fn"][t] == len(gt_ids) - n


def test_many_objects_fast_path_consistent():
    # a grid of 400 squares, prediction shifted by one pixel: every IoU = 6*7/(2*49-42) = 0.75
    gt = np.zeros((200, 200), np.int32)
    for k, (i, j) in enumerate(itertools.product(range(20), range(20))):
        gt[10 * i : 10 * i + 7, 10 * j : 10 * j + 7] = k + 1
    pred = np.roll(gt, 1, axis=1)
    m = match_instances(gt, pred, thresholds=(0.5, 0.75, 0.9))
    assert m["tp"] == {0.5: 400, 0.75: 400, 0.9: 0}
    np.testing.assert_allclose(m["matched_iou"], 0.75)


@pytest.mark.parametrize("bad", [(), (0.0,), (1.5,), (-0.1, 0.5)])
def test_bad_thresholds(bad):
    gt = np.zeros((3, 3), int)
    with pytest.raises(ValueError, match="threshold"):
        match_instances(gt, gt, thresholds=bad)


# ---------------------------------------------------------------- average_precision


def test_average_is_over_images_not_pooled():
    a = _rect((10, 40), [(0, 10, 0, 10)])
    # image 2: 1 GT, 1 matched + 2 false positives -> AP 1/3 ; image 1 perfect -> mean 2/3
    b_gt = _rect((10, 40), [(0, 10, 0, 10)])
    b_pred = _rect((10, 40), [(0, 10, 0, 10), (0, 10, 20, 25), (0, 10, 30, 35)])
    r = average_precision([a, b_gt], [a, b_pred], thresholds=(0.5,))
    assert r["ap"][0.5] == pytest.approx((1 + 1 / 3) / 2)
    assert r["tp"][0.5] == 2 and r["fp"][0.5] == 2 and r["fn"][0.5] == 0
    pooled = 2 / (2 + 2)
    assert r["ap"][0.5] != pytest.approx(pooled)
    assert r["f1@0.5"] == pytest.approx((1 + 2 / 4) / 2)
    assert r["n_images"] == 2 and r["n_gt"] == 2 and r["n_pred"] == 4
    assert [p["ap"][0.5] for p in r["per_image"]] == pytest.approx([1.0, 1 / 3])


def test_mean_matched_iou_pools_pairs():
    g1 = _rect((20, 40), [(5, 15, 0, 20)])
    p1 = _rect((20, 40), [(5, 15, 5, 25)])  # 0.6
    g2 = _rect((10, 10), [(0, 5, 0, 5), (5, 10, 5, 10)])
    r = average_precision([g1, g2], [p1, g2])  # pairs: 0.6, 1.0, 1.0
    assert r["mean_matched_iou"] == pytest.approx((0.6 + 2) / 3)


def test_average_precision_errors():
    with pytest.raises(ValueError, match="2 ground-truth images but 1"):
        average_precision([np.zeros((2, 2), int)] * 2, [np.zeros((2, 2), int)])
    with pytest.raises(ValueError, match="no images"):
        average_precision([], [])
    with pytest.raises(ValueError, match="image 1"):
        average_precision([np.zeros((2, 2), int)] * 2, [np.zeros((2, 2), int), np.zeros((3, 2), int)])


def test_import_does_not_load_torch():
    code = "import sys, micrometry.evaluate; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- files


@pytest.fixture
def label_pair():
    gt = _rect((24, 32), [(0, 10, 0, 10), (12, 24, 12, 30)])
    pred = _rect((24, 32), [(0, 10, 0, 10), (12, 24, 12, 20)])  # second: 8*12 / 18*12 = 0.444
    return gt, pred


def test_evaluate_folders_of_png_and_tiff(tmp_path, label_pair):
    gt, pred = label_pair
    (tmp_path / "gt" / "plate1").mkdir(parents=True)
    (tmp_path / "pred" / "plate1").mkdir(parents=True)
    Image.fromarray(gt.astype(np.uint16)).save(tmp_path / "gt" / "plate1" / "a.png")
    Image.fromarray(gt.astype(np.uint8)).save(tmp_path / "gt" / "b.png")
    tifffile.imwrite(tmp_path / "pred" / "plate1" / "a.tif", pred.astype(np.uint32))
    tifffile.imwrite(tmp_path / "pred" / "b.ome.tif", gt.astype(np.uint16))
    (tmp_path / "pred" / "notes.txt").write_text("ignored")
    assert set(find_label_samples(tmp_path / "pred")) == {"plate1/a", "b"}
    r = evaluate_paths(tmp_path / "gt", tmp_path / "pred", thresholds=(0.5,))
    assert r["samples"] == ["b", "plate1/a"]
    assert [p["sample"] for p in r["per_image"]] == ["b", "plate1/a"]
    assert r["ap"][0.5] == pytest.approx((1.0 + 1 / 3) / 2)
    assert r["missing_pred"] == [] and r["missing_gt"] == []


def test_evaluate_single_files_pair_whatever_names(tmp_path, label_pair):
    gt, pred = label_pair
    Image.fromarray(gt.astype(np.uint8)).save(tmp_path / "truth.png")
    Image.fromarray(pred.astype(np.uint8)).save(tmp_path / "guess.png")
    r = evaluate_paths(tmp_path / "truth.png", tmp_path / "guess.png", thresholds=(0.5,))
    assert r["n_images"] == 1 and r["tp"][0.5] == 1 and r["fn"][0.5] == 1


def test_evaluate_omezarr_stores(tmp_path, label_pair):
    from micrometry.io.omezarr import write_image_store, write_labels

    gt, pred = label_pair
    for side, lab in (("gt", gt), ("pred", pred)):
        store = tmp_path / side / "s1.ome.zarr"
        write_image_store(store, np.zeros(gt.shape, np.uint8), attrs={})
        write_labels(store, lab.astype(np.uint32))
    r = evaluate_paths(tmp_path / "gt", tmp_path / "pred", thresholds=(0.5,))
    assert r["samples"] == ["s1"] and r["tp"][0.5] == 1 and r["fp"][0.5] == 1
    # a store as GT, a PNG as prediction
    Image.fromarray(pred.astype(np.uint8)).save(tmp_path / "p.png")
    r2 = evaluate_paths(tmp_path / "gt" / "s1.ome.zarr", tmp_path / "p.png", thresholds=(0.5,))
    assert r2["ap"] == r["ap"]
    # a store without labels: clear message
    bare = tmp_path / "bare" / "s1.ome.zarr"
    write_image_store(bare, np.zeros(gt.shape, np.uint8), attrs={})
    with pytest.raises(ValueError, match="no labels named 'instances'"):
        evaluate_paths(tmp_path / "gt", tmp_path / "bare")


def test_evaluate_missing_pairs(tmp_path, label_pair):
    gt, pred = label_pair
    for d in ("gt", "pred"):
        (tmp_path / d).mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray(gt.astype(np.uint8)).save(tmp_path / "gt" / f"{name}.png")
    Image.fromarray(gt.astype(np.uint8)).save(tmp_path / "pred" / "a.png")
    Image.fromarray(pred.astype(np.uint8)).save(tmp_path / "pred" / "z.png")
    with pytest.raises(ValueError, match=r"2 ground-truth sample\(s\).*: b, c"):
        evaluate_paths(tmp_path / "gt", tmp_path / "pred")
    with pytest.warns(UserWarning, match="without prediction"):
        r = evaluate_paths(tmp_path / "gt", tmp_path / "pred", missing="skip")
    assert r["samples"] == ["a"] and r["ap"][0.5] == 1.0
    assert r["missing_pred"] == ["b", "c"] and r["missing_gt"] == ["z"]
    with pytest.warns(UserWarning):
        r = evaluate_paths(tmp_path / "gt", tmp_path / "pred", missing="empty")
    assert r["samples"] == ["a", "b", "c"] and r["ap"][0.5] == pytest.approx(1 / 3)
    (tmp_path / "other").mkdir()
    Image.fromarray(gt.astype(np.uint8)).save(tmp_path / "other" / "q.png")
    with pytest.raises(ValueError, match="no sample appears in both"):
        evaluate_paths(tmp_path / "other", tmp_path / "pred", missing="skip")


def test_evaluate_bad_inputs(tmp_path, label_pair):
    gt, _ = label_pair
    with pytest.raises(FileNotFoundError, match="nowhere"):
        evaluate_paths(tmp_path / "nowhere", tmp_path)
    Image.fromarray(np.stack([gt.astype(np.uint8)] * 2 + [gt.astype(np.uint8) * 2], -1)).save(
        tmp_path / "rgb.png"
    )
    Image.fromarray(gt.astype(np.uint8)).save(tmp_path / "g.png")
    with pytest.raises(ValueError, match="rgb.png.*colour"):
        evaluate_paths(tmp_path / "g.png", tmp_path / "rgb.png")
    Image.fromarray(gt[:10].astype(np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match="small.png' has shape"):
        evaluate_paths(tmp_path / "g.png", tmp_path / "small.png")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(ValueError, match="no label images"):
        evaluate_paths(tmp_path / "emptydir", tmp_path / "g.png")
    with pytest.raises(ValueError, match="missing must be"):
        evaluate_paths(tmp_path / "g.png", tmp_path / "g.png", missing="ignore")
