"""Tests for the objects-table registry (schema.py) and Parquet I/O (table.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import micrometry
from micrometry.measure import (
    OBJECT_COLUMNS,
    SCHEMA_VERSION,
    measure_objects,
    objects_schema,
    objects_table,
    read_metadata,
    write_parquet,
)
from micrometry.measure.schema import COLUMNS_BY_NAME, numpy_dtype

REQUIRED_ORDER = [
    "sample", "label", "centroid_y_px", "centroid_x_px", "bbox_y0_px", "bbox_x0_px",
    "bbox_y1_px", "bbox_x1_px", "area_px", "area_nm2", "equivalent_diameter_px",
    "equivalent_diameter_nm", "perimeter_px", "perimeter_nm", "feret_max_px", "feret_max_nm",
    "feret_min_px", "feret_min_nm", "major_axis_px", "minor_axis_px", "major_axis_nm",
    "minor_axis_nm", "aspect_ratio", "circularity", "solidity", "eccentricity",
    "orientation_deg", "mean_intensity", "touches_border",
]


def sample_labels() -> np.ndarray:
    lab = np.zeros((40, 50), np.uint16)
    lab[2:10, 3:20] = 1
    lab[15:30, 15:30] = 2
    lab[32:40, 40:50] = 7
    return lab


# ------------------------------------------------------------------ registry


def test_registry_order_and_names():
    names = [c.name for c in OBJECT_COLUMNS]
    assert names[: len(REQUIRED_ORDER)] == REQUIRED_ORDER
    assert len(set(names)) == len(names)
    assert list(COLUMNS_BY_NAME) == names


def test_registry_units_match_name_suffixes():
    for c in OBJECT_COLUMNS:
        assert c.description, c.name
        if c.name.endswith("_nm2"):
            assert c.unit == "nm^2" and c.nullable, c.name
        elif c.name.endswith("_nm"):
            assert c.unit == "nm" and c.nullable, c.name
        elif c.name == "area_px":
            assert c.unit == "px^2"
        elif c.name.endswith("_px"):
            assert c.unit == "px" and not c.nullable, c.name
        elif c.name.endswith("_deg"):
            assert c.unit == "deg"
        else:
            assert c.unit is None, c.name


def test_every_schema_column_is_produced_with_its_dtype():
    for nm_per_px in (None, 1.5):
        cols = measure_objects(sample_labels(), np.ones((40, 50)), nm_per_px=nm_per_px)
        assert list(cols) == [c.name for c in OBJECT_COLUMNS if c.name != "sample"]
        for name, values in cols.items():
            col = COLUMNS_BY_NAME[name]
            assert values.dtype == numpy_dtype(col), name
            assert values.shape == (3,), name
            # the arrow type round-trips from the numpy dtype without loss
            assert pa.array(values).type == col.dtype, name


def test_objects_schema_field_metadata():
    schema = objects_schema()
    assert schema.names == [c.name for c in OBJECT_COLUMNS]
    assert schema.metadata[b"micrometry_schema_version"] == SCHEMA_VERSION.encode()
    f = schema.field("area_nm2")
    assert f.type == pa.float64() and f.nullable
    assert f.metadata[b"unit"] == b"nm^2"
    assert b"description" in f.metadata
    assert schema.field("label").type == pa.uint32() and not schema.field("label").nullable
    assert b"unit" not in schema.field("touches_border").metadata


# ------------------------------------------------------------------ objects_table


def test_objects_table_enforces_schema():
    table = objects_table(measure_objects(sample_labels(), nm_per_px=2.0), sample="plate1/img_001")
    assert table.schema.equals(objects_schema(), check_metadata=True)
    assert table.num_rows == 3
    assert table.column("sample").to_pylist() == ["plate1/img_001"] * 3
    assert table.column("label").to_pylist() == [1, 2, 7]
    assert table.column("area_nm2").to_pylist() == [4.0 * 136, 4.0 * 225, 4.0 * 80]


def test_uncalibrated_physical_columns_are_null_and_read_as_nan():
    table = objects_table(measure_objects(sample_labels()), sample="s")
    for c in OBJECT_COLUMNS:
        expected = table.num_rows if (c.name.endswith(("_nm", "_nm2")) or c.name == "mean_intensity") else 0
        assert table.column(c.name).null_count == expected, c.name
    df = table.to_pandas()
    assert df["feret_max_nm"].isna().all()
    assert (df["feret_max_px"] > 0).all()


def test_empty_table_has_full_schema(tmp_path):
    table = objects_table(measure_objects(np.zeros((8, 8), np.int32)), sample="empty")
    assert table.num_rows == 0
    assert table.schema.equals(objects_schema(), check_metadata=True)
    path = tmp_path / "objects" / "empty.parquet"
    write_parquet(table, path, metadata={"n": 0})
    back = pq.read_table(path)
    assert back.num_rows == 0
    assert back.schema.equals(objects_schema(), check_metadata=False)


def _columns():
    return measure_objects(sample_labels(), nm_per_px=1.0)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda c: c.pop("solidity"), r"missing \['solidity'\]"),
        (lambda c: c.update(area=np.ones(3)), r"unexpected \['area'\]"),
        (lambda c: c.update(sample=np.array(["x"] * 3, object)), r"unexpected \['sample'\]"),
        (lambda c: c.update(area_px=np.ones(2, np.int64)), "different lengths"),
        (lambda c: c.update(circularity=np.array([1.0, np.nan, 0.5])), "'circularity' is not nullable"),
        (lambda c: c.update(area_px=np.array([1.5, 2.0, 3.0])), "'area_px' cannot be stored as int64"),
        (lambda c: c.update(touches_border=np.array([None, True, False], object)), "'touches_border'"),
        (lambda c: c.update(label=np.ones((3, 1), np.uint32)), "'label' must be 1-D"),
    ],
)
def test_objects_table_rejects_bad_columns(mutate, match):
    cols = _columns()
    mutate(cols)
    with pytest.raises(ValueError, match=match):
        objects_table(cols, sample="s")


@pytest.mark.parametrize("sample", ["", None, 3])
def test_objects_table_rejects_bad_sample(sample):
    with pytest.raises(ValueError, match="sample"):
        objects_table(_columns(), sample=sample)


# ------------------------------------------------------------------ parquet


def test_parquet_round_trip_preserves_schema_values_and_metadata(tmp_path):
    cols = measure_objects(sample_labels(), np.full((40, 50), 12.0), nm_per_px=2.5)
    table = objects_table(cols, sample="plate1/img_001")
    path = tmp_path / "objects" / "plate1" / "img_001.parquet"
    meta = {
        "stage": "measure",
        "calibration": {"source": "tiff_tags", "confidence": "high", "nm_per_px": np.float64(2.5)},
        "model_sha256": "ab" * 32,
        "params": {"min_area_px": np.int64(10), "missing": float("nan")},
        "source": path,  # path-like -> str
    }
    write_parquet(table, path, metadata=meta)

    assert sorted(p.name for p in path.parent.iterdir()) == ["img_001.parquet"]  # no temp left
    back = pq.read_table(path)
    assert back.schema.equals(objects_schema(), check_metadata=False)
    for c in OBJECT_COLUMNS:
        field = back.schema.field(c.name)
        assert field.type == c.dtype and field.nullable == c.nullable, c.name
        assert field.metadata == objects_schema().field(c.name).metadata, c.name
    assert back.equals(table)

    got = read_metadata(path)
    assert got["schema_version"] == SCHEMA_VERSION
    assert got["micrometry_version"] == micrometry.__version__
    assert got["calibration"] == {"source": "tiff_tags", "confidence": "high", "nm_per_px": 2.5}
    assert got["params"] == {"min_area_px": 10, "missing": None}
    assert got["source"] == str(path)
    assert json.loads(pq.read_schema(path).metadata[b"micrometry"]) == got

    md = pq.ParquetFile(path).metadata
    assert md.row_group(0).column(0).compression == "ZSTD"

    df = pq.read_table(path).to_pandas()
    assert df["area_nm2"].tolist() == pytest.approx([6.25 * a for a in cols["area_px"]])
    assert df["mean_intensity"].tolist() == [12.0, 12.0, 12.0]
    assert str(df["label"].dtype) == "uint32" and str(df["touches_border"].dtype) == "bool"


def test_write_parquet_overwrites_atomically(tmp_path):
    path = tmp_path / "o.parquet"
    write_parquet(objects_table(_columns(), sample="a"), path, metadata={"run": 1})
    write_parquet(objects_table(_columns(), sample="b"), path, metadata={"run": 2})
    assert read_metadata(path)["run"] == 2
    assert pq.read_table(path).column("sample").to_pylist() == ["b"] * 3
    assert [p.name for p in tmp_path.iterdir()] == ["o.parquet"]


def test_write_parquet_caller_may_set_schema_version(tmp_path):
    path = tmp_path / "o.parquet"
    write_parquet(objects_table(_columns(), sample="a"), path, metadata={"schema_version": "images-1"})
    assert read_metadata(path)["schema_version"] == "images-1"


def test_write_parquet_bad_metadata_leaves_nothing(tmp_path):
    path = tmp_path / "o.parquet"
    table = objects_table(_columns(), sample="a")
    with pytest.raises(TypeError, match="metadata"):
        write_parquet(table, path, metadata=[("a", 1)])
    with pytest.raises(TypeError, match="o.parquet"):
        write_parquet(table, path, metadata={"obj": object()})
    assert list(tmp_path.iterdir()) == []


def test_read_metadata_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.parquet"
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        read_metadata(missing)
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), plain)
    with pytest.raises(ValueError, match="plain.parquet.*no micrometry metadata"):
        read_metadata(plain)
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match="junk.parquet.*not a readable Parquet"):
        read_metadata(junk)


def test_nan_free_physical_values_when_calibrated():
    table = objects_table(measure_objects(sample_labels(), nm_per_px=0.8), sample="s")
    for c in OBJECT_COLUMNS:
        if c.name.endswith(("_nm", "_nm2")):
            values = table.column(c.name).to_numpy()
            assert table.column(c.name).null_count == 0 and np.all(np.isfinite(values)), c.name
            assert math.isclose(values[0], table.column(c.name.replace("_nm2", "_px").replace("_nm", "_px")).to_numpy()[0] * (0.64 if c.name.endswith("_nm2") else 0.8))
