"""Stage orchestration (what the rules run), without Snakemake."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from skimage.draw import disk

from micrometry.stages import run_calibrate, run_ingest, run_measure, run_segment


def _discs_image(path, shape=(200, 300), centres=((50, 60), (120, 200), (150, 60)), r=15):
    img = np.full(shape, 200, np.uint8)
    for c in centres:
        img[disk(c, r, shape=shape)] = 60
    Image.fromarray(img).save(path)
    return img


@pytest.fixture
def ingested(tmp_path):
    src = tmp_path / "discs.png"
    img = _discs_image(src)
    store = tmp_path / "discs.ome.zarr"
    attrs = run_ingest(src, store, sample="discs", error_json=tmp_path / "errors" / "discs.json")
    return src, store, img, attrs


def test_ingest_records_source(ingested):
    src, store, img, attrs = ingested
    from micrometry.io.omezarr import load_image, read_attrs
    from micrometry.io.readers import sha256_file

    assert attrs["status"] == "ok"
    stored = read_attrs(store)
    assert stored["source_sha256"] == sha256_file(src)
    assert stored["shape"] == [200, 300] and stored["dtype"] == "uint8"
    np.testing.assert_array_equal(load_image(store), img)


def test_segment_with_roi_and_measure(ingested, tmp_path):
    src, store, img, _ = ingested
    roi = np.full(img.shape, 255, np.uint8)
    roi[:, 150:] = 0  # the disc at x=200 lies outside the ROI
    Image.fromarray(roi).save(tmp_path / "roi.png")
    summary = run_segment(store, tmp_path / "seg.json", sample="discs", settings={"method": "classical"},
                          roi_path=tmp_path / "roi.png")
    assert summary["status"] == "ok" and summary["n_objects"] == 2
    assert summary["analysed_px"] == 200 * 150
    cal = run_calibrate(src, tmp_path / "cal.json", sample="discs")
    assert cal["source"] == "none"
    n = run_measure(store, tmp_path / "cal.json", tmp_path / "seg.json", tmp_path / "obj.parquet", sample="discs")
    assert n == 2
    df = pq.read_table(tmp_path / "obj.parquet").to_pandas()
    np.testing.assert_allclose(df["area_px"], np.pi * 15**2, rtol=0.05)
    assert df["area_nm2"].isna().all()


def test_low_confidence_calibration_not_used_unless_asked(ingested, tmp_path):
    src, store, _, _ = ingested
    run_segment(store, tmp_path / "seg.json", sample="discs", settings={"method": "classical"})
    (tmp_path / "cal.json").write_text(json.dumps({"nm_per_px": 2.0, "source": "scalebar", "confidence": 0.3}))
    run_measure(store, tmp_path / "cal.json", tmp_path / "seg.json", tmp_path / "a.parquet", sample="discs")
    assert pq.read_table(tmp_path / "a.parquet").to_pandas()["area_nm2"].isna().all()
    run_measure(store, tmp_path / "cal.json", tmp_path / "seg.json", tmp_path / "b.parquet", sample="discs",
                use_low_confidence=True)
    df = pq.read_table(tmp_path / "b.parquet").to_pandas()
    np.testing.assert_allclose(df["area_nm2"], df["area_px"] * 4.0)


def test_override_wins(ingested, tmp_path):
    src, *_ = ingested
    (tmp_path / "ov.csv").write_text("sample,nm_per_px\ndiscs,0.5\n")
    cal = run_calibrate(src, tmp_path / "cal.json", sample="discs", overrides_csv=tmp_path / "ov.csv")
    assert cal["source"] == "override" and cal["nm_per_px"] == 0.5 and cal["confidence"] == 1.0


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"])
def test_bad_input_propagates_as_failed_sample(tmp_path, content):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    store = tmp_path / "bad.ome.zarr"
    err = tmp_path / "errors" / "bad.json"
    attrs = run_ingest(bad, store, sample="bad", error_json=err)
    assert attrs["status"] == "error" and "bad.png" in attrs["reason"]
    report = json.loads(err.read_text())
    assert report["stage"] == "ingest" and report["file"] == str(bad) and report["reason"]
    summary = run_segment(store, tmp_path / "seg.json", sample="bad", settings={"method": "classical"})
    assert summary["status"] == "error" and summary["stage_failed"] == "ingest"
    cal = run_calibrate(bad, tmp_path / "cal.json", sample="bad")
    assert cal["nm_per_px"] is None
    assert run_measure(store, tmp_path / "cal.json", tmp_path / "seg.json", tmp_path / "o.parquet", sample="bad") == 0
    from micrometry.measure.schema import objects_schema

    assert pq.read_table(tmp_path / "o.parquet").schema.names == objects_schema().names


def test_fixed_input_clears_stale_error(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"garbage")
    err = tmp_path / "errors" / "x.json"
    run_ingest(path, tmp_path / "x.ome.zarr", sample="x", error_json=err)
    assert err.exists()
    _discs_image(path)
    attrs = run_ingest(path, tmp_path / "x.ome.zarr", sample="x", error_json=err)
    assert attrs["status"] == "ok" and not err.exists()


def test_unknown_method_is_an_error(ingested, tmp_path):
    _, store, _, _ = ingested
    with pytest.raises(ValueError, match="unknown segmentation method"):
        run_segment(store, tmp_path / "seg.json", sample="discs", settings={"method": "magic"})
