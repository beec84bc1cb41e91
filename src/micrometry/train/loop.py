"""Training loop of the flow model.

:func:`train` runs one reproducible recipe (a dict; :func:`train_from_yaml`
reads it from ``config/train.yaml``) and writes a model directory
(:func:`micrometry.segment.model.save_model`) plus ``train_log.csv``.

Recipe
------
- Data: EMPS train split (by DOI) plus synthetic micrographs, each rescaled to
  ``model.train_diameter_px`` and sampled by :class:`~micrometry.train.datasets.FlowDataset`
  with the source weights of ``data.source_weights``.
- Losses (:func:`flow_losses`), all restricted to valid pixels: binary
  cross-entropy + soft Dice on the foreground logit; mean squared error of
  the flows inside objects (weight ``loss.flow_weight``, 5 by default as in
  Cellpose); mean squared error of the per-object normalised distance inside
  objects (``loss.distance_weight``).
- Optimiser: AdamW, linear warm-up then cosine decay to ``optim.min_lr_ratio``
  x the peak.  Progress along the schedule is
  ``max(step / max_steps, elapsed / max_minutes)``, so the learning rate is
  annealed by the end of the run whichever limit ends it.  Gradient norm
  clipping.  Seeds fixed (python, numpy, torch); the data order is a pure
  function of the seed.
- Validation every ``validation.every_steps`` steps (and at the end) on the
  EMPS validation split: full images through :meth:`FlowModel.segment` at the
  ground-truth median object size (``validation.diameter: gt``) or with the
  model's own size estimate (``auto``); AP_cp at IoU 0.5/0.75/0.9, F1@0.5 and
  mean matched IoU from :func:`micrometry.evaluate.average_precision`.  The
  checkpoint with the best AP_cp@0.5 is kept (written each time it improves)
  and finally evaluated once more with the automatic size estimate when
  ``validation.final_auto_diameter`` is set.
"""

from __future__ import annotations

import copy
import json
import csv
import itertools
import math
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from micrometry._atomic import atomic_path

__all__ = [
    "DEFAULT_TRAIN_CONFIG",
    "merge_config",
    "set_overrides",
    "flow_losses",
    "lr_factor",
    "evaluate_model",
    "train",
    "train_from_yaml",
    "model_card_text",
]

#: Defaults of every recipe key; ``config/train.yaml`` overrides them.
DEFAULT_TRAIN_CONFIG: dict[str, Any] = {
    "seed": 0,
    "threads": 2,
    "device": "cpu",
    "model": {"backbone": "light", "overrides": {}, "train_diameter_px": 30.0, "init_from": None},
    "data": {
        "emps_root": None,
        "emps_train_limit": None,
        "synthetic": {"n_images": 64, "shape": [384, 384], "seed": 100000},
        "source_weights": {"emps": 0.75, "synthetic": 0.25},
        "crop_px": 160,
        "augment": {},
        "num_workers": 1,
    },
    "optim": {
        "batch_size": 8,
        "lr": 2.0e-3,
        "weight_decay": 1.0e-4,
        "warmup_steps": 50,
        "min_lr_ratio": 0.02,
        "max_steps": 2000,
        "max_minutes": 45.0,
        "grad_clip": 1.0,
    },
    "loss": {"flow_weight": 5.0, "distance_weight": 1.0, "dice_weight": 1.0},
    "validation": {
        "every_steps": 250,
        "limit": None,
        "diameter": "gt",
        "final_auto_diameter": True,
        "thresholds": [0.5, 0.75, 0.9],
    },
    "inference": {"fg_threshold": 0.5, "min_area_px": 8, "n_iter": None, "flow_error_max": 0.4},
    "log_every_steps": 10,
}


def merge_config(base: dict, override: dict | None) -> dict:
    """Recursive dict merge: values of `override` win; `base` is not modified."""
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_config(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def set_overrides(config: dict, overrides: dict | None) -> dict:
    """Apply ``{"optim.max_steps": 10}``-style dotted overrides (or nested dicts)."""
    out = copy.deepcopy(config)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and "." not in key:
            out[key] = merge_config(out.get(key, {}), value)
            continue
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def lr_factor(progress: float, step: int, *, warmup_steps: int, min_lr_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up over steps, then cosine in `progress`.

    Parameters
    ----------
    progress : float
        Fraction of the run done, in [0, 1].
    step : int
        Optimiser steps done (0-based).
    warmup_steps : int
    min_lr_ratio : float
        Multiplier at the end of the run.

    Returns
    -------
    float
        In ``(0, 1]``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    p = min(max(progress, 0.0), 1.0)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))


def flow_losses(out: Any, batch: dict, *, flow_weight: float = 5.0, distance_weight: float = 1.0,
                dice_weight: float = 1.0) -> tuple[Any, dict[str, float]]:
    """Masked multi-task loss of a batch.

    Parameters
    ----------
    out : (B, 4, Y, X) torch.Tensor
        Raw network output (foreground logit, flow_y, flow_x, distance).
    batch : dict of torch.Tensor
        ``foreground`` (B, Y, X) in {0, 1}, ``flows`` (B, 2, Y, X),
        ``distance`` (B, Y, X), ``valid`` (B, Y, X) in {0, 1}.
    flow_weight, distance_weight, dice_weight : float

    Returns
    -------
    total : torch.Tensor (scalar)
        ``bce + dice_weight * dice + flow_weight * mse_flow + distance_weight * mse_dist``.
    parts : dict of float
        The unweighted terms.
    """
    import torch
    import torch.nn.functional as F

    fg = batch["foreground"]
    valid = batch["valid"]
    inside = fg * valid
    n_valid = valid.sum().clamp_min(1.0)
    n_inside = inside.sum().clamp_min(1.0)
    logit = out[:, 0]
    bce = (F.binary_cross_entropy_with_logits(logit, fg, reduction="none") * valid).sum() / n_valid
    prob = torch.sigmoid(logit) * valid
    dice = 1.0 - (2.0 * (prob * fg).sum() + 1.0) / (prob.sum() + (fg * valid).sum() + 1.0)
    flow_mse = (((out[:, 1:3] - batch["flows"]) ** 2).sum(1) * inside).sum() / (2.0 * n_inside)
    dist_mse = (((out[:, 3] - batch["distance"]) ** 2) * inside).sum() / n_inside
    total = bce + dice_weight * dice + flow_weight * flow_mse + distance_weight * dist_mse
    parts = {k: float(v.detach()) for k, v in (("bce", bce), ("dice", dice), ("flow_mse", flow_mse), ("dist_mse", dist_mse))}
    return total, parts


def evaluate_model(
    model: Any,
    items: list[tuple[str, np.ndarray, np.ndarray]],
    *,
    diameter: str = "gt",
    thresholds: tuple[float, ...] = (0.5, 0.75, 0.9),
) -> dict:
    """AP_cp of a model on full images.

    Parameters
    ----------
    model : micrometry.segment.model.FlowModel
    items : list of (name, image, labels)
        Original-resolution images (any dtype) and ground-truth labels.
    diameter : {"gt", "auto"}
        Object size given to :meth:`FlowModel.segment`: the ground truth's
        median equivalent diameter, or None (the model estimates it).
    thresholds : tuple of float

    Returns
    -------
    dict
        :func:`micrometry.evaluate.average_precision` result (without the
        per-image list) plus ``seconds`` and ``diameter``.
    """
    from micrometry.evaluate import average_precision
    from micrometry.segment.model import median_diameter_px

    if diameter not in ("gt", "auto"):
        raise ValueError(f"diameter must be 'gt' or 'auto', got {diameter!r}")
    t0 = time.perf_counter()
    gts, preds = [], []
    for _name, image, labels in items:
        d = median_diameter_px(labels) if diameter == "gt" else None
        if d is not None and not np.isfinite(d):
            d = model.train_diameter_px
        preds.append(model.segment(image, diameter_px=d))
        gts.append(labels)
    res = average_precision(gts, preds, thresholds=thresholds)
    res = {k: v for k, v in res.items() if k != "per_image"}
    res["ap"] = {str(k): float(v) for k, v in res["ap"].items()}
    for key in ("tp", "fp", "fn"):
        if key in res:
            res[key] = {str(k): int(v) for k, v in res[key].items()}
    res["seconds"] = time.perf_counter() - t0
    res["diameter"] = diameter
    return res


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _worker_init(_worker_id: int) -> None:
    import torch

    torch.set_num_threads(1)


