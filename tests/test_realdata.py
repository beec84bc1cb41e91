"""Tests for micrometry.train.realdata: the by-DOI split and the EMPS loaders."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from micrometry.train import realdata as emps


def _write_fake_emps(root, rows):
    """Write a tiny EMPS-like directory: metadata.csv, images/, segmaps/."""
    (root / "images").mkdir(parents=True)
    (root / "segmaps").mkdir()
    lines = ["id,doi,locator"] + [f"{i},{d},gr1" for i, d in rows]
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def real_root():
    root = emps.emps_dir()
    if root is None:
        pytest.skip("EMPS data not available")
    return root


# ---------------------------------------------------------------- split rule


def test_make_split_groups_by_doi_and_hits_target(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for d in range(60):
        for k in range(int(rng.integers(1, 4))):
            rows.append((f"img{d:03d}_{k}", f"10.1000/paper.{d}"))
    _write_fake_emps(tmp_path, rows)
    split = emps.make_split(tmp_path / "metadata.csv")
    n = len(rows)
    assert sorted(split["train_ids"] + split["val_ids"]) == sorted(i for i, _ in rows)
    assert not set(split["train_ids"]) & set(split["val_ids"])
    doi_of = dict(rows)
    val_dois = {doi_of[i] for i in split["val_ids"]}
    train_dois = {doi_of[i] for i in split["train_ids"]}
    assert val_dois == set(split["val_dois"])
    assert not val_dois & train_dois
    # at least the target, and over it by less than one DOI's worth (≤ 3 images here)
    assert 0.2 * n <= len(split["val_ids"]) < 0.2 * n + 3
    # the validation DOIs are exactly the lowest sha256 hashes
    import hashlib

    ranked = sorted({d for _, d in rows}, key=lambda d: hashlib.sha256(d.encode()).hexdigest())
    assert set(ranked[: len(val_dois)]) == val_dois


def test_make_split_is_deterministic_and_order_independent(tmp_path):
    rows = [(f"i{k}", f"doi/{k % 17}") for k in range(80)]
    a = _write_fake_emps(tmp_path / "a", rows)
    b = _write_fake_emps(tmp_path / "b", rows[::-1])
    assert emps.make_split(a / "metadata.csv") == emps.make_split(b / "metadata.csv")


def test_read_metadata_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(emps.EmpsDataError, match="nope.csv"):
        emps.read_metadata(missing)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,locator\na,gr1\n")
    with pytest.raises(emps.EmpsDataError, match="bad.csv.*'doi'"):
        emps.read_metadata(bad)
    dup = tmp_path / "dup.csv"
    dup.write_text("id,doi,locator\na,d1,x\na,d2,x\n")
    with pytest.raises(emps.EmpsDataError, match="twice"):
        emps.read_metadata(dup)


def test_env_var_overrides_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(emps.EMPS_DIR_ENV, str(tmp_path / "absent"))
    assert emps.emps_dir() is None
    with pytest.raises(emps.EmpsDataError, match="absent"):
        emps.load_emps_item("x")
    _write_fake_emps(tmp_path / "here", [("a", "d")])
    monkeypatch.setenv(emps.EMPS_DIR_ENV, str(tmp_path / "here"))
    assert emps.emps_dir() == tmp_path / "here"


# ---------------------------------------------------------------- loader


def test_load_item_grey_and_relabels(tmp_path):
    root = _write_fake_emps(tmp_path, [("abc", "d")])
    grey = np.arange(30 * 40, dtype=np.uint8).reshape(30, 40)
    Image.fromarray(np.stack([grey] * 3, axis=-1), mode="RGB").save(root / "images" / "abc.png")
    seg = np.zeros((30, 40), np.uint16)
    seg[2:8, 2:8] = 7
    seg[10:20, 10:30] = 300
    Image.fromarray(seg).save(root / "segmaps" / "abc.png")
    image, labels = emps.load_emps_item("abc", root)
    assert image.dtype == np.uint8 and image.shape == (30, 40)
    np.testing.assert_array_equal(image, grey)
    assert labels.dtype == np.uint32
    assert set(np.unique(labels)) == {0, 1, 2}
    np.testing.assert_array_equal(labels > 0, seg > 0)
    assert (labels[2:8, 2:8] == 1).all() and (labels[10:20, 10:30] == 2).all()


def test_load_item_colour_uses_luma(tmp_path):
    root = _write_fake_emps(tmp_path, [("c", "d")])
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200  # pure red: luma 0.2125 * 200 = 42.5 -> 42
    Image.fromarray(rgb, mode="RGB").save(root / "images" / "c.png")
    Image.fromarray(np.zeros((8, 8), np.uint16)).save(root / "segmaps" / "c.png")
    image, labels = emps.load_emps_item("c", root)
    assert int(image[0, 0]) == 42
    assert labels.max() == 0


def test_load_item_errors(tmp_path):
    root = _write_fake_emps(tmp_path, [("m", "d")])
    with pytest.raises(emps.EmpsDataError, match="m.png"):
        emps.load_emps_item("m", root)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "images" / "m.png")
    Image.fromarray(np.zeros((9, 8), np.uint16)).save(root / "segmaps" / "m.png")
    with pytest.raises(emps.EmpsDataError, match="shape"):
        emps.load_emps_item("m", root)


def test_iter_emps_rejects_unknown_split():
    with pytest.raises(ValueError, match="'train' or 'val'"):
        next(emps.iter_emps("test"))


# ---------------------------------------------------------------- real data


def test_committed_split_matches_make_split(real_root):
    committed = emps.load_split()
    on_disk = json.loads(emps.SPLIT_PATH.read_text())
    assert committed == on_disk
    assert emps.make_split(real_root / "metadata.csv") == committed


def test_committed_split_properties(real_root):
    split = emps.load_split()
    rows = emps.read_metadata(real_root / "metadata.csv")
    ids = {r["id"] for r in rows}
    assert set(split["train_ids"]) | set(split["val_ids"]) == ids
    assert not set(split["train_ids"]) & set(split["val_ids"])
    frac = len(split["val_ids"]) / len(ids)
    assert 0.18 <= frac <= 0.22
    doi_of = {r["id"]: r["doi"] for r in rows}
    assert not {doi_of[i] for i in split["val_ids"]} & {doi_of[i] for i in split["train_ids"]}


def test_iter_emps_real_first_val_item(real_root):
    item_id, image, labels = next(emps.iter_emps("val"))
    assert item_id == emps.load_split()["val_ids"][0]
    assert image.dtype == np.uint8 and labels.dtype == np.uint32
    assert image.shape == labels.shape and image.ndim == 2
    n = int(labels.max())
    assert n >= 1
    np.testing.assert_array_equal(np.unique(labels), np.arange(n + 1))
