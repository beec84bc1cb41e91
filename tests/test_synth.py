"""Tests for micrometry.train.synth: synthetic micrographs with exact ground truth."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from micrometry.train import synth
from micrometry.train.synth import SHAPES, render_micrograph, write_synthetic_dataset

SMALL = (256, 320)
UNIT_NM = {"nm": 1.0, "µm": 1e3, "μm": 1e3, "um": 1e3, "mm": 1e6, "Å": 0.1}


@pytest.fixture(scope="module")
def gallery():
    """A varied set of small renders: both modalities, data bars and panel letters forced on."""
    out = []
    for seed in range(16):
        out.append(
            render_micrograph(
                seed,
                shape=SMALL,
                modality="tem" if seed % 2 else "sem",
                data_bar_prob=1.0,
                panel_label_prob=1.0,
                dtype="uint16" if seed % 5 == 0 else "uint8",
            )
        )
    return out


def test_basic_contract(gallery):
    for m in gallery:
        assert m.image.shape == SMALL and m.labels.shape == SMALL
        assert m.image.dtype in (np.uint8, np.uint16)
        assert m.labels.dtype == np.uint32
        ids = np.unique(m.labels)
        assert ids[0] == 0
        np.testing.assert_array_equal(ids, np.arange(ids.size))  # consecutive 0..N
        assert m.n_objects == ids.size - 1
        assert m.modality in ("tem", "sem")
        assert 0.1 <= m.nm_per_px <= 50
        json.dumps(m.params, allow_nan=False)  # JSON-serialisable
        json.dumps(m.scalebar, allow_nan=False)
    assert sum(m.n_objects > 0 for m in gallery) >= 14
    assert {m.image.dtype.name for m in gallery} == {"uint8", "uint16"}


def test_particle_records_match_labels(gallery):
    """Every kept particle's recorded visible area is its label count; dropped ones were tiny."""
    for m in gallery:
        counts = np.bincount(m.labels.ravel(), minlength=m.n_objects + 1)
        kept = [p for p in m.params["particles"] if p["label"] is not None]
        assert len(kept) == m.n_objects
        assert sorted(p["label"] for p in kept) == list(range(1, m.n_objects + 1))
        for p in kept:
            assert counts[p["label"]] == p["visible_px"] >= 12
        assert all(p["visible_px"] < 12 for p in m.params["particles"] if p["label"] is None)


def test_deterministic():
    a = render_micrograph(123, shape=SMALL)
    b = render_micrograph(123, shape=SMALL)
    c = render_micrograph(124, shape=SMALL)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.params == b.params and a.scalebar == b.scalebar
    assert not np.array_equal(a.image, c.image)


def test_overlays_hold_no_particles(gallery):
    n_band = n_bar_in_band = 0
    for m in gallery:
        assert m.scalebar is not None
        for key in ("box_bbox", "bar_bbox", "text_bbox"):
            y0, x0, y1, x1 = m.scalebar[key]
            assert 0 <= y0 < y1 <= SMALL[0] and 0 <= x0 < x1 <= SMALL[1]
            assert not m.labels[y0:y1, x0:x1].any(), key
        # bar and text lie inside the region kept free of particles
        by0, bx0, by1, bx1 = m.scalebar["box_bbox"]
        for key in ("bar_bbox", "text_bbox"):
            y0, x0, y1, x1 = m.scalebar[key]
            assert by0 <= y0 and bx0 <= x0 and y1 <= by1 and x1 <= bx1
        panel = m.params["panel_label"]
        y0, x0, y1, x1 = panel["box_bbox"]
        assert not m.labels[y0:y1, x0:x1].any()
        if m.data_bar_rows:
            n_band += 1
            assert 0.05 * SMALL[0] <= m.data_bar_rows <= 0.11 * SMALL[0] or m.data_bar_rows == 12
            assert not m.labels[-m.data_bar_rows :].any()
            band = m.image[-m.data_bar_rows :]
            white = np.iinfo(m.image.dtype).max
            assert (band == white).any()  # white instrument text burned in
            assert np.median(band) < 0.15 * white  # on a dark band
            text_x1 = m.params["data_bar"]["text_bbox"][3]
            if m.scalebar["in_data_bar"]:  # instrument text stops before the scale bar
                n_bar_in_band += 1
                assert text_x1 <= m.scalebar["box_bbox"][1]
                assert m.scalebar["box_bbox"][0] >= SMALL[0] - m.data_bar_rows
        assert not (m.labels[m.ignore_mask()]).any()
    assert n_bar_in_band >= 1
    # data bars are SEM-only: every SEM image in the gallery has one, no TEM image does
    assert n_band == sum(m.modality == "sem" for m in gallery)
    assert all(m.data_bar_rows == 0 for m in gallery if m.modality == "tem")


