"""Flow network, model files and model-side inference steps."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from shapes import disc_labels  # noqa: E402

from micrometry.segment import model as M  # noqa: E402
from micrometry.segment.network import (  # noqa: E402
    BACKBONES,
    N_OUTPUTS,
    build_network,
    count_parameters,
    network_config,
)


def _tiny_config(**kw):
    arch = network_config("light", base_channels=4, depth=3)
    return {"architecture": arch, "train_diameter_px": 20.0, **kw}


# --------------------------------------------------------------------------- network


@pytest.mark.parametrize("shape", [(37, 50), (5, 9), (64, 64), (1, 1)])
def test_forward_any_size(shape):
    net = build_network("light", base_channels=4).eval()
    with torch.inference_mode():
        out = net(torch.zeros(2, 1, *shape))
    assert out.shape == (2, N_OUTPUTS, *shape)
    assert out.dtype == torch.float32


def test_backbone_sizes():
    n_light = count_parameters(build_network("light"))
    n_large = count_parameters(build_network("large"))
    assert 300_000 <= n_light <= 1_000_000
    assert 4_000_000 <= n_large <= 8_000_000
    assert set(BACKBONES) == {"light", "large"}


def test_bad_network_options():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_network("huge")
    with pytest.raises(ValueError, match="unknown network option"):
        network_config("light", width=3)
    with pytest.raises(ValueError, match="norm"):
        build_network("light", norm="layer")
    with pytest.raises(ValueError, match=r"\(B, C, Y, X\)"):
        build_network("light", base_channels=4)(torch.zeros(1, 8, 8))


def test_importing_torch_free_modules_does_not_import_torch():
    code = (
        "import sys, micrometry, micrometry.segment.model, micrometry.train.augment, micrometry.train.datasets;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- numpy steps


def test_normalize_image_percentiles_and_exclude():
    img = np.arange(1000, dtype=np.float64).reshape(10, 100)
    out = M.normalize_image(img, percentiles=(1.0, 99.0))
    lo, hi = np.percentile(img, [1.0, 99.0])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, (img - lo) / (hi - lo), rtol=1e-5, atol=1e-6)
    # an excluded bright overlay does not change the statistics and gets the median value
    with_bar = img.copy()
    with_bar[0, :50] = 1e6
    exclude = np.zeros(img.shape, bool)
    exclude[0, :50] = True
    out2 = M.normalize_image(with_bar, percentiles=(1.0, 99.0), exclude=exclude)
    lo2, hi2 = np.percentile(img[~exclude], [1.0, 99.0])
    np.testing.assert_allclose(out2[~exclude], ((img - lo2) / (hi2 - lo2))[~exclude], rtol=1e-5, atol=1e-6)
    assert np.all(out2[exclude] == np.median(out2[~exclude]))
    assert not M.normalize_image(np.full((4, 4), 3.0)).any()
    with pytest.raises(ValueError, match="2-D"):
        M.normalize_image(np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="exclude mask shape"):
        M.normalize_image(img, exclude=np.zeros((3, 3), bool))


def test_median_diameter_of_discs():
    lab = disc_labels((200, 200), [(50, 50), (50, 150), (150, 100)], 20)
    assert M.median_diameter_px(lab) == pytest.approx(40.0, rel=0.02)
    assert np.isnan(M.median_diameter_px(np.zeros((5, 5), np.int32)))


def test_resize_image_nearest_keeps_ids():
    lab = disc_labels((40, 40), [(20, 20)], 10)
    up = M.resize_image(lab, (80, 80), order=0)
    assert up.dtype == lab.dtype and set(np.unique(up)) == {0, 1}
    assert (up > 0).sum() == pytest.approx(4 * (lab > 0).sum(), rel=0.05)


def test_resize_image_bilinear_known_answers():
    # a ramp sampled at pixel centres stays that ramp on the new grid (align_corners=False)
    x = np.arange(64, dtype=np.float64)
    ramp = np.broadcast_to(2.0 * x + 5.0, (3, 64))
    up = M.resize_image(ramp, (3, 128))
    centres = (np.arange(128) + 0.5) * 64 / 128 - 0.5
    inner = slice(2, -2)  # the two edge pixels are clamped
    assert up.dtype == np.float32 and up.shape == (3, 128)
    np.testing.assert_allclose(up[:, inner], np.broadcast_to(2.0 * centres + 5.0, (3, 128))[:, inner], atol=1e-4)
    # shrinking anti-aliases: a 1-px checkerboard averages to its mean instead of aliasing
    board = (np.indices((64, 64)).sum(0) % 2).astype(np.float32)
    np.testing.assert_allclose(M.resize_image(board, (16, 16)), 0.5, atol=0.02)
    # (C, Y, X): each channel on its own; a constant stays constant
    stack = np.stack([np.full((30, 40), 3.0), board[:30, :40]])
    out = M.resize_image(stack, (45, 20))
    assert out.shape == (2, 45, 20)
    np.testing.assert_allclose(out[0], 3.0, atol=1e-5)
    with pytest.raises(ValueError, match="order"):
        M.resize_image(board, (8, 8), order=3)


def test_upsample_labels_follows_fine_foreground():
    small = np.zeros((10, 10), np.uint32)
    small[2:5, 2:5] = 3
    small[6:9, 6:9] = 7
    fine_truth = np.zeros((40, 40), np.uint32)
    fine_truth[7:21, 7:21] = 3  # reaches past the coarse block by up to 2 px
    fine_truth[24:36, 24:36] = 7
    up = M.upsample_labels(small, fine_truth > 0)
    np.testing.assert_array_equal(up, fine_truth)


# --------------------------------------------------------------------------- files


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    cfg = _tiny_config()
    arch = dict(cfg["architecture"])
    net = build_network(arch.pop("backbone"), base_channels=arch["base_channels"], depth=arch["depth"])
    # make BatchNorm running statistics non-trivial, so they must round-trip too
    net.train()
    with torch.no_grad():
        net(torch.rand(2, 1, 32, 32))
    return M.FlowModel(net, cfg)


def test_save_load_round_trip(tmp_path):
    model = _tiny_model()
    out = M.save_model(model, model.config | {"validation": {"ap": {"0.5": 0.5}}}, tmp_path / "m")
    assert {p.name for p in out.iterdir()} == {"config.json", "weights.safetensors"}
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["weights_sha256"] == M.model_sha256(out)
    assert cfg["train_diameter_px"] == 20.0 and cfg["validation"]["ap"]["0.5"] == 0.5
    loaded = M.load_model(out)
    img = np.random.default_rng(1).random((45, 61)).astype(np.float32)
    a, b = model.predict(img), loaded.predict(img)
    assert a.shape == (4, 45, 61) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert np.all((a[0] >= 0) & (a[0] <= 1))  # channel 0 is a probability


def test_load_never_unpickles(tmp_path, monkeypatch):
    out = M.save_model(_tiny_model(), _tiny_config(), tmp_path / "m")

    def boom(*a, **k):
        raise AssertionError("torch.load must not be used")

    monkeypatch.setattr(torch, "load", boom)
    M.load_model(out)


def test_corrupted_weights_clear_error(tmp_path):
    out = M.save_model(_tiny_model(), _tiny_config(), tmp_path / "m")
    w = out / "weights.safetensors"
    w.write_bytes(b"\x80\x04 this is a pickle, not safetensors" * 10)
    with pytest.raises(ValueError, match=r"weights\.safetensors.*checksum"):
        M.load_model(out)
    # without a recorded checksum the safetensors reader itself refuses it
    cfg = json.loads((out / "config.json").read_text())
    del cfg["weights_sha256"]
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"weights\.safetensors: not a readable safetensors file"):
        M.load_model(out)


def test_architecture_mismatch_names_tensor(tmp_path):
    out = M.save_model(_tiny_model(), _tiny_config(), tmp_path / "m")
    cfg = json.loads((out / "config.json").read_text())
    cfg["architecture"]["base_channels"] = 8
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"weights\.safetensors: tensor 'stem.weight' has shape \(4, 1, 3, 3\)"):
        M.load_model(out)
    cfg["architecture"]["depth"] = 4
    cfg["architecture"]["base_channels"] = 4
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="missing"):
        M.load_model(out)


def test_missing_and_invalid_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        M.load_model(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        M.read_model_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a micrometry flow model"):
        M.read_model_config(tmp_path)
    with pytest.raises(ValueError, match="architecture"):
        M.save_model(_tiny_model(), {"train_diameter_px": 3}, tmp_path / "x")


# --------------------------------------------------------------------------- inference chain with an oracle network


class _OracleModel(M.FlowModel):
    """Predicts exact flows of the bright discs it sees (no training needed)."""

    def predict(self, image_norm):
        from scipy import ndimage as ndi

        from micrometry.segment.flows import labels_to_flows

        lab, _ = ndi.label(image_norm > 0.5)
        flows, dist = labels_to_flows(lab)
        return np.concatenate([(lab > 0)[None].astype(np.float32), flows, dist[None]]).astype(np.float32)


def _oracle():
    net = build_network("light", base_channels=4, depth=2)
    cfg = _tiny_config() | {"architecture": network_config("light", base_channels=4, depth=2)}
    cfg["inference"] = {"backend": "numpy"}  # no JIT compilation in unit tests
    return _OracleModel(net, cfg)


@pytest.mark.parametrize("radius", [6, 25])
def test_segment_rescales_tracks_and_restores(radius):
    centres = [(40 + 2.6 * radius * i, 40 + 2.6 * radius * j) for i in range(3) for j in range(2)]
    shape = (int(80 + 5.2 * radius + 40), int(80 + 2.6 * radius + 40))
    truth = disc_labels(shape, centres, radius)
    image = np.where(truth > 0, 200, 40).astype(np.uint8)
    model = _oracle()
    labels, pred = model.segment(image, diameter_px=2 * radius, return_prediction=True)
    assert labels.shape == shape and labels.dtype == np.uint32 and pred.shape == (4, *shape)
    from micrometry.evaluate import match_instances

    res = match_instances(truth, labels, thresholds=(0.9,))
    assert labels.max() == 6
    assert res["tp"][0.9] == 6  # every disc found with IoU >= 0.9 after the round trip through the scale


@pytest.mark.parametrize("method", ["search", "multiscale", "refine"])
def test_estimate_diameter_and_exclusion(method):
    truth = disc_labels((240, 240), [(60, 60), (60, 170), (170, 60), (170, 170)], 22)
    image = np.where(truth > 0, 220, 30).astype(np.uint8)
    model = _oracle()
    d = model.estimate_diameter_px(M.normalize_image(image), method=method)
    assert d == pytest.approx(44.0, rel=0.1)
    with pytest.raises(ValueError, match="diameter method"):
        model.estimate_diameter_px(M.normalize_image(image), method="guess")
    exclude = np.zeros(image.shape, bool)
    exclude[:120] = True
    labels = model.segment(image, diameter_px=44, exclude=exclude)
    assert labels.max() == 2 and not labels[exclude].any()


def _record_scales(model) -> list:
    """Make `model` append the scale of every network pass to the returned list."""
    scales = []
    real = model.predict_scaled

    def spy(img, scale):
        scales.append(scale)
        return real(img, scale)

    model.predict_scaled = spy
    return scales


@pytest.mark.parametrize(("radius", "reused"), [(20, True), (13, False)])
def test_search_reuses_the_pass_it_settles_on(radius, reused):
    """Objects near the training size (20 px here): the search's own pass gives the labels, no extra network run."""
    centres = [(60, 60), (60, 170), (170, 60), (170, 170)]
    truth = disc_labels((240, 240), centres, radius)
    image = np.where(truth > 0, 220, 30).astype(np.uint8)
    model = _oracle()
    scales = _record_scales(model)
    d, kept = model.search_diameter(M.normalize_image(image))
    assert d == pytest.approx(2 * radius, rel=0.1)
    assert scales == sorted(scales)  # coarse to fine
    n_search = len(scales)
    scales.clear()
    labels = model.segment(image)
    assert (kept is not None) == reused
    assert len(scales) == n_search + (0 if reused else 1)
    from micrometry.evaluate import match_instances

    assert match_instances(truth, labels, thresholds=(0.9,))["tp"][0.9] == 4


