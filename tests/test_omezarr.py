"""Tests for micrometry.io.omezarr: NGFF image stores, labels, predictions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from micrometry.io import omezarr as oz
from micrometry.io.omezarr import (
    load_image,
    load_labels,
    load_prediction,
    open_image,
    pyramid_shapes,
    read_attrs,
    write_image_store,
    write_labels,
    write_prediction,
)

RNG = np.random.default_rng(7)


def _root_meta(store: Path) -> dict:
    return json.loads((store / "zarr.json").read_text())["attributes"]


def _ome_nodes(store: Path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    return list(Reader(parse_url(str(store)))())


def _random(shape, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return RNG.standard_normal(shape).astype(dtype) * 1000
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def _no_tmp_left(directory: Path) -> bool:
    return not [p for p in directory.rglob(".*") if ".tmp-" in p.name]


# --------------------------------------------------------------------------
# pyramid rule


@pytest.mark.parametrize(
    "shape,expected",
    [
        ((1024, 1024), [(1024, 1024)]),
        ((300, 1024), [(300, 1024)]),
        ((1025, 10), [(1025, 10), (512, 5)]),
        ((2500, 1300), [(2500, 1300), (1250, 650), (625, 325)]),
        ((4096, 4096), [(4096, 4096), (2048, 2048), (1024, 1024)]),
    ],
)
def test_pyramid_shapes(shape, expected):
    assert pyramid_shapes(shape) == expected
    assert max(expected[-1]) <= 1024
    assert len(expected) == 1 or max(expected[-2]) > 1024


# --------------------------------------------------------------------------
# image store


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_roundtrip_2500x1300_three_levels(tmp_path, dtype):
    image = _random((2500, 1300), dtype)
    store = tmp_path / "a.ome.zarr"
    write_image_store(store, image, attrs={"format": "tiff"}, nm_per_px=2.5)

    back = load_image(store)
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, image)

    ms = _root_meta(store)["ome"]["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["y", "x"]
    assert len(ms["datasets"]) == 3
    for level, expected in enumerate([(2500, 1300), (1250, 650), (625, 325)]):
        lazy = open_image(store, level)
        assert lazy.shape == expected
        assert lazy.dtype == np.dtype(dtype)
        # chunks at most 1024 px, ragged at the edges
        assert max(max(c) for c in lazy.chunks) <= 1024
    assert open_image(store, 0).chunks == ((1024, 1024, 452), (1024, 276))

    # napari's path: ome-zarr's reader sees a multiscale image of our dtype
    nodes = _ome_nodes(store)
    image_node = nodes[0]
    assert [type(s).__name__ for s in image_node.specs] == ["Multiscales"]
    assert len(image_node.data) == 3
    assert image_node.data[0].dtype == np.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(image_node.data[0]), image)


def test_small_image_single_level_and_exact_values(tmp_path):
    image = np.arange(300 * 200, dtype=np.uint16).reshape(300, 200)
    store = tmp_path / "s.ome.zarr"
    write_image_store(store, image, attrs={})
    ms = _root_meta(store)["ome"]["multiscales"][0]
    assert len(ms["datasets"]) == 1
    assert open_image(store).chunks == ((300,), (200,))
    np.testing.assert_array_equal(load_image(store), image)
    with pytest.raises(ValueError, match="level 1 does not exist"):
        load_image(store, level=1)


def test_pixel_size_in_coordinate_transformations(tmp_path):
    store = tmp_path / "c.ome.zarr"
    write_image_store(store, _random((1500, 900), np.uint8), attrs={}, nm_per_px=2.5)
    ms = _root_meta(store)["ome"]["multiscales"][0]
    assert [a.get("unit") for a in ms["axes"]] == ["nanometer", "nanometer"]
    scales = [next(t["scale"] for t in d["coordinateTransformations"] if t["type"] == "scale") for d in ms["datasets"]]
    assert scales == [[2.5, 2.5], [5.0, 5.0]]


def test_no_pixel_size_means_unit_scale_and_no_unit(tmp_path):
    store = tmp_path / "c.ome.zarr"
    write_image_store(store, _random((64, 32), np.uint8), attrs={})
    ms = _root_meta(store)["ome"]["multiscales"][0]
    assert all("unit" not in a for a in ms["axes"])
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 1.0]


def test_attrs_roundtrip_json_types(tmp_path):
    store = tmp_path / "a.ome.zarr"
    attrs = {
        "source": Path("/data/raw/x.tif"),
        "sha256": "ab" * 32,
        "shape": (64, 32),
        "dtype": "uint16",
        "n": np.int64(5),
        "color_conversion": None,
        "metadata": {"fei": {"Scan": {"PixelWidth": 2.5e-9}}},
    }
    write_image_store(store, _random((64, 32), np.uint16), attrs=attrs)
    assert read_attrs(store) == {
        "source": "/data/raw/x.tif",
        "sha256": "ab" * 32,
        "shape": [64, 32],
        "dtype": "uint16",
        "n": 5,
        "color_conversion": None,
        "metadata": {"fei": {"Scan": {"PixelWidth": 2.5e-9}}},
    }


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="2-D"):
        write_image_store(tmp_path / "x.ome.zarr", np.zeros((2, 3, 4)), attrs={})
    with pytest.raises(ValueError, match="nm_per_px"):
        write_image_store(tmp_path / "x.ome.zarr", np.zeros((3, 4)), attrs={}, nm_per_px=-1)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image(tmp_path / "missing.ome.zarr")
    assert not (tmp_path / "x.ome.zarr").exists()


def test_existing_store_replaced_whole(tmp_path):
    store = tmp_path / "r.ome.zarr"
    write_image_store(store, _random((2100, 100), np.uint16), attrs={"v": 1})
    (store / "stray.txt").write_text("left over")
    new = _random((50, 40), np.uint8)
    write_image_store(store, new, attrs={"v": 2})
    assert not (store / "stray.txt").exists()
    assert not (store / "s1").exists()  # old level gone
    np.testing.assert_array_equal(load_image(store), new)
    assert read_attrs(store) == {"v": 2}
    assert _no_tmp_left(tmp_path)


def test_failed_write_keeps_old_store(tmp_path, monkeypatch):
    store = tmp_path / "k.ome.zarr"
    old = _random((40, 30), np.uint16)
    write_image_store(store, old, attrs={"v": 1})

    real = oz._ome_writer()

    class Exploding:
        def write_image(self, image, group, **kwargs):
            real.write_image(image, group, **kwargs)  # half-built store in tmp
            raise RuntimeError("disk full")

    monkeypatch.setattr(oz, "_ome_writer", lambda: Exploding())
    with pytest.raises(RuntimeError, match="disk full"):
        write_image_store(store, _random((40, 30), np.uint16), attrs={"v": 2})
    np.testing.assert_array_equal(load_image(store), old)
    assert read_attrs(store) == {"v": 1}
    assert sorted(os.listdir(tmp_path)) == ["k.ome.zarr"]


# --------------------------------------------------------------------------
# labels


def _disc_labels(shape):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int64)
    for i, (cy, cx, r) in enumerate([(300, 200, 90), (1800, 1000, 150), (2400, 100, 60)], start=1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i
    labels[0, 0] = 70000  # needs more than 16 bits
    return labels


def test_labels_roundtrip_levels_and_reader(tmp_path):
    store = tmp_path / "l.ome.zarr"
    image = _random((2500, 1300), np.uint16)
    write_image_store(store, image, attrs={}, nm_per_px=1.5)
    labels = _disc_labels(image.shape)
    write_labels(store, labels, attrs={"method": "classical"})

    back = load_labels(store)
    assert back.dtype == np.uint32
    np.testing.assert_array_equal(back, labels)

    group = store / "labels" / "instances"
    meta = json.loads((group / "zarr.json").read_text())["attributes"]
    assert meta["micrometry"] == {"method": "classical"}
    assert meta["ome"]["image-label"]["source"] == {"image": "../../"}
    ms = meta["ome"]["multiscales"][0]
    img_ms = _root_meta(store)["ome"]["multiscales"][0]
    assert [d["coordinateTransformations"] for d in ms["datasets"]] == [
        d["coordinateTransformations"] for d in img_ms["datasets"]
    ]
    import zarr

    root = zarr.open_group(str(store), mode="r")
    for lvl, d in enumerate(ms["datasets"]):
        arr = root[f"labels/instances/{d['path']}"]
        assert arr.shape == open_image(store, lvl).shape
        assert arr.dtype == np.uint32
        # nearest downsampling never invents ids
        assert set(np.unique(arr[...])) <= set(np.unique(labels))

    assert _root_meta(store / "labels")["ome"]["labels"] == ["instances"]

    nodes = _ome_nodes(store)
    label_nodes = [n for n in nodes if any(type(s).__name__ == "Label" for s in n.specs)]
    assert len(label_nodes) == 1
    assert label_nodes[0].metadata["name"] == "instances"
    assert label_nodes[0].data[0].dtype == np.uint32
    np.testing.assert_array_equal(np.asarray(label_nodes[0].data[0]), labels)


def _file_snapshot(directory: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(directory)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_labels_replace_atomic_and_image_untouched(tmp_path):
    store = tmp_path / "r.ome.zarr"
    write_image_store(store, _random((1100, 60), np.uint8), attrs={"a": 1})
    image_files = {k: v for k, v in _file_snapshot(store).items() if k.startswith("s")}
    first = np.zeros((1100, 60), np.uint16)
    first[10:20, 10:20] = 3
    write_labels(store, first)
    second = np.zeros((1100, 60), np.uint16)
    second[500:600, 5:50] = 9
    write_labels(store, second)
    write_labels(store, first, name="manual")

    np.testing.assert_array_equal(load_labels(store), second)
    np.testing.assert_array_equal(load_labels(store, "manual"), first)
    assert _root_meta(store / "labels")["ome"]["labels"] == ["instances", "manual"]
    after = {k: v for k, v in _file_snapshot(store).items() if k.startswith("s")}
    assert after == image_files  # same bytes, same mtimes
    assert read_attrs(store) == {"a": 1}
    assert _no_tmp_left(store)


def test_labels_errors(tmp_path):
    store = tmp_path / "e.ome.zarr"
    write_image_store(store, np.zeros((20, 30), np.uint8), attrs={})
    with pytest.raises(ValueError, match="does not match the image shape"):
        write_labels(store, np.zeros((30, 20), np.uint32))
    with pytest.raises(ValueError, match="non-negative"):
        write_labels(store, -np.ones((20, 30), np.int32))
    with pytest.raises(ValueError, match="integer"):
        write_labels(store, np.zeros((20, 30), np.float32))
    with pytest.raises(ValueError, match="invalid node name"):
        write_labels(store, np.zeros((20, 30), np.uint32), name="../x")
    with pytest.raises(KeyError, match="no labels named 'instances'"):
        load_labels(store)


# --------------------------------------------------------------------------
# predictions


def test_predictions_roundtrip_float16(tmp_path):
    store = tmp_path / "p.ome.zarr"
    write_image_store(store, np.zeros((1300, 70), np.uint8), attrs={})
    flows = RNG.uniform(-1, 1, (2, 1300, 70)).astype(np.float32)
    prob = RNG.uniform(0, 1, (1300, 70))
    write_prediction(store, "flows", flows, attrs={"model_sha256": "0" * 64})
    write_prediction(store, "foreground", prob)

    got = load_prediction(store, "flows")
    assert got.dtype == np.float16 and got.shape == (2, 1300, 70)
    np.testing.assert_allclose(got, flows, atol=1e-3)  # float16: 11-bit mantissa
    np.testing.assert_array_equal(got, flows.astype(np.float16))
    assert load_prediction(store, "foreground").shape == (1300, 70)

    import zarr

    arr = zarr.open_array(str(store / "predictions" / "flows"), mode="r")
    assert arr.chunks == (2, 1024, 70)
    assert dict(arr.attrs) == {"axes": "cyx", "model_sha256": "0" * 64}

    write_prediction(store, "flows", np.zeros((3, 1300, 70)))
    assert load_prediction(store, "flows").shape == (3, 1300, 70)
    assert _no_tmp_left(store)
    np.testing.assert_array_equal(load_image(store), np.zeros((1300, 70), np.uint8))


def test_predictions_errors(tmp_path):
    store = tmp_path / "p.ome.zarr"
    write_image_store(store, np.zeros((20, 30), np.uint8), attrs={})
    with pytest.raises(ValueError, match="does not match the image shape"):
        write_prediction(store, "fg", np.zeros((20, 31)))
    with pytest.raises(ValueError, match=r"\(C, Y, X\) or \(Y, X\)"):
        write_prediction(store, "fg", np.zeros((1, 2, 20, 30)))
    with pytest.raises(KeyError, match="no prediction named"):
        load_prediction(store, "fg")


def test_labels_explicit_pixel_size_on_uncalibrated_image(tmp_path):
    store = tmp_path / "u.ome.zarr"
    write_image_store(store, np.zeros((1200, 40), np.uint8), attrs={})
    write_labels(store, np.ones((1200, 40), np.uint8), nm_per_px=0.8)
    meta = _root_meta(store / "labels" / "instances")["ome"]["multiscales"][0]
    assert [a["unit"] for a in meta["axes"]] == ["nanometer", "nanometer"]
    scales = [next(t["scale"] for t in d["coordinateTransformations"] if t["type"] == "scale") for d in meta["datasets"]]
    assert scales == [[0.8, 0.8], [1.6, 1.6]]
