"""Tests for micrometry.train.synth: synthetic micrographs with exact ground truth."""

from __future__ import annotations

import hashlib
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
    assert [p.name for p in b] == [p.name for p in a] and [p.name for p in c] == [p.name for p in a[:2]]
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


# --------------------------------------------------------------------------- backwards compatibility

# Renders of the generator as committed before `scalebar_variety` existed: SHA-256 of
# image.tobytes(), labels.tobytes() and of the JSON metadata below.  A segmentation model was
# trained on the default images, so the defaults must reproduce them bit for bit.  (Font
# rasterisation and numpy's generators are part of the recipe: the digests hold for the pinned
# environment of this repository.)
_COMPAT_CASES = [
    (0, dict(shape=SMALL)),
    (1, dict(shape=SMALL, modality="tem")),
    (2, dict(shape=SMALL, modality="sem", data_bar_prob=1.0)),
    (3, dict(shape=SMALL, modality="sem", data_bar_prob=1.0, panel_label_prob=1.0)),
    (4, dict(shape=SMALL, dtype="uint16")),
    (5, dict(shape=(384, 512), modality="sem", data_bar_prob=1.0, dtype="uint16")),
    (6, dict(shape=SMALL, scalebar={"style": "ticks", "color": "white", "box": True, "corner": "top-left"})),
    (7, dict(shape=SMALL, nm_per_px=2.5, scalebar={"value_nm": 200.0, "unit": "µm", "label_pos": "below", "font": "DejaVuSerif"})),
    (8, dict(shape=SMALL, scalebar=False, panel_label_prob=1.0)),
    (9, dict(shape=(384, 512), modality="tem", shapes=["rod", "disc"], density="crowded", jpeg_prob=1.0)),
    (10, dict(shape=SMALL, modality="sem", data_bar_prob=1.0, scalebar={"style": "line", "label_pos": "right"})),
    (11, dict(shape=SMALL, n_particles=8, size_px=25, scalebar={"unit": "Å", "font_px": 12})),
    (12, dict(shape=(300, 300), modality="sem", data_bar_prob=1.0, panel_label_prob=1.0)),
    (13, dict(shape=SMALL, modality="tem", scalebar={"corner": "bottom-left", "box": False, "color": "black"})),
]
_COMPAT_DIGESTS = [
    (
        "e4e1bfb2b59ad042de2107cc85681a6c7bcaed46f9f5ecfef9abf9b0ea3f0526",
        "62b1d565d5d1046cded881ce804786069539d18d577d24c4936b35593bebc3cc",
        "bdc66d0c1a3630f0d5ef06af0f5c340fb0655b3edc64af3c68ff500447b0828b",
    ),
    (
        "a48faa4c0f989ac8dff48509c4175c8023997cbad0aeaa377d2a54a0f9e310ba",
        "69ebb3a384a9d6752a7776922752876e4427b1c147f6e7b73d63845d35de8eae",
        "2f700a8a9955651a42c96e65d65458a646647f19d4c61ec83580278cef38ca74",
    ),
    (
        "e33fa457b0ae7752578f5fb8c220144dbd58ae207aaf89ee884cc637f167eeab",
        "ceb21716e59a3a6a776bf885728782320dc5e05a9809577d90d0766eededc8ef",
        "737f6d55685d9179669601bb97a37122d90346a8cde48990588733e5ab2fb048",
    ),
    (
        "e46f9eefec683a29c959259e2b23fc66d9dc8ff94634054a65434062593f2a03",
        "4dd3989addc116329ac191fcddd668da5bfe071e7e31f36fba35f1c58edd127d",
        "736bb396e3938ebb6132542e18d22e484d73d0c48f9a399343b9565f37da19bf",
    ),
    (
        "814af0d7945379b5f4342cd1a2e705bd358be617848736d8f2b6f96b16693045",
        "c4280b5aacb915704ad035769f35f781eb85eca68d6f5518f50e09060a0d851e",
        "b80b74e7dd05eeae9834432125ab360605672faabd4de461b5dda127c841bd3d",
    ),
    (
        "a8aff5b211670ee2b77c5bf83ce2dc1c2c60ea4aa19059e476185a0bd178875a",
        "83dfb8aee34b11a89364ed4c67546303ce0273b4d150ba1ab673a0a5dccb378d",
        "e3bf8dc0a8766b951b51b0ee46d5bc545003d7dff687e606222ac441bdfbe056",
    ),
    (
        "153cede79d12ae824c7204c9d0eaa061f6e05c92c3c1cc01625f7f3dbf802131",
        "538c4cb39ac05ffb449aa7e291d8fcbe6763d949b9c4c4e4d6aa4afd8312893a",
        "ca6f7c019b373bd066c1df1d560f91e768a9d88543ec25a68dd8116944dc5bcf",
    ),
    (
        "091d48cbda4f49684de6baab306198d648a28e10c03b704d1bc070eaf3d10d33",
        "b07e6dd0371b9ea5705c4f8dc2534b2080ea0cb4f4d1d84a1bb41d957c49707a",
        "bc0d9d90f88352ac52a4361954200848fcf41d83793f1642ec18739e1f46a063",
    ),
    (
        "995a148ed047b895424d12ee986fd5ed4cdbb95bd85bc55d9733b7a150b02d38",
        "d96f7a2471e60dce72a8d2eda5f3f8acd0ab1a6e033390a6e38fc96c3b316943",
        "e1090958229ca22b428eda58645c6ad62ca0fa9bcbb17e8ba058e8e227057ad2",
    ),
    (
        "842b7799569c5b1221963131fe9871c5525e07b98a4ae9885a38a9dde5db6816",
        "f6150af6c42df3c3afcc087a7bee046c42dd7764490be9d9a10a887733be7845",
        "cbd6db010cf14d6188a64cba7b4131edb12aea79f16eb3cc093a32cb8db3638c",
    ),
    (
        "417a9b5729ff95d7ad2edbd6afeb7d83c2d2408e5ee8e3181c28570b6a8d6994",
        "2f327ef200252227364343075eb52c8f0e2dd7274801c73b9556e6137fb0e1da",
        "fd254b106591e5f89e4da3575edcf450a03cfc06ce88c6bfaf32a8cf744e6420",
    ),
    (
        "68696a37a1ae99f943f32e99706b3043981ad385b08cf8fef0de16b4bea10d6e",
        "a41172ffa546f70333e28c612a843d4aca820320dcbf5ed7f05d937685588e52",
        "c53180761f9e39ca8659a2474a04067352bbe76d7e9fb3d6369b0cf3da720e98",
    ),
    (
        "428cc4c725df83c11e10e1230bba6731daa45f55c2d29107231ad273b960f1e9",
        "8a6ce184ae734c22acfb0ed9ab1e801b7440e686bff160beae3f2d074a80e394",
        "d75fcef57c3cf10e1296fff20289b2579039be492eeaa9e7d666da6f1226fc2b",
    ),
    (
        "684529d3019c355e0b5b7c933a4946f8a492550b780b5748493ffbb47e64c3be",
        "cf1883f61a8c99395d305335b9c0276205de0804e19a32d51ffb3169578869ee",
        "135f90317f172a8545ee383135ed79fbbd2cabbc2571ad50649e00e2b353c6c5",
    ),
]


