"""End-to-end: the real Snakemake workflow on generated micrographs.

Checks every output contract of ../shared/DESIGN.md, that a second run does
nothing, and that adding one image reruns only that image and the aggregate.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ("ingest", "calibrate", "segment", "measure", "qc")

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", *args]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
    return proc


def job_counts(stdout: str) -> dict[str, int]:
    """The 'Job stats' table of a (dry-)run as {rule: count}."""
    counts = {}
    block = stdout.split("Job stats:", 1)
    if len(block) < 2:
        return counts
    for line in block[1].splitlines()[3:]:
        m = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    counts.pop("total", None)
    return counts


def scheduled_samples(stdout: str) -> set[str]:
    return set(re.findall(r"wildcards: sample=(\S+)", stdout))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from micrometry.train.synth import write_synthetic_dataset

    root = tmp_path_factory.mktemp("workflow")
    data = root / "synth"
    paths = write_synthetic_dataset(data, n=4, seed=3, shape=(384, 512), tiff_fraction=0.5)
    inp = root / "input"
    (inp / "batch2").mkdir(parents=True)
    truth = {}
    for i, p in enumerate(paths):
        dest = inp / ("batch2" if i == 3 else "") / p.name
        shutil.copy(p, dest)
        sample = dest.relative_to(inp).with_suffix("").as_posix()
        truth[sample] = json.loads((data / "truth" / f"{p.stem}.json").read_text())
        truth[sample]["labels_path"] = data / "truth" / f"{p.stem}.labels.tif"
        truth[sample]["file"] = dest
    # A truncated file: must not stop the run.
    good = next(p for p in paths if p.suffix == ".png")
    (inp / "broken.png").write_bytes(good.read_bytes()[:200])
    # An override for one PNG sample.
    png_samples = sorted(s for s in truth if truth[s]["file"].suffix == ".png")
    override_sample = png_samples[0]
    (root / "overrides.csv").write_text(f"sample,nm_per_px,note\n{override_sample},2.0,known\n")
    results = root / "results"
    (root / "config.yaml").write_text(
        f"input_dir: {inp}\nresults_dir: {results}\n"
        f"calibration:\n  overrides_csv: {root / 'overrides.csv'}\n"
    )
    proc = snakemake(root, "--configfile", str(root / "config.yaml"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return {"root": root, "input": inp, "results": results, "truth": truth, "override_sample": override_sample,
            "samples": sorted([*truth, "broken"]), "proc": proc}


def test_image_stores_follow_ngff(run):
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    from micrometry.io.readers import read_image, sha256_file

    for sample, t in run["truth"].items():
        store = run["results"] / "images" / f"{sample}.ome.zarr"
        group = zarr.open_group(str(store), mode="r")
        ome = group.attrs["ome"]
        datasets = ome["multiscales"][0]["datasets"]
        level0 = group[datasets[0]["path"]]
        raw = read_image(t["file"]).data
        assert level0.shape == raw.shape and level0.dtype == raw.dtype
        np.testing.assert_array_equal(level0[:], raw)
        assert max(group[datasets[-1]["path"]].shape) < 1024
        attrs = group.attrs["micrometry"]
        assert attrs["status"] == "ok"
        assert attrs["source_sha256"] == sha256_file(t["file"])
        labels = group["labels/instances"]
        assert labels[datasets[0]["path"]].dtype == np.uint32
        nodes = list(Reader(parse_url(str(store)))())
        assert nodes and nodes[0].data[0].shape == raw.shape


def test_calibration_order(run):
    for sample, t in run["truth"].items():
        cal = json.loads((run["results"] / "calibration" / f"{sample}.json").read_text())
        assert {"nm_per_px", "source", "confidence", "scalebar"} <= cal.keys()
        if sample == run["override_sample"]:
            assert cal["source"] == "override" and cal["nm_per_px"] == 2.0
        elif t["file"].suffix == ".tif":
            assert cal["source"] == "metadata"
            assert cal["nm_per_px"] == pytest.approx(t["nm_per_px"], rel=1e-6)
        else:
            assert cal["source"] == "none" and cal["nm_per_px"] is None and cal["confidence"] == 0.0


def test_objects_tables_and_units(run):
    from micrometry.measure.schema import objects_schema
    from micrometry.measure.table import read_metadata

    for sample in run["truth"]:
        path = run["results"] / "objects" / f"{sample}.parquet"
        table = pq.read_table(path)
        assert table.schema.names == objects_schema().names
        assert table.num_rows > 0
        meta = read_metadata(path)
        cal = json.loads((run["results"] / "calibration" / f"{sample}.json").read_text())
        assert meta["calibration_source"] == cal["source"]
        assert meta["input_sha256"]
        df = table.to_pandas()
        if cal["nm_per_px"] is None:
            assert df["area_nm2"].isna().all() and df["equivalent_diameter_nm"].isna().all()
        else:
            np.testing.assert_allclose(df["area_nm2"], df["area_px"] * cal["nm_per_px"] ** 2)
            np.testing.assert_allclose(df["feret_max_nm"], df["feret_max_px"] * cal["nm_per_px"])


def test_segmentation_matches_truth(run):
    """Classical baseline on clean synthetic images: most particles found (IoU ≥ 0.5)."""
    import tifffile

    from micrometry.io.omezarr import load_labels

    for sample, t in run["truth"].items():
        gt = tifffile.imread(t["labels_path"])
        pred = load_labels(run["results"] / "images" / f"{sample}.ome.zarr")
        assert pred.shape == gt.shape
        n_gt = int(gt.max())
        # count GT objects matched by a predicted object with IoU >= 0.5
        matched = 0
        for lab in range(1, n_gt + 1):
            m = gt == lab
            ids, counts = np.unique(pred[m], return_counts=True)
            ids, counts = ids[ids > 0], counts[ids > 0]
            if ids.size == 0:
                continue
            best = ids[np.argmax(counts)]
            inter = counts.max()
            union = m.sum() + (pred == best).sum() - inter
            matched += inter / union >= 0.5
        assert matched / max(n_gt, 1) >= 0.4, f"{sample}: {matched}/{n_gt} matched"


def test_dataset_tables(run):
    images = pq.read_table(run["results"] / "dataset" / "images.parquet").to_pandas()
    objects = pq.read_table(run["results"] / "dataset" / "objects.parquet").to_pandas()
    assert sorted(images["sample"]) == run["samples"]
    broken = images.set_index("sample").loc["broken"]
    assert broken["status"] != "ok" and "broken.png" in json.dumps(
        json.loads((run["results"] / "errors" / "broken.json").read_text()))
    assert isinstance(broken["reason"], str) and broken["reason"]
    ok = images[images["status"] == "ok"]
    assert len(ok) == len(run["truth"])
    for _, row in ok.iterrows():
        per_image = pq.read_table(run["results"] / "objects" / f"{row['sample']}.parquet")
        assert row["n_objects"] == per_image.num_rows
    assert len(objects) == ok["n_objects"].sum()
    calibrated = ok[ok["nm_per_px"].notna()]
    assert len(calibrated) >= 2 and calibrated["eqd_d50_nm"].notna().all()
    for name in ("size_distribution.png", "size_distribution_by_image.png", "summary.png"):
        assert (run["results"] / "dataset" / name).stat().st_size > 1000


def test_qc_logs_benchmarks(run):
    for sample in run["samples"]:
        assert (run["results"] / "qc" / f"{sample}.png").stat().st_size > 0
        assert (run["results"] / "plots" / "per_image" / f"{sample}.png").stat().st_size > 0
        for stage in STAGES:
            assert (run["results"] / "logs" / stage / f"{sample}.log").exists()
            assert (run["results"] / "benchmarks" / stage / f"{sample}.tsv").exists()
    assert list((run["results"] / "provenance").glob("*.json"))


def test_second_run_does_nothing_and_new_image_reruns_only_itself(run):
    cfg = str(run["root"] / "config.yaml")
    proc = snakemake(run["root"], "--configfile", cfg, "-n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr

    src = next(t["file"] for s, t in run["truth"].items() if t["file"].suffix == ".png")
    shutil.copy(src, run["input"] / "batch2" / "added.png")
    proc = snakemake(run["root"], "--configfile", cfg, "-n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    assert counts == {"ingest": 1, "calibrate": 1, "segment": 1, "measure": 1, "qc": 1,
                      "aggregate_dataset": 1, "all": 1}, proc.stdout[-3000:]
    assert scheduled_samples(proc.stdout) == {"batch2/added"}


def test_lint_is_clean(tmp_path):
    (tmp_path / "in").mkdir()
    proc = snakemake(tmp_path, "--lint", "--config", f"input_dir={tmp_path / 'in'}", f"results_dir={tmp_path / 'r'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr
