"""Train the scale-bar detector (Ultralytics YOLO, classes ``bar`` and ``label``).

Recipe (``config/train-scalebar.yaml``; every key of
:data:`DEFAULT_DETECTOR_CONFIG` can be set there):

- Data: synthetic micrographs from :func:`micrometry.train.synth.render_micrograph`
  with ``scalebar_variety=True`` (solid / line / ticked / double bars, white or
  black, with or without a box, corners and edges, horizontal and vertical,
  label on any side, several fonts and unit spellings) and distractors that
  are not scale labels (SEM data bars, panel letters, magnifications, dates,
  plain numbers, lone lines).  A share of images has no scale bar at all.
  After rendering, some images are degraded as figures taken from papers
  are: JPEG at quality 35-90, or shrunk and enlarged again (blur).
  Images are written once as a YOLO dataset (PNG + one ``.txt`` per image).
- Network: the architecture YAML ``config/scalebar-yolo.yaml`` (a YOLOv8
  layout at width 0.125: about 0.35 M parameters), built from scratch; no
  downloaded weights.
- Warm start (``init_from``: an earlier detector directory of the same
  architecture): its weights are loaded into the trainer's model and EMA
  copy before the first step, and its SHA-256 is recorded.
- Training: Ultralytics' trainer on CPU or GPU with its online features off,
  augmentations suited to text (no flips, no rotations; mosaic, scale,
  translation, brightness), fixed seed; the checkpoint with the best
  validation fitness (Ultralytics': mAP50-95) is kept from the EMA weights
  and written as safetensors with :func:`~micrometry.calibrate.scalebar.detect.save_detector`.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from micrometry.train.loop import merge_config, set_overrides

__all__ = [
    "DEFAULT_DETECTOR_CONFIG",
    "detector_targets",
    "render_detector_sample",
    "render_sample",
    "sample_sides",
    "write_yolo_dataset",
    "train_detector",
    "train_detector_from_yaml",
]

REPO = Path(__file__).resolve().parents[3]

DEFAULT_DETECTOR_CONFIG: dict[str, Any] = {
    "seed": 0,
    "architecture": "config/scalebar-yolo.yaml",
    "data": {
        "n_train": 1200,
        "n_val": 150,
        "min_side_px": 352,
        "max_side_px": 1100,
        "no_scalebar_fraction": 0.1,
        "jpeg_fraction": 0.3,
        "blur_fraction": 0.15,
        "workers": 2,
    },
    "train": {
        "epochs": 10,
        "imgsz": 640,
        "batch": 8,
        "optimizer": "AdamW",
        "lr0": 0.003,
        "warmup_epochs": 1.0,
        "close_mosaic": 2,
        "mosaic": 1.0,
        "scale": 0.35,
        "translate": 0.1,
        "hsv_v": 0.3,
        "device": "cpu",
        "threads": 2,
        "workers": 2,
        "cache": "ram",
    },
}


def detector_targets(scalebar: dict | None) -> list[tuple[int, tuple[int, int, int, int]]]:
    """The detector's boxes of one synthetic micrograph.

    Parameters
    ----------
    scalebar : dict or None
        ``SynthMicrograph.scalebar`` (boxes ``[y0, x0, y1, x1]``).

    Returns
    -------
    list of (class index, (x0, y0, x1, y1))
        Class 0 ``bar`` (its ink box), class 1 ``label`` (the text ink box).
    """
    if not scalebar:
        return []
    out = []
    for cls, key in ((0, "bar_bbox"), (1, "text_bbox")):
        y0, x0, y1, x1 = (int(v) for v in scalebar[key])
        out.append((cls, (x0, y0, x1, y1)))
    return out


def _degrade(rng: np.random.Generator, img: np.ndarray, data: dict) -> tuple[np.ndarray, str]:
    from PIL import Image

    u = rng.random()
    if u < data["jpeg_fraction"]:
        q = int(rng.integers(35, 91))
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=q)
        buf.seek(0)
        return np.asarray(Image.open(buf).convert("L")).copy(), f"jpeg{q}"
    if u < data["jpeg_fraction"] + data["blur_fraction"]:
        f = float(rng.uniform(0.5, 0.8))
        h, w = img.shape
        small = Image.fromarray(img).resize((max(8, round(w * f)), max(8, round(h * f))), Image.BILINEAR)
        return np.asarray(small.resize((w, h), Image.BILINEAR)).copy(), f"resampled{f:.2f}"
    return img, ""


def render_detector_sample(seed: int, data: dict | None = None) -> tuple[np.ndarray, list, dict]:
    """One training image for the detector.

    Parameters
    ----------
    seed : int
        Everything follows from it.
    data : dict, optional
        The recipe's ``data`` section (sizes, fractions).

    Returns
    -------
    image : (M, N) uint8
    targets : list of (class index, (x0, y0, x1, y1))
    info : dict
        ``scalebar`` metadata of the generator, the degradation applied
        (``degraded``) and the annotations that are not a scale bar
        (``distractors``, as in ``SynthMicrograph.params``).
    """
    d = merge_config(DEFAULT_DETECTOR_CONFIG["data"], data or {})
    rng = np.random.default_rng([int(seed), 7331])
    shape = sample_sides(rng, d)
    with_bar = rng.random() >= d["no_scalebar_fraction"]
    img, info = render_sample(rng, shape, d, lambda: {"scalebar": with_bar})
    return img, detector_targets(info["scalebar"]), info


def sample_sides(rng: np.random.Generator, data: dict) -> tuple[int, int]:
    """Image sides (M, N), each log-uniform in ``data``'s ``[min_side_px, max_side_px]``."""
    lo, hi = int(data["min_side_px"]), int(data["max_side_px"])
    return tuple(int(round(np.exp(rng.uniform(np.log(lo), np.log(hi))))) for _ in range(2))