def _ap(res: dict, t: str = "0.5") -> float:
    return float(res["ap"].get(t, float("nan")))


def warm_start(net: Any, model_dir: str | os.PathLike | None, *, arch: dict, train_diameter_px: float) -> dict | None:
    """Load the weights of an existing model directory into `net` (fine-tuning).

    Parameters
    ----------
    net : torch.nn.Module
        Freshly built network of architecture `arch`.
    model_dir : path or None
        Model directory written by :func:`micrometry.segment.model.save_model`;
        relative paths are taken from the current directory.  None: no-op.
    arch : dict
        The recipe's architecture; must equal the source model's.
    train_diameter_px : float
        The recipe's training object size; must equal the source model's.

    Returns
    -------
    dict or None
        ``{"model_dir", "weights_sha256", "name"}`` of the source, recorded in
        the new model's config; None when `model_dir` is None.

    Raises
    ------
    ValueError
        The source's architecture or training object size differs from the
        recipe's (the message names both).
    """
    if not model_dir:
        return None
    from micrometry.segment.model import load_model, model_sha256

    src = load_model(model_dir, device="cpu")
    src_arch = {k: v for k, v in src.config["architecture"].items()}
    if src_arch != arch:
        raise ValueError(f"init_from {model_dir}: architecture {src_arch} differs from the recipe's {arch}")
    if float(src.train_diameter_px) != float(train_diameter_px):
        raise ValueError(f"init_from {model_dir}: trained at {src.train_diameter_px} px objects, "
                         f"the recipe asks {train_diameter_px} px")
    net.load_state_dict(src.net.state_dict(), strict=True)
    return {"model_dir": str(model_dir), "name": src.config.get("name"), "weights_sha256": model_sha256(model_dir)}


