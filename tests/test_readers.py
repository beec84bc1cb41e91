"""Tests for micrometry.io.readers: every format, dtype and colour mode."""

from __future__ import annotations

import hashlib
import io
import struct
import sys
import zlib
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile
from PIL import Image

from micrometry.io.readers import (
    DEFAULT_MAX_PIXELS,
    LUMA_BT709,
    SUPPORTED_EXTENSIONS,
    ImageReadError,
    RawImage,
    read_image,
    sha256_file,
    sniff_format,
)

sys.path.insert(0, str(Path(__file__).parent))
from dmwriter import write_dm  # noqa: E402

RNG = np.random.default_rng(12345)
G8 = RNG.integers(0, 256, (23, 31), dtype=np.uint8)
G16 = RNG.integers(0, 65536, (23, 31), dtype=np.uint16)
RGB8 = RNG.integers(0, 256, (23, 31, 3), dtype=np.uint8)


def luma_reference(rgb: np.ndarray) -> np.ndarray:
    """Independent BT.709 luma: per-pixel Python arithmetic, round half even."""
    out = np.empty(rgb.shape[:2], dtype=rgb.dtype)
    w_r, w_g, w_b = 0.2125, 0.7154, 0.0721
    for idx in np.ndindex(out.shape):
        r, g, b = (float(v) for v in rgb[idx][:3])
        out[idx] = round(w_r * r + w_g * g + w_b * b)
    return out


# --------------------------------------------------------------------------
# constants and helpers


def test_constants():
    assert SUPPORTED_EXTENSIONS == (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dm3", ".dm4", ".mrc")
    assert DEFAULT_MAX_PIXELS == 400_000_000
    assert LUMA_BT709 == (0.2125, 0.7154, 0.0721)
    assert abs(sum(LUMA_BT709) - 1.0) < 1e-12


def test_luma_known_values(tmp_path):
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30], [255, 255, 255]]], dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    img = read_image(tmp_path / "c.png")
    # 0.2125*255 = 54.19 -> 54; 0.7154*255 = 182.43 -> 182; 0.0721*255 = 18.39 -> 18;
    # 2.125 + 14.308 + 2.163 = 18.596 -> 19; white stays 255
    assert img.data.tolist() == [[54, 182, 18, 19, 255]]
    assert img.data.dtype == np.uint8
    assert img.color_conversion == {
        "from": "RGB",
        "method": "luma_bt709",
        "weights": [0.2125, 0.7154, 0.0721],
        "alpha_dropped": False,
    }


def test_sha256_file(tmp_path):
    p = tmp_path / "x.bin"
    payload = bytes(range(256)) * 5000
    p.write_bytes(payload)
    assert sha256_file(p) == hashlib.sha256(payload).hexdigest()
    assert sha256_file(p, chunk_bytes=7) == hashlib.sha256(payload).hexdigest()


# --------------------------------------------------------------------------
# Pillow formats


@pytest.mark.parametrize("array", [G8, G16], ids=["uint8", "uint16"])
def test_png_grey_exact(tmp_path, array):
    Image.fromarray(array).save(tmp_path / "g.png")
    img = read_image(tmp_path / "g.png")
    assert isinstance(img, RawImage)
    assert img.format == "png"
    assert img.data.dtype == array.dtype
    np.testing.assert_array_equal(img.data, array)
    assert img.color_conversion is None
    assert img.path == str(tmp_path / "g.png")


def test_png_rgb_luma(tmp_path):
    Image.fromarray(RGB8).save(tmp_path / "c.png")
    img = read_image(tmp_path / "c.png")
    np.testing.assert_array_equal(img.data, luma_reference(RGB8))


def test_png_rgb_equal_channels_is_exact(tmp_path):
    Image.fromarray(np.dstack([G8, G8, G8])).save(tmp_path / "c.png")
    img = read_image(tmp_path / "c.png")
    np.testing.assert_array_equal(img.data, G8)
    assert img.color_conversion["method"] == "equal_channels"
    assert img.color_conversion["from"] == "RGB"


def test_png_rgba_alpha_dropped(tmp_path):
    alpha = np.full(G8.shape, 128, np.uint8)
    Image.fromarray(np.dstack([RGB8, alpha]), mode="RGBA").save(tmp_path / "c.png")
    img = read_image(tmp_path / "c.png")
    np.testing.assert_array_equal(img.data, luma_reference(RGB8))
    assert img.color_conversion["from"] == "RGBA"
    assert img.color_conversion["alpha_dropped"] is True


