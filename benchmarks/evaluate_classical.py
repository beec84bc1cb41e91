"""Classical segmentation scored on the EMPS split, plus EMPS object sizes.

Runs :func:`micrometry.segment.classical.segment_classical` with its default
settings (those of ``config/schema.yaml``) and
:func:`micrometry.segment.exclusion.exclusion_mask` as ``exclude`` on every
image of the committed EMPS split, and reports AP_cp@0.5/0.75/0.9, F1@0.5 and
mean matched IoU (:func:`micrometry.evaluate.average_precision`) and seconds
per image (exclusion mask + segmentation, one process).  It also prints the
distribution of ground-truth object equivalent diameters
(``2 * sqrt(area_px / pi)``) per split.

Usage::

    python benchmarks/evaluate_classical.py                 # val and train
    python benchmarks/evaluate_classical.py --split val     # validation only
    python benchmarks/evaluate_classical.py --json out.json # also write the numbers

Needs the EMPS data (``../shared/data/emps-train`` or ``$MICROMETRY_EMPS_DIR``).
"""

from __future__ import annotations

import argparse
import itertools
import platform
import sys

import numpy as np

from micrometry.evaluate import DEFAULT_THRESHOLDS, evaluate_method_on_emps
from micrometry.train.realdata import emps_dir, iter_emps


def equivalent_diameters_px(labels: np.ndarray) -> np.ndarray:
    """Equivalent-circle diameters, in pixels, of the objects of a label image.

    Parameters
    ----------
    labels : (Y, X) ndarray of int
        Consecutive instance ids 1..N, 0 = background.

    Returns
    -------
    (N,) ndarray of float64
        ``2 * sqrt(area_px / pi)`` per object (absent ids skipped).
    """
    area_px = np.bincount(labels.ravel())[1:]
    area_px = area_px[area_px > 0]
    return 2.0 * np.sqrt(area_px / np.pi)


def run_split(split: str, limit: int | None = None) -> dict:
    """Segment and score one side of the split; return metrics, timings, sizes.

    Segmentation and scoring are :func:`micrometry.evaluate.evaluate_method_on_emps`
    (the segment stage's code path); the ground-truth sizes are collected from
    the same images as they pass through, so each image is read once.
    """
    diam, per_image_median = [], []

    def recording():
        for item in itertools.islice(iter_emps(split), limit):
            d = equivalent_diameters_px(item[2])
            diam.append(d)
            if d.size:
                per_image_median.append(float(np.median(d)))
            yield item

    metrics = evaluate_method_on_emps({"method": "classical"}, split=split, items=recording(),
                                      thresholds=DEFAULT_THRESHOLDS)
    all_d = np.concatenate(diam) if diam else np.zeros(0)
    return {
        "split": split,
        "metrics": metrics,
        "s_per_image_median": metrics["seconds_per_image"],
        "s_per_image_mean": metrics["seconds_per_image_mean"],
        "megapixels": metrics["megapixels"],
        "s_total": metrics["seconds_total"],
        "diameter_px": _percentiles(all_d),
        "image_median_diameter_px": _percentiles(np.asarray(per_image_median)),
    }


def _percentiles(values: np.ndarray) -> dict:
    if values.size == 0:
        return {"n": 0, "p10": float("nan"), "median": float("nan"), "p90": float("nan")}
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return {"n": int(values.size), "p10": float(p10), "median": float(p50), "p90": float(p90)}


def markdown(results: list[dict]) -> str:
    """Markdown tables of the metrics and of the object sizes."""
    lines = [
        "| split | images | objects (GT / pred) | AP_cp@0.5 | AP_cp@0.75 | AP_cp@0.9 | F1@0.5 "
        "| mean matched IoU | s/image (median) | s/image (mean) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        m = r["metrics"]
        lines.append(
            f"| {r['split']} | {m['n_images']} | {m['n_gt']} / {m['n_pred']} "
            f"| {m['ap'][0.5]:.3f} | {m['ap'][0.75]:.3f} | {m['ap'][0.9]:.3f} | {m['f1@0.5']:.3f} "
            f"| {m['mean_matched_iou']:.3f} | {r['s_per_image_median']:.2f} | {r['s_per_image_mean']:.2f} |"
        )
    lines += [
        "",
        "| split | GT objects | diameter p10 (px) | median | p90 | per-image median diameter p10 | median | p90 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        d, im = r["diameter_px"], r["image_median_diameter_px"]
        lines.append(
            f"| {r['split']} | {d['n']} | {d['p10']:.1f} | {d['median']:.1f} | {d['p90']:.1f} "
            f"| {im['p10']:.1f} | {im['median']:.1f} | {im['p90']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", choices=("val", "train", "both"), default="both")
    ap.add_argument("--limit", type=int, default=None, help="first N images of each split only")
    ap.add_argument("--json", default=None, help="also write the results here (atomic)")
    args = ap.parse_args(argv)
    if emps_dir() is None:
        print("EMPS data not found (set MICROMETRY_EMPS_DIR)", file=sys.stderr)
        return 2
    splits = ("val", "train") if args.split == "both" else (args.split,)
    results = []
    for split in splits:
        r = run_split(split, args.limit)
        results.append(r)
        print(f"{split}: {r['metrics']['n_images']} images in {r['s_total']:.1f} s", file=sys.stderr)
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(markdown(results))
    if args.json:
        from micrometry._atomic import write_json

        for r in results:
            r["metrics"].pop("per_image", None)
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
