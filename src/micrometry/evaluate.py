"""Instance-segmentation metrics: IoU matching, AP_cp, F1 and matched IoU.

Conventions follow Cellpose (Stringer et al., Nat. Methods 18 (2021) 100;
``cellpose.metrics``):

* Objects are matched one-to-one per IoU threshold ``t`` with the Hungarian
  algorithm (:func:`scipy.optimize.linear_sum_assignment`), maximising first
  the **number** of pairs with ``IoU >= t`` and, among matchings with that
  many pairs, the sum of their IoUs.  A greedy "best IoU first" matching can
  find fewer pairs when ``t < 0.5``; for ``t > 0.5`` both agree because an
  object can then overlap at most one other object that much.
* ``AP_cp@t = TP / (TP + FP + FN)`` per image, then averaged over images
  (not pooled).  This is Cellpose's "average precision"; it is the
  Jaccard index of the matching, not the area under a precision–recall curve.
* ``F1@0.5 = 2 TP / (2 TP + FP + FN)`` per image, averaged over images.
* An image with no ground-truth objects and no predicted objects scores
  ``1.0`` for both (nothing to find, nothing wrongly found).  An image with
  objects on only one side scores ``0.0``.
* Mean matched IoU: mean IoU over *all* pairs matched at 0.5, pooled over
  images.

Overlaps come from the sparse contingency table of the two label images,
computed in O(pixels) with :func:`numpy.bincount`; there is no loop over
objects.

This module does not import torch.
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "evaluate_method_on_emps",
    "DEFAULT_THRESHOLDS",
    "LABEL_FILE_SUFFIXES",
    "iou_matrix",
    "match_instances",
    "average_precision",
    "evaluate_paths",
    "find_label_samples",
    "load_label_file",
]

#: IoU thresholds reported by default.
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.5, 0.75, 0.9)

#: Label image files recognised by :func:`evaluate_paths` (lower case).
LABEL_FILE_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff")

_STORE_SUFFIXES = (".ome.zarr", ".zarr")
_MATCHED_IOU_T = 0.5


# --------------------------------------------------------------------------
# contingency table


def _check_labels(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    for name, a in (("gt", gt), ("pred", pred)):
        if a.dtype.kind not in "ui":
            raise TypeError(f"{name} labels must be an integer array, got dtype {a.dtype}")
        if a.size and a.dtype.kind == "i" and a.min() < 0:
            raise ValueError(f"{name} labels must be >= 0 (0 = background), found {a.min()}")
    if gt.shape != pred.shape:
        raise ValueError(f"gt and pred label images differ in shape: {gt.shape} vs {pred.shape}")
    return gt.ravel(), pred.ravel()


def _dense_ids(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map labels to 0..n (0 kept as background) -> (index per pixel, label ids)."""
    if flat.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    top = int(flat.max())
    if top <= 4 * flat.size + 1024:  # lookup table, O(pixels + max label)
        present = np.flatnonzero(np.bincount(flat, minlength=top + 1))
        present = present[present > 0]
        lut = np.zeros(top + 1, np.int64)
        lut[present] = np.arange(1, present.size + 1)
        return lut[flat], present.astype(np.int64)
    ids, inverse = np.unique(flat, return_inverse=True)
    if ids[0] != 0:
        return inverse.astype(np.int64) + 1, ids.astype(np.int64)
    return inverse.astype(np.int64), ids[1:].astype(np.int64)


def _overlaps(gt: np.ndarray, pred: np.ndarray) -> dict:
    """Sparse overlap table of two label images.

    Returns a dict with ``gt_ids`` (n_gt,), ``pred_ids`` (n_pred,), ``rows``,
    ``cols`` (K,) indices of overlapping pairs, ``iou`` (K,) float64.
    """
    g, p = _check_labels(gt, pred)
    gi, gt_ids = _dense_ids(g)
    pi, pred_ids = _dense_ids(p)
    n_gt, n_pred = gt_ids.size, pred_ids.size
    area_gt = np.bincount(gi, minlength=n_gt + 1)[1:]
    area_pred = np.bincount(pi, minlength=n_pred + 1)[1:]
    both = (gi > 0) & (pi > 0)
    key = (gi[both] - 1) * np.int64(max(n_pred, 1)) + (pi[both] - 1)
    if n_gt * n_pred <= 1 << 24:
        counts = np.bincount(key, minlength=n_gt * n_pred)
        keys = np.flatnonzero(counts)
        inter = counts[keys]
    else:
        keys, inter = np.unique(key, return_counts=True)
    rows, cols = np.divmod(keys, max(n_pred, 1))
    union = area_gt[rows] + area_pred[cols] - inter
    iou = inter / union
    return {
        "gt_ids": gt_ids,
        "pred_ids": pred_ids,
        "rows": rows.astype(np.int64),
        "cols": cols.astype(np.int64),
        "iou": iou.astype(np.float64),
    }