def test_png_la(tmp_path):
    Image.fromarray(np.dstack([G8, 255 - G8]), mode="LA").save(tmp_path / "la.png")
    img = read_image(tmp_path / "la.png")
    np.testing.assert_array_equal(img.data, G8)
    assert img.color_conversion == {"from": "LA", "method": "grey_channel", "alpha_dropped": True}


def test_png_palette_grey(tmp_path):
    Image.fromarray(G8).convert("P").save(tmp_path / "p.png")
    img = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(img.data, G8)
    assert img.color_conversion["from"] == "P"
    assert img.color_conversion["method"] == "equal_channels"


def test_png_16bit_rgb_keeps_16_bits(tmp_path):
    import imagecodecs

    rgb16 = RNG.integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    (tmp_path / "c16.png").write_bytes(imagecodecs.png_encode(rgb16))
    img = read_image(tmp_path / "c16.png")
    assert img.data.dtype == np.uint16
    np.testing.assert_array_equal(img.data, luma_reference(rgb16))
    assert img.data.max() > 255


def test_bmp_grey_palette(tmp_path):
    Image.fromarray(G8).save(tmp_path / "g.bmp")
    img = read_image(tmp_path / "g.bmp")
    assert img.format == "bmp"
    np.testing.assert_array_equal(img.data, G8)


def test_bmp_rgb(tmp_path):
    Image.fromarray(RGB8).save(tmp_path / "c.bmp")
    img = read_image(tmp_path / "c.bmp")
    np.testing.assert_array_equal(img.data, luma_reference(RGB8))


def test_jpeg_grey_and_content_sniffing(tmp_path):
    flat = np.full((16, 24), 137, np.uint8)  # constant blocks survive JPEG exactly
    buf = io.BytesIO()
    Image.fromarray(flat).save(buf, format="JPEG", quality=95)
    (tmp_path / "really_a_jpeg.png").write_bytes(buf.getvalue())
    img = read_image(tmp_path / "really_a_jpeg.png")
    assert img.format == "jpeg"
    assert img.data.dtype == np.uint8
    np.testing.assert_array_equal(img.data, flat)
    assert sniff_format(tmp_path / "really_a_jpeg.png") == "jpeg"


def test_jpeg_rgb(tmp_path):
    flat = np.zeros((16, 16, 3), np.uint8)
    flat[...] = (200, 100, 50)
    Image.fromarray(flat).save(tmp_path / "c.jpg", quality=100)
    img = read_image(tmp_path / "c.jpg")
    # 0.2125*200 + 0.7154*100 + 0.0721*50 = 117.645 -> 118 (+-2 for JPEG chroma rounding)
    assert abs(int(img.data.mean().round()) - 118) <= 2
    assert img.color_conversion["method"] == "luma_bt709"


def test_bilevel_png(tmp_path):
    bits = G8 > 128
    Image.fromarray(bits).save(tmp_path / "b.png")
    img = read_image(tmp_path / "b.png")
    np.testing.assert_array_equal(img.data, np.where(bits, 255, 0).astype(np.uint8))
    assert img.color_conversion["method"] == "bilevel_to_0_255"


# --------------------------------------------------------------------------
# TIFF


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.uint16, np.int16, np.uint32, np.int32, np.float32, np.float64]
)
def test_tiff_dtypes_exact(tmp_path, dtype):
    data = (RNG.standard_normal((17, 19)) * 1000).astype(dtype)
    tifffile.imwrite(tmp_path / "t.tif", data)
    img = read_image(tmp_path / "t.tif")
    assert img.format == "tiff"
    assert img.data.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(img.data, data)
    assert img.color_conversion is None
    assert img.metadata["tiff"]["n_pages"] == 1


def test_tiff_big_endian(tmp_path):
    tifffile.imwrite(tmp_path / "be.tif", G16, byteorder=">")
    img = read_image(tmp_path / "be.tif")
    assert img.data.dtype == np.dtype("=u2")
    np.testing.assert_array_equal(img.data, G16)


def test_tiff_compressed(tmp_path):
    tifffile.imwrite(tmp_path / "z.tif", G16, compression="zlib")
    np.testing.assert_array_equal(read_image(tmp_path / "z.tif").data, G16)


