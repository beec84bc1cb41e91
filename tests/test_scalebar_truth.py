"""Internal consistency of tests/data/scalebar_truth_real.csv.

The table is hand-verified ground truth of the scale bars burned into EMPS
micrographs (see tests/data/README.md).  These checks catch editing mistakes:
a malformed header, duplicate ids, a bar box that disagrees with the recorded
length, an nm_per_px that was not recomputed after a change, boxes outside the
picture.  The EMPS images are not in the repository; the checks that need them
(ids in metadata.csv, image sizes) are skipped when the data are not present.
"""

from __future__ import annotations

import csv
import json
import math
import struct
from pathlib import Path

import pytest

from micrometry.train.realdata import emps_dir

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "tests" / "data" / "scalebar_truth_real.csv"
SPLIT = REPO / "src" / "micrometry" / "train" / "splits" / "by_doi.json"

HEADER = [
    "id", "split", "has_scalebar", "label_text", "value", "unit", "orientation",
    "bar_length_px", "nm_per_px", "bar_x0", "bar_y0", "bar_x1", "bar_y1",
    "text_x0", "text_y0", "text_x1", "text_y1", "style", "notes",
]
NM_PER_UNIT = {"nm": 1.0, "um": 1000.0, "mm": 1e6, "A": 0.1}
BAR = ("bar_x0", "bar_y0", "bar_x1", "bar_y1")
TEXT = ("text_x0", "text_y0", "text_x1", "text_y1")


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG IHDR chunk, without decoding the image."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", path
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def table() -> tuple[list[str], list[dict[str, str]]]:
    with open(TABLE, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [dict(zip(header, r)) for r in reader]
        f.seek(0)
        lengths = [len(r) for r in csv.reader(f)]
    assert set(lengths) == {len(HEADER)}, f"rows with a wrong number of fields: {sorted(set(lengths))}"
    return header, rows


@pytest.fixture(scope="module")
def emps() -> Path:
    root = emps_dir()
    if root is None:
        pytest.skip("EMPS data (../shared/data/emps-train) not available")
    return root


def _box(row: dict[str, str], keys) -> tuple[int, int, int, int] | None:
    vals = [row[k] for k in keys]
    if all(v == "" for v in vals):
        return None
    assert all(v != "" for v in vals), f"{row['id']}: partly filled box {keys}"
    x0, y0, x1, y1 = (int(v) for v in vals)
    assert x0 < x1 and y0 < y1, f"{row['id']}: empty or inverted box {keys}: {(x0, y0, x1, y1)}"
    assert min(x0, y0) >= 0, f"{row['id']}: negative coordinate in {keys}"
    return x0, y0, x1, y1


def test_header_exact(table):
    header, _ = table
    assert header == HEADER


def test_size_and_counts(table):
    _, rows = table
    assert len(rows) >= 100
    assert sum(r["has_scalebar"] == "1" for r in rows) >= 60


def test_ids_unique_and_sorted(table):
    _, rows = table
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "duplicate ids"
    keys = [(r["split"], r["id"]) for r in rows]
    assert keys == sorted(keys), "rows must be sorted by split, then id"


def test_split_matches_project_split(table):
    _, rows = table
    split = json.loads(SPLIT.read_text())
    val, train = set(split["val_ids"]), set(split["train_ids"])
    for r in rows:
        assert r["split"] in ("train", "val"), r["id"]
        assert r["id"] in (val if r["split"] == "val" else train), f"{r['id']}: not in the {r['split']} split"
    assert val <= {r["id"] for r in rows}, "every validation image must be in the table"


def test_field_values(table):
    _, rows = table
    for r in rows:
        i = r["id"]
        assert r["has_scalebar"] in ("0", "1"), i
        if r["value"] != "" or r["unit"] != "":
            assert r["unit"] in NM_PER_UNIT, f"{i}: unit {r['unit']!r}"
            assert float(r["value"]) > 0, i
            assert r["label_text"].strip(), f"{i}: value without label text"
        if r["has_scalebar"] == "1":
            assert r["label_text"].strip(), f"{i}: bar without label text"
            assert r["unit"] in NM_PER_UNIT, f"{i}: unit {r['unit']!r}"
            value = float(r["value"])
            assert value > 0 and math.isfinite(value), i
            assert r["orientation"] in ("h", "v"), i
            assert _box(r, BAR) is not None, f"{i}: has_scalebar=1 without bar box"
            assert int(r["bar_length_px"]) > 0, i
            assert r["nm_per_px"] != "", i
        else:
            assert r["nm_per_px"] == "", f"{i}: nm_per_px without a usable bar"


def test_bar_length_matches_box(table):
    _, rows = table
    for r in rows:
        box = _box(r, BAR)
        _box(r, TEXT)
        if box is None:
            assert r["bar_length_px"] == "" and r["orientation"] == "", r["id"]
            continue
        assert r["orientation"] in ("h", "v"), r["id"]
        if r["bar_length_px"] == "":
            assert r["has_scalebar"] == "0", r["id"]
            continue
        x0, y0, x1, y1 = box
        extent = (x1 - x0) if r["orientation"] == "h" else (y1 - y0)
        across = (y1 - y0) if r["orientation"] == "h" else (x1 - x0)
        length = int(r["bar_length_px"])
        assert abs(extent - length) <= 2, f"{r['id']}: length {length} vs box extent {extent}"
        assert across < extent, f"{r['id']}: box is not elongated along {r['orientation']}"


def test_nm_per_px(table):
    _, rows = table
    for r in rows:
        if r["has_scalebar"] != "1":
            continue
        expected = float(r["value"]) * NM_PER_UNIT[r["unit"]] / int(r["bar_length_px"])
        assert float(r["nm_per_px"]) == pytest.approx(expected, rel=1e-6), r["id"]


def test_ids_in_emps_metadata(table, emps):
    _, rows = table
    with open(emps / "metadata.csv", encoding="utf-8", newline="") as f:
        known = {row["id"] for row in csv.DictReader(f)}
    missing = [r["id"] for r in rows if r["id"] not in known]
    assert not missing, f"ids not in EMPS metadata.csv: {missing}"


def test_boxes_inside_image(table, emps):
    _, rows = table
    for r in rows:
        w, h = _png_size(emps / "images" / f"{r['id']}.png")
        for keys in (BAR, TEXT):
            box = _box(r, keys)
            if box is not None:
                x0, y0, x1, y1 = box
                assert x1 <= w and y1 <= h, f"{r['id']}: {keys[0][:4]} box {box} outside {w}x{h}"