def test_labels_are_computed_at_the_labelling_size():
    """inference.label_diameter_px: objects of 40 px are labelled at 16 px on the model grid (scale 0.4), not 20."""
    truth = disc_labels((200, 200), [(50, 50), (50, 150), (150, 100)], 20)
    image = np.where(truth > 0, 220, 30).astype(np.uint8)
    model = _oracle()
    model.config["inference"]["label_diameter_px"] = 16.0
    assert model.label_diameter_px == 16.0 and model.train_diameter_px == 20.0
    scales = _record_scales(model)
    labels = model.segment(image, diameter_px=40)
    assert scales == [pytest.approx(0.4)]
    from micrometry.evaluate import match_instances

    assert match_instances(truth, labels, thresholds=(0.9,))["tp"][0.9] == 3


def test_search_estimate_stops_at_its_finest_scale():
    """Specks far below train size / 4 (texture, dust): the estimate stays at train size / 4, no 8x enlargement."""
    image = np.full((120, 120), 30, np.uint8)
    for y in range(6, 114, 12):
        for x in range(6, 114, 12):
            image[y : y + 3, x : x + 3] = 220  # 3 x 3 px specks (diameter ~3.4 px, train size 20)
    model = _oracle()
    scales = _record_scales(model)
    d, _ = model.search_diameter(M.normalize_image(image))
    assert d == pytest.approx(model.train_diameter_px / 4)
    model.segment(image)
    assert max(scales) == pytest.approx(4.0)  # never beyond the search's own 4x enlargement