def test_tiff_float_nan_kept(tmp_path):
    data = G16.astype(np.float32)
    data[0, 0], data[1, 1] = np.nan, np.inf
    tifffile.imwrite(tmp_path / "f.tif", data)
    img = read_image(tmp_path / "f.tif")
    assert np.isnan(img.data[0, 0]) and np.isinf(img.data[1, 1])
    np.testing.assert_array_equal(img.data[2:], data[2:])


def test_tiff_multipage_first_page(tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([G16, G16 // 2, G16 // 3]), photometric="minisblack")
    img = read_image(tmp_path / "stack.tif")
    np.testing.assert_array_equal(img.data, G16)


@pytest.mark.parametrize("planar", ["contig", "separate"])
def test_tiff_rgb16(tmp_path, planar):
    rgb16 = RNG.integers(0, 65536, (13, 15, 3), dtype=np.uint16)
    stored = rgb16 if planar == "contig" else np.moveaxis(rgb16, -1, 0)
    tifffile.imwrite(tmp_path / "c.tif", stored, photometric="rgb", planarconfig=planar)
    img = read_image(tmp_path / "c.tif")
    assert img.data.dtype == np.uint16
    np.testing.assert_array_equal(img.data, luma_reference(rgb16))


def test_tiff_rgba(tmp_path):
    rgba = np.dstack([RGB8, np.full(G8.shape, 255, np.uint8)])
    tifffile.imwrite(tmp_path / "c.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    img = read_image(tmp_path / "c.tif")
    np.testing.assert_array_equal(img.data, luma_reference(RGB8))
    assert img.color_conversion["alpha_dropped"] is True


# --------------------------------------------------------------------------
# DM3 / DM4 and MRC


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.int16])
def test_dm_roundtrip(tmp_path, version, dtype):
    data = (RNG.standard_normal((21, 34)) * 500).astype(dtype)
    path = write_dm(tmp_path / f"a.dm{version}", data, version=version, scale_xy=(0.5, 0.5), units_xy=("nm", "nm"))
    img = read_image(path)
    assert img.format == f"dm{version}"
    assert img.data.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(img.data, data)  # the thumbnail (image 0) is skipped
    axes = {a["name"]: a for a in img.metadata["dm"]["axes"]}
    assert axes["x"]["scale"] == pytest.approx(0.5)
    assert axes["x"]["units"] == "nm"
    assert axes["x"]["size"] == 34 and axes["y"]["size"] == 21


@pytest.mark.parametrize("version", [3, 4])
def test_dm_big_endian(tmp_path, version):
    path = write_dm(tmp_path / f"be.dm{version}", G16, version=version, byteorder=">")
    np.testing.assert_array_equal(read_image(path).data, G16)


def test_dm_image_tags_in_metadata(tmp_path):
    path = write_dm(tmp_path / "a.dm3", G16, image_tags={"Microscope Info": {"Name": "Titan", "Voltage": 300000.0}})
    meta = read_image(path).metadata["dm"]
    assert meta["Microscope Info"] == {"Name": "Titan", "Voltage": 300000.0}


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.float32, np.int8])
def test_mrc_roundtrip(tmp_path, dtype):
    data = (RNG.standard_normal((12, 18)) * 100).astype(dtype)
    with mrcfile.new(tmp_path / "a.mrc") as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 3.0
    img = read_image(tmp_path / "a.mrc")
    assert img.format == "mrc"
    assert img.data.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(img.data, data)
    assert img.metadata["mrc"]["voxel_size_angstrom"][:2] == [3.0, 3.0]


def test_mrc_stack_first_section(tmp_path):
    stack = np.stack([G16.astype(np.float32), -G16.astype(np.float32)])
    with mrcfile.new(tmp_path / "s.mrcs") as mrc:
        mrc.set_data(stack)
    np.testing.assert_array_equal(read_image(tmp_path / "s.mrcs").data, stack[0])


# --------------------------------------------------------------------------
# errors


def _assert_error(path, *fragments, **kwargs):
    with pytest.raises(ImageReadError) as info:
        read_image(path, **kwargs)
    text = str(info.value)
    assert str(path) in text
    for fragment in fragments:
        assert fragment in text
    assert isinstance(info.value, ValueError)
    return info.value


def test_error_missing(tmp_path):
    _assert_error(tmp_path / "nope.png", "does not exist")


def test_error_directory(tmp_path):
    _assert_error(tmp_path, "directory")


def test_error_empty(tmp_path):
    (tmp_path / "e.tif").write_bytes(b"")
    _assert_error(tmp_path / "e.tif", "empty")


