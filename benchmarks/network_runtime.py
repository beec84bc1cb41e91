"""Flow network alone: PyTorch eager vs ONNX Runtime on CPU, per input size.

Usage::

    python benchmarks/network_runtime.py --threads 2 --sizes 256 512 1024 1536

Times :meth:`micrometry.segment.model.FlowModel.predict` (one normalised
square image at the model's own scale, sigmoid included) with each runtime of
``models/flow-light``, median of ``--repeat`` calls after one warm-up, and the
largest difference between the two outputs.  Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 1536])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--model", default=str(REPO / "models" / "flow-light"))
    args = p.parse_args(argv)

    from micrometry.segment.dispatch import load_flow_model

    models = {rt: load_flow_model(args.model, device="cpu", threads=args.threads, runtime=rt)
              for rt in ("torch", "onnxruntime")}
    print(f"{args.model}, {args.threads} threads, median of {args.repeat}\n")
    print("| input (px) | PyTorch s | ONNX Runtime s | speed-up | max abs difference |\n|---|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for size in args.sizes:
        image = rng.random((size, size), dtype=np.float32)
        secs, outs = {}, {}
        for rt, model in models.items():
            outs[rt] = model.predict(image)  # warm-up
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                model.predict(image)
                times.append(time.perf_counter() - t0)
            secs[rt] = statistics.median(times)
        diff = float(np.abs(outs["torch"] - outs["onnxruntime"]).max())
        print(f"| {size}² | {secs['torch']:.3f} | {secs['onnxruntime']:.3f} | "
              f"{secs['torch'] / secs['onnxruntime']:.1f}× | {diff:.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
