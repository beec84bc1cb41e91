"""Workflow planning cost at facility scale: dry-run for many images, no-change rerun.

Usage::

    python benchmarks/dag_scale.py --plan 5000 --rerun 1000

* **plan N**: ``snakemake -n`` on N new images (nothing processed yet): sample
  discovery, DAG of 6 N + 2 jobs, the checks of every input.
* **rerun N**: ``snakemake --cores 2`` on N images whose outputs are all up
  to date (a nightly run where nothing changed): it must find nothing to do.
  The processed state is made with ``snakemake --touch`` after creating
  every output the workflow lists (``--summary``), so Snakemake's metadata
  (params, code, input checksums) is recorded as after a real run; running
  the real stages on 1,000 images would take hours on 2 cores.

Inputs are distinct 16 x 16 PNGs.  Wall-clock seconds of the whole command
(Python start-up and Snakefile parsing included), median of ``--repeat``.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_inputs(folder: Path, n: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        a = np.full((16, 16), i % 251, np.uint8)
        a[0, :4] = np.frombuffer(int(i).to_bytes(4, "little"), np.uint8)
        Image.fromarray(a).save(folder / f"img_{i:05d}.png")


def snakemake(workdir: Path, inp: Path, res: Path, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", "--config", f"input_dir={inp}", f"results_dir={res}", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return dt, proc


def fake_processed(workdir: Path, inp: Path, res: Path) -> float:
    """Create every listed output (stores as folders) in stage order, then record them with --touch."""
    _, proc = snakemake(workdir, inp, res, "--summary")
    rows = [line.split("\t") for line in proc.stdout.splitlines()[1:] if "\t" in line]
    order = ["ingest", "calibrate", "segment", "measure", "qc", "aggregate_dataset"]
    rows.sort(key=lambda r: order.index(r[2]) if r[2] in order else len(order))
    for path, _date, rule, *_ in rows:
        p = Path(path)
        if p.suffix == ".zarr":
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.touch()
    dt, _ = snakemake(workdir, inp, res, "--touch")
    return dt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plan", type=int, default=5000, help="images for the dry-run planning case")
    p.add_argument("--rerun", type=int, default=1000, help="processed images for the no-change rerun case")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="micrometry-dag-") as tmp:
        tmp = Path(tmp)
        # planning
        inp, work = tmp / "plan-in", tmp / "plan-work"
        work.mkdir()
        make_inputs(inp, args.plan)
        times = []
        for _ in range(args.repeat):
            dt, proc = snakemake(work, inp, tmp / "plan-res", "-n", "--quiet", "rules")
            times.append(dt)
        rows.append((f"dry-run, {args.plan} new images", statistics.median(times), "60"))
        # no-change rerun
        inp, work, res = tmp / "rerun-in", tmp / "rerun-work", tmp / "rerun-res"
        work.mkdir()
        make_inputs(inp, args.rerun)
        t_touch = fake_processed(work, inp, res)
        times = []
        for _ in range(args.repeat):
            dt, proc = snakemake(work, inp, res)
            if "Nothing to be done" not in proc.stdout + proc.stderr:
                raise RuntimeError(f"the no-change rerun scheduled work:\n{proc.stdout[-3000:]}")
            times.append(dt)
        rows.append((f"no-change rerun, {args.rerun} processed images", statistics.median(times), "20"))
        rows.append((f"(setup: --touch of {args.rerun} images' outputs)", t_touch, "-"))
    print(f"Snakemake DAG scale, {os.cpu_count()} CPUs, median of {args.repeat}\n")
    print("| case | seconds | target (s) |\n|---|---:|---:|")
    for name, secs, target in rows:
        print(f"| {name} | {secs:.1f} | {target} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