def train(config: dict, out_dir: str | os.PathLike, *, command: str | None = None,
          recipe_file: str | None = None) -> dict:
    """Train a flow model with a recipe and write its model directory.

    Parameters
    ----------
    config : dict
        Recipe; missing keys take :data:`DEFAULT_TRAIN_CONFIG` values.
    out_dir : path
        Model directory: ``config.json`` + ``weights.safetensors`` (best
        checkpoint by validation AP_cp@0.5, or the last one when validation
        is off) and ``train_log.csv``.
    command, recipe_file : str, optional
        Recorded in the model config (default command: ``sys.argv``).

    Returns
    -------
    dict
        ``steps``, ``wall_minutes``, ``best_step``, ``validation`` (of the
        best checkpoint), ``final_auto`` (auto-diameter evaluation or None),
        ``out_dir``.
    """
    import torch

    from micrometry.segment.model import FlowModel, save_model
    from micrometry.segment.network import build_network, count_parameters, network_config
    from micrometry.train.datasets import FlowDataset, load_emps, summarize_images, synthetic_images

    cfg = merge_config(DEFAULT_TRAIN_CONFIG, config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    torch.set_num_threads(int(cfg["threads"]))
    seed = int(cfg["seed"])
    _seed_everything(seed)
    device = torch.device(cfg["device"])
    d_train = float(cfg["model"]["train_diameter_px"])

    # ---- data
    dcfg = cfg["data"]
    images = []
    if float(dcfg["source_weights"].get("emps", 0)) > 0:
        images += load_emps("train", train_diameter_px=d_train, root=dcfg["emps_root"], limit=dcfg["emps_train_limit"])
    syn = dcfg["synthetic"]
    if int(syn.get("n_images", 0)) > 0 and float(dcfg["source_weights"].get("synthetic", 0)) > 0:
        images += synthetic_images(int(syn["n_images"]), train_diameter_px=d_train, seed=int(syn["seed"]),
                                   shape=tuple(syn["shape"]))
    ocfg = cfg["optim"]
    max_steps = int(ocfg["max_steps"])
    batch_size = int(ocfg["batch_size"])
    weights = {k: float(v) for k, v in dcfg["source_weights"].items() if any(im.source == k for im in images)}
    dataset = FlowDataset(images, n_samples=max_steps * batch_size, crop_px=int(dcfg["crop_px"]), seed=seed,
                          source_weights=weights, augment=dcfg["augment"])
    nw = int(dcfg["num_workers"])
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=nw, drop_last=True,
        worker_init_fn=_worker_init if nw else None, persistent_workers=False,
    )
    vcfg = cfg["validation"]
    val_items = None
    if vcfg.get("every_steps"):
        from micrometry.train.realdata import iter_emps

        limit = int(vcfg["limit"]) if vcfg.get("limit") else None
        val_items = list(itertools.islice(iter_emps("val", dcfg["emps_root"]), limit))
    thresholds = tuple(float(t) for t in vcfg["thresholds"])

    # ---- model
    arch = network_config(cfg["model"]["backbone"], **cfg["model"].get("overrides", {}))
    net = build_network(arch["backbone"], **{k: v for k, v in arch.items() if k not in ("backbone", "in_channels", "out_channels")}).to(device)
    init_from = warm_start(net, cfg["model"].get("init_from"), arch=arch, train_diameter_px=d_train)
    opt = torch.optim.AdamW(net.parameters(), lr=float(ocfg["lr"]), weight_decay=float(ocfg["weight_decay"]))
    model_config = {
        "name": out_dir.name,
        "architecture": arch,
        "output_channels": ["foreground_logit", "flow_y", "flow_x", "distance"],
        "normalization": {"method": "percentile", "percentiles": [1.0, 99.8],
                          "note": "of the specimen pixels (exclusion mask ignored), 1st -> 0, 99.8th -> 1, not clipped"},
        "train_diameter_px": d_train,
        "inference": dict(cfg["inference"], min_area_px_note="min_area_px is in pixels at the training scale"),
        "training": {
            "recipe": cfg,
            "data": summarize_images(images),
            "recipe_file": recipe_file,
            "command": command or " ".join([os.path.basename(sys.executable)] + sys.argv),
            "device": str(device) + (f" ({platform.processor() or platform.machine()}, {cfg['threads']} threads)"
                                     if device.type == "cpu" else ""),
            "torch_version": torch.__version__,
            "n_parameters": count_parameters(net),
            "init_from": init_from,
        },
    }

    log_path = out_dir / "train_log.csv"
    fields = ["step", "minutes", "lr", "loss", "bce", "dice", "flow_mse", "dist_mse",
              "val_ap50", "val_ap75", "val_ap90", "val_f1", "val_iou", "val_seconds"]
    log_rows: list[dict] = []

    def write_log() -> None:
        with atomic_path(log_path) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            w.writerows(log_rows)

    def as_model() -> FlowModel:
        return FlowModel(net, model_config, device=device)

    best = {"ap": -1.0, "step": None, "state": None, "val": None}
    last_val_step = [None]

    def validate(step: int) -> dict:
        model = as_model()
        res = evaluate_model(model, val_items, diameter=vcfg["diameter"], thresholds=thresholds)
        last_val_step[0] = step
        net.train()
        if _ap(res) > best["ap"]:
            best.update(ap=_ap(res), step=step, val=res,
                        state={k: v.detach().clone() for k, v in net.state_dict().items()})
            cfg_now = dict(model_config)
            key = "gt_diameter" if vcfg["diameter"] == "gt" else "auto_diameter"
            cfg_now["validation"] = {"split": "emps val (by DOI)", "step": step, "n_images": len(val_items), key: res}
            save_model(net, cfg_now, out_dir)
        return res

    budget_s = float(ocfg["max_minutes"]) * 60.0
    warm = int(ocfg["warmup_steps"])
    min_ratio = float(ocfg["min_lr_ratio"])
    lw = cfg["loss"]
    step = 0
    running: dict[str, float] = {}
    n_run = 0
    net.train()
    stopped_by = "max_steps"
    for batch in loader:
        elapsed = time.perf_counter() - t_start
        if elapsed > budget_s:
            stopped_by = "max_minutes"
            break
        progress = max(step / max_steps, elapsed / budget_s)
        lr = float(ocfg["lr"]) * lr_factor(progress, step, warmup_steps=warm, min_lr_ratio=min_ratio)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = {k: v.to(device) for k, v in batch.items()}
        out = net(batch["image"])
        loss, parts = flow_losses(out, batch, flow_weight=float(lw["flow_weight"]),
                                  distance_weight=float(lw["distance_weight"]), dice_weight=float(lw["dice_weight"]))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {float(loss)} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if ocfg.get("grad_clip"):
            torch.nn.utils.clip_grad_norm_(net.parameters(), float(ocfg["grad_clip"]))
        opt.step()
        step += 1
        parts["loss"] = float(loss.detach())
        for k, v in parts.items():
            running[k] = running.get(k, 0.0) + v
        n_run += 1
        do_val = val_items is not None and step % int(vcfg["every_steps"]) == 0
        if step % int(cfg["log_every_steps"]) == 0 or do_val:
            row = {"step": step, "minutes": round((time.perf_counter() - t_start) / 60, 3), "lr": lr,
                   **{k: round(v / n_run, 5) for k, v in running.items()}}
            running, n_run = {}, 0
            if do_val:
                res = validate(step)
                row.update(val_ap50=_ap(res), val_ap75=_ap(res, "0.75"), val_ap90=_ap(res, "0.9"),
                           val_f1=res.get("f1@0.5"), val_iou=res.get("mean_matched_iou"),
                           val_seconds=round(res["seconds"], 1))
            log_rows.append(row)
            write_log()
            print(row, flush=True)
    train_minutes = (time.perf_counter() - t_start) / 60
    if val_items is not None and last_val_step[0] != step:
        res = validate(step)
        log_rows.append({"step": step, "minutes": round((time.perf_counter() - t_start) / 60, 3),
                         "val_ap50": _ap(res), "val_ap75": _ap(res, "0.75"), "val_ap90": _ap(res, "0.9"),
                         "val_f1": res.get("f1@0.5"), "val_iou": res.get("mean_matched_iou"),
                         "val_seconds": round(res["seconds"], 1)})
        write_log()
    if best["state"] is not None:
        net.load_state_dict(best["state"])
    final_auto = None
    model_config["training"].update(steps=step, stopped_by=stopped_by, best_step=best["step"],
                                    train_minutes=round(train_minutes, 2))
    if val_items is not None and vcfg.get("final_auto_diameter"):
        final_auto = evaluate_model(as_model(), val_items, diameter="auto", thresholds=thresholds)
    wall = (time.perf_counter() - t_start) / 60
    model_config["training"]["wall_minutes"] = round(wall, 2)
    if best["val"] is not None:
        model_config["validation"] = {"split": "emps val (by DOI)", "n_images": len(val_items), "step": best["step"]}
        if vcfg["diameter"] == "gt":
            model_config["validation"].update(gt_diameter=best["val"], auto_diameter=final_auto)
        else:
            model_config["validation"].update(auto_diameter=best["val"])
    save_model(net, model_config, out_dir)
    onnx_file = None
    try:  # the CPU inference graph (micrometry.segment.onnx); needs the onnx package
        from micrometry.segment.onnx import export_onnx

        onnx_file = str(export_onnx(out_dir))
    except ImportError as exc:
        print(f"no ONNX graph written ({exc}); inference will use PyTorch", flush=True)
    result = {"steps": step, "wall_minutes": wall, "best_step": best["step"], "validation": best["val"],
              "final_auto": final_auto, "out_dir": str(out_dir), "stopped_by": stopped_by, "onnx": onnx_file}
    print({k: v for k, v in result.items()}, flush=True)
    return result