def iou_matrix(gt: np.ndarray, pred: np.ndarray, *, sparse: bool = False):
    """Intersection over union of every ground-truth / predicted object pair.

    Parameters
    ----------
    gt, pred : (Y, X) ndarray of int
        Instance label images of the same shape (0 = background; ids need not
        be consecutive).
    sparse : bool, optional
        Return a :class:`scipy.sparse.csr_array` holding only overlapping
        pairs instead of a dense array (use it for thousands of objects).

    Returns
    -------
    iou : (n_gt, n_pred) ndarray of float64, or scipy.sparse.csr_array
        Row ``i`` is the ``i``-th smallest non-zero label of `gt`, column
        ``j`` the ``j``-th smallest of `pred`.  Values in [0, 1].

    Raises
    ------
    ValueError, TypeError
        Shapes differ, non-integer dtype or negative labels.

    Examples
    --------
    >>> gt = np.array([[1, 1, 0, 2]])
    >>> pred = np.array([[5, 0, 0, 7]])
    >>> iou_matrix(gt, pred)
    array([[0.5, 0. ],
           [0. , 1. ]])
    """
    ov = _overlaps(gt, pred)
    shape = (ov["gt_ids"].size, ov["pred_ids"].size)
    if sparse:
        from scipy.sparse import csr_array

        return csr_array((ov["iou"], (ov["rows"], ov["cols"])), shape=shape)
    out = np.zeros(shape, np.float64)
    out[ov["rows"], ov["cols"]] = ov["iou"]
    return out


# --------------------------------------------------------------------------
# matching


def _check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    ts = tuple(float(t) for t in np.atleast_1d(np.asarray(thresholds, dtype=np.float64)))
    if not ts:
        raise ValueError("thresholds must not be empty")
    for t in ts:
        if not 0.0 < t <= 1.0:
            raise ValueError(f"IoU thresholds must be in (0, 1], got {t}")
    return ts


