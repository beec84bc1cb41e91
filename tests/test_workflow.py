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
STAGES = ("ingest", "calibrate", "segment", "measure")  # measure also draws the QC figures

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
    model = root / "model"  # a copy, so a test can replace the model
    shutil.copytree(REPO / "models" / "flow-light", model)
    (root / "config.yaml").write_text(
        f"input_dir: {inp}\nresults_dir: {results}\n"
        f"calibration:\n  overrides_csv: {root / 'overrides.csv'}\n"
        f"segment:\n  method: flow\n  flow:\n    model: {model}\n"
    )
    proc = snakemake(root, "--configfile", str(root / "config.yaml"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return {"root": root, "input": inp, "results": results, "truth": truth, "override_sample": override_sample,
            "samples": sorted([*truth, "broken"]), "proc": proc, "model": model}


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
            # the burned-in scale bar is read as a cross-check and agrees
            assert cal["scalebar"]["metadata_agreement"] == pytest.approx(1.0, abs=0.03)
        else:  # no override, no metadata: the scale bar burned into the image
            assert cal["source"] == "scalebar" and cal["confidence"] >= 0.5
            assert cal["nm_per_px"] == pytest.approx(t["nm_per_px"], rel=0.02)
            assert cal["scalebar"]["value_nm"] == pytest.approx(t["scalebar"]["value_nm"])


def test_objects_tables_and_units(run):
    from micrometry.measure.schema import objects_schema
    from micrometry.measure.table import read_metadata

    rows = {}
    for sample in run["truth"]:
        path = run["results"] / "objects" / f"{sample}.parquet"
        table = pq.read_table(path)
        assert table.schema.names == objects_schema().names
        rows[sample] = table.num_rows
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
    # synth_000 (3 particles of ~49 px) may come out empty: the size search settles on 33 px and
    # cuts each particle in pieces, which the flow-error QC then drops (see the model card)
    assert sum(n > 0 for n in rows.values()) >= 3, rows


def test_segmentation_matches_truth(run):
    """The default (flow) segmentation finds most particles of the synthetic set (IoU >= 0.5).

    Pooled over the 4 images: single images vary a lot (one has 3 particles, another
    particles of 12 px, where the automatic size estimate fails -- see the model card).
    """
    import tifffile

    from micrometry.io.omezarr import load_labels

    matched_all = n_all = 0
    for sample, t in run["truth"].items():
        gt = tifffile.imread(t["labels_path"])
        pred = load_labels(run["results"] / "images" / f"{sample}.ome.zarr")
        assert pred.shape == gt.shape
        n_gt = int(gt.max())
        # count GT objects matched by a predicted object with IoU >= 0.5
        for lab in range(1, n_gt + 1):
            m = gt == lab
            ids, counts = np.unique(pred[m], return_counts=True)
            ids, counts = ids[ids > 0], counts[ids > 0]
            if ids.size == 0:
                continue
            best = ids[np.argmax(counts)]
            inter = counts.max()
            union = m.sum() + (pred == best).sum() - inter
            matched_all += inter / union >= 0.5
        n_all += n_gt
    assert n_all > 100 and matched_all / n_all >= 0.6, f"{matched_all}/{n_all} particles matched"


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
    assert len(calibrated) >= 2
    with_objects = calibrated["n_objects"] > 0
    assert with_objects.sum() >= 2 and calibrated.loc[with_objects, "eqd_d50_nm"].notna().all()
    assert calibrated.loc[~with_objects, "eqd_d50_nm"].isna().all()  # no objects: no size statistics
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
    added = run["input"] / "batch2" / "added.png"
    shutil.copy(src, added)
    try:
        proc = snakemake(run["root"], "--configfile", cfg, "-n")
        assert proc.returncode == 0, proc.stderr[-3000:]
        counts = job_counts(proc.stdout)
        assert counts == {"ingest": 1, "calibrate": 1, "segment": 1, "measure": 1,
                          "dataset_inputs": 1, "aggregate_dataset": 1, "all": 1}, proc.stdout[-3000:]
        assert scheduled_samples(proc.stdout) == {"batch2/added"}
    finally:
        added.unlink()


def test_dataset_tables_carry_provenance(run):
    """Per image: input and model SHA-256; per table: version, git SHA, stage parameters."""
    import hashlib

    from micrometry.segment.model import model_sha256

    images = pq.read_table(run["results"] / "dataset" / "images.parquet").to_pylist()
    model_sha = model_sha256(run["model"])
    for row in images:
        if row["status"] != "ok":
            continue
        src = run["truth"][row["sample"]]["file"]
        assert row["input_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
        assert row["model_sha256"] == model_sha and row["segment_method"] == "flow"
    for name in ("objects", "images"):
        meta = json.loads(pq.read_schema(run["results"] / "dataset" / f"{name}.parquet").metadata[b"micrometry"])
        assert meta["micrometry_version"] and meta["provenance"]["stage"] == "aggregate"
        assert "git_sha" in meta["provenance"]
        (seg,) = meta["upstream"]["segment"]  # one model, one set of settings for the whole dataset
        assert seg["model_sha256"] == model_sha and seg["params"]["method"] == "flow"
        (measure,) = meta["upstream"]["measure"]
        assert measure["params"]["min_confidence"] == 0.5
    runs = sorted((run["results"] / "provenance").glob("*.json"))
    record = json.loads(runs[0].read_text())
    assert record["config"]["segment"]["method"] == "flow" and "torch" in json.dumps(record)


def _dry_run(run) -> subprocess.CompletedProcess:
    proc = snakemake(run["root"], "--configfile", str(run["root"] / "config.yaml"), "-n")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def _nothing_to_do(proc) -> bool:
    return "Nothing to be done" in proc.stdout + proc.stderr


def test_recopied_image_with_same_content_does_not_rerun(run):
    """A new mtime alone (re-copied file, fresh checkout) is checked against the recorded checksum."""
    path = run["truth"][run["override_sample"]]["file"]
    before = path.stat().st_mtime_ns
    path.write_bytes(path.read_bytes())  # copied over again: same bytes, mtime now (newer than the outputs)
    assert path.stat().st_mtime_ns > before
    assert _nothing_to_do(_dry_run(run))


def test_changed_image_reruns_its_own_chain_only(run):
    sample = next(s for s, t in run["truth"].items() if t["file"].suffix == ".png" and s != run["override_sample"])
    path = run["truth"][sample]["file"]
    original = path.read_bytes()
    try:
        from PIL import Image

        arr = np.asarray(Image.open(path)).copy()
        arr[:8, :8] = 255 - arr[:8, :8]  # a few pixels differ
        Image.fromarray(arr).save(path)
        proc = _dry_run(run)
        assert job_counts(proc.stdout) == {"ingest": 1, "calibrate": 1, "segment": 1, "measure": 1,
                                           "aggregate_dataset": 1, "all": 1}, proc.stdout[-3000:]
        assert scheduled_samples(proc.stdout) == {sample}
    finally:
        path.write_bytes(original)
    assert _nothing_to_do(_dry_run(run))  # same content again: nothing to redo


def test_override_change_reruns_calibrate_measure_aggregate_of_that_sample(run):
    table = run["root"] / "overrides.csv"
    original = table.read_text()
    try:
        table.write_text(original.replace(",2.0,", ",2.5,") + "# a comment line changes nothing\n")
        proc = _dry_run(run)
        assert job_counts(proc.stdout) == {"calibrate": 1, "measure": 1, "aggregate_dataset": 1,
                                           "all": 1}, proc.stdout[-3000:]
        assert scheduled_samples(proc.stdout) == {run["override_sample"]}
        table.write_text(original + "# only a comment\n")
        assert _nothing_to_do(_dry_run(run))
    finally:
        table.write_text(original)


def test_new_model_reruns_segment_measure_aggregate_not_ingest_or_calibrate(run):
    import torch

    from micrometry.segment.model import load_model, save_model

    saved = {p.name: p.read_bytes() for p in run["model"].iterdir() if p.is_file()}
    try:
        model = load_model(run["model"])
        with torch.no_grad():
            model.net.head.bias.add_(1e-3)  # "retrained": other weights, other SHA-256
        save_model(model, model.config, run["model"])
        proc = _dry_run(run)
        n = len(run["samples"])
        assert job_counts(proc.stdout) == {"segment": n, "measure": n, "aggregate_dataset": 1,
                                           "all": 1}, proc.stdout[-3000:]
    finally:
        for name, data in saved.items():
            (run["model"] / name).write_bytes(data)
    assert _nothing_to_do(_dry_run(run))


def test_where_tiles_run_does_not_rerun_anything(run):
    """An existing Dask scheduler or dask-cuda for the tiles changes the segment command,
    not its results: nothing reruns (the option is in the shell command, not a param)."""
    cfg = run["root"] / "config.yaml"
    extra = run["root"] / "dask.yaml"
    try:
        for dask in ("address: tcp://127.0.0.1:8786", "cuda: true"):
            extra.write_text(f"dask:\n  {dask}\n")
            proc = snakemake(run["root"], "--configfile", str(cfg), str(extra), "-n")
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
            assert _nothing_to_do(proc), proc.stdout[-3000:]
    finally:
        extra.unlink(missing_ok=True)


def _output_hashes(results: Path) -> dict[str, str]:
    """SHA-256 of every result file except run records (logs, benchmarks, provenance, lock)."""
    import hashlib

    skip = {"logs", "benchmarks", "provenance"}
    out = {}
    for p in sorted(results.rglob("*")):
        rel = p.relative_to(results)
        if p.is_file() and rel.parts[0] not in skip and p.name not in (".micrometry.lock", ".snakemake_timestamp"):
            out[rel.as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_sigkill_then_rerun_gives_identical_results_and_a_second_run_is_refused(run, tmp_path):
    """Kill the whole run mid-way (SIGKILL to its process group), rerun: the same bytes as an
    uninterrupted run.  While it runs, a second run on the same results_dir (from another
    working directory, so Snakemake's own lock does not apply) stops with a clear message."""
    import signal
    import time

    results = tmp_path / "results"
    cfg = run["root"] / "config.yaml"
    config_args = ("--configfile", str(cfg), "--config", f"results_dir={results}")
    work_a, work_b = tmp_path / "a", tmp_path / "b"
    work_a.mkdir()
    work_b.mkdir()
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work_a),
           "--cores", "2", *config_args]
    proc = subprocess.Popen(cmd, cwd=work_a, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list((results / "segment").glob("*.json")):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no segment output after 300 s"
            time.sleep(0.2)
        second = snakemake(work_b, *config_args)
        assert second.returncode != 0
        assert "is in use by another micrometry run" in second.stderr + second.stdout, second.stderr[-2000:]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (results / "dataset" / "objects.parquet").exists()  # really killed mid-way
    # what the README says to do: Snakemake's own lock of the working directory survives kill -9
    unlock = snakemake(work_a, *config_args, "--unlock")
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    resumed = snakemake(work_a, *config_args)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert not list(results.rglob("*.tmp*")), "temporary files left behind"
    reference = _output_hashes(run["results"])
    assert _output_hashes(results) == reference
    assert "dataset/objects.parquet" in reference and len(reference) > 30


def test_lint_is_clean(tmp_path):
    (tmp_path / "in").mkdir()
    proc = snakemake(tmp_path, "--lint", "--config", f"input_dir={tmp_path / 'in'}", f"results_dir={tmp_path / 'r'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


def test_missing_scalebar_detector_stops_the_run_at_start_up(run, tmp_path):
    """A detector folder without weights is a start-up error that names it, before any job runs."""
    empty = tmp_path / "no-detector"
    empty.mkdir()
    cfg = tmp_path / "config.yaml"
    cfg.write_text((run["root"] / "config.yaml").read_text().replace(
        "calibration:\n", f"calibration:\n  scalebar_detector: {empty}\n"))
    proc = snakemake(run["root"], "--configfile", str(cfg), "-n")
    assert proc.returncode != 0
    assert f"scale-bar detector {empty} has no weights" in proc.stdout + proc.stderr


def test_files_that_cannot_become_samples_do_not_stop_the_run(tmp_path):
    """Two files for one sample name and a file whose name has a backslash are refused with
    a warning naming them; the other image is processed and the refused files are error
    rows of dataset/images.parquet (stage "discover")."""
    import numpy as np
    import pyarrow.parquet as pq
    from PIL import Image

    inp = tmp_path / "in"
    inp.mkdir()
    img = np.full((96, 96), 200, np.uint8)
    img[30:60, 30:60] = 40
    for name in ("good.png", "twin.png", "twin.tif", "odd\\name.png"):
        Image.fromarray(img).save(inp / name, format="TIFF" if name.endswith(".tif") else "PNG")
    res = tmp_path / "r"
    proc = snakemake(tmp_path, "--config", f"input_dir={inp}", f"results_dir={res}", "segment={'method': 'classical'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "'twin.png', 'twin.tif'" in proc.stderr and "unsafe sample name" in proc.stderr
    rows = {r["sample"]: r for r in pq.read_table(res / "dataset" / "images.parquet").to_pylist()}
    assert rows["good"]["status"] == "ok"
    for refused in ("twin.png", "twin.tif", "odd\\name.png"):
        assert rows[refused]["status"] == "error" and rows[refused]["stage_failed"] == "discover"
    assert set(rows) == {"good", "twin.png", "twin.tif", "odd\\name.png"}


def test_aggregate_command_does_not_grow_with_the_number_of_images(tmp_path):
    """The aggregate job reads the sample names from dataset/inputs.json: on its command
    line, 5,000 names of 35 characters would pass Linux's 128 KiB limit for one argument
    ("Argument list too long") and the night would end without dataset tables."""
    import numpy as np
    from PIL import Image

    inp = tmp_path / "in" / "2026-11-22_session_with_a_long_name"
    inp.mkdir(parents=True)
    for i in range(30):
        Image.fromarray(np.full((16, 16), i, np.uint8)).save(inp / f"grid3_square12_acquisition_{i:04d}.png")
    proc = snakemake(tmp_path, "-n", "-p", "--config", f"input_dir={tmp_path / 'in'}", f"results_dir={tmp_path / 'r'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    command = next(line for line in (proc.stdout + proc.stderr).splitlines() if "micrometry aggregate" in line)
    assert "--inputs" in command and "acquisition_" not in command and len(command) < 1000, command
