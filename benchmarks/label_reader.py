"""Scale-label reading on label crops: the project's label reader against PP-OCR.

Usage::

    python benchmarks/label_reader.py --real --synthetic 300 [--reader DIR]

Crops are the true label boxes, widened as the reading chain widens a detected
box (half a glyph height along the text, a fifth across it; vertical labels turned
upright):

- real: the 73 labels of ``tests/data/scalebar_truth_real.csv`` (EMPS, read by eye);
- synthetic: labels of ``render_detector_sample`` at seeds 10,000,000+ (the
  reading benchmark's first set; the reader was trained on 5,000,000+).

Reported per set and reader: labels whose value and unit parse exactly as the
truth (*exact*), labels read as some other scale label (*wrong*), and the
median milliseconds per crop.  PP-OCR is run as the chain runs it on a detected
box (:func:`~micrometry.calibrate.scalebar.ocr.read_scale_label`, recognizer
only, trimmed crop).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TRUTH = REPO / "tests" / "data" / "scalebar_truth_real.csv"
_UNIT = {"nm": "nm", "um": "um", "µm": "um", "μm": "um", "mm": "mm", "Å": "A", "A": "A",
         "NM": "nm", "UM": "um", "MM": "mm"}


def _box(x0, y0, x1, y1, vertical, shape):
    th = (x1 - x0) if vertical else (y1 - y0)
    dx, dy = (0.2 * th, 0.5 * th) if vertical else (0.5 * th, 0.2 * th)
    return (max(0.0, x0 - dx), max(0.0, y0 - dy), min(float(shape[1]), x1 + dx), min(float(shape[0]), y1 + dy))


def real_crops():
    from PIL import Image

    from micrometry.train.realdata import emps_dir

    root = emps_dir()
    if root is None:
        raise SystemExit("EMPS data not found (set MICROMETRY_EMPS_DIR)")
    for t in csv.DictReader(open(TRUTH)):
        if t["has_scalebar"] != "1":
            continue
        img = np.asarray(Image.open(root / "images" / f"{t['id']}.png").convert("L"))
        x0, y0, x1, y1 = (float(t[k]) for k in ("text_x0", "text_y0", "text_x1", "text_y1"))
        vertical = (y1 - y0) > 1.5 * (x1 - x0)
        yield t["id"], img, _box(x0, y0, x1, y1, vertical, img.shape), vertical, float(t["value"]), _UNIT[t["unit"]]


def synthetic_crops(n: int, seed_base: int):
    from micrometry.train.scalebar_detector import render_detector_sample

    for seed in range(seed_base, seed_base + n):
        img, _, info = render_detector_sample(seed)
        sb = info["scalebar"]
        if sb is None:
            continue
        y0, x0, y1, x1 = (float(v) for v in sb["text_bbox"])
        vertical = bool(sb.get("text_rotation"))
        yield seed, img, _box(x0, y0, x1, y1, vertical, img.shape), vertical, float(sb["value"]), _UNIT[sb["unit"]]


def _verdict(text: str | None, value: float, unit: str) -> str:
    from micrometry.calibrate.scalebar.parse import parse_scale_label

    label = parse_scale_label(text) if text else None
    if label is None:
        return "none"
    return "exact" if abs(label.value - value) < 1e-9 * max(1.0, value) and label.unit == unit else "wrong"


def _reader_read(reader, img, box, vertical):
    from micrometry.calibrate.scalebar.parse import parse_scale_label

    xa, ya, xb, yb = (int(round(v)) for v in box)
    crop = img[ya:yb, xa:xb]
    views = [np.rot90(crop, -1), np.rot90(crop, 1)] if vertical else [crop]
    reads = reader.read_batch([np.ascontiguousarray(v) for v in views])
    parsed = [(s, t) for t, s in reads if parse_scale_label(t) is not None]
    return max(parsed)[1] if parsed else (reads[0][0] if reads else None)


def _ppocr_read(img, box, vertical):
    from micrometry.calibrate.scalebar.read import _read_label

    sr, _ = _read_label(img, box, threads=1, detect=False, widen=False)
    return None if sr is None else sr.hit.text


def run(crops, reader) -> dict:
    out = {"n": 0}
    for name, fn in (("reader", lambda im, b, v: _reader_read(reader, im, b, v)), ("pp-ocr", _ppocr_read)):
        out[name] = {"exact": 0, "wrong": 0, "ms": []}
    misses = []
    for ident, img, box, vertical, value, unit in crops:
        out["n"] += 1
        for name, fn in (("reader", lambda im, b, v: _reader_read(reader, im, b, v)), ("pp-ocr", _ppocr_read)):
            t0 = time.perf_counter()
            text = fn(img, box, vertical)
            out[name]["ms"].append(1000 * (time.perf_counter() - t0))
            v = _verdict(text, value, unit)
            if v != "none":
                out[name][v] += 1
            if name == "reader" and v != "exact":
                misses.append((ident, text, value, unit))
    out["reader_misses"] = misses
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--real", action="store_true", help="the 73 real labels of the truth table")
    p.add_argument("--synthetic", type=int, default=0, help="synthetic images (seeds from --seed-base)")
    p.add_argument("--seed-base", type=int, default=10_000_000)
    p.add_argument("--reader", default=None, help="reader directory (default models/scalebar-label-reader)")
    p.add_argument("--show-misses", action="store_true")
    args = p.parse_args(argv)

    import torch

    from micrometry.calibrate.scalebar.label_reader import load_label_reader

    torch.set_num_threads(1)
    reader = load_label_reader(args.reader)
    print(f"label reader {reader.sha256[:12]}, one thread\n")
    print("| set | labels | reader exact | reader wrong | PP-OCR exact | PP-OCR wrong | reader ms | PP-OCR ms |")
    print("|---|---|---|---|---|---|---|---|")
    sets = []
    if args.real:
        sets.append(("real (EMPS)", real_crops()))
    if args.synthetic:
        sets.append((f"synthetic {args.seed_base:,}+", synthetic_crops(args.synthetic, args.seed_base)))
    for name, crops in sets:
        r = run(crops, reader)
        a, b = r["reader"], r["pp-ocr"]
        print(f"| {name} | {r['n']} | {a['exact']} | {a['wrong']} | {b['exact']} | {b['wrong']} | "
              f"{statistics.median(a['ms']):.1f} | {statistics.median(b['ms']):.1f} |", flush=True)
        if args.show_misses:
            for m in r["reader_misses"]:
                print("   miss", m)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
