"""The shipped flow model through the segment stage (needs torch and models/flow-light)."""

import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "flow-light"

pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not (MODEL / "weights.safetensors").exists(), reason="no shipped flow model")


def test_flow_method_segments_synthetic_micrograph(tmp_path):
    import tifffile

    from micrometry.evaluate import average_precision
    from micrometry.io.omezarr import load_labels, load_prediction
    from micrometry.segment.model import model_sha256
    from micrometry.stages import run_ingest, run_segment
    from micrometry.train.synth import write_synthetic_dataset

    paths = write_synthetic_dataset(tmp_path / "synth", n=3, seed=11, shape=(384, 384), tiff_fraction=0.0)
    settings = {"method": "flow", "flow": {"model": str(MODEL)}}
    gts, preds = [], []
    for i, path in enumerate(paths):
        gt = tifffile.imread(tmp_path / "synth" / "truth" / f"{path.stem}.labels.tif")
        store = tmp_path / f"s{i}.ome.zarr"
        run_ingest(path, store, sample=f"s{i}")
        summary = run_segment(store, tmp_path / f"seg{i}.json", sample=f"s{i}", settings=settings, threads=2)
        assert summary["status"] == "ok"
        assert summary["provenance"]["model_sha256"] == model_sha256(MODEL)
        assert summary["network_runtime"] == "onnxruntime"  # the shipped model's current graph, on CPU
        labels = load_labels(store)
        assert labels.dtype == np.uint32 and labels.shape == gt.shape
        assert json.loads((tmp_path / f"seg{i}.json").read_text())["n_objects"] == int(labels.max())
        gts.append(gt)
        preds.append(labels)
    pred = load_prediction(store, "flow")
    assert pred.shape == (4, *gt.shape) and pred.dtype == np.float16
    # 8 such images score AP_cp@0.5 0.61 on average (one image alone varies from ~0.27 to ~0.9)
    score = average_precision(gts, preds)
    assert score["ap"][0.5] > 0.4, score["ap"]
