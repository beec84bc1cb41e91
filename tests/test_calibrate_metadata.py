"""Tests for micrometry.calibrate: units, instrument metadata, overrides, stage.

Every metadata source is tested on a real file written with the tags an
instrument writes, carrying a known pixel size.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile
from PIL import Image

import micrometry
from micrometry.calibrate import stage
from micrometry.calibrate.metadata import MetadataCalibration, calibration_from_metadata
from micrometry.calibrate.overrides import OverridesError, load_overrides
from micrometry.calibrate.stage import calibrate_image
from micrometry.calibrate.units import canonical_unit, to_nm
from micrometry.io.readers import ImageReadError, read_image

sys.path.insert(0, str(Path(__file__).parent))
from dmwriter import write_dm  # noqa: E402

IMG = (np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) % 4096).astype(np.uint16)

# --------------------------------------------------------------------------
# units


@pytest.mark.parametrize(
    "value,unit,expected_nm",
    [
        (2.5, "nm", 2.5),
        (2.5, "NM", 2.5),
        (2.5, " nm ", 2.5),
        (1.5, "\u00b5m", 1500.0),  # micro sign
        (1.5, "\u03bcm", 1500.0),  # Greek mu
        (1.5, "um", 1500.0),
        (1.5, "UM", 1500.0),
        (1.5, "micron", 1500.0),
        (1.5, "micrometer", 1500.0),
        (2.0, "mm", 2e6),
        (2.0, "cm", 2e7),
        (2.481e-9, "m", 2.481),
        (2.5e-9, "meter", 2.5),
        (3.0, "\u00c5", 0.3),  # Latin capital A with ring
        (3.0, "\u212b", 0.3),  # Angstrom sign
        (3.0, "A", 0.3),
        (3.0, "Angstrom", 0.3),
        (3.0, "angstroms", 0.3),
        (250.0, "pm", 0.25),
        (7.0, "nanometre", 7.0),
        (0.0, "nm", 0.0),
    ],
)
def test_to_nm_table(value, unit, expected_nm):
    assert to_nm(value, unit) == pytest.approx(expected_nm, rel=1e-12, abs=0)


def test_to_nm_decimal_exact():
    # numbers written in a file as metres read back without float noise
    assert to_nm(2.5e-9, "m") == 2.5
    assert to_nm(3.0, "Å") == 0.3
    assert to_nm(0.0025, "um") == 2.5


@pytest.mark.parametrize("unit", ["px", "pixel", "", "M", "a", "inch", "1/nm", "nm2", "µ"])
def test_to_nm_unknown_unit(unit):
    with pytest.raises(ValueError, match="unknown length unit"):
        to_nm(1.0, unit)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "abc", None])
def test_to_nm_bad_value(value):
    with pytest.raises(ValueError):
        to_nm(value, "nm")


def test_canonical_unit():
    assert canonical_unit("μm") == "µm"
    assert canonical_unit("Angstrom") == "Å"


# --------------------------------------------------------------------------
# TIFF metadata sources

FEI_TEXT = (
    "[User]\r\nDate=03/14/2024\r\nTime=10:11:12 AM\r\n"
    "[Beam]\r\nHV=5000\r\n"
    "[Scan]\r\nInternalScan=true\r\nDwelltime=1e-06\r\nPixelWidth={w}\r\nPixelHeight={h}\r\n"
    "HorFieldsize=1.5e-06\r\n"
    "[Image]\r\nResolutionX=64\r\nResolutionY=48\r\n"
)


def write_fei(path, w="2.5e-09", h="2.5e-09", tag=34682):
    tifffile.imwrite(path, IMG, extratags=[(tag, "s", 0, FEI_TEXT.format(w=w, h=h), True)])
    return path


def test_fei(tmp_path):
    cal = calibration_from_metadata(write_fei(tmp_path / "fei.tif"))
    assert isinstance(cal, MetadataCalibration)
    assert cal.nm_per_px == 2.5
    assert cal.nm_per_px_x == 2.5 and cal.nm_per_px_y == 2.5
    assert cal.detail == "FEI/Thermo TIFF tag 34682 [Scan] PixelWidth/PixelHeight"


def test_fei_sfeg_tag(tmp_path):
    cal = calibration_from_metadata(write_fei(tmp_path / "fei.tif", w="1.234e-08", h="1.234e-08", tag=34680))
    assert cal.nm_per_px == pytest.approx(12.34)
    assert "34680" in cal.detail


def test_fei_metadata_kept_by_reader(tmp_path):
    img = read_image(write_fei(tmp_path / "fei.tif"))
    assert img.metadata["fei"]["Scan"]["PixelWidth"] == 2.5e-09
    json.dumps(img.metadata)


def zeiss_text(pixel_size="2.481 nm"):
    return (
        "0\r\n0\r\n1.65e-09\r\n"
        "AP_IMAGE_PIXEL_SIZE\r\nImage Pixel Size = {ps}\r\n"
        "AP_PIXEL_SIZE\r\nPixel Size = {ps}\r\n"
        "AP_WD\r\nWD = 4.5 mm\r\n"
        "SV_SERIAL_NUMBER\r\nSerial Number = 4321\r\n"
        "DP_DETECTOR_CHANNEL\r\nSignal A = InLens\r\n"
    ).format(ps=pixel_size)


def write_zeiss(path, pixel_size="2.481 nm", key_only=None):
    text = zeiss_text(pixel_size)
    if key_only == "ap_pixel_size":
        text = text.replace("AP_IMAGE_PIXEL_SIZE\r\nImage Pixel Size = {}\r\n".format(pixel_size), "")
    raw = text.encode("cp1252")  # SmartSEM writes Windows-1252 (µ = 0xB5)
    tifffile.imwrite(path, IMG, extratags=[(34118, "B", len(raw), raw, True)])
    return path


def test_zeiss(tmp_path):
    cal = calibration_from_metadata(write_zeiss(tmp_path / "z.tif"))
    assert cal.nm_per_px == pytest.approx(2.481, rel=1e-12)
    assert cal.detail.startswith("Zeiss CZ_SEM TIFF tag 34118 ap_image_pixel_size")
    assert "2.481" in cal.detail


def test_zeiss_micrometres(tmp_path):
    cal = calibration_from_metadata(write_zeiss(tmp_path / "z.tif", "1.234 \u00b5m"))
    assert cal.nm_per_px == pytest.approx(1234.0)


def test_zeiss_fallback_ap_pixel_size(tmp_path):
    cal = calibration_from_metadata(write_zeiss(tmp_path / "z.tif", "5.5 nm", key_only="ap_pixel_size"))
    assert cal.nm_per_px == pytest.approx(5.5)
    assert "ap_pixel_size" in cal.detail


def tescan_payload(pixel_size_x="3.2e-009", pixel_size_y="3.2e-009") -> bytes:
    def block(btype: int, data: bytes) -> bytes:
        return struct.pack("<IH", len(data) + 2, btype) + data

    main = (
        "AccFrames=4\r\nDevice=MIRA3 LMH\r\nMagnification=50000\r\n"
        f"PixelSizeX={pixel_size_x}\r\nPixelSizeY={pixel_size_y}\r\nUserName=lab\r\n"
    ).encode("latin-1")
    sem = b"HV=15000.0\r\nWD=0.0051\r\n"
    thumb = b"\xff\xd8\xff\xe0" + bytes(60)  # opaque JPEG thumbnail bytes
    return block(1, thumb) + block(2, main) + block(3, sem) + block(0, b"")


def test_tescan(tmp_path):
    payload = tescan_payload()
    tifffile.imwrite(tmp_path / "t.tif", IMG, extratags=[(50431, "B", len(payload), payload, True)])
    cal = calibration_from_metadata(tmp_path / "t.tif")
    assert cal.nm_per_px == pytest.approx(3.2, rel=1e-12)
    assert cal.detail == "TESCAN TIFF tag 50431 [MAIN] PixelSizeX/PixelSizeY"
    meta = read_image(tmp_path / "t.tif").metadata
    assert meta["tescan"]["MAIN"]["Device"] == "MIRA3 LMH"
    assert meta["tescan"]["SEM"]["HV"] == "15000.0"


@pytest.mark.parametrize(
    "unit,res,expected",
    [
        ("um", 1 / 0.0025, 2.5),
        ("micron", 1 / 0.0031, 3.1),
        ("nm", 1 / 0.8, 0.8),
        ("\\u00B5m", 1 / 0.002, 2.0),  # as ImageJ escapes the micro sign
    ],
)
def test_imagej(tmp_path, unit, res, expected):
    tifffile.imwrite(tmp_path / "ij.tif", IMG, imagej=True, resolution=(res, res), metadata={"unit": unit})
    cal = calibration_from_metadata(tmp_path / "ij.tif")
    assert cal.nm_per_px == pytest.approx(expected, rel=1e-6)
    assert cal.detail.startswith("ImageJ TIFF unit=")


def test_imagej_pixel_unit_is_not_a_calibration(tmp_path):
    tifffile.imwrite(tmp_path / "ij.tif", IMG, imagej=True, resolution=(1.0, 1.0), metadata={"unit": "pixel"})
    assert calibration_from_metadata(tmp_path / "ij.tif") is None


@pytest.mark.parametrize(
    "size,unit,expected",
    [(2.5, "nm", 2.5), (0.0025, None, 2.5), (12.0, "Å", 1.2), (0.5, "µm", 500.0)],
)
def test_ome_tiff(tmp_path, size, unit, expected):
    meta = {"axes": "YX", "PhysicalSizeX": size, "PhysicalSizeY": size}
    if unit is not None:  # absent unit: the OME schema default is µm
        meta.update(PhysicalSizeXUnit=unit, PhysicalSizeYUnit=unit)
    tifffile.imwrite(tmp_path / "o.ome.tif", IMG, ome=True, metadata=meta)
    cal = calibration_from_metadata(tmp_path / "o.ome.tif")
    assert cal.nm_per_px == pytest.approx(expected, rel=1e-12)
    assert cal.detail == "OME-XML Pixels PhysicalSizeX/PhysicalSizeY"


@pytest.mark.parametrize(
    "res,unit,expected",
    [
        (1e7 / 2.5, "CENTIMETER", 2.5),
        (25.4e6 / 40.0, "INCH", 40.0),
        (10_000.0, "CENTIMETER", 1000.0),  # 1 µm per pixel, light microscopy
    ],
)
def test_tiff_resolution_with_unit(tmp_path, res, unit, expected):
    tifffile.imwrite(tmp_path / "r.tif", IMG, resolution=(res, res), resolutionunit=unit)
    cal = calibration_from_metadata(tmp_path / "r.tif")
    assert cal.nm_per_px == pytest.approx(expected, rel=1e-6)
    assert unit in cal.detail


@pytest.mark.parametrize(
    "res,unit",
    [
        (72.0, "INCH"),
        (96.0, "INCH"),
        (300.0, "INCH"),
        (2400.0, "INCH"),
        (28.35, "CENTIMETER"),  # 72 dpi written per centimetre
        (37.795, "CENTIMETER"),  # 96 dpi
        (1e7 / 2.5, "NONE"),  # no unit: ignored whatever the number
    ],
)
def test_tiff_resolution_ignored(tmp_path, res, unit):
    tifffile.imwrite(tmp_path / "r.tif", IMG, resolution=(res, res), resolutionunit=unit)
    assert calibration_from_metadata(tmp_path / "r.tif") is None


def test_pillow_saved_tiff_72dpi_ignored(tmp_path):
    Image.fromarray(IMG.astype(np.uint8)).save(tmp_path / "p.tif", dpi=(72, 72))
    assert calibration_from_metadata(tmp_path / "p.tif") is None


def test_vendor_tag_wins_over_resolution(tmp_path):
    text = FEI_TEXT.format(w="2.5e-09", h="2.5e-09")
    tifffile.imwrite(
        tmp_path / "both.tif", IMG, resolution=(1e7 / 9.0, 1e7 / 9.0), resolutionunit="CENTIMETER",
        extratags=[(34682, "s", 0, text, True)],
    )
    assert calibration_from_metadata(tmp_path / "both.tif").nm_per_px == 2.5


def test_plain_tiff_none(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", IMG)
    assert calibration_from_metadata(tmp_path / "plain.tif") is None


# --------------------------------------------------------------------------
# DM3 / DM4, MRC, Pillow formats


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize(
    "scale,unit,expected",
    [(0.25, "nm", 0.25), (0.0125, "\u00b5m", 12.5), (1.5, "\u00c5", 0.15)],
)
def test_dm(tmp_path, version, scale, unit, expected):
    path = write_dm(tmp_path / f"c.dm{version}", IMG, version=version, scale_xy=(scale, scale), units_xy=(unit, unit))
    cal = calibration_from_metadata(path)
    # DM stores the scale as float32
    assert cal.nm_per_px == pytest.approx(expected, rel=1e-6)
    assert cal.detail.startswith(f"DM{version} ImageData/Calibrations/Dimension scale")


@pytest.mark.parametrize("scale,unit", [(1.0, ""), (0.05, "1/nm")])
def test_dm_uncalibrated_or_reciprocal(tmp_path, scale, unit):
    path = write_dm(tmp_path / "u.dm3", IMG, scale_xy=(scale, scale), units_xy=(unit, unit))
    assert calibration_from_metadata(path) is None


def test_dm_anisotropic(tmp_path):
    path = write_dm(tmp_path / "a.dm4", IMG, version=4, scale_xy=(0.5, 0.25), units_xy=("nm", "nm"))
    cal = calibration_from_metadata(path)
    assert cal.nm_per_px_x == pytest.approx(0.5) and cal.nm_per_px_y == pytest.approx(0.25)
    assert cal.nm_per_px == pytest.approx((0.5 * 0.25) ** 0.5)


def write_mrc(path, voxel):
    with mrcfile.new(path) as mrc:
        mrc.set_data(IMG.astype(np.int16))
        if voxel is not None:
            mrc.voxel_size = voxel
    return path


def test_mrc_voxel_size(tmp_path):
    cal = calibration_from_metadata(write_mrc(tmp_path / "a.mrc", 2.5))
    assert cal.nm_per_px == pytest.approx(0.25, rel=1e-6)
    assert "MRC header voxel size" in cal.detail


@pytest.mark.parametrize("voxel", [None, 0.0, 1.0])
def test_mrc_unset_voxel_size(tmp_path, voxel):
    assert calibration_from_metadata(write_mrc(tmp_path / "a.mrc", voxel)) is None


@pytest.mark.parametrize("name", ["a.png", "a.jpg", "a.bmp"])
def test_pillow_formats_none(tmp_path, name):
    Image.fromarray(IMG.astype(np.uint8)).save(tmp_path / name, dpi=(2540000, 2540000))
    assert calibration_from_metadata(tmp_path / name) is None


def test_missing_file_raises(tmp_path):
    with pytest.raises(ImageReadError, match="does not exist"):
        calibration_from_metadata(tmp_path / "missing.tif")


# --------------------------------------------------------------------------
# overrides table


def test_load_overrides(tmp_path):
    p = tmp_path / "overrides.csv"
    p.write_text(
        "sample,nm_per_px,note\n"
        "# comment line\n"
        "plate1/img_001,2.481,measured on a grating\n"
        "\n"
        "plate1/img_002, 0.5 ,\n"
        '"plate2/a,b",1e1,"quoted, with comma"\n',
        encoding="utf-8",
    )
    assert load_overrides(p) == {"plate1/img_001": 2.481, "plate1/img_002": 0.5, "plate2/a,b": 10.0}


def test_load_overrides_column_order_free(tmp_path):
    p = tmp_path / "o.csv"
    p.write_text("note,nm_per_px,sample\nx,3,s1\n")
    assert load_overrides(p) == {"s1": 3.0}


@pytest.mark.parametrize(
    "text,fragments",
    [
        ("sample,value\ns1,2\n", ["missing column(s) nm_per_px"]),
        ("sample,nm_per_px\ns1,2\ns2,3\ns1,4\n", ["line 4", "'s1' is listed twice", "first on line 2"]),
        ("sample,nm_per_px\ns1,0\n", ["line 2", "positive"]),
        ("sample,nm_per_px\ns1,-2.5\n", ["line 2", "positive"]),
        ("sample,nm_per_px\ns1,nan\n", ["line 2", "positive"]),
        ("sample,nm_per_px\ns1,abc\n", ["line 2", "'abc'", "not a number"]),
        ("sample,nm_per_px\ns1,\n", ["line 2", "no nm_per_px"]),
        ("sample,nm_per_px\n,2\n", ["line 2", "empty sample"]),
        ("", ["is empty"]),
    ],
)
def test_load_overrides_errors(tmp_path, text, fragments):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(OverridesError) as info:
        load_overrides(p)
    message = str(info.value)
    assert str(p) in message
    for fragment in fragments:
        assert fragment in message
    assert isinstance(info.value, ValueError)


def test_load_overrides_missing_file(tmp_path):
    with pytest.raises(OverridesError, match="does not exist"):
        load_overrides(tmp_path / "nope.csv")


# --------------------------------------------------------------------------
# the stage

CONTRACT_KEYS = [
    "image", "sample", "nm_per_px", "source", "source_detail", "confidence",
    "nm_per_px_x", "nm_per_px_y", "scalebar", "micrometry_version",
]


def test_stage_metadata(tmp_path):
    path = write_zeiss(tmp_path / "z.tif")
    out = calibrate_image(path, sample="z")
    assert list(out) == CONTRACT_KEYS
    assert out["source"] == "metadata"
    assert out["nm_per_px"] == pytest.approx(2.481)
    assert out["nm_per_px_x"] == out["nm_per_px_y"] == out["nm_per_px"]
    assert out["confidence"] == 0.95
    assert out["image"] == str(path) and out["sample"] == "z"
    assert out["scalebar"] is None
    assert out["micrometry_version"] == micrometry.__version__
    json.dumps(out, allow_nan=False)


def test_stage_override_wins(tmp_path):
    path = write_fei(tmp_path / "fei.tif")
    out = calibrate_image(path, sample="plate/fei", overrides={"plate/fei": 3.0, "other": 9.0})
    assert out["source"] == "override"
    assert out["nm_per_px"] == 3.0 and out["nm_per_px_x"] == 3.0 and out["nm_per_px_y"] == 3.0
    assert out["confidence"] == 1.0
    # an override for another sample does not apply
    assert calibrate_image(path, sample="plate/x", overrides={"other": 9.0})["nm_per_px"] == 2.5


def test_stage_override_from_csv(tmp_path):
    csv_path = tmp_path / "o.csv"
    csv_path.write_text("sample,nm_per_px\nimg,1.25\n")
    Image.fromarray(IMG.astype(np.uint8)).save(tmp_path / "img.png")
    out = calibrate_image(tmp_path / "img.png", sample="img", overrides=load_overrides(csv_path))
    assert out["source"] == "override" and out["nm_per_px"] == 1.25


def test_stage_png_none(tmp_path):
    Image.fromarray(IMG.astype(np.uint8)).save(tmp_path / "a.png")
    out = calibrate_image(tmp_path / "a.png", sample="a")
    assert out["source"] == "none"
    assert out["nm_per_px"] is None and out["nm_per_px_x"] is None and out["nm_per_px_y"] is None
    assert out["confidence"] == 0.0
    assert list(out) == CONTRACT_KEYS


def test_stage_unsupported_content_none(tmp_path):
    (tmp_path / "notes.tif").write_text("not an image")
    assert calibrate_image(tmp_path / "notes.tif", sample="n")["source"] == "none"


def test_stage_anisotropic_lowers_confidence(tmp_path):
    path = write_fei(tmp_path / "fei.tif", w="2.5e-09", h="2.6e-09")
    out = calibrate_image(path, sample="fei")
    assert out["source"] == "metadata"
    assert out["confidence"] < 0.95
    assert "WARNING" in out["source_detail"] and "4.0%" in out["source_detail"]
    assert out["nm_per_px_x"] == 2.5 and out["nm_per_px_y"] == pytest.approx(2.6)
    # within 1 %: full confidence
    out = calibrate_image(write_fei(tmp_path / "f2.tif", w="2.5e-09", h="2.51e-09"), sample="f2")
    assert out["confidence"] == 0.95 and "WARNING" not in out["source_detail"]


def test_stage_scalebar_seam(tmp_path, monkeypatch):
    Image.fromarray(IMG.astype(np.uint8)).save(tmp_path / "a.png")
    monkeypatch.setattr(stage, "SCALEBAR_READER", None)
    out = calibrate_image(tmp_path / "a.png", sample="a", scalebar=True)
    assert out["source"] == "none" and out["nm_per_px"] is None
    assert "no reader" in out["source_detail"]

    found = {"nm_per_px": 4.0, "confidence": 0.8, "detail": "bar 250 px = 1 µm"}
    seen = []
    monkeypatch.setattr(stage, "SCALEBAR_READER", lambda path, **options: seen.append(options) or dict(found))
    out = calibrate_image(tmp_path / "a.png", sample="a", scalebar=True, scalebar_options={"threads": 2})
    assert out["source"] == "scalebar" and out["nm_per_px"] == 4.0 and out["scalebar"] == found
    assert out["confidence"] == 0.8 and seen[-1] == {"threads": 2}
    # metadata still comes before the scale bar
    out = calibrate_image(write_fei(tmp_path / "fei.tif"), sample="fei", scalebar=True)
    assert out["source"] == "metadata"


def test_stage_scalebar_cross_checks_metadata(tmp_path, monkeypatch):
    fei = write_fei(tmp_path / "fei.tif")  # 2.5 nm/px
    reading = {"nm_per_px": 2.52, "confidence": 0.9, "detail": "bar"}
    monkeypatch.setattr(stage, "SCALEBAR_READER", lambda path, **o: dict(reading))
    out = calibrate_image(fei, sample="fei", scalebar=True)
    assert out["source"] == "metadata" and out["confidence"] == 0.95 and out["nm_per_px"] == pytest.approx(2.5)
    assert out["scalebar"]["metadata_agreement"] == pytest.approx(2.52 / 2.5)
    assert "agrees" in out["source_detail"]
    # a confident bar that says 4x: metadata kept, trust lowered, the user told
    reading["nm_per_px"] = 10.0
    out = calibrate_image(fei, sample="fei", scalebar=True)
    assert out["source"] == "metadata" and out["confidence"] == stage.DISAGREEMENT_CONFIDENCE
    assert "WARNING" in out["source_detail"] and "4x" in out["source_detail"]
    # an unsure bar does not overrule metadata
    reading["confidence"] = 0.3
    assert calibrate_image(fei, sample="fei", scalebar=True)["confidence"] == 0.95


def test_stage_scalebar_reader_failure_is_a_note_not_an_error(tmp_path, monkeypatch):
    Image.fromarray(IMG.astype(np.uint8)).save(tmp_path / "a.png")

    def broken(path, **o):
        raise ImportError("ultralytics is not installed")

    monkeypatch.setattr(stage, "SCALEBAR_READER", broken)
    out = calibrate_image(tmp_path / "a.png", sample="a", scalebar=True)
    assert out["source"] == "none" and "unavailable: ultralytics is not installed" in out["source_detail"]


def test_stage_bad_override_value(tmp_path):
    Image.fromarray(IMG.astype(np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="must be positive"):
        calibrate_image(tmp_path / "a.png", sample="a", overrides={"a": -1.0})