def _match_at(rows: np.ndarray, cols: np.ndarray, iou: np.ndarray, t: float) -> np.ndarray:
    """Indices into (rows, cols, iou) of the pairs matched at threshold `t`.

    Maximum-cardinality one-to-one matching among pairs with ``iou >= t``,
    ties broken by the largest IoU sum.  Solved per connected component of
    the candidate graph, so its cost follows the ambiguous pairs, not the
    number of objects.
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_array
    from scipy.sparse.csgraph import connected_components

    cand = np.flatnonzero(iou >= t)
    if cand.size == 0:
        return cand
    r, c = rows[cand], cols[cand]
    # Nodes: gt objects 0..R-1 and predicted objects R..R+C-1 (compressed).
    ur, r_i = np.unique(r, return_inverse=True)
    uc, c_i = np.unique(c, return_inverse=True)
    n_nodes = ur.size + uc.size
    graph = coo_array((np.ones(cand.size), (r_i, ur.size + c_i)), shape=(n_nodes, n_nodes))
    _, comp = connected_components(graph, directed=False)
    edge_comp = comp[r_i]
    sizes = np.bincount(edge_comp)
    simple = sizes[edge_comp] == 1  # a component of one edge: that pair is matched
    chosen = [cand[simple]]
    for k in np.flatnonzero(sizes > 1):
        e = np.flatnonzero(edge_comp == k)
        rr, rinv = np.unique(r_i[e], return_inverse=True)
        cc, cinv = np.unique(c_i[e], return_inverse=True)
        n_min = min(rr.size, cc.size)
        # Cellpose's cost: -1 per pair at/above t, minus IoU/(2 n_min) as a
        # tie-break whose total (< 0.5) never outweighs one extra pair.
        cost = np.zeros((rr.size, cc.size))
        cost[rinv, cinv] = -1.0 - iou[cand[e]] / (2.0 * n_min)
        ri, ci = linear_sum_assignment(cost)
        ok = cost[ri, ci] < 0
        lookup = np.full((rr.size, cc.size), -1, np.int64)
        lookup[rinv, cinv] = cand[e]
        chosen.append(lookup[ri[ok], ci[ok]])
    return np.sort(np.concatenate(chosen))


def match_instances(
    gt: np.ndarray, pred: np.ndarray, *, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> dict:
    """Match predicted to ground-truth objects one-to-one at each IoU threshold.

    Parameters
    ----------
    gt, pred : (Y, X) ndarray of int
        Instance label images of the same shape, 0 = background.
    thresholds : sequence of float, optional
        IoU thresholds in (0, 1]; a pair is a true positive at ``t`` when
        its IoU is ``>= t``.

    Returns
    -------
    result : dict
        ``n_gt``, ``n_pred`` : int, numbers of objects.
        ``tp``, ``fp``, ``fn`` : dict {threshold (float): int}.
        ``matches`` : dict {threshold: (K, 2) int64 array} of matched
        ``(gt label, pred label)`` ids.
        ``matched_iou`` : (K50,) float64, IoUs of the pairs matched at 0.5
        (computed even when 0.5 is not among `thresholds`).

    Notes
    -----
    See the module docstring for the matching rule (Cellpose's convention).

    Examples
    --------
    >>> gt = np.zeros((4, 10), int); gt[:, :5] = 1
    >>> pred = np.zeros((4, 10), int); pred[:, 1:6] = 3
    >>> r = match_instances(gt, pred, thresholds=(0.5, 0.75))
    >>> r["tp"], r["fp"], r["fn"]
    ({0.5: 1, 0.75: 0}, {0.5: 0, 0.75: 1}, {0.5: 0, 0.75: 1})
    >>> r["matched_iou"]
    array([0.66666667])
    """
    ts = _check_thresholds(thresholds)
    ov = _overlaps(gt, pred)
    n_gt, n_pred = int(ov["gt_ids"].size), int(ov["pred_ids"].size)
    out: dict = {"n_gt": n_gt, "n_pred": n_pred, "tp": {}, "fp": {}, "fn": {}, "matches": {}}
    cache: dict[float, np.ndarray] = {}
    for t in dict.fromkeys(ts + (_MATCHED_IOU_T,)):
        cache[t] = _match_at(ov["rows"], ov["cols"], ov["iou"], t)
    for t in ts:
        idx = cache[t]
        tp = int(idx.size)
        out["tp"][t] = tp
        out["fp"][t] = n_pred - tp
        out["fn"][t] = n_gt - tp
        out["matches"][t] = np.stack(
            [ov["gt_ids"][ov["rows"][idx]], ov["pred_ids"][ov["cols"][idx]]], axis=1
        ).astype(np.int64).reshape(-1, 2)
    out["matched_iou"] = ov["iou"][cache[_MATCHED_IOU_T]].astype(np.float64)
    return out


def _ratio(num: int, den: int) -> float:
    """num/den with 0/0 = 1 (an empty image is scored perfect)."""
    return 1.0 if den == 0 else num / den


def average_precision(
    gts: Sequence[np.ndarray],
    preds: Sequence[np.ndarray],
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> dict:
    """AP_cp, F1 and matched IoU over a set of images (Cellpose convention).

    Parameters
    ----------
    gts, preds : sequence of (Y, X) ndarray of int
        Ground-truth and predicted label images, paired by position (shapes
        may differ between pairs, not within one).
    thresholds : sequence of float, optional
        IoU thresholds in (0, 1].

    Returns
    -------
    result : dict
        ``n_images`` : int.
        ``thresholds`` : list of float.
        ``ap`` : {t: float}, ``TP/(TP+FP+FN)`` per image averaged over images.
        ``f1@0.5`` : float, ``2TP/(2TP+FP+FN)`` at 0.5 per image, averaged.
        ``mean_matched_iou`` : float, mean IoU of all pairs matched at 0.5
        over all images (NaN when there are none).
        ``tp``, ``fp``, ``fn`` : {t: int}, pooled counts.
        ``n_gt``, ``n_pred`` : int, pooled object counts.
        ``per_image`` : list of dicts ``{"ap": {t: float}, "f1@0.5": float,
        "n_gt": int, "n_pred": int}``.

    Notes
    -----
    An image with neither ground-truth nor predicted objects scores 1.0 (AP
    and F1); with objects on one side only it scores 0.0.
    """
    if len(gts) != len(preds):
        raise ValueError(f"got {len(gts)} ground-truth images but {len(preds)} predictions")
    if len(gts) == 0:
        raise ValueError("no images to evaluate")
    ts = _check_thresholds(thresholds)
    per_image = []
    pooled = {k: dict.fromkeys(ts, 0) for k in ("tp", "fp", "fn")}
    matched = []
    n_gt = n_pred = 0
    for i, (g, p) in enumerate(zip(gts, preds)):
        try:
            m = match_instances(g, p, thresholds=ts)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"image {i}: {exc}") from exc
        ap = {t: _ratio(m["tp"][t], m["tp"][t] + m["fp"][t] + m["fn"][t]) for t in ts}
        tp50 = m["matched_iou"].size
        f1 = _ratio(2 * tp50, m["n_gt"] + m["n_pred"])
        per_image.append({"ap": ap, "f1@0.5": f1, "n_gt": m["n_gt"], "n_pred": m["n_pred"]})
        for k in pooled:
            for t in ts:
                pooled[k][t] += m[k][t]
        matched.append(m["matched_iou"])
        n_gt += m["n_gt"]
        n_pred += m["n_pred"]
    all_iou = np.concatenate(matched)
    return {
        "n_images": len(per_image),
        "thresholds": list(ts),
        "ap": {t: float(np.mean([r["ap"][t] for r in per_image])) for t in ts},
        "f1@0.5": float(np.mean([r["f1@0.5"] for r in per_image])),
        "mean_matched_iou": float(all_iou.mean()) if all_iou.size else float("nan"),
        "tp": pooled["tp"],
        "fp": pooled["fp"],
        "fn": pooled["fn"],
        "n_gt": n_gt,
        "n_pred": n_pred,
        "per_image": per_image,
    }


# --------------------------------------------------------------------------
# files


def _store_name(path: Path) -> str | None:
    """Sample name of an OME-Zarr store directory, else None."""
    low = path.name.lower()
    for suf in _STORE_SUFFIXES:
        if low.endswith(suf) and path.is_dir():
            return path.name[: -len(suf)]
    return None


def _file_name(path: Path) -> str | None:
    low = path.name.lower()
    if not path.is_file() or path.name.startswith("."):
        return None
    for suf in LABEL_FILE_SUFFIXES:
        if low.endswith(suf):
            stem = path.name[: -len(suf)]
            return stem[: -len(".ome")] if stem.lower().endswith(".ome") else stem
    return None


def _is_single(path: Path) -> bool:
    return _store_name(path) is not None or _file_name(path) is not None


def find_label_samples(path: str | os.PathLike) -> dict[str, Path]:
    """Label images under `path`, keyed by sample name.

    Parameters
    ----------
    path : str or path-like
        A label image file (PNG/TIFF), an OME-Zarr store (``*.ome.zarr`` or
        ``*.zarr``), or a folder searched recursively for both (stores are
        not entered).

    Returns
    -------
    samples : dict {str: pathlib.Path}
        Sample name -> file or store.  The name is the path relative to the
        folder without its extension (``plate1/img_001``), or the bare stem
        for a single file or store.

    Raises
    ------
    FileNotFoundError
        `path` does not exist.
    ValueError
        `path` is neither a label file, a store nor a folder holding any, or
        two files map to one sample name.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"label path '{root}' does not exist")
    name = _store_name(root) or _file_name(root)
    if name is not None:
        return {name: root}
    if not root.is_dir():
        raise ValueError(
            f"'{root}' is not a label image ({', '.join(LABEL_FILE_SUFFIXES)}), an OME-Zarr store "
            "or a folder"
        )
    found: dict[str, Path] = {}
    stack = [root]
    while stack:
        folder = stack.pop()
        for child in sorted(folder.iterdir()):
            if child.name.startswith("."):
                continue
            sample = _store_name(child) or _file_name(child)
            if sample is None:
                if child.is_dir():
                    stack.append(child)
                continue
            rel = child.parent.relative_to(root) / sample
            key = rel.as_posix()
            if key in found:
                raise ValueError(f"two label files map to sample '{key}': '{found[key]}' and '{child}'")
            found[key] = child
    if not found:
        raise ValueError(f"no label images or OME-Zarr stores found under '{root}'")
    return found


