"""Scale-label reading on label crops: the project's label reader against PP-OCR.

Usage::

    python benchmarks/label_reader.py --real --synthetic 300 [--reader DIR]

Each reader gets the true label box and reads it as the reading chain reads a
detected box (the label reader: ``read._read_with_label_reader``, widened by half a
glyph height along the text and a fifth across it, a tall box turned both ways;
PP-OCR: ``read._read_label``, recognizer only, widened by half a glyph height along
the text, trimmed):

- real: the 73 labels of ``tests/data/scalebar_truth_real.csv`` (EMPS, read by eye);
- synthetic: labels of ``render_detector_sample`` at seeds 10,000,000+ (the
  reading benchmark's first set; the reader was trained on 5,000,000+).

Reported per set and reader: labels whose value and unit parse exactly as the
truth (*exact*), labels read as some other scale label (*wrong*), and the
median milliseconds per box.
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
        box = tuple(float(t[k]) for k in ("text_x0", "text_y0", "text_x1", "text_y1"))
        yield t["id"], img, box, float(t["value"]), _UNIT[t["unit"]]


def synthetic_crops(n: int, seed_base: int):
    from micrometry.train.scalebar_detector import render_detector_sample

    for seed in range(seed_base, seed_base + n):
        img, _, info = render_detector_sample(seed)
        sb = info["scalebar"]
        if sb is None:
            continue
        y0, x0, y1, x1 = (float(v) for v in sb["text_bbox"])
        yield seed, img, (x0, y0, x1, y1), float(sb["value"]), _UNIT[sb["unit"]]


def _verdict(text: str | None, value: float, unit: str) -> str:
    from micrometry.calibrate.scalebar.parse import parse_scale_label

    label = parse_scale_label(text) if text else None
    if label is None:
        return "none"
    return "exact" if abs(label.value - value) < 1e-9 * max(1.0, value) and label.unit == unit else "wrong"


def _readers(reader) -> dict:
    """Each reader as the chain runs it on a label box: ``f(image, box) -> text or None``."""
    from micrometry.calibrate.scalebar.read import _read_label, _read_with_label_reader

    def label_reader(img, box):
        sr, _ = _read_with_label_reader(img, box, reader)
        return None if sr is None else sr.hit.text

    def pp_ocr(img, box):
        sr, _ = _read_label(img, box, threads=1, detect=False)
        return None if sr is None else sr.hit.text

    return {"reader": label_reader, "pp-ocr": pp_ocr}


def run(crops, reader) -> dict:
    readers = _readers(reader)
    out = {"n": 0, **{name: {"exact": 0, "wrong": 0, "ms": []} for name in readers}, "reader_misses": []}
    for ident, img, box, value, unit in crops:
        out["n"] += 1
        for name, read in readers.items():
            t0 = time.perf_counter()
            text = read(img, box)
            out[name]["ms"].append(1000 * (time.perf_counter() - t0))
            v = _verdict(text, value, unit)
            if v != "none":
                out[name][v] += 1
            if name == "reader" and v != "exact":
                out["reader_misses"].append((ident, text, value, unit))
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