def test_bar_length_matches_calibration(gallery):
    for m in gallery:
        sb = m.scalebar
        assert abs(sb["bar_px"] - sb["value_nm"] / m.nm_per_px) <= 1.0
        assert sb["value"] * UNIT_NM[sb["unit"]] == pytest.approx(sb["value_nm"], rel=1e-9)
        mant = sb["value_nm"] / 10 ** math.floor(math.log10(sb["value_nm"]))
        assert min(abs(mant - k) for k in (1, 2, 5)) < 1e-9  # a "nice" value
        assert 0.1 * SMALL[1] - 1 <= sb["bar_px"] <= 0.3 * SMALL[1] + 1
        assert sb["text"].replace(" ", "").endswith(sb["unit"])
        assert sb["bar_bbox"][3] - sb["bar_bbox"][1] == sb["bar_px"]


def _measured_span(m, pad: int) -> int:
    """Extreme columns of bar-coloured pixels in the bar's rows, `pad` columns either side."""
    sb = m.scalebar
    fg = np.iinfo(m.image.dtype).max if sb["color"] == "white" else 0
    y0, x0, y1, x1 = sb["bar_bbox"]
    win = m.image[y0:y1, max(0, x0 - pad) : x1 + pad]
    cols = np.flatnonzero((win == fg).any(axis=0))
    return int(cols[-1] - cols[0] + 1)


def test_rendered_bar_spans_bar_px(gallery):
    for m in gallery:
        assert _measured_span(m, 0) == m.scalebar["bar_px"]


@pytest.mark.parametrize("style", ["solid", "line", "ticks"])
@pytest.mark.parametrize("color", ["white", "black"])
def test_rendered_bar_ends_exactly(style, color):
    """With a background box around it, nothing of the bar colour lies beyond its ends."""
    m = render_micrograph(
        7, shape=SMALL, modality="tem", scalebar={"style": style, "color": color, "box": True}, panel_label_prob=0
    )
    assert m.scalebar["style"] == style and m.scalebar["color"] == color and m.scalebar["box"]
    assert _measured_span(m, 3) == m.scalebar["bar_px"]
    assert abs(m.scalebar["bar_px"] - m.scalebar["value_nm"] / m.nm_per_px) <= 0.5


def test_scalebar_overrides_and_units():
    m = render_micrograph(
        3,
        shape=SMALL,
        nm_per_px=2.5,
        scalebar={"value_nm": 200.0, "unit": "µm", "corner": "top-left", "label_pos": "below", "font": "DejaVuSerif"},
        panel_label_prob=0,
    )
    sb = m.scalebar
    assert m.nm_per_px == 2.5
    assert sb["bar_px"] == 80  # 200 nm / 2.5 nm/px
    assert sb["unit"] == "µm" and sb["text"].replace(" ", "") == "0.2µm"
    assert sb["corner"] == "top-left" and sb["box_bbox"][0] < SMALL[0] // 4 and sb["box_bbox"][1] < SMALL[1] // 4
    assert sb["text_bbox"][0] >= sb["bar_bbox"][2]  # label below the bar
    with pytest.raises(ValueError, match="unknown scalebar option"):
        render_micrograph(0, shape=SMALL, scalebar={"colour": "red"})


def test_no_scalebar():
    m = render_micrograph(5, shape=SMALL, scalebar=False)
    assert m.scalebar is None


def test_contrast_polarity():
    for seed in range(6):
        for modality in ("tem", "sem"):
            m = render_micrograph(
                seed, shape=SMALL, modality=modality, density="medium", data_bar_prob=0, panel_label_prob=0
            )
            assert m.n_objects > 0
            spec = ~m.ignore_mask()
            inside = m.image[(m.labels > 0) & spec].mean()
            outside = m.image[(m.labels == 0) & spec].mean()
            if modality == "tem":
                assert inside < outside, (seed, inside, outside)
            else:
                assert inside > outside, (seed, inside, outside)