@pytest.mark.parametrize("case", range(len(_COMPAT_CASES)))
def test_defaults_bit_identical_to_original(case):
    seed, kw = _COMPAT_CASES[case]
    m = render_micrograph(seed, **kw)
    meta = json.dumps(
        {"scalebar": m.scalebar, "params": m.params, "nm": m.nm_per_px, "mod": m.modality, "rows": m.data_bar_rows},
        sort_keys=True,
    )
    got = tuple(hashlib.sha256(b).hexdigest() for b in (m.image.tobytes(), m.labels.tobytes(), meta.encode()))
    assert got == _COMPAT_DIGESTS[case]
    # nothing of the variety machinery leaks into the default metadata
    assert "distractors" not in m.params and "scalebar_variety" not in m.params
    assert m.scalebar is None or "orientation" not in m.scalebar


# --------------------------------------------------------------------------- scale-bar variety


def _fg(m):
    return np.iinfo(m.image.dtype).max if m.scalebar["color"] == "white" else 0


def _check_bar_ink(m):
    """The bar colour fills `bar_bbox` tightly and spans `bar_px` along the bar's axis."""
    sb = m.scalebar
    y0, x0, y1, x1 = sb["bar_bbox"]
    ink = m.image[y0:y1, x0:x1] == _fg(m)
    assert ink[0].any() and ink[-1].any() and ink[:, 0].any() and ink[:, -1].any()  # tight
    axis = 0 if sb.get("orientation") == "vertical" else 1  # image axis along the bar
    along = np.flatnonzero(ink.any(axis=1 - axis))
    assert abs(int(along[-1] - along[0] + 1) - sb["bar_px"]) <= 1
    assert sb["bar_px"] == (y1 - y0 if axis == 0 else x1 - x0)
    assert abs(sb["bar_px"] - sb["value_nm"] / m.nm_per_px) <= 1.0
    if sb["style"] == "double":  # two full-length lines with a gap between them
        full = ink.all(axis=axis)  # cross-section positions inked along the whole length
        runs = np.flatnonzero(np.diff(np.concatenate([[0], full.astype(int), [0]])) == 1)
        assert runs.size == 2 and not full.all()
    return ink