class _TwistedOracle(_OracleModel):
    """The oracle, but the flows of the leftmost disc are rotated by 60 degrees (flow error 1)."""

    def predict(self, image_norm):
        from scipy import ndimage as ndi

        pred = super().predict(image_norm)
        lab, _ = ndi.label(image_norm > 0.5)
        m = lab == lab[:, : image_norm.shape[1] // 3].max()
        c, s = np.cos(np.pi / 3), np.sin(np.pi / 3)
        fy, fx = pred[1, m].copy(), pred[2, m].copy()
        pred[1, m], pred[2, m] = c * fy - s * fx, s * fy + c * fx
        return pred


@pytest.mark.parametrize("radius", [10, 30])  # tracked on the image grid / on the model grid
def test_flow_error_qc_drops_objects_whose_flows_disagree(radius):
    """inference.flow_error_max (0.4) drops the disc with rotated flows; 0 turns the QC off."""
    shape = (8 * radius, 10 * radius)
    centres = [(4 * radius, int(1.5 * radius)), (4 * radius, 5 * radius), (4 * radius, int(8.5 * radius))]
    truth = disc_labels(shape, centres, radius)
    image = np.where(truth > 0, 220, 30).astype(np.uint8)
    base = _oracle()
    model = _TwistedOracle(base.net, base.config)
    assert model.flow_error_max is None  # off unless the model's config says so
    assert model.segment(image, diameter_px=2 * radius).max() == 3
    model.config["inference"]["flow_error_max"] = 0.4
    assert model.flow_error_max == 0.4
    labels = model.segment(image, diameter_px=2 * radius)
    from micrometry.evaluate import match_instances

    assert labels.max() == 2 and not labels[truth == 1].any()
    assert match_instances(truth, labels, thresholds=(0.9,))["tp"][0.9] == 2
    assert model.segment(image, diameter_px=2 * radius, flow_error_max=0).max() == 3
    assert model.segment(image, diameter_px=2 * radius, flow_error_max=1.5).max() == 3


def test_search_passes_are_not_qc_filtered_but_reused_labels_are():
    """The size search sees every object; the labels it hands on get the QC (no extra network run)."""
    truth = disc_labels((120, 200), [(60, 30), (60, 100), (60, 170)], 10)  # 20 px: the training size
    image = np.where(truth > 0, 220, 30).astype(np.uint8)
    base = _oracle()
    model = _TwistedOracle(base.net, base.config)
    model.config["inference"]["flow_error_max"] = 0.4
    d, kept = model.search_diameter(M.normalize_image(image))
    assert kept is not None and kept.n_objects == 3 and d == pytest.approx(20, rel=0.1)
    scales = _record_scales(model)
    labels = model.segment(image)
    assert len(scales) == len(set(scales))  # the kept pass was reused, not run again
    assert labels.max() == 2 and not labels[truth == 1].any()


def test_check_flow_error_max():
    from micrometry.segment.flows import check_flow_error_max

    assert check_flow_error_max(None) is None and check_flow_error_max(0) is None
    assert check_flow_error_max(0.4) == 0.4 and isinstance(check_flow_error_max(1), float)
    for bad in (-0.1, float("nan"), float("inf"), "0.4", True):
        with pytest.raises(ValueError, match="flow_error_max"):
            check_flow_error_max(bad)


def test_large_images_go_through_tiled_inference(monkeypatch):
    import micrometry.segment.tiled as tiled

    calls = []
    real = tiled.predict_tiled

    def spy(*a, **k):
        calls.append(k)
        return real(*a, **k)

    monkeypatch.setattr(tiled, "predict_tiled", spy)
    model = _tiny_model()
    model.config["inference"] = {"tile_px": 64, "overlap_px": 32}
    img = np.random.default_rng(0).random((150, 170)).astype(np.float32)
    tiled_pred = model._predict_any_size(img)
    assert len(calls) == 1 and calls[0]["n_channels"] == 4 and calls[0]["tile_px"] == 64
    full = model.predict(img)
    assert tiled_pred.shape == full.shape == (4, 150, 170)
    assert np.abs(tiled_pred - full).mean() < 0.02
    model._predict_any_size(img[:60, :64])  # not larger than tile_px: one call to predict, no tiling
    assert len(calls) == 1