def load_label_file(path: str | os.PathLike, *, labels_name: str = "instances") -> np.ndarray:
    """Read an instance label image from a PNG/TIFF file or an OME-Zarr store.

    Parameters
    ----------
    path : str or path-like
        Grey integer PNG/TIFF, or a store holding ``labels/<labels_name>``.
    labels_name : str, optional
        Label node inside a store.

    Returns
    -------
    labels : (Y, X) ndarray of int
        Unchanged ids (0 = background).

    Raises
    ------
    ValueError
        The file cannot be read, is colour, or is not integer-valued (the
        message names the file).
    """
    p = Path(path)
    if _store_name(p) is not None:
        from micrometry.io.omezarr import load_labels

        try:
            return load_labels(p, labels_name)
        except KeyError as exc:
            raise ValueError(str(exc.args[0]) if exc.args else str(exc)) from exc
    from micrometry.io.readers import read_image

    img = read_image(p)
    if img.color_conversion is not None:
        raise ValueError(f"label image '{p}' is colour ({img.color_conversion.get('from')}); "
                         "expected one grey channel of integer ids")
    data = img.data
    if data.dtype.kind == "f":
        if not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data)) or data.min() < 0:
            raise ValueError(f"label image '{p}' holds non-integer or negative values")
        data = data.astype(np.int64)
    if data.dtype.kind == "i" and data.size and data.min() < 0:
        raise ValueError(f"label image '{p}' holds negative values")
    if data.dtype.kind not in "ui":
        raise ValueError(f"label image '{p}' has dtype {data.dtype}, expected integers")
    return data