def _check_text_ink(m):
    sb = m.scalebar
    y0, x0, y1, x1 = sb["text_bbox"]
    maxval = np.iinfo(m.image.dtype).max
    region = m.image[y0:y1, x0:x1].astype(float)
    assert (np.abs(region - _fg(m)) <= 0.1 * maxval).sum() >= 3


def _check_layout(m):
    sb = m.scalebar
    h, w = m.image.shape
    by0, bx0, by1, bx1 = sb["box_bbox"]
    assert 0 <= by0 < by1 <= h - m.data_bar_rows or sb["in_data_bar"]
    assert 0 <= bx0 < bx1 <= w
    for key in ("bar_bbox", "text_bbox"):
        y0, x0, y1, x1 = sb[key]
        assert by0 <= y0 < y1 <= by1 and bx0 <= x0 < x1 <= bx1, key
        assert not m.labels[y0:y1, x0:x1].any(), key
    ty0, tx0, ty1, tx1 = sb["text_bbox"]
    y0, x0, y1, x1 = sb["bar_bbox"]
    assert not (ty0 < y1 and y0 < ty1 and tx0 < x1 and x0 < tx1)  # label and bar apart
    assert not m.labels[by0:by1, bx0:bx1].any()


def _parse_label(sb):
    text, unit = sb["text"], sb["unit"]
    assert text.endswith(unit)
    number = text[: -len(unit)]
    assert number == number.rstrip() or number.endswith(" ")
    return float(number.strip().replace(",", "."))


VAR_UNIT_NM = {**UNIT_NM, "NM": 1.0, "UM": 1e3, "MM": 1e6}


@pytest.mark.parametrize("orientation", ["horizontal", "vertical"])
@pytest.mark.parametrize("style", ["solid", "line", "ticks", "double"])
def test_variety_styles_and_orientations(style, orientation):
    m = render_micrograph(
        11,
        shape=SMALL,
        modality="tem",
        scalebar={"style": style, "orientation": orientation, "box_style": "fill"},
        scalebar_variety=True,
        panel_label_prob=0,
    )
    sb = m.scalebar
    assert (sb["style"], sb["orientation"], sb["box"], sb["box_style"]) == (style, orientation, True, "fill")
    ink = _check_bar_ink(m)
    _check_text_ink(m)
    _check_layout(m)
    if orientation == "vertical":
        assert ink.shape[0] > ink.shape[1]
    # with a filled box around it, nothing of the bar colour lies beyond the bar's ends
    y0, x0, y1, x1 = sb["bar_bbox"]
    fg = _fg(m)
    if orientation == "horizontal":
        assert not (m.image[y0:y1, max(0, x0 - 2) : x0] == fg).any() or sb["label_pos"] == "left"
        assert not (m.image[y0:y1, x1 : x1 + 2] == fg).any() or sb["label_pos"] == "right"
    else:
        assert not (m.image[max(0, y0 - 2) : y0, x0:x1] == fg).any() or sb["label_pos"] == "above"
        assert not (m.image[y1 : y1 + 2, x0:x1] == fg).any() or sb["label_pos"] == "below"


@pytest.mark.parametrize(
    "orientation,corner",
    [("horizontal", c) for c in ("bottom-right", "top-left", "bottom-centre", "top-centre")]
    + [("vertical", c) for c in ("bottom-left", "top-right", "left-middle", "right-middle")],
)
def test_variety_positions(orientation, corner):
    m = render_micrograph(
        5,
        shape=SMALL,
        scalebar={"orientation": orientation, "corner": corner},
        scalebar_variety=True,
        panel_label_prob=0,
        data_bar_prob=0,
    )
    sb = m.scalebar
    assert sb["corner"] == corner and sb["orientation"] == orientation
    h, w = SMALL
    y0, x0, y1, x1 = sb["box_bbox"]
    edge = int(0.04 * min(h, w)) + 1  # the largest margin
    if corner.startswith("top"):
        assert y0 <= edge
    elif corner.startswith("bottom"):
        assert y1 >= h - edge
    else:
        assert abs((y0 + y1) / 2 - h / 2) <= 1
    if corner.endswith("centre"):
        assert abs((x0 + x1) / 2 - w / 2) <= 1
    elif "left" in corner:
        assert x0 <= edge
    else:
        assert x1 >= w - edge
    _check_bar_ink(m)
    _check_text_ink(m)
    _check_layout(m)