def test_error_text_named_tif(tmp_path):
    (tmp_path / "notes.tif").write_text("this is a lab note, not an image\n")
    err = _assert_error(tmp_path / "notes.tif", "not an image")
    assert err.reason.startswith("not an image")


def test_error_gif_unsupported(tmp_path):
    Image.fromarray(G8).save(tmp_path / "a.gif")
    _assert_error(tmp_path / "a.gif", "GIF", "not a supported")


@pytest.mark.parametrize("name,writer", [
    ("t.png", lambda p: Image.fromarray(G16).save(p)),
    ("t.tif", lambda p: tifffile.imwrite(p, G16)),
    ("t.jpg", lambda p: Image.fromarray(RGB8).save(p)),
])
def test_error_truncated(tmp_path, name, writer):
    full = tmp_path / ("full_" + name)
    writer(full)
    cut = tmp_path / name
    cut.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    _assert_error(cut, "truncated or corrupt")


def test_error_truncated_dm(tmp_path):
    full = write_dm(tmp_path / "full.dm3", G16)
    cut = tmp_path / "cut.dm3"
    cut.write_bytes(full.read_bytes()[:300])
    _assert_error(cut, "truncated or corrupt")


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def test_error_too_many_pixels_from_header(tmp_path):
    # a 100000 x 100000 PNG declared in its header, with no pixel data at all:
    # refused from the header, before any decoding is attempted
    (tmp_path / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))
    _assert_error(tmp_path / "bomb.png", "10000000000 pixels", "limit")


@pytest.mark.parametrize("name,writer", [
    ("s.tif", lambda p: tifffile.imwrite(p, G16)),
    ("s.png", lambda p: Image.fromarray(G8).save(p)),
    ("s.dm4", lambda p: write_dm(p, G16, version=4)),
    ("s.mrc", lambda p: mrcfile.new(p, data=G16.astype(np.int16)).close()),
])
def test_error_max_pixels_each_format(tmp_path, name, writer):
    writer(tmp_path / name)
    _assert_error(tmp_path / name, "limit", max_pixels=100)
    assert read_image(tmp_path / name, max_pixels=None).data.shape == G16.shape


def test_error_is_picklable():
    import pickle

    err = ImageReadError("/x/y.tif", "the file is empty")
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.path == "/x/y.tif"


def test_error_truncated_mrc(tmp_path):
    data = np.arange(100 * 100, dtype=np.float32).reshape(100, 100)
    with mrcfile.new(tmp_path / "full.mrc") as mrc:
        mrc.set_data(data)
    raw = (tmp_path / "full.mrc").read_bytes()
    (tmp_path / "cut.mrc").write_bytes(raw[: len(raw) // 2])
    _assert_error(tmp_path / "cut.mrc", "MRC", "truncated or corrupt")


def test_mrc_without_map_signature_by_extension(tmp_path):
    # MRC files older than MRC2014 lack 'MAP ' at byte 208: accepted only by extension
    with mrcfile.new(tmp_path / "new.mrc") as mrc:
        mrc.set_data(G16.astype(np.int16))
    raw = bytearray((tmp_path / "new.mrc").read_bytes())
    raw[208:212] = b"\x00\x00\x00\x00"
    (tmp_path / "old.mrc").write_bytes(raw)
    (tmp_path / "old.bin").write_bytes(raw)
    np.testing.assert_array_equal(read_image(tmp_path / "old.mrc").data, G16.astype(np.int16))
    _assert_error(tmp_path / "old.bin", "not an image")


def test_tiff_bilevel(tmp_path):
    tifffile.imwrite(tmp_path / "b.tif", G8 > 100)
    img = read_image(tmp_path / "b.tif")
    np.testing.assert_array_equal(img.data, np.where(G8 > 100, 255, 0))
    assert img.data.dtype == np.uint8


def test_tiff_complex_refused(tmp_path):
    tifffile.imwrite(tmp_path / "c.tif", (G16 + 1j * G16).astype(np.complex64))
    _assert_error(tmp_path / "c.tif", "complex")


def test_metadata_is_json(tmp_path):
    tifffile.imwrite(tmp_path / "ij.tif", G16, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "um"})
    meta = read_image(tmp_path / "ij.tif").metadata
    assert meta["imagej"]["unit"] == "um"
    assert meta["tiff"]["XResolution"] == 2.0
    import json

    json.dumps(meta, allow_nan=False)
