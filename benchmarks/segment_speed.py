"""Segment-stage throughput (megapixels per second) per method, on synthetic micrographs.

Usage::

    python benchmarks/segment_speed.py --size 1024 --n 3 --threads 2 [--runtime torch]

Times :func:`micrometry.segment.dispatch.segment_image` (exclusion masks + segmentation,
the code path of the segment stage, model loading excluded) for ``classical``,
``flow`` with the object size estimated, and ``flow`` with ``diameter_px`` given; then
the whole stage as a job runs it, :func:`micrometry.stages.run_segment` on an ingested
OME-Zarr store (image read, model loaded, labels and float16 predictions written;
Python start-up and imports excluded).  Prints a Markdown table of the median seconds
per image and megapixels per second.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--n", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model", default=str(REPO / "models" / "flow-light"))
    p.add_argument("--runtime", default="auto", choices=["auto", "torch", "onnxruntime"],
                   help="what runs the network (segment.flow.runtime)")
    args = p.parse_args(argv)

    from micrometry.segment.dispatch import load_flow_model, segment_image
    from micrometry.segment.model import median_diameter_px
    from micrometry.train.synth import render_micrograph

    images = [render_micrograph(100 + i, shape=(args.size, args.size)) for i in range(args.n)]
    model = load_flow_model(args.model, device="cpu", threads=args.threads, runtime=args.runtime)
    runs = {
        "classical": lambda m: segment_image(m.image, {"method": "classical"}),
        "flow, size estimated": lambda m: segment_image(m.image, {"method": "flow"}, model=model),
        "flow, diameter_px given": lambda m: segment_image(
            m.image, {"method": "flow", "flow": {"diameter_px": median_diameter_px(m.labels)}}, model=model),
    }
    segment_image(images[0].image, {"method": "flow"}, model=model)  # warm-up (Numba compile, torch init)
    mp = args.size * args.size / 1e6
    print(f"{args.n} synthetic {args.size}x{args.size} micrographs, {args.threads} threads, "
          f"network runtime {model.runtime}\n")
    print("| method | median s/image | MP/s |\n|---|---:|---:|")
    for name, fn in runs.items():
        secs = []
        for m in images:
            t0 = time.perf_counter()
            fn(m)
            secs.append(time.perf_counter() - t0)
        med = statistics.median(secs)
        print(f"| {name} | {med:.2f} | {mp / med:.2f} |")

    import tempfile

    from PIL import Image

    from micrometry.stages import run_ingest, run_segment

    with tempfile.TemporaryDirectory() as tmp:
        secs = []
        for i, m in enumerate(images):
            png, store = Path(tmp) / f"{i}.png", Path(tmp) / f"{i}.ome.zarr"
            Image.fromarray(m.image).save(png)
            run_ingest(png, store, sample=str(i))
            t0 = time.perf_counter()
            run_segment(store, Path(tmp) / f"{i}.json", sample=str(i), threads=args.threads,
                        settings={"method": "flow", "flow": {"model": args.model, "device": "cpu",
                                                             "runtime": args.runtime}})
            secs.append(time.perf_counter() - t0)
        med = statistics.median(secs)
        print(f"| segment stage, flow, size estimated (`run_segment`: store in, model load, labels out) "
              f"| {med:.2f} | {mp / med:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