def evaluate_paths(
    gt_path: str | os.PathLike,
    pred_path: str | os.PathLike,
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    missing: str = "error",
    labels_name: str = "instances",
) -> dict:
    """Evaluate predicted against ground-truth label images on disk.

    Parameters
    ----------
    gt_path, pred_path : str or path-like
        Each a label image (PNG/TIFF), an OME-Zarr store (``labels/instances``
        read via :func:`micrometry.io.omezarr.load_labels`), or a folder of
        either (searched recursively).  Samples are paired by name: the
        relative path without extension (``.ome.zarr``, ``.zarr``, ``.png``,
        ``.tif``, ``.tiff``, ``.ome.tif`` removed).  A single file on each
        side is paired whatever the names.
    thresholds : sequence of float, optional
        IoU thresholds in (0, 1].
    missing : {"error", "skip", "empty"}, optional
        What to do with a ground-truth sample without prediction: raise
        (default), leave it out, or score it against an empty prediction
        (all its objects are false negatives).  Predictions without ground
        truth are never scored; they are listed.
    labels_name : str, optional
        Label node read from stores.

    Returns
    -------
    result : dict
        :func:`average_precision`'s result (``per_image`` entries gain a
        ``"sample"`` key) plus ``samples`` (names evaluated, sorted),
        ``missing_pred`` (GT samples without prediction) and ``missing_gt``
        (predictions without GT), ``gt_path``, ``pred_path``.

    Raises
    ------
    ValueError
        No sample pairs, a missing prediction with ``missing="error"``, a
        shape mismatch or an unreadable file (the message names the sample
        and files).
    """
    if missing not in ("error", "skip", "empty"):
        raise ValueError(f"missing must be 'error', 'skip' or 'empty', got {missing!r}")
    ts = _check_thresholds(thresholds)
    gt_files = find_label_samples(gt_path)
    pred_files = find_label_samples(pred_path)
    if _is_single(Path(gt_path)) and _is_single(Path(pred_path)):
        # one file/store on each side: pair them whatever their names
        pred_files = {next(iter(gt_files)): next(iter(pred_files.values()))}
    missing_pred = sorted(set(gt_files) - set(pred_files))
    missing_gt = sorted(set(pred_files) - set(gt_files))
    if missing_pred and missing == "error":
        shown = ", ".join(missing_pred[:10]) + (" ..." if len(missing_pred) > 10 else "")
        raise ValueError(
            f"{len(missing_pred)} ground-truth sample(s) under '{gt_path}' have no prediction under "
            f"'{pred_path}': {shown} (pass missing='skip' or 'empty' to go on)"
        )
    names = sorted(gt_files) if missing == "empty" else sorted(set(gt_files) & set(pred_files))
    if not names:
        raise ValueError(
            f"no sample appears in both '{gt_path}' ({len(gt_files)} samples) and "
            f"'{pred_path}' ({len(pred_files)} samples); samples pair by relative name without extension"
        )
    if missing_pred:
        warnings.warn(f"{len(missing_pred)} ground-truth sample(s) without prediction: "
                      f"{', '.join(missing_pred[:10])}", stacklevel=2)
    gts, preds = [], []
    for name in names:
        g = load_label_file(gt_files[name], labels_name=labels_name)
        if name in pred_files:
            p = load_label_file(pred_files[name], labels_name=labels_name)
        else:
            p = np.zeros(g.shape, np.uint32)
        if g.shape != p.shape:
            raise ValueError(
                f"sample '{name}': ground truth '{gt_files[name]}' has shape {g.shape}, "
                f"prediction '{pred_files[name]}' has shape {p.shape}"
            )
        gts.append(g)
        preds.append(p)
    result = average_precision(gts, preds, thresholds=ts)
    for name, row in zip(names, result["per_image"]):
        row["sample"] = name
    result.update(
        samples=names,
        missing_pred=missing_pred,
        missing_gt=missing_gt,
        gt_path=str(gt_path),
        pred_path=str(pred_path),
    )
    return result


