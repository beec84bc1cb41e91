"""Tests for micrometry.aggregate.tables and micrometry.aggregate.plots."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from micrometry.aggregate import (
    IMAGES_SCHEMA,
    aggregate_dataset,
    diameter_statistics,
    plot_dataset_summary,
    plot_size_distribution,
    write_dataset,
)
from micrometry.aggregate.tables import IMAGES_COLUMNS

# --------------------------------------------------------------------------- fixtures

OBJECTS_SCHEMA = pa.schema(
    [
        ("sample", pa.string()),
        ("label", pa.uint32()),
        ("area_px", pa.float64()),
        ("area_nm2", pa.float64()),
        ("equivalent_diameter_px", pa.float64()),
        ("equivalent_diameter_nm", pa.float64()),
        ("feret_max_nm", pa.float64()),
        ("feret_min_nm", pa.float64()),
        ("aspect_ratio", pa.float64()),
        ("circularity", pa.float64()),
        ("solidity", pa.float64()),
        ("touches_border", pa.bool_()),
    ]
)


def _objects_table(sample, eqd_px, touches, nm_per_px):
    d = np.asarray(eqd_px, dtype=np.float64)
    area = np.pi * (d / 2) ** 2
    s = np.nan if nm_per_px is None else nm_per_px
    return pa.table(
        {
            "sample": pa.array([sample] * d.size, pa.string()),
            "label": pa.array(np.arange(1, d.size + 1), pa.uint32()),
            "area_px": area,
            "area_nm2": area * s**2,
            "equivalent_diameter_px": d,
            "equivalent_diameter_nm": d * s,
            "feret_max_nm": d * s,
            "feret_min_nm": d * s,
            "aspect_ratio": np.ones(d.size),
            "circularity": np.ones(d.size),
            "solidity": np.ones(d.size),
            "touches_border": pa.array(list(touches), pa.bool_()),
        },
        schema=OBJECTS_SCHEMA,
    )


class Dataset:
    """Writes per-sample stage outputs under a results directory."""

    def __init__(self, root):
        self.root = root
        self.samples = []
        self.objects, self.calibration, self.segment, self.errors = {}, {}, {}, {}

    def _paths(self, sample):
        self.samples.append(sample)
        for kind, mapping, ext in (
            ("objects", self.objects, "parquet"),
            ("calibration", self.calibration, "json"),
            ("segment", self.segment, "json"),
            ("errors", self.errors, "json"),
        ):
            p = self.root / kind / f"{sample}.{ext}"
            p.parent.mkdir(parents=True, exist_ok=True)
            mapping[sample] = p

    def add_ok(self, sample, eqd_px, touches=None, *, nm_per_px=2.0, source="metadata", shape=(100, 200),
               analysed_px=None, areas_px=None):
        self._paths(sample)
        touches = [False] * len(eqd_px) if touches is None else touches
        table = _objects_table(sample, eqd_px, touches, nm_per_px)
        if areas_px is not None:
            table = table.set_column(2, "area_px", pa.array(areas_px, pa.float64()))
        table = table.replace_schema_metadata({b"micrometry": json.dumps({"stage": "measure"}).encode()})
        pq.write_table(table, self.objects[sample])
        self.calibration[sample].write_text(json.dumps(
            {"nm_per_px": nm_per_px, "source": source if nm_per_px else "none",
             "confidence": 1.0 if nm_per_px else 0.0}))
        self.segment[sample].write_text(json.dumps(
            {"image_shape": list(shape), "analysed_px": shape[0] * shape[1] if analysed_px is None else analysed_px,
             "n_objects": len(eqd_px)}))

    def add_error(self, sample, stage="segment", reason="image is blank"):
        self._paths(sample)
        self.errors[sample].write_text(json.dumps(
            {"sample": sample, "file": f"/raw/{sample}.tif", "stage": stage, "reason": reason}))

    def aggregate(self, **kw):
        """(objects, images); :meth:`aggregate_all` also returns the upstream records."""
        return self.aggregate_all(**kw)[:2]

    def aggregate_all(self, **kw):
        return aggregate_dataset(self.samples, objects_paths=self.objects, calibration_paths=self.calibration,
                                 segment_paths=self.segment, error_paths=self.errors, **kw)


def _row(images, sample):
    rows = [r for r in images.to_pylist() if r["sample"] == sample]
    assert len(rows) == 1
    return rows[0]


@pytest.fixture
def dataset(tmp_path):
    ds = Dataset(tmp_path / "results")
    # 10 inner objects of 1..10 px (10..100 nm at 10 nm/px) and 2 big border-touching ones
    ds.add_ok("plate1/a", list(range(1, 11)) + [500, 600], [False] * 10 + [True, True], nm_per_px=10.0)
    ds.add_ok("plate1/uncal", [4.0, 6.0, 8.0], nm_per_px=None)
    ds.add_error("plate2/broken", stage="ingest", reason="not a TIFF file")
    ds.add_ok("plate2/empty", [], nm_per_px=5.0)
    return ds


# --------------------------------------------------------------------------- statistics


def test_diameter_statistics_known_values():
    s = diameter_statistics(np.arange(10.0, 101.0, 10.0))
    assert s["mean"] == pytest.approx(55.0)
    assert s["median"] == s["d50"] == pytest.approx(55.0)
    # numpy "linear" percentiles of 10..100: position (n-1)*p = 0.9 -> 10 + 0.9*10
    assert s["d10"] == pytest.approx(19.0)
    assert s["d90"] == pytest.approx(91.0)
    assert s["std"] == pytest.approx(np.std(np.arange(10.0, 101.0, 10.0), ddof=1))


def test_diameter_statistics_ignores_nan_and_handles_few():
    assert diameter_statistics(np.array([np.nan, np.nan])) == dict.fromkeys(["mean", "median", "std", "d10", "d50", "d90"])
    one = diameter_statistics(np.array([np.nan, 7.0]))
    assert one["mean"] == one["d10"] == one["d90"] == 7.0
    assert one["std"] is None


def test_calibrated_sample_statistics_exclude_border(dataset):
    _, images = dataset.aggregate()
    r = _row(images, "plate1/a")
    assert r["status"] == "ok" and r["reason"] is None and r["stage_failed"] is None
    assert r["n_objects"] == 12
    assert r["n_objects_not_touching_border"] == 10
    assert r["nm_per_px"] == 10.0 and r["calibration_source"] == "metadata"
    assert r["calibration_confidence"] == 1.0
    nm = np.arange(10.0, 101.0, 10.0)
    assert r["eqd_d50_nm"] == pytest.approx(55.0)
    assert r["eqd_median_nm"] == pytest.approx(55.0)
    assert r["eqd_d10_nm"] == pytest.approx(np.percentile(nm, 10))
    assert r["eqd_d90_nm"] == pytest.approx(np.percentile(nm, 90))
    assert r["eqd_mean_nm"] == pytest.approx(55.0)
    assert r["eqd_std_nm"] == pytest.approx(nm.std(ddof=1))
    assert r["eqd_d50_px"] == pytest.approx(5.5)
    assert r["eqd_d10_px"] == pytest.approx(1.9)
    assert r["image_height_px"] == 100 and r["image_width_px"] == 200


def test_uncalibrated_sample_has_px_but_no_nm_stats(dataset):
    _, images = dataset.aggregate()
    r = _row(images, "plate1/uncal")
    assert r["nm_per_px"] is None
    assert r["calibration_source"] == "none"
    for s in ("mean", "median", "std", "d10", "d50", "d90"):
        assert r[f"eqd_{s}_nm"] is None
    assert r["eqd_mean_px"] == pytest.approx(6.0)
    assert r["eqd_d50_px"] == pytest.approx(6.0)
    assert r["eqd_std_px"] == pytest.approx(2.0)


def test_failed_sample_listed_with_reason(dataset):
    objects, images = dataset.aggregate()
    r = _row(images, "plate2/broken")
    assert r["status"] == "error"
    assert r["reason"] == "not a TIFF file"
    assert r["stage_failed"] == "ingest"
    assert r["n_objects"] is None and r["eqd_d50_px"] is None and r["area_fraction"] is None
    assert "plate2/broken" not in objects.column("sample").to_pylist()


def test_refused_inputs_become_error_rows_after_the_samples(dataset):
    refused = {"a.png": "files 'a.png', 'a.tif' would all become sample 'a'", "a.tif": "same"}
    objects, images = dataset.aggregate(refused=refused)
    rows = images.to_pylist()
    assert [r["sample"] for r in rows[-2:]] == ["a.png", "a.tif"]
    assert len(rows) == len(dataset.samples) + 2
    r = _row(images, "a.png")
    assert r["status"] == "error" and r["stage_failed"] == "discover" and "would all become" in r["reason"]
    assert r["n_objects"] is None and "a.png" not in objects.column("sample").to_pylist()


def test_zero_object_sample(dataset):
    _, images = dataset.aggregate()
    r = _row(images, "plate2/empty")
    assert r["status"] == "ok"
    assert r["n_objects"] == 0 and r["n_objects_not_touching_border"] == 0
    for u in ("nm", "px"):
        for s in ("mean", "median", "std", "d10", "d50", "d90"):
            assert r[f"eqd_{s}_{u}"] is None
    assert r["area_fraction"] == 0.0
    assert r["nm_per_px"] == 5.0


def test_area_fraction_counts_all_objects_over_analysed_area(tmp_path):
    ds = Dataset(tmp_path)
    ds.add_ok("s", [10, 20, 30], [False, False, True], shape=(100, 100), analysed_px=6000,
              areas_px=[100.0, 200.0, 300.0])
    _, images = ds.aggregate()
    assert _row(images, "s")["area_fraction"] == pytest.approx(600.0 / 6000.0)
    assert _row(images, "s")["analysed_px"] == 6000


def test_objects_concatenated_in_sample_order_with_schema(dataset):
    objects, images = dataset.aggregate()
    assert images.column("sample").to_pylist() == dataset.samples
    assert objects.num_rows == 12 + 3 + 0
    assert objects.column("sample").to_pylist() == ["plate1/a"] * 12 + ["plate1/uncal"] * 3
    assert objects.schema.field("label").type == pa.uint32()
    assert objects.schema.field("touches_border").type == pa.bool_()
    assert set(OBJECTS_SCHEMA.names) == set(objects.column_names)
    assert objects.schema.metadata is None  # per-file metadata dropped
    nm = objects.column("equivalent_diameter_nm").to_numpy()
    assert np.isnan(nm[12:]).all() and np.isfinite(nm[:12]).all()


def test_sample_column_filled_when_absent_or_wrong(tmp_path):
    ds = Dataset(tmp_path)
    ds.add_ok("x/y", [3.0, 4.0])
    t = pq.read_table(ds.objects["x/y"]).drop_columns(["sample"])
    pq.write_table(t, ds.objects["x/y"])
    objects, _ = ds.aggregate()
    assert objects.column("sample").to_pylist() == ["x/y", "x/y"]
    assert objects.column_names[0] == "sample"


def test_all_failed_gives_empty_objects_with_given_schema(tmp_path):
    ds = Dataset(tmp_path)
    ds.add_error("a")
    objects, images = ds.aggregate(objects_schema=OBJECTS_SCHEMA)
    assert objects.num_rows == 0 and objects.schema.names == OBJECTS_SCHEMA.names
    assert images.num_rows == 1 and images.column("status").to_pylist() == ["error"]
    objects, _ = ds.aggregate()
    assert objects.num_rows == 0 and "sample" in objects.column_names


def test_missing_objects_file_without_error_names_file(tmp_path):
    ds = Dataset(tmp_path)
    ds.add_ok("s", [1.0])
    ds.objects["s"].unlink()
    with pytest.raises(FileNotFoundError, match=r"objects/s\.parquet"):
        ds.aggregate()


def test_missing_required_column_names_file(tmp_path):
    ds = Dataset(tmp_path)
    ds.add_ok("s", [1.0])
    pq.write_table(pq.read_table(ds.objects["s"]).drop_columns(["touches_border"]), ds.objects["s"])
    with pytest.raises(ValueError, match=r"s\.parquet.*touches_border"):
        ds.aggregate()


def test_bad_segment_summary_names_file(tmp_path):
    ds = Dataset(tmp_path)
    ds.add_ok("s", [1.0])
    ds.segment["s"].write_text(json.dumps({"analysed_px": 10}))
    with pytest.raises(ValueError, match=r"segment/s\.json.*image_shape"):
        ds.aggregate()
    ds.segment["s"].write_text("{not json")
    with pytest.raises(ValueError, match=r"segment/s\.json"):
        ds.aggregate()


def test_duplicate_samples_rejected(dataset):
    with pytest.raises(ValueError, match="more than once"):
        aggregate_dataset(dataset.samples + ["plate1/a"], objects_paths=dataset.objects,
                          calibration_paths=dataset.calibration, segment_paths=dataset.segment)


def test_images_schema_registry():
    assert IMAGES_SCHEMA.names == list(IMAGES_COLUMNS)
    for field in IMAGES_SCHEMA:
        assert field.metadata[b"description"]
        unit = IMAGES_COLUMNS[field.name][1]
        if field.name.endswith("_nm"):
            assert unit == "nm"
        if field.name == "nm_per_px":
            assert unit == "nm/px"
        elif field.name.endswith("_px"):
            assert unit in ("px", "count")


# --------------------------------------------------------------------------- writing


def test_write_dataset_roundtrip_pandas_dtypes(dataset, tmp_path):
    objects, images = dataset.aggregate()
    out = tmp_path / "dataset"
    paths = write_dataset(objects, images, out, metadata={"stage": "aggregate", "params": {"version": "1"}})
    assert paths == {"objects": out / "objects.parquet", "images": out / "images.parquet"}
    assert sorted(p.name for p in out.iterdir()) == ["images.parquet", "objects.parquet"]  # no temp files

    img = pq.read_table(paths["images"]).to_pandas()
    assert list(img["sample"]) == dataset.samples
    assert img["eqd_d50_nm"].dtype == np.float64
    assert img["n_objects"].dtype == np.float64 or str(img["n_objects"].dtype) in ("Int64", "int64")
    assert math.isnan(img.loc[img["sample"] == "plate1/uncal", "eqd_d50_nm"].item())
    assert img.loc[img["sample"] == "plate1/a", "eqd_d50_nm"].item() == pytest.approx(55.0)

    obj = pq.read_table(paths["objects"]).to_pandas()
    assert obj["label"].dtype == np.uint32
    assert obj["touches_border"].dtype == bool
    assert obj["area_px"].dtype == np.float64
    assert len(obj) == 15

    for name, p in paths.items():
        f = pq.ParquetFile(p)
        meta = json.loads(f.schema_arrow.metadata[b"micrometry"])
        assert meta["table"] == name and meta["stage"] == "aggregate" and meta["params"] == {"version": "1"}
        assert "micrometry_version" in meta
        assert f.metadata.row_group(0).column(0).compression == "ZSTD"


def test_write_dataset_rejects_unserialisable_metadata(dataset, tmp_path):
    objects, images = dataset.aggregate()
    with pytest.raises(ValueError, match="JSON"):
        write_dataset(objects, images, tmp_path / "d", metadata={"x": object()})
    assert not (tmp_path / "d" / "objects.parquet").exists()


# --------------------------------------------------------------------------- plots


def _check_png(path, min_w=300, min_h=200):
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.width >= min_w and im.height >= min_h
        arr = np.asarray(im.convert("L"))
    assert arr.std() > 1.0  # something was drawn


@pytest.fixture
def pyplot_untouched():
    had = "matplotlib.pyplot" in sys.modules
    yield
    if not had:
        assert "matplotlib.pyplot" not in sys.modules, "plots must not import pyplot"


def test_plot_size_distribution_variants(dataset, tmp_path, pyplot_untouched):
    objects, _ = dataset.aggregate()
    plot_size_distribution(objects, tmp_path / "nm.png", title="all")
    plot_size_distribution(objects, tmp_path / "by.png", by_sample=True)
    uncal = objects.filter(pa.compute.equal(objects.column("sample"), "plate1/uncal"))
    plot_size_distribution(uncal, tmp_path / "px.png")
    plot_size_distribution(objects, tmp_path / "feret.png", column="feret_max")
    for name in ("nm", "by", "px", "feret"):
        _check_png(tmp_path / f"{name}.png")


def test_plot_size_distribution_picks_unit(dataset):
    from micrometry.aggregate.plots import _pick_column

    objects, _ = dataset.aggregate()
    keep = np.ones(objects.num_rows, bool)
    assert _pick_column(objects, "equivalent_diameter", keep) == ("equivalent_diameter_nm", "nm")
    uncal_only = np.zeros(objects.num_rows, bool)
    uncal_only[12:] = True
    assert _pick_column(objects, "equivalent_diameter", uncal_only) == ("equivalent_diameter_px", "px")
    with pytest.raises(ValueError, match="nonexistent"):
        _pick_column(objects, "nonexistent", keep)


def test_plot_size_distribution_empty(tmp_path, pyplot_untouched):
    plot_size_distribution(OBJECTS_SCHEMA.empty_table(), tmp_path / "empty.png")
    _check_png(tmp_path / "empty.png")
    border_only = _objects_table("s", [5.0, 6.0], [True, True], 1.0)
    plot_size_distribution(border_only, tmp_path / "border.png")
    _check_png(tmp_path / "border.png")


def test_plot_dataset_summary(dataset, tmp_path, pyplot_untouched):
    _, images = dataset.aggregate()
    plot_dataset_summary(images, tmp_path / "summary.png")
    _check_png(tmp_path / "summary.png")
    plot_dataset_summary(IMAGES_SCHEMA.empty_table(), tmp_path / "none.png")
    _check_png(tmp_path / "none.png")
    with pytest.raises(ValueError, match="eqd_d50_nm"):
        plot_dataset_summary(images.drop_columns(["eqd_d50_nm"]), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_dataset_summary_tick_labels(dataset):
    from micrometry.aggregate.plots import _tick_labels

    _, images = dataset.aggregate()
    assert _tick_labels(images, "nm") == [
        "plate1/a", "plate1/uncal (uncal.)", "plate2/broken (error)", "plate2/empty (no objects)"]
    assert _tick_labels(images, "px") == [
        "plate1/a", "plate1/uncal", "plate2/broken (error)", "plate2/empty (no objects)"]


def test_bad_calibration_names_file(tmp_path):
    ds = Dataset(tmp_path)
    ds.add_ok("s", [1.0])
    ds.calibration["s"].write_text(json.dumps({"nm_per_px": -2.0, "source": "metadata", "confidence": 1.0}))
    with pytest.raises(ValueError, match=r"calibration/s\.json.*positive"):
        ds.aggregate()
    ds.calibration["s"].unlink()
    with pytest.raises(FileNotFoundError, match=r"calibration/s\.json"):
        ds.aggregate()


def test_failed_sample_keeps_available_calibration(tmp_path):
    ds = Dataset(tmp_path)
    ds.add_ok("s", [1.0], nm_per_px=3.0)
    ds.add_error("s", stage="measure", reason="labels missing")  # error file wins over objects
    ds.samples = ["s"]
    objects, images = ds.aggregate()
    r = _row(images, "s")
    assert r["status"] == "error" and r["stage_failed"] == "measure" and r["nm_per_px"] == 3.0
    assert r["image_width_px"] == 200 and r["n_objects"] is None
    assert objects.num_rows == 0


def test_upstream_records_are_the_distinct_stage_records(tmp_path):
    """One record per distinct segment/measure provenance; per-image input SHA-256 does not split them."""
    ds = Dataset(tmp_path)
    for s in ("a", "b", "c"):
        ds.add_ok(s, [10.0, 12.0])
    ds.add_error("d", stage="ingest", reason="truncated")
    seg = {"stage": "segment", "params": {"method": "flow"}, "model_sha256": "m1"}
    for s, model, sha in (("a", "m1", "x1"), ("b", "m1", "x2"), ("c", "m2", "x3")):
        summary = json.loads(ds.segment[s].read_text())
        summary["provenance"] = {**seg, "model_sha256": model, "input_sha256": sha}
        ds.segment[s].write_text(json.dumps(summary))
        table = pq.read_table(ds.objects[s])
        meta = {"provenance": {"stage": "measure", "params": {"min_confidence": 0.5}}}
        pq.write_table(table.replace_schema_metadata({b"micrometry": json.dumps(meta).encode()}), ds.objects[s])
    objects, images, upstream = ds.aggregate_all()
    assert upstream["segment"] == [{**seg, "model_sha256": "m1"}, {**seg, "model_sha256": "m2"}]
    assert upstream["measure"] == [{"stage": "measure", "params": {"min_confidence": 0.5}}]
    assert objects.schema.metadata is None and images.num_rows == 4
