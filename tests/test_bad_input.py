"""Bad input never stops the night: a corpus of broken and unusual files.

Every file is generated here, in a temporary folder (no binary fixtures are
committed).  The stage functions run on each file in the workflow's order
(ingest → calibrate → segment → measure → qc, then aggregate), with the
workflow's output layout under ``results/``.  Then:

* every *bad* file (unreadable, truncated, empty, not an image, a
  decompression bomb, ...) has ``errors/{sample}.json`` naming the file, the
  stage and the reason in plain words, and its row in
  ``dataset/images.parquet`` has ``status == "error"`` with that reason;
* every *unusual but valid* file (RGBA, 16-bit, float with NaN/Inf, JPEG data
  in a ``.png``, all black, no particles, 1 x 1 pixel, ...) is processed with
  status ``ok`` and no error report;
* the dataset tables are written and list every sample.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import tifffile
from PIL import Image

from micrometry.samples import discover_samples
from micrometry.stages import errors_path, run_aggregate, run_calibrate, run_ingest, run_measure, run_qc, run_segment
from micrometry.train.synth import render_micrograph

SHAPE = (128, 160)
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
HAS_FIFO = hasattr(os, "mkfifo")


@dataclass(frozen=True)
class Case:
    """One corpus file: its name under ``input/`` and what must happen to it.

    Attributes
    ----------
    name : str
        File name (the sample is the name without its extension).
    ok : bool
        True for unusual but valid input (processed, status ``ok``).
    reason : tuple of str
        Fragments the plain-words reason of a bad file must contain
        (case-insensitive).
    """

    name: str
    ok: bool
    reason: tuple[str, ...] = ()

    @property
    def sample(self) -> str:
        return os.path.splitext(self.name)[0]


# --------------------------------------------------------------------------- file makers


def _synthetic(seed: int = 0, **kwargs) -> np.ndarray:
    """A small synthetic micrograph (uint8) with particles."""
    return render_micrograph(seed, shape=SHAPE, **kwargs).image


def _png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk declaring `width` x `height`, with no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def _tiff_header_only(width: int, height: int) -> bytes:
    """A classic little-endian TIFF whose IFD declares `width` x `height` 8-bit grey
    pixels in one strip of 16 bytes: the header lies, the pixels are never allocated."""
    entries = [  # (tag, type, count, value); type 3 = SHORT, 4 = LONG
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 0),  # StripOffsets, patched below
        (277, 3, 1, 1),
        (278, 4, 1, height),
        (279, 4, 1, 16),
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    data_offset = 8 + ifd_size
    out = bytearray(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
    for tag, typ, count, value in entries:
        if tag == 273:
            value = data_offset
        packed = struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, typ, count) + packed
    out += struct.pack("<I", 0) + bytes(16)
    return bytes(out)


def _jpeg_with_size(width: int, height: int) -> bytes:
    """A real baseline JPEG whose SOF0 marker is patched to declare `width` x `height`."""
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16), 128, np.uint8)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def _png_with_ztxt_bomb(png: bytes, expanded_bytes: int = 4 << 20) -> bytes:
    """`png` with a zTXt metadata chunk that inflates to `expanded_bytes` zeros,
    inserted right after IHDR (more than Pillow's text-chunk limit)."""
    body = b"Comment\x00\x00" + zlib.compress(bytes(expanded_bytes), 9)
    chunk = b"zTXt" + body
    return png[:33] + struct.pack(">I", len(body)) + chunk + struct.pack(">I", zlib.crc32(chunk)) + png[33:]


def _bmp_declaring(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf, format="BMP")
    data = bytearray(buf.getvalue())
    struct.pack_into("<ii", data, 18, width, height)  # BITMAPINFOHEADER biWidth, biHeight
    return bytes(data)


def _mrc_declaring(folder: Path, nx: int, ny: int) -> bytes:
    import mrcfile

    small = folder / "_small.mrc.tmp"
    with mrcfile.new(small) as mrc:
        mrc.set_data(np.zeros((8, 8), np.float32))
    data = bytearray(small.read_bytes())
    small.unlink()
    struct.pack_into("<ii", data, 0, nx, ny)  # header words NX, NY
    return bytes(data)


def _tiff_bytes(array: np.ndarray, **kwargs) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, array, **kwargs)
    return buf.getvalue()


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _build_corpus(folder: Path) -> list[Case]:
    """Write every corpus file into `folder`; return the cases."""
    img = _synthetic(1)
    cases: list[tuple[Case, object]] = [
        # ---- bad input
        (Case("truncated_png.png", False, ("truncated",)), _half(_png_bytes(img))),
        (Case("truncated_tiff.tif", False, ("truncated",)), _half(_tiff_bytes(img.astype(np.uint16) * 200))),
        (Case("empty.tif", False, ("empty", "0 bytes")), b""),
        (Case("lab_notes.tif", False, ("not an image",)), b"Sample 17: 3 grids, 200 kV, see notebook p. 12\n"),
        (Case("gif_named.png", False, ("gif", "not a supported")), None),
        (Case("bomb_png.png", False, ("100000 x 100000", "pixels", "limit")), _png_header_only(100_000, 100_000)),
        (Case("bomb_tiff.tif", False, ("90000 x 90000", "pixels", "limit")), _tiff_header_only(90_000, 90_000)),
        (Case("bomb_jpeg.jpg", False, ("65000 x 65000", "pixels", "limit")), _jpeg_with_size(65_000, 65_000)),
        (Case("bomb_bmp.bmp", False, ("100000 x 100000", "pixels", "limit")), _bmp_declaring(100_000, 100_000)),
        (Case("bomb_mrc.mrc", False, ("100000 x 100000", "pixels", "limit")), _mrc_declaring(folder, 100_000, 100_000)),
        (Case("bomb_png_text.png", False, ("decompression bomb",)), _png_with_ztxt_bomb(_png_bytes(img))),
        (Case("zero_size.png", False, ("empty image", "0 x 0")), _png_header_only(0, 0)),
        (Case("broken_link.png", False, ("does not exist", "symbolic link")), None),
        # ---- unusual but valid
        (Case("control.png", True), _png_bytes(img)),
        (Case("rgba.png", True), None),
        (Case("grey16_png.png", True), _png_bytes((img.astype(np.uint16) * 257))),
        (Case("grey16_tif.tif", True), _tiff_bytes(img.astype(np.uint16) * 257)),
        (Case("float_nan_inf.tif", True), None),
        (Case("jpeg_named.png", True), None),
        (Case("int16_negative.tif", True), _tiff_bytes(img.astype(np.int16) - 128)),
        (Case("all_black.png", True), _png_bytes(np.zeros(SHAPE, np.uint8))),
        (Case("uniform.png", True), _png_bytes(np.full(SHAPE, 137, np.uint8))),
        (Case("no_particles.png", True), _png_bytes(_synthetic(5, n_particles=0, scalebar=False,
                                                               data_bar_prob=0.0, panel_label_prob=0.0))),
        (Case("tiny_1x1.png", True), _png_bytes(np.array([[200]], np.uint8))),
        (Case("tiny_3x3.tif", True), _tiff_bytes(np.arange(9, dtype=np.uint8).reshape(3, 3) * 20)),
        (Case("one_row.png", True), _png_bytes(img[:1])),
        (Case("all_nan.tif", True), _tiff_bytes(np.full(SHAPE, np.nan, np.float32))),
        (Case("float64_offset.tif", True), _tiff_bytes(img.astype(np.float64) * 1e6 + 1e12)),
        # beyond float32's range: 1e300 would become Inf, 1e-300 zero
        (Case("float64_huge.tif", True), _tiff_bytes(img.astype(np.float64) * 1e300)),
        (Case("float64_tiny.tif", True), _tiff_bytes(img.astype(np.float64) * 1e-300)),
        (Case("trailing_junk.png", True), _png_bytes(img) + b"\x00junk after IEND" * 64),
        # a folder named like an image is a folder, not a sample; its files are samples
        (Case("folder.png/inside.png", True), _png_bytes(img)),
    ]
    if HAS_FIFO:  # opening a named pipe for reading would wait forever for a writer
        cases.append((Case("named_pipe.png", False, ("not a regular file", "named pipe")), None))
    if not IS_ROOT:  # root reads a mode-000 file anyway
        cases.append((Case("unreadable.png", False, ("permission",)), _png_bytes(img)))

    for case, content in cases:
        path = folder / case.name
        path.parent.mkdir(parents=True, exist_ok=True)
        if case.name == "gif_named.png":
            Image.fromarray(img).save(path, format="GIF")
        elif case.name == "rgba.png":
            alpha = np.linspace(0, 255, img.size).reshape(img.shape).astype(np.uint8)
            rgb = np.stack([img, np.roll(img, 3, axis=1), img // 2], axis=-1)
            Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(path)
        elif case.name == "float_nan_inf.tif":
            f = img.astype(np.float32) / 255.0
            f[0, :10] = np.nan
            f[5, 5] = np.inf
            f[6, 6] = -np.inf
            f[40:44, 40:44] = np.nan
            tifffile.imwrite(path, f)
        elif case.name == "jpeg_named.png":
            Image.fromarray(img).save(path, format="JPEG", quality=95)
        elif case.name == "named_pipe.png":
            os.mkfifo(path)
        elif case.name == "broken_link.png":
            path.symlink_to(folder / "no_such_target.png")
        else:
            path.write_bytes(content)
        if case.name == "unreadable.png":
            path.chmod(0)
    return [case for case, _ in cases]


# --------------------------------------------------------------------------- the run


@dataclass
class Run:
    cases: list[Case]
    samples: dict[str, str]
    input_dir: Path
    results: Path
    summaries: dict[str, dict]
    ingest: dict[str, dict]
    calibration: dict[str, dict]


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Run:
    """Run every stage on every corpus file, as the workflow would, then aggregate."""
    root = tmp_path_factory.mktemp("night")
    input_dir, results = root / "input", root / "results"
    input_dir.mkdir()
    cases = _build_corpus(input_dir)
    samples = discover_samples(input_dir)
    settings = {"method": "classical"}
    ingest, summaries, calibration = {}, {}, {}
    try:
        for sample, rel in samples.items():
            image = input_dir / rel
            store = results / "images" / f"{sample}.ome.zarr"
            cal_json = results / "calibration" / f"{sample}.json"
            seg_json = results / "segment" / f"{sample}.json"
            obj = results / "objects" / f"{sample}.parquet"
            ingest[sample] = run_ingest(image, store, sample=sample, chunk_px=64,
                                        error_json=errors_path(results, sample))
            calibration[sample] = run_calibrate(image, cal_json, sample=sample)
            summaries[sample] = run_segment(store, seg_json, sample=sample, settings=settings)
            run_measure(store, cal_json, seg_json, obj, sample=sample)
            run_qc(store, cal_json, seg_json, obj, results / "qc" / f"{sample}_overlay.png",
                   results / "qc" / f"{sample}_sizes.png", sample=sample)
        run_aggregate(list(samples), results, results / "dataset")
    finally:
        unreadable = input_dir / "unreadable.png"
        if unreadable.exists() and not unreadable.is_symlink():
            unreadable.chmod(0o644)  # let pytest clean up
    return Run(cases, samples, input_dir, results, summaries, ingest, calibration)


@pytest.fixture(scope="module")
def images_table(night):
    return pq.read_table(night.results / "dataset" / "images.parquet").to_pandas().set_index("sample")


BAD = ["truncated_png.png", "truncated_tiff.tif", "empty.tif", "lab_notes.tif", "gif_named.png", "bomb_png.png",
       "bomb_tiff.tif", "bomb_jpeg.jpg", "bomb_bmp.bmp", "bomb_mrc.mrc", "bomb_png_text.png", "zero_size.png",
       "broken_link.png", "named_pipe.png", "unreadable.png"]
UNUSUAL = ["control.png", "rgba.png", "grey16_png.png", "grey16_tif.tif", "float_nan_inf.tif", "jpeg_named.png",
           "int16_negative.tif", "all_black.png", "uniform.png", "no_particles.png", "tiny_1x1.png", "tiny_3x3.tif",
           "one_row.png", "all_nan.tif", "float64_offset.tif", "float64_huge.tif", "float64_tiny.tif", "trailing_junk.png",
           "folder.png/inside.png"]


def _case_params(names: list[str]):
    """pytest parameters for `names` (the corpus is built once, in a fixture)."""
    marks = {
        "unreadable.png": pytest.mark.skipif(IS_ROOT, reason="root can read a file with mode 000"),
        "named_pipe.png": pytest.mark.skipif(not HAS_FIFO, reason="no named pipes on this platform"),
    }
    return [pytest.param(n, id=os.path.splitext(n)[0], marks=marks.get(n, ())) for n in names]


def _case(night: Run, name: str) -> Case:
    (case,) = [c for c in night.cases if c.name == name]
    return case


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", _case_params(BAD))
def test_bad_file_is_reported_and_listed(night, images_table, name):
    case = _case(night, name)
    assert night.samples.get(case.sample) == case.name, "discover_samples must list every file"
    path = errors_path(night.results, case.sample)
    assert path.is_file(), f"no error report for {case.name}"
    report = json.loads(path.read_text())
    assert report["sample"] == case.sample
    assert report["stage"] == "ingest"
    assert report["file"] == str(night.input_dir / case.name)
    reason = report["reason"]
    assert case.name in reason, "the reason names the file"
    for fragment in case.reason:
        assert fragment.lower() in reason.lower(), f"{fragment!r} not in {reason!r}"
    assert "Traceback" not in reason and len(reason) < 600

    row = images_table.loc[case.sample]
    assert row["status"] == "error"
    assert row["reason"] == reason
    assert row["stage_failed"] == "ingest"
    assert night.summaries[case.sample]["status"] == "error"


# --------------------------------------------------------------------------- unusual but valid


@pytest.mark.parametrize("name", _case_params(UNUSUAL))
def test_unusual_valid_file_is_processed(night, images_table, name):
    case = _case(night, name)
    assert night.samples.get(case.sample) == case.name
    assert not errors_path(night.results, case.sample).exists(), (
        errors_path(night.results, case.sample).read_text()
    )
    assert night.ingest[case.sample]["status"] == "ok", night.ingest[case.sample].get("reason")
    assert night.calibration[case.sample]["status"] == "ok", night.calibration[case.sample].get("reason")
    summary = night.summaries[case.sample]
    assert summary["status"] == "ok"
    row = images_table.loc[case.sample]
    assert row["status"] == "ok" and pd.isna(row["reason"])
    assert row["n_objects"] == summary["n_objects"]
    assert (row["image_height_px"], row["image_width_px"]) == tuple(summary["image_shape"])


def test_unusual_inputs_keep_their_nature(night):
    from micrometry.io.omezarr import load_image

    def stored(sample):
        return load_image(night.results / "images" / f"{sample}.ome.zarr")

    assert stored("grey16_png").dtype == np.uint16 and stored("grey16_tif").dtype == np.uint16
    assert night.ingest["rgba"]["color_conversion"]["alpha_dropped"] is True
    assert night.ingest["jpeg_named"]["format"] == "jpeg"
    f = stored("float_nan_inf")
    assert f.dtype == np.float32 and np.isnan(f).sum() == 26 and np.isposinf(f).sum() == 1
    assert stored("tiny_1x1").shape == (1, 1)
    assert stored("int16_negative").min() < 0


def test_intensity_scale_does_not_change_the_objects(night, images_table):
    """The same picture as uint8, uint16, int16 with negatives, RGBA and float64
    with a large offset or beyond float32's range (1e300, 1e-300): the classical
    segmenter normalises intensities."""
    n = images_table.loc["control", "n_objects"]
    for sample in ("grey16_png", "grey16_tif", "int16_negative", "float64_offset", "float64_huge", "float64_tiny"):
        assert images_table.loc[sample, "n_objects"] == n, sample


def test_images_without_particles_have_no_objects(night, images_table):
    for sample in ("all_black", "uniform", "tiny_1x1"):
        assert images_table.loc[sample, "n_objects"] == 0, sample
    assert images_table.loc["control", "n_objects"] > 0


# --------------------------------------------------------------------------- the dataset


def test_dataset_tables_list_every_sample(night, images_table):
    dataset = night.results / "dataset"
    for name in ("objects.parquet", "images.parquet", "size_distribution.png", "summary.png"):
        assert (dataset / name).is_file(), name
    assert sorted(images_table.index) == sorted(night.samples)
    ok = set(images_table.index[images_table["status"] == "ok"])
    assert ok == {c.sample for c in night.cases if c.ok}
    objects = pq.read_table(dataset / "objects.parquet").to_pandas()
    assert len(objects) > 0
    assert set(objects["sample"]) <= ok
    counts = objects.groupby("sample").size()
    for sample in ok:
        assert counts.get(sample, 0) == images_table.loc[sample, "n_objects"], sample


def test_folder_named_like_an_image_is_not_a_sample(night):
    assert (night.input_dir / "folder.png").is_dir()
    assert "folder" not in night.samples and "folder.png/inside" in night.samples


def test_parameter_lists_cover_the_corpus(night):
    built = {c.name for c in night.cases}
    assert built <= set(BAD) | set(UNUSUAL)
    assert {c.name for c in night.cases if c.ok} == set(UNUSUAL)
    skipped = {"unreadable.png"} if IS_ROOT else set()
    skipped |= set() if HAS_FIFO else {"named_pipe.png"}
    assert {c.name for c in night.cases if not c.ok} == set(BAD) - skipped


def test_every_sample_has_qc_plots(night):
    for sample in night.samples:
        assert (night.results / "qc" / f"{sample}_overlay.png").is_file(), sample
        assert (night.results / "qc" / f"{sample}_sizes.png").is_file(), sample


def test_unreadable_file_simulated(tmp_path, monkeypatch):
    """A file the workflow may not read (mode 000 for a non-root user): the
    permission error is reported in plain words, also when the tests run as root."""
    import builtins

    from micrometry.io import readers

    path = tmp_path / "locked.png"
    path.write_bytes(_png_bytes(_synthetic(2)))

    def refusing_open(file, *args, **kwargs):
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr(readers, "open", refusing_open, raising=False)
    err = tmp_path / "results" / "errors" / "locked.json"
    attrs = run_ingest(path, tmp_path / "results" / "images" / "locked.ome.zarr", sample="locked", error_json=err)
    assert attrs["status"] == "error" and attrs["source_sha256"] is None
    report = json.loads(err.read_text())
    assert report["stage"] == "ingest" and report["file"] == str(path)
    assert str(path) in report["reason"] and "Permission denied" in report["reason"]