@pytest.mark.parametrize("rotation", [0, 90, 270])
def test_variety_vertical_label_rotation(rotation):
    m = render_micrograph(
        8,
        shape=SMALL,
        nm_per_px=2.0,
        scalebar={"orientation": "vertical", "text_rotation": rotation, "label_pos": "left", "value_nm": 100.0, "unit": "nm"},
        scalebar_variety=True,
        panel_label_prob=0,
    )
    sb = m.scalebar
    assert sb["text_rotation"] == rotation and sb["bar_px"] == 50
    ty0, tx0, ty1, tx1 = sb["text_bbox"]
    assert (ty1 - ty0 > tx1 - tx0) == (rotation != 0)  # "100 nm" is wider than tall unless rotated
    assert tx1 <= sb["bar_bbox"][1]  # label left of the bar
    _check_bar_ink(m)
    _check_text_ink(m)
    _check_layout(m)


@pytest.mark.parametrize("box_style", ["grey", "outline"])
@pytest.mark.parametrize("color", ["white", "black"])
def test_variety_box_styles(box_style, color):
    m = render_micrograph(
        4,
        shape=SMALL,
        scalebar={"box_style": box_style, "color": color},
        scalebar_variety=True,
        panel_label_prob=0,
        data_bar_prob=0,
        dtype="uint16" if color == "white" else "uint8",
    )
    sb = m.scalebar
    maxval = np.iinfo(m.image.dtype).max
    y0, x0, y1, x1 = sb["box_bbox"]
    frame = np.concatenate([m.image[y0, x0:x1], m.image[y1 - 1, x0:x1], m.image[y0:y1, x0], m.image[y0:y1, x1 - 1]])
    if box_style == "grey":
        level = sb["box_level"]
        assert (0.5 <= level <= 0.7) if color == "black" else (0.2 <= level <= 0.35)
        assert (frame == round(level * maxval)).all()
    else:
        assert sb["box_outline_px"] in (1, 2) and sb["box_level"] == (1.0 if color == "white" else 0.0)
        assert (frame == _fg(m)).all()
    _check_bar_ink(m)
    _check_text_ink(m)
    _check_layout(m)


@pytest.mark.parametrize(
    "nm_per_px,overrides,text",
    [
        (2.5, {"value_nm": 500.0, "unit": "µm", "decimal_sep": ",", "space": True}, "0,5 µm"),
        (2.5, {"value_nm": 500.0, "unit": "μm", "decimal_sep": ".", "space": False}, "0.5μm"),
        (0.05, {"value_nm": 2.5, "unit": "nm", "decimal_sep": ".", "space": True}, "2.5 nm"),
        (2.5, {"value_nm": 250.0, "unit": "um", "decimal_sep": ",", "space": False}, "0,25um"),
        (10.0, {"value_nm": 2500.0, "unit": "µm", "decimal_sep": ",", "space": True}, "2,5 µm"),
        (1.0, {"value_nm": 100.0, "unit": "NM", "space": False}, "100NM"),
    ],
)
def test_variety_label_spellings(nm_per_px, overrides, text):
    m = render_micrograph(
        2, shape=SMALL, nm_per_px=nm_per_px, scalebar=overrides, scalebar_variety=True, data_bar_prob=0, panel_label_prob=0
    )
    sb = m.scalebar
    assert sb["text"] == text and sb["unit"] == overrides["unit"]
    assert _parse_label(sb) == sb["value"]
    assert sb["value"] * VAR_UNIT_NM[sb["unit"]] == pytest.approx(sb["value_nm"], rel=1e-12)
    assert sb["value_nm"] == overrides["value_nm"]
    _check_bar_ink(m)
    _check_text_ink(m)