def render_sample(rng: np.random.Generator, shape: tuple[int, int], data: dict, draw) -> tuple[np.ndarray, dict]:
    """Render a micrograph with the generator's scale-bar variety and distractors, then degrade it.

    ``draw()`` gives :func:`~micrometry.train.synth.render_micrograph`'s scale-bar arguments
    (``scalebar``, ``nm_per_px``); it is called again, with the same `rng`, when a layout does
    not fit (up to 20 tries).  `data`: the recipe's ``jpeg_fraction`` and ``blur_fraction``.

    Returns
    -------
    image : (M, N) uint8
    info : dict
        ``scalebar`` (the generator's metadata), ``degraded`` (what :func:`_degrade` did) and
        ``distractors`` (annotations that are not a scale bar, as in ``SynthMicrograph.params``).
    """
    from micrometry.train.synth import render_micrograph

    for attempt in range(20):  # a forced layout may not fit; draw again
        try:
            m = render_micrograph(rng, shape=shape, scalebar_variety=True, data_bar_prob=0.35, panel_label_prob=0.3,
                                  **draw())
            break
        except ValueError:
            if attempt == 19:
                raise
    img, how = _degrade(rng, np.asarray(m.image, np.uint8), data)
    return img, {"scalebar": m.scalebar, "degraded": how, "distractors": m.params.get("distractors", [])}


def _write_one(args) -> None:
    from PIL import Image

    out, split, seed, data = args
    img, targets, _ = render_detector_sample(seed, data)
    h, w = img.shape
    stem = f"{seed:07d}"
    Image.fromarray(img).save(out / "images" / split / f"{stem}.png", compress_level=1)
    lines = [
        f"{c} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}"
        for c, (x0, y0, x1, y1) in targets
    ]
    (out / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))


def write_yolo_dataset(out_dir: str | os.PathLike, *, seed: int = 0, data: dict | None = None) -> Path:
    """Render the synthetic detector dataset in YOLO format.

    Layout: ``images/{train,val}/*.png``, ``labels/{train,val}/*.txt``
    (``class cx cy w h``, normalised) and ``data.yaml``.  Image ``i`` of the
    training split uses seed ``seed * 10**6 + i``, validation images
    ``seed * 10**6 + 500000 + i``, so the two never share a seed.

    Returns
    -------
    pathlib.Path
        The ``data.yaml`` written.
    """
    d = merge_config(DEFAULT_DETECTOR_CONFIG["data"], data or {})
    out = Path(out_dir)
    jobs = []
    for split, n, base in (("train", d["n_train"], 0), ("val", d["n_val"], 500_000)):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        jobs += [(out, split, int(seed) * 1_000_000 + base + i, d) for i in range(int(n))]
    workers = max(1, int(d.get("workers", 1)))
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_one, jobs, chunksize=8))
    else:
        for job in jobs:
            _write_one(job)
    yaml = out / "data.yaml"
    yaml.write_text(f"path: {out.resolve()}\ntrain: images/train\nval: images/val\nnames:\n  0: bar\n  1: label\n")
    return yaml