def train_from_yaml(
    path: str | os.PathLike, out_dir: str | os.PathLike, overrides: dict | None = None, *, command: str | None = None
) -> dict:
    """Run :func:`train` with the recipe in a YAML file.

    Parameters
    ----------
    path : path
        Recipe (e.g. ``config/train.yaml``).
    out_dir : path
        Model directory to write.
    overrides : dict, optional
        Applied on top of the file: nested dicts, or dotted keys such as
        ``{"optim.max_steps": 20, "validation.every_steps": 0}``.
    command : str, optional
        The command line that started the run, recorded in the model config
        (default: this call, spelled out).

    Returns
    -------
    dict
        See :func:`train`.
    """
    import yaml

    path = Path(path)
    try:
        recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read training recipe ({exc})") from exc
    if not isinstance(recipe, dict):
        raise ValueError(f"{path}: a training recipe must be a mapping, got {type(recipe).__name__}")
    unknown = set(recipe) - set(DEFAULT_TRAIN_CONFIG)
    if unknown:
        raise ValueError(f"{path}: unknown recipe key(s) {sorted(unknown)}")
    recipe = set_overrides(recipe, overrides)
    command = command or f"train_from_yaml({str(path)!r}, {str(out_dir)!r}, overrides={overrides!r})"
    return train(recipe, out_dir, command=command, recipe_file=str(path))