def test_variety_option_errors():
    with pytest.raises(ValueError, match="need scalebar_variety=True"):
        render_micrograph(0, shape=SMALL, scalebar={"orientation": "vertical"})
    with pytest.raises(ValueError, match="style must be 'solid', 'line' or 'ticks'"):
        render_micrograph(0, shape=SMALL, scalebar={"style": "double"})
    cases = [
        ({"orientation": "diagonal"}, "orientation must be"),
        ({"orientation": "horizontal", "corner": "left-middle"}, "corner .position. of a horizontal bar"),
        ({"orientation": "vertical", "corner": "bottom-centre"}, "corner .position. of a vertical bar"),
        ({"orientation": "horizontal", "text_rotation": 90}, "text_rotation needs orientation='vertical'"),
        ({"orientation": "vertical", "text_rotation": 45}, "text_rotation must be 0, 90 or 270"),
        ({"orientation": "vertical", "text_rotation": 90, "label_pos": "above"}, "rotated text sits left or right"),
        ({"box": False, "box_style": "grey"}, "box_style given together with box=False"),
        ({"box_style": "shadow"}, "box_style must be one of"),
        ({"style": "dotted"}, "style must be one of"),
        ({"decimal_sep": ";"}, "decimal_sep must be"),
        ({"unit": "Nm"}, "unsupported scale-bar unit"),
        ({"colour": "red"}, "unknown scalebar option"),
    ]
    for overrides, msg in cases:
        with pytest.raises(ValueError, match=msg):
            render_micrograph(0, shape=SMALL, modality="tem", scalebar=overrides, scalebar_variety=True)


@pytest.fixture(scope="module")
def variety_sweep():
    return [render_micrograph(seed, shape=SMALL, scalebar_variety=True) for seed in range(40)]


def test_variety_sweep_covers_everything(variety_sweep):
    sbs = [m.scalebar for m in variety_sweep]
    assert {sb["orientation"] for sb in sbs} == {"horizontal", "vertical"}
    assert {sb["style"] for sb in sbs} == {"solid", "line", "ticks", "double"}
    assert {sb["box_style"] for sb in sbs} >= {None, "fill", "grey", "outline"}
    assert any(sb["text_rotation"] for sb in sbs)
    assert any(sb["corner"].endswith(("centre", "middle")) for sb in sbs)
    kinds = {d["kind"] for m in variety_sweep for d in m.params["distractors"]}
    assert "text" in kinds and kinds - {"text"}
    assert all(m.params["scalebar_variety"] is True for m in variety_sweep)
    n_vert = sum(sb["orientation"] == "vertical" for sb in sbs)
    assert 2 <= n_vert <= 14  # about 15 %
    corners = sum(sb["corner"] in ("bottom-right", "bottom-left", "top-right", "top-left") for sb in sbs)
    assert corners > len(sbs) / 2  # corners stay the most common


def test_variety_sweep_ground_truth(variety_sweep):
    for m in variety_sweep:
        sb = m.scalebar
        json.dumps(m.params, allow_nan=False)
        json.dumps(sb, allow_nan=False)
        _check_bar_ink(m)
        _check_text_ink(m)
        _check_layout(m)
        assert _parse_label(sb) == sb["value"]
        assert sb["value"] * VAR_UNIT_NM[sb["unit"]] == pytest.approx(sb["value_nm"], rel=1e-9)
        ids = np.unique(m.labels)
        np.testing.assert_array_equal(ids, np.arange(ids.size))
        assert not m.labels[m.ignore_mask()].any()


def test_variety_distractors_stay_clear(variety_sweep):
    n = 0
    h, w = SMALL
    for m in variety_sweep:
        sb = m.scalebar
        mask = m.ignore_mask()
        maxval = np.iinfo(m.image.dtype).max
        for d in m.params["distractors"]:
            n += 1
            y0, x0, y1, x1 = d["bbox"]
            assert 0 <= y0 < y1 <= h - m.data_bar_rows and 0 <= x0 < x1 <= w
            by0, bx0, by1, bx1 = sb["box_bbox"]
            assert not (y0 < by1 and by0 < y1 and x0 < bx1 and bx0 < x1), (d, sb["box_bbox"])
            assert mask[y0:y1, x0:x1].all() and not m.labels[y0:y1, x0:x1].any()
            assert (d["text"] is None) == (d["kind"] != "text")
            iy0, ix0, iy1, ix1 = d["ink_bbox"]
            fg = maxval if d["color"] == "white" else 0
            # drawn: anti-aliased thin glyphs and 1 px diagonals need not reach full ink anywhere
            assert np.abs(m.image[iy0:iy1, ix0:ix1].astype(float) - fg).min() <= 0.5 * maxval
            for e in m.params["distractors"]:
                if e is not d:
                    ey0, ex0, ey1, ex1 = e["bbox"]
                    assert not (y0 < ey1 and ey0 < y1 and x0 < ex1 and ex0 < x1)
    assert n >= 20


def test_variety_deterministic():
    a = render_micrograph(77, shape=SMALL, scalebar_variety=True)
    b = render_micrograph(77, shape=SMALL, scalebar_variety=True)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.params == b.params and a.scalebar == b.scalebar
