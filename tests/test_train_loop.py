"""Training loop: losses, schedule, data pipeline and a tiny end-to-end run."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from shapes import disc_labels  # noqa: E402

from micrometry.segment.model import load_model  # noqa: E402
from micrometry.segment.network import build_network  # noqa: E402
from micrometry.train.datasets import FlowDataset, make_targets, prepare_image, synthetic_images  # noqa: E402
from micrometry.train.loop import evaluate_model, flow_losses, lr_factor, train, train_from_yaml  # noqa: E402

_TINY = {
    "seed": 3,
    "threads": 1,
    "model": {"backbone": "light", "overrides": {"base_channels": 4, "depth": 3}, "train_diameter_px": 12.0},
    "data": {
        "synthetic": {"n_images": 3, "shape": [128, 128], "seed": 7},
        "source_weights": {"emps": 0.0, "synthetic": 1.0},
        "crop_px": 48,
        "num_workers": 0,
    },
    "optim": {"batch_size": 4, "lr": 1e-2, "warmup_steps": 2, "max_steps": 40, "max_minutes": 5},
    "validation": {"every_steps": 0},
    "log_every_steps": 5,
}


def _batch_from_labels(lab):
    fg, flows, dist = make_targets(lab)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))[None]  # noqa: E731
    return {"foreground": t(fg), "flows": t(flows), "distance": t(dist), "valid": t(np.ones_like(fg))}


def test_losses_zero_for_perfect_prediction_and_masked():
    lab = disc_labels((32, 32), [(10, 10), (22, 20)], 5)
    batch = _batch_from_labels(lab)
    logit = torch.where(batch["foreground"] > 0, 30.0, -30.0)
    out = torch.cat([logit[:, None], batch["flows"], batch["distance"][:, None]], 1)
    total, parts = flow_losses(out, batch)
    assert parts["flow_mse"] == 0 and parts["dist_mse"] == 0 and parts["bce"] < 1e-6
    assert parts["dice"] < 1e-3 and float(total) < 1e-3
    # errors on invalid pixels, or on flows outside objects, do not count
    bad = out.clone()
    bad[:, 1:3][:, :, batch["foreground"][0] == 0] = 7.0
    batch["valid"][:, :, :16] = 0
    bad[:, 0, :, :16] = -bad[:, 0, :, :16]
    _, p2 = flow_losses(bad, batch)
    assert p2["flow_mse"] == 0 and p2["bce"] < 1e-6
    # a flow error of 1 in one component inside objects gives flow_mse 0.5
    off = out.clone()
    off[:, 1] = off[:, 1] + batch["foreground"]
    _, p3 = flow_losses(off, _batch_from_labels(lab))
    assert p3["flow_mse"] == pytest.approx(0.5)


def test_lr_schedule():
    kw = {"warmup_steps": 10, "min_lr_ratio": 0.1}
    assert lr_factor(0.0, 0, **kw) == pytest.approx(0.1)
    assert lr_factor(0.0, 9, **kw) == pytest.approx(1.0)
    assert lr_factor(0.5, 50, **kw) == pytest.approx(0.55)
    assert lr_factor(1.0, 99, **kw) == pytest.approx(0.1)
    assert lr_factor(2.0, 99, **kw) == pytest.approx(0.1)


def test_prepare_image_rescales_to_training_diameter():
    lab = disc_labels((200, 200), [(50, 50), (50, 150), (150, 100)], 20)
    img = np.where(lab > 0, 180, 20).astype(np.uint8)
    item = prepare_image(img, lab, train_diameter_px=20.0, name="x", source="test")
    assert item.scale == pytest.approx(0.5, rel=0.03)
    assert item.image.shape == (round(200 * item.scale),) * 2
    assert item.diameter_px == pytest.approx(40, rel=0.02)
    a = np.bincount(item.labels.ravel())[1:]
    assert np.median(2 * np.sqrt(a / math.pi)) == pytest.approx(20, rel=0.06)
    assert item.image.min() == pytest.approx(0.0, abs=1e-6) and item.image.max() == pytest.approx(1.0, abs=1e-6)


def test_dataset_is_deterministic_and_targets_match_labels():
    lab = disc_labels((80, 80), [(20, 20), (20, 55), (55, 40)], 9)
    img = np.where(lab > 0, 0.9, 0.1).astype(np.float32)
    item = prepare_image(img, lab, train_diameter_px=18.0, name="d", source="test")
    ds = FlowDataset([item], n_samples=5, crop_px=32, seed=1)
    a, b = ds[3], ds[3]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert a["image"].shape == (1, 32, 32) and a["flows"].shape == (2, 32, 32)
    norm = np.hypot(*a["flows"])
    inside = a["foreground"] > 0
    assert np.all(norm[~inside] == 0)
    assert np.mean(np.abs(norm[inside] - 1) < 1e-4) > 0.95  # unit vectors except at centres
    with pytest.raises(IndexError):
        ds[5]


def test_tiny_training_run_reduces_loss_and_writes_model(tmp_path):
    result = train(_TINY, tmp_path / "m")
    assert result["steps"] == 40 and result["stopped_by"] == "max_steps"
    model = load_model(tmp_path / "m")
    assert model.config["training"]["steps"] == 40
    assert model.train_diameter_px == 12.0
    rows = list(csv.DictReader(open(tmp_path / "m" / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == list(range(5, 41, 5))

    # loss on a fixed batch: the initial network (same seed) vs the trained one
    images = synthetic_images(3, train_diameter_px=12.0, seed=7, shape=(128, 128))
    ds = FlowDataset(images, n_samples=8, crop_px=48, seed=99)
    batch = {k: torch.from_numpy(np.stack([ds[i][k] for i in range(8)])) for k in ds[0]}
    torch.manual_seed(3)
    net0 = build_network("light", base_channels=4, depth=3)
    with torch.no_grad():
        loss0, _ = flow_losses(net0.train()(batch["image"]), batch)  # batch statistics in both
        loss1, _ = flow_losses(model.net.train()(batch["image"]), batch)
    assert float(loss1) < 0.8 * float(loss0), (float(loss0), float(loss1))

    # the evaluation helper runs the full segment chain on full images
    items = [(im.name, (im.image * 255).clip(0, 255).astype(np.uint8), im.labels) for im in images[:2]]
    model.config["inference"]["backend"] = "numpy"
    res = evaluate_model(model, items, diameter="gt")
    assert set(res["ap"]) == {"0.5", "0.75", "0.9"} and res["n_images"] == 2
    assert all(0.0 <= v <= 1.0 for v in res["ap"].values())


def test_train_from_yaml_rejects_unknown_keys(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("optim: {max_steps: 1}\nbogus: 1\n")
    with pytest.raises(ValueError, match=r"r\.yaml: unknown recipe key\(s\) \['bogus'\]"):
        train_from_yaml(p, tmp_path / "m")


def test_training_with_emps_validation_keeps_best_checkpoint(tmp_path):
    from micrometry.train.realdata import emps_dir

    if emps_dir() is None:
        pytest.skip("EMPS data not available")
    cfg = {
        **_TINY,
        "data": {**_TINY["data"], "source_weights": {"emps": 1.0, "synthetic": 0.0}, "emps_train_limit": 3},
        "optim": {**_TINY["optim"], "max_steps": 12},
        "validation": {"every_steps": 5, "limit": 2, "final_auto_diameter": False},
        "inference": {"backend": "numpy"},
    }
    result = train(cfg, tmp_path / "m")
    rows = list(csv.DictReader(open(tmp_path / "m" / "train_log.csv")))
    val_steps = [int(r["step"]) for r in rows if r["val_ap50"]]
    assert val_steps == [5, 10, 12]  # periodic, plus once at the end
    model = load_model(tmp_path / "m")
    v = model.config["validation"]
    assert v["n_images"] == 2 and v["step"] == result["best_step"] in val_steps
    best_ap = max(float(r["val_ap50"]) for r in rows if r["val_ap50"])
    assert v["gt_diameter"]["ap"]["0.5"] == pytest.approx(best_ap)
    assert model.config["training"]["data"]["emps"]["n_images"] == 3


def test_warm_start_continues_from_a_model_directory(tmp_path):
    from micrometry.segment.model import model_sha256

    first = train({**_TINY, "optim": {**_TINY["optim"], "max_steps": 5}}, tmp_path / "a")
    assert first["steps"] == 5
    src = load_model(tmp_path / "a")
    # zero steps of fine-tuning: the weights are exactly the source's
    cfg = {**_TINY, "model": {**_TINY["model"], "init_from": str(tmp_path / "a")},
           "optim": {**_TINY["optim"], "max_steps": 0}}
    train(cfg, tmp_path / "b")
    tuned = load_model(tmp_path / "b")
    for name, tensor in src.net.state_dict().items():
        assert torch.equal(tensor, tuned.net.state_dict()[name]), name
    assert tuned.config["training"]["init_from"]["weights_sha256"] == model_sha256(tmp_path / "a")
    # a recipe whose architecture or object size differs is refused, naming the source
    bad = {**cfg, "model": {**cfg["model"], "overrides": {"base_channels": 8, "depth": 3}}}
    with pytest.raises(ValueError, match=r"init_from .*a: architecture"):
        train(bad, tmp_path / "c")
    bad = {**cfg, "model": {**cfg["model"], "train_diameter_px": 20.0}}
    with pytest.raises(ValueError, match="trained at 12.0 px objects"):
        train(bad, tmp_path / "d")