@pytest.mark.parametrize("shape_name", ["disc", "ellipse", "rod", "core_shell", "triangle", "hexagon", "square"])
def test_single_particle_area(shape_name):
    """One particle away from the edges covers pi d^2 / 4 pixels (polygons lose a little to rounded corners)."""
    checked = 0
    for seed in range(30):
        m = render_micrograph(
            seed,
            shape=(240, 240),
            n_particles=1,
            shapes=shape_name,
            size_px=50,
            scalebar=False,
            panel_label_prob=0,
            data_bar_prob=0,
        )
        (p,) = m.params["particles"]
        assert p["shape"] == shape_name and m.n_objects == 1
        yy, xx = np.nonzero(m.labels)
        if yy.min() == 0 or xx.min() == 0 or yy.max() == 239 or xx.max() == 239:
            continue  # cut by the image edge
        expected = math.pi * p["diameter_px"] ** 2 / 4
        tol = 0.03 if shape_name in ("disc", "ellipse", "rod", "core_shell") else 0.10
        assert (m.labels == 1).sum() == pytest.approx(expected, rel=tol)
        if shape_name in ("disc", "core_shell"):  # centroid at the recorded centre
            assert yy.mean() == pytest.approx(p["center_yx"][0], abs=0.1)
            assert xx.mean() == pytest.approx(p["center_yx"][1], abs=0.1)
        checked += 1
        if checked == 3:
            break
    assert checked == 3


def test_n_particles_and_shapes():
    m = render_micrograph(2, shape=SMALL, n_particles=6, shapes=["disc", "rod"], size_px=20, data_bar_prob=0)
    assert m.params["n_placed"] == 6
    assert {p["shape"] for p in m.params["particles"]} <= {"disc", "rod"}


def test_tem_overlap_is_darker():
    """Mass-thickness contrast: absorption adds up where particles overlap."""
    rng = np.random.default_rng(0)
    shape = (64, 96)
    parts = []
    for cx in (40.0, 56.0):
        g = synth._make_shape(rng, "disc", 30.0, 0.0)
        yy = np.arange(64, dtype=np.float32)[:, None] - 32.0
        xx = np.arange(96, dtype=np.float32)[None, :] - cx
        sd = synth._shape_sd(g, xx, yy)
        parts.append({"g": g, "sd": sd, "slices": (slice(0, 64), slice(0, 96)), "mu": 1.0, "uv": (xx, yy)})
    p = {
        "bg_grain": 0.0,
        "bg_grain_sigma": 1.0,
        "bg_mottle": 0.0,
        "bg_mottle_sigma": 20.0,
        "particle_texture": 0.0,
        "particle_texture_sigma": 1.0,
    }
    img = synth._render_tem(rng, shape, parts, p)
    single = img[32, 30]  # inside the left disc only: 10 px from its centre
    double = img[32, 48]  # inside both: 8 px from each centre
    assert img[2, 2] == pytest.approx(1.0, abs=1e-6)  # bare film
    assert double < single < 1.0
    g = parts[0]["g"]
    t = synth._profile(g, np.array([-5.0, -7.0], dtype=np.float32))  # rim distances 15-10, 15-8
    assert 0 < t[0] < t[1] <= 1
    assert single == pytest.approx(math.exp(-t[0]), rel=1e-5)
    assert double == pytest.approx(math.exp(-2 * t[1]), rel=1e-5)  # exp(-a) exp(-b)


def test_bad_input_messages():
    with pytest.raises(ValueError, match="modality"):
        render_micrograph(0, shape=SMALL, modality="xray")
    with pytest.raises(ValueError, match="unknown particle shape"):
        render_micrograph(0, shape=SMALL, shapes=["star"])
    with pytest.raises(ValueError, match="dtype"):
        render_micrograph(0, shape=SMALL, dtype="float32")
    with pytest.raises(ValueError, match="at least 64"):
        render_micrograph(0, shape=(32, 32))
    with pytest.raises(ValueError, match="density"):
        render_micrograph(0, shape=SMALL, density="packed")


