"""Per-stage wall time and peak memory from a workflow run's benchmark files.

Usage::

    python benchmarks/stage_times.py demo/results            # table of an existing run
    python benchmarks/stage_times.py --run /tmp/bench --n 8  # render N synthetic images, run, time

Snakemake writes one ``{results}/benchmarks/{stage}/{sample}.tsv`` per job
(columns ``s``, ``max_rss`` in MB, ...).  This prints, per stage, the number of
jobs, median / max seconds per job, the sum, and the largest peak RSS.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ORDER = ("ingest", "calibrate", "segment", "measure", "qc", "aggregate")


def read_benchmarks(results: Path) -> dict[str, list[dict[str, float]]]:
    rows: dict[str, list[dict[str, float]]] = {}
    bench = results / "benchmarks"
    for tsv in sorted(bench.rglob("*.tsv")):
        rel = tsv.relative_to(bench)
        stage = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        with tsv.open() as fh:
            for rec in csv.DictReader(fh, delimiter="\t"):
                def num(key: str) -> float:
                    try:
                        return float(rec.get(key, "nan"))
                    except ValueError:
                        return float("nan")
                rows.setdefault(stage, []).append({"s": num("s"), "max_rss": num("max_rss")})
    return rows


def format_table(rows: dict[str, list[dict[str, float]]]) -> str:
    lines = ["| stage | jobs | median s/job | max s/job | total s | peak RSS MB |", "|---|---|---|---|---|---|"]
    stages = sorted(rows, key=lambda s: ORDER.index(s) if s in ORDER else len(ORDER))
    for stage in stages:
        secs = [r["s"] for r in rows[stage]]
        rss = [r["max_rss"] for r in rows[stage] if r["max_rss"] == r["max_rss"]]
        lines.append(
            f"| {stage} | {len(secs)} | {statistics.median(secs):.2f} | {max(secs):.2f} | {sum(secs):.2f} | "
            f"{max(rss) if rss else float('nan'):.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="?", help="results folder of an existing run")
    p.add_argument("--run", metavar="DIR", help="render synthetic data into DIR and run the workflow there")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--cores", type=int, default=2)
    args = p.parse_args()
    if args.run:
        work = Path(args.run)
        subprocess.run([sys.executable, "-m", "micrometry.cli", "synth", str(work / "data"), "--n", str(args.n),
                        "--seed", "0"], check=True)
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work),
                        "--cores", str(args.cores), "--quiet", "--config", f"input_dir={work / 'data' / 'images'}",
                        f"results_dir={work / 'results'}"], check=True, env=env)
        wall = time.perf_counter() - t0
        results = work / "results"
        print(f"workflow wall time: {wall:.1f} s for {args.n} images on {args.cores} cores")
    elif args.results:
        results = Path(args.results)
    else:
        p.error("give a results folder or --run DIR")
    print(format_table(read_benchmarks(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
