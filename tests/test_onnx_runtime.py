"""The flow network exported to ONNX and run by ONNX Runtime agrees with PyTorch."""

from __future__ import annotations

import json
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

sys.path.insert(0, str(Path(__file__).parent))
from shapes import disc_labels  # noqa: E402

from micrometry.segment import model as M  # noqa: E402
from micrometry.segment.dispatch import load_flow_model  # noqa: E402
from micrometry.segment.network import build_network, network_config  # noqa: E402
from micrometry.segment.onnx import ONNX_NAME, OnnxNetwork, OnnxUnavailable, export_onnx, pad_to_multiple  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    torch.manual_seed(0)
    net = build_network("light", base_channels=4, depth=3)
    net.train()
    with torch.no_grad():  # non-trivial batch-norm statistics
        net(torch.rand(2, 1, 32, 32))
    cfg = {"architecture": network_config("light", base_channels=4, depth=3), "train_diameter_px": 20.0,
           "inference": {"backend": "numpy"}}
    out = M.save_model(net, cfg, tmp_path_factory.mktemp("m") / "tiny")
    export_onnx(out)
    return out


def test_pad_to_multiple_matches_the_network():
    img = np.arange(5 * 7, dtype=np.float32).reshape(5, 7)
    padded = pad_to_multiple(img, 4)
    assert padded.shape == (8, 8)
    np.testing.assert_array_equal(padded[:5, :7], img)
    np.testing.assert_array_equal(padded[5:, :7], img[3:0:-1])  # reflect, as FlowNet.forward
    assert pad_to_multiple(img, 1) is img
    assert pad_to_multiple(np.ones((1, 2), np.float32), 4).shape == (4, 4)  # tiny: replicate


@pytest.mark.parametrize("shape", [(37, 50), (64, 64), (3, 5)])
def test_onnx_outputs_equal_torch(tiny_model_dir, shape):
    torch_model = load_flow_model(tiny_model_dir, device="cpu", runtime="torch")
    onnx_model = load_flow_model(tiny_model_dir, device="cpu", runtime="onnxruntime")
    assert (torch_model.runtime, onnx_model.runtime) == ("torch", "onnxruntime")
    image = np.random.default_rng(2).random(shape, dtype=np.float32)
    np.testing.assert_allclose(onnx_model.predict(image), torch_model.predict(image), atol=1e-4)


def test_onnx_model_segments_like_torch(tiny_model_dir):
    truth = disc_labels((96, 96), [(30, 30), (66, 66)], 10)
    image = np.where(truth > 0, 200, 40).astype(np.uint8)
    a = load_flow_model(tiny_model_dir, device="cpu", runtime="torch").segment(image, diameter_px=20)
    b = load_flow_model(tiny_model_dir, device="cpu", runtime="onnxruntime").segment(image, diameter_px=20)
    assert (a != b).mean() < 1e-3  # float noise may flip a boundary pixel, nothing more


def test_export_records_the_weights_and_a_stale_graph_is_refused(tiny_model_dir, tmp_path):
    sha = M.model_sha256(tiny_model_dir)
    OnnxNetwork(tiny_model_dir / ONNX_NAME, weights_sha256=sha)  # current: opens
    with pytest.raises(OnnxUnavailable, match="exported from weights"):
        OnnxNetwork(tiny_model_dir / ONNX_NAME, weights_sha256="0" * 64)
    # retrained weights in the same folder: the old graph must not be used
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    torch.manual_seed(5)
    M.save_model(build_network("light", base_channels=4, depth=3),
                 json.loads((other / "config.json").read_text()), other)
    with pytest.raises(ValueError, match="exported from weights"):
        load_flow_model(other, device="cpu", runtime="onnxruntime")
    assert load_flow_model(other, device="cpu", runtime="auto").runtime == "torch"  # auto falls back
    (other / ONNX_NAME).unlink()
    with pytest.raises(ValueError, match="no model.onnx"):
        load_flow_model(other, device="cpu", runtime="onnxruntime")
    (other / ONNX_NAME).write_bytes(b"not a protobuf")
    with pytest.raises(OnnxUnavailable, match="not a readable ONNX model"):
        OnnxNetwork(other / ONNX_NAME, weights_sha256=M.model_sha256(other))
    with pytest.raises(ValueError, match="runtime must be"):
        load_flow_model(other, runtime="tensorflow")


def test_onnx_network_pickles_for_dask_workers(tiny_model_dir):
    net = OnnxNetwork(tiny_model_dir / ONNX_NAME, weights_sha256=M.model_sha256(tiny_model_dir), threads=1)
    image = np.random.default_rng(3).random((24, 40), dtype=np.float32)
    clone = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(clone(image), net(image))


def test_shipped_model_has_a_current_onnx_graph():
    """models/flow-light/model.onnx was exported from the shipped weights (re-export after retraining)."""
    model_dir = REPO / "models" / "flow-light"
    OnnxNetwork(model_dir / ONNX_NAME, weights_sha256=M.model_sha256(model_dir))  # raises OnnxUnavailable if stale
    assert load_flow_model(model_dir, device="cpu").runtime == "onnxruntime"