def test_font_table_glyph_coverage():
    """Fonts flagged unicode really have µ, μ and Å; all fonts have the ASCII we render."""
    from matplotlib.ft2font import FT2Font

    for name, (fname, unicode_ok) in synth._FONTS.items():
        cmap = FT2Font(str(synth._font_dir() / fname)).get_charmap()
        assert all(ord(c) in cmap for c in "0123456789.nmuAbcd()' "), name
        if unicode_ok:
            assert all(ord(c) in cmap for c in "µμÅ"), name
    assert "cmr10" not in synth._fonts_for("2 µm")
    assert "cmr10" in synth._fonts_for("2 um")


def test_dataset_files_and_determinism(tmp_path):
    kw = dict(shape=SMALL, tiff_fraction=0.5)
    a = write_synthetic_dataset(tmp_path / "a", n=3, seed=4, **kw)
    b = write_synthetic_dataset(tmp_path / "b", n=3, seed=4, **kw)
    c = write_synthetic_dataset(tmp_path / "c", n=2, seed=4, **kw)
    assert [p.name for p in a] == ["synth_000.png", "synth_001.tif", "synth_002.png"]
    assert all(p.parent == tmp_path / "a" / "images" for p in a)
    assert sorted(x.name for x in (tmp_path / "a" / "images").iterdir()) == [p.name for p in a]
    truth = sorted(x.name for x in (tmp_path / "a" / "truth").iterdir())
    assert truth == sorted([f"synth_00{i}.json" for i in range(3)] + [f"synth_00{i}.labels.tif" for i in range(3)])
    for sub in ("images", "truth"):
        for f in (tmp_path / "a" / sub).iterdir():
            assert f.read_bytes() == (tmp_path / "b" / sub / f.name).read_bytes(), f.name
            if (tmp_path / "c" / sub / f.name).exists():  # adding images leaves earlier ones alone
                assert f.read_bytes() == (tmp_path / "c" / sub / f.name).read_bytes(), f.name
    assert len(list((tmp_path / "c" / "images").iterdir())) == 2

    for i, path in enumerate(a):
        meta = json.loads((tmp_path / "a" / "truth" / f"synth_00{i}.json").read_text())
        for key in ("nm_per_px", "modality", "scalebar", "data_bar_rows", "n_objects", "seed", "params"):
            assert key in meta
        labels = tifffile.imread(tmp_path / "a" / "truth" / f"synth_00{i}.labels.tif")
        assert labels.dtype == np.uint32 and labels.shape == SMALL
        assert int(labels.max()) == meta["n_objects"]
        # the same image is re-rendered from (seed, index)
        m = render_micrograph(np.random.default_rng([4, i]), shape=SMALL)
        np.testing.assert_array_equal(labels, m.labels)
        assert meta["nm_per_px"] == m.nm_per_px
        if path.suffix == ".tif":
            with tifffile.TiffFile(path) as tif:
                fei = tif.fei_metadata
                img = tif.asarray()
            assert fei["Scan"]["PixelWidth"] * 1e9 == pytest.approx(meta["nm_per_px"], rel=1e-12)
            assert fei["Scan"]["PixelHeight"] * 1e9 == pytest.approx(meta["nm_per_px"], rel=1e-12)
            assert meta["format"] == "tiff-fei"
        else:
            from PIL import Image

            img = np.asarray(Image.open(path))
        np.testing.assert_array_equal(img, m.image)


def test_tiff_fraction_spread():
    picks = [synth._is_tiff(i, 0.25) for i in range(8)]
    assert picks == [False, False, False, True, False, False, False, True]
    assert not any(synth._is_tiff(i, 0.0) for i in range(10))
    assert all(synth._is_tiff(i, 1.0) for i in range(10))


def test_import_is_light():
    code = (
        "import sys, micrometry.train, micrometry.train.synth;"
        "bad = [m for m in ('torch', 'cupy', 'dask', 'zarr', 'matplotlib.pyplot') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_all_shapes_render():
    for i, s in enumerate(SHAPES):
        m = render_micrograph(i, shape=SMALL, shapes=s, n_particles=5, size_px=30, modality=("tem", "sem")[i % 2])
        assert m.n_objects >= 1