def train_detector(config: dict, out_dir: str | os.PathLike, *, work_dir: str | os.PathLike | None = None,
                   command: str = "") -> dict:
    """Render the data, train the detector and write the detector directory.

    Parameters
    ----------
    config : dict
        The recipe (merged over :data:`DEFAULT_DETECTOR_CONFIG`).
    out_dir : path
        Detector directory to write (``model.yaml``, ``model.safetensors``,
        ``detector.json``, ``train_log.csv``).
    work_dir : path, optional
        Where the dataset and Ultralytics' run directory go; default
        ``{out_dir}.work`` (removed at the end unless ``keep_work`` is set).
    command : str
        The command line, recorded in ``detector.json``.

    Returns
    -------
    dict
        ``detector.json`` contents.
    """
    from micrometry.calibrate.scalebar.detect import (
        CLASSES,
        WEIGHTS_NAME,
        detector_sha256,
        import_ultralytics,
        save_detector,
    )

    cfg = merge_config(DEFAULT_DETECTOR_CONFIG, config)
    init_from = cfg.get("init_from")
    init_sha = detector_sha256(init_from) if init_from else None
    if init_from and init_sha is None:  # before minutes of rendering
        raise ValueError(f"init_from {init_from}: no {WEIGHTS_NAME} there")
    out = Path(out_dir)
    work = Path(work_dir) if work_dir else out.with_name(out.name + ".work")
    arch = Path(cfg["architecture"])
    if not arch.is_absolute():
        arch = (REPO / arch) if (REPO / arch).is_file() else arch.resolve()
    t0 = time.time()
    stamp = work / "data" / "recipe.json"
    wanted = json.dumps({"seed": int(cfg["seed"]), "data": {k: v for k, v in cfg["data"].items() if k != "workers"}},
                        sort_keys=True)
    if stamp.is_file() and stamp.read_text() == wanted and (work / "data" / "data.yaml").is_file():
        data_yaml = work / "data" / "data.yaml"  # rendered by an earlier, interrupted run of the same recipe
    else:
        shutil.rmtree(work / "data", ignore_errors=True)
        data_yaml = write_yolo_dataset(work / "data", seed=int(cfg["seed"]), data=cfg["data"])
        stamp.write_text(wanted)
    t_data = time.time() - t0

    import torch

    tr = dict(cfg["train"])
    threads = int(tr.pop("threads", 0) or 0)
    if threads:
        torch.set_num_threads(threads)
    import_ultralytics()
    import ultralytics.utils.torch_utils as yolo_torch_utils
    from ultralytics import YOLO

    if threads:  # Ultralytics resets torch to (cores - 1) threads for CPU training: 1 on a 2-core machine
        yolo_torch_utils.NUM_THREADS = threads

    yolo = YOLO(str(arch), task="detect")
    best: dict[str, Any] = {"fitness": -1.0}
    history: list[dict] = []

    def on_fit_epoch_end(trainer):
        if int(trainer.epoch) >= int(trainer.epochs):  # the trainer's final re-validation of best.pt
            return
        metrics = {k: float(v) for k, v in (trainer.metrics or {}).items()}
        fit = float(trainer.fitness or 0.0)
        history.append({"epoch": int(trainer.epoch) + 1, "fitness": fit, **metrics,
                        "elapsed_s": round(time.time() - t0, 1)})
        if fit > best["fitness"]:
            model = trainer.ema.ema if trainer.ema is not None else trainer.model
            best.update(fitness=fit, epoch=int(trainer.epoch) + 1, metrics=metrics,
                        model=copy.deepcopy(model).float().cpu())

    if init_from:  # warm start: the weights of an earlier detector of the same architecture
        from safetensors.torch import load_file

        from micrometry.calibrate.scalebar.detect import check_state_dict

        init_state = load_file(str(Path(init_from) / WEIGHTS_NAME))

        def on_pretrain_routine_end(trainer):
            # the trainer has built its model and the EMA copy from the YAML: give both the weights
            check_state_dict(trainer.model.state_dict(), init_state, where=str(init_from))
            trainer.model.load_state_dict(init_state)
            trainer.ema.ema.load_state_dict(init_state)

        yolo.add_callback("on_pretrain_routine_end", on_pretrain_routine_end)
    yolo.add_callback("on_fit_epoch_end", on_fit_epoch_end)
    t1 = time.time()
    yolo.train(
        data=str(data_yaml), project=str(work / "runs"), name="train", exist_ok=True,
        pretrained=False, amp=False, plots=False, seed=int(cfg["seed"]), deterministic=True,
        fliplr=0.0, flipud=0.0, degrees=0.0, shear=0.0, perspective=0.0, hsv_h=0.0, hsv_s=0.0,
        mixup=0.0, copy_paste=0.0, verbose=False, val=True, **tr,
    )
    t_train = time.time() - t1
    if "model" not in best:
        raise RuntimeError("training produced no validated checkpoint")
    meta = {
        "classes": list(CLASSES),
        "imgsz": int(cfg["train"]["imgsz"]),
        "architecture": arch.name,
        "best_epoch": best["epoch"],
        "validation": best["metrics"],
        "recipe": cfg,
        "init_from_sha256": init_sha,
        "command": command,
        "data_seconds": round(t_data, 1),
        "train_seconds": round(t_train, 1),
        "device": str(cfg["train"].get("device", "cpu")),
        "host": platform.node(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "ultralytics": __import__("ultralytics").__version__,
    }
    save_detector(best["model"], out, arch, meta)
    if history:
        keys = sorted({k for row in history for k in row}, key=lambda k: (k not in ("epoch", "fitness"), k))
        with open(out / "train_log.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(history)
    if not cfg.get("keep_work", False):
        shutil.rmtree(work, ignore_errors=True)
    return json.loads((out / "detector.json").read_text())


def train_detector_from_yaml(recipe: str | os.PathLike, out_dir: str | os.PathLike,
                             overrides: dict | None = None, *, command: str = "") -> dict:
    """:func:`train_detector` with the recipe read (safely) from a YAML file."""
    import yaml

    cfg = set_overrides(yaml.safe_load(Path(recipe).read_text()) or {}, overrides)
    return train_detector(cfg, out_dir, command=command)