def _metrics_row(label: str, res: dict | None) -> str:
    if not res:
        return f"| {label} | – | – | – | – | – |"
    ap = res.get("ap", {})

    def f(v: Any) -> str:
        return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{float(v):.3f}"

    return (f"| {label} | {f(ap.get('0.5'))} | {f(ap.get('0.75'))} | {f(ap.get('0.9'))} | "
            f"{f(res.get('f1@0.5'))} | {f(res.get('mean_matched_iou'))} |")


def model_card_text(config: dict, *, comparison: dict[str, dict] | None = None, notes: str = "") -> str:
    """Markdown model card from a model's ``config.json`` content.

    Parameters
    ----------
    config : dict
        As written by :func:`train` (``training``, ``validation`` entries).
    comparison : dict, optional
        ``{label: average_precision result}`` rows added to the metrics
        table (e.g. the classical method on the same split).
    notes : str
        Free Markdown appended at the end (limitations, remarks).

    Returns
    -------
    str
    """
    tr = config.get("training", {})
    rec = tr.get("recipe", {})
    val = config.get("validation", {}) or {}
    arch = config["architecture"]
    data = tr.get("data", {})
    o = rec.get("optim", {})
    d = rec.get("data", {})
    lines = [
        f"# Model card: {config.get('name', 'flow model')}",
        "",
        "Flow-based instance segmentation of particles in electron micrographs (micrometry flow model).",
        "",
        "## Files",
        "",
        "- `config.json`: architecture, normalisation, object scale, inference thresholds, training record, "
        "validation metrics.",
        f"- `weights.safetensors`: float32 state dict, sha256 `{config.get('weights_sha256')}`.",
        "- `train_log.csv`: losses and validation metrics during training.",
        "",
        "## Architecture",
        "",
        f"Residual U-Net (`{arch.get('backbone')}` backbone): base {arch.get('base_channels')} channels, "
        f"{arch.get('depth')} levels, {arch.get('norm')} normalisation, {config.get('n_parameters')} parameters. "
        "Output per pixel: foreground logit, flow_y, flow_x, per-object normalised distance.",
        "",
        "## Input",
        "",
        "- One grey channel, percentile-normalised over the specimen pixels: "
        f"{config['normalization']['percentiles'][0]}th percentile -> 0, "
        f"{config['normalization']['percentiles'][1]}th -> 1 (not clipped).",
        f"- Object scale: images are rescaled so the median object diameter is "
        f"**{config['train_diameter_px']:g} px** (equivalent-circle diameter); at inference the diameter is "
        "given (`diameter_px`) or estimated automatically (`FlowModel.estimate_diameter_px`).",
        f"- Inference settings: `{json.dumps({k: v for k, v in config.get('inference', {}).items() if not k.endswith('_note')})}`.",
        "",
        "## Training data",
        "",
    ]
    for src, s in data.items():
        md = s.get("median_diameter_px", {})
        lines.append(
            f"- **{src}**: {s.get('n_images')} images, {s.get('n_objects')} objects after rescaling; "
            f"per-image median object diameter (original pixels) 5th/50th/95th percentile "
            f"{md.get('p5', float('nan')):.0f} / {md.get('p50', float('nan')):.0f} / {md.get('p95', float('nan')):.0f} px."
        )
    lines += [
        "- EMPS split by DOI (`micrometry/train/splits/by_doi.json`); validation images come from papers never "
        "seen in training.",
        f"- Sampling weights {d.get('source_weights')}; crops {d.get('crop_px')} px; scale jitter, flips, "
        "90° rotations, inversion, gamma/contrast, blur, Gaussian and Poisson noise.",
        "",
        "## Recipe",
        "",
        f"- Recipe file: `{tr.get('recipe_file')}`; seed {rec.get('seed')}.",
        f"- AdamW (lr {o.get('lr')}, weight decay {o.get('weight_decay')}), {o.get('warmup_steps')} warm-up steps, "
        f"cosine decay (progress = max(step / {o.get('max_steps')}, time / {o.get('max_minutes')} min)), "
        f"batch {o.get('batch_size')}, gradient clipping {o.get('grad_clip')}.",
        f"- Losses: BCE + Dice (foreground), flow MSE x {rec.get('loss', {}).get('flow_weight')} and distance MSE "
        f"x {rec.get('loss', {}).get('distance_weight')} inside objects.",
        f"- Command: `{tr.get('command')}`",
        f"- Device: {tr.get('device')}; torch {tr.get('torch_version')}.",
        f"- Steps: {tr.get('steps')} (stopped by {tr.get('stopped_by')}); best checkpoint at step "
        f"{tr.get('best_step')}; wall time: training {tr.get('train_minutes')} min, whole training process "
        f"{tr.get('wall_minutes')} min.",
        "",
        "## Validation (EMPS validation split, full images)",
        "",
        f"{val.get('n_images')} images; AP_cp = TP / (TP + FP + FN) per image, averaged over images "
        "(Cellpose convention); one-to-one matching.",
        "",
        "| method | AP_cp@0.5 | AP_cp@0.75 | AP_cp@0.9 | F1@0.5 | mean matched IoU |",
        "|---|---|---|---|---|---|",
        _metrics_row("flow model, automatic object size", val.get("auto_diameter")),
        _metrics_row("flow model, true median object size", val.get("gt_diameter")),
    ]
    for label, res in (comparison or {}).items():
        lines.append(_metrics_row(label, res))
    if tr.get("note"):
        lines += ["", f"Note: {tr['note']}"]
    lines += ["", notes.strip(), ""]
    return "\n".join(lines)