def evaluate_method_on_emps(
    settings: dict,
    *,
    split: str = "val",
    items: Iterable | None = None,
    model_dir: str | os.PathLike | None = None,
    threads: int = 1,
    limit: int | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> dict:
    """Segment the EMPS images of one split and score them against the masks.

    Runs :func:`micrometry.segment.dispatch.segment_image` — the code path of
    the segment stage — with `settings` (the config's ``segment`` section) on
    every image of `split` of the committed by-DOI split, then
    :func:`average_precision`.

    Parameters
    ----------
    settings : dict
        ``{"method": "classical" | "flow", ...}``.
    split : {"val", "train"}
    items : iterable of (id, image, labels), optional
        The images to score instead of ``iter_emps(split)`` (e.g. a wrapper
        that also collects ground-truth statistics on the way).
    model_dir : path, optional
        Flow model directory (``method: flow``).
    threads : int
        CPU threads for the network.
    limit : int, optional
        Score only the first `limit` images (quick checks).

    Returns
    -------
    dict
        :func:`average_precision`'s result plus ``split``, ``method``,
        ``ids``, ``seconds_per_image`` (median), ``seconds_per_image_mean``,
        ``seconds_total`` and ``megapixels`` (segmentation only, model
        loading excluded).
    """
    import time

    from micrometry.segment.dispatch import load_flow_model_for, segment_image
    from micrometry.train.realdata import iter_emps

    model = None
    if settings.get("method") == "flow":
        if model_dir is None:
            raise ValueError("method 'flow' needs model_dir")
        model = load_flow_model_for(settings, model_dir, threads=threads)
    gts, preds, ids, seconds = [], [], [], []
    source = iter_emps(split) if items is None else items
    for item_id, image, labels in itertools.islice(source, limit):
        t0 = time.perf_counter()
        pred, _, _ = segment_image(image, settings, model=model)
        seconds.append(time.perf_counter() - t0)
        gts.append(labels)
        preds.append(pred)
        ids.append(item_id)
    result = average_precision(gts, preds, thresholds=thresholds)
    result.update(split=split, method=settings.get("method"), ids=ids,
                  seconds_per_image=float(np.median(seconds)) if seconds else float("nan"),
                  seconds_per_image_mean=float(np.mean(seconds)) if seconds else float("nan"),
                  seconds_total=float(np.sum(seconds)),
                  megapixels=float(sum(g.size for g in gts) / 1e6))
    return result
