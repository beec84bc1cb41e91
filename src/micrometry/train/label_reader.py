"""Train the scale-label recognizer (:mod:`micrometry.calibrate.scalebar.label_reader`).

Recipe (``config/train-label-reader.yaml``; every key of
:data:`DEFAULT_READER_CONFIG` can be set there):

- Data: the detector's synthetic micrographs
  (:func:`~micrometry.train.scalebar_detector.render_detector_sample`: every bar
  style, box, font, size, unit spelling, JPEG and resampling degradation), half of
  them with a bar of any value instead of the generator's 1, 2, 2.5 or 5 x 10^k
  (:func:`render_label_sample`).  From
  each, crops of the label box as a detector would give it (each side padded by
  a random share of the glyph height, sometimes cut a little across the text),
  turned upright when the label is written vertically, with the label's text as
  target; and crops with the empty text as target: the distractor annotations
  (magnifications, dates, markers, bare numbers, HV/WD fields) and patches of the
  specimen.  Training images use seeds ``seed * 10**6 + i``, validation images
  ``seed * 10**6 + 500000 + i``.
- Network: :func:`~micrometry.calibrate.scalebar.label_reader.LabelReaderNet`
  (about 0.4 M parameters), CTC loss, AdamW with a one-cycle learning rate.
- The epoch with the most validation labels read right (value and unit) is kept and written as
  safetensors with ``reader.json`` (charset, input size, recipe, metrics).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from micrometry.train.loop import merge_config, set_overrides

__all__ = [
    "DEFAULT_READER_CONFIG",
    "label_crop_samples",
    "render_label_sample",
    "render_label_dataset",
    "train_label_reader",
    "train_label_reader_from_yaml",
]

DEFAULT_READER_CONFIG: dict[str, Any] = {
    "seed": 5,
    "data": {
        "n_train_images": 6000,
        "n_val_images": 400,
        "crops_per_label": 3,
        "negatives_per_image": 1,
        "free_value_fraction": 0.5,
        "workers": 2,
        # the detector's rendering settings (render_detector_sample)
        "min_side_px": 352,
        "max_side_px": 1100,
        "no_scalebar_fraction": 0.1,
        "jpeg_fraction": 0.3,
        "blur_fraction": 0.15,
    },
    "net": {"channels": [16, 32, 48, 64], "hidden": 48, "time_stride": 4},
    "train": {"epochs": 14, "batch": 64, "lr": 0.002, "weight_decay": 0.0001, "threads": 2},
}

_RENDER_KEYS = ("min_side_px", "max_side_px", "no_scalebar_fraction", "jpeg_fraction", "blur_fraction")


def _padded_crop(img: np.ndarray, yx_box, glyph_h: float, rng: np.random.Generator, vertical: bool) -> np.ndarray | None:
    """`img` cut around a text box ``[y0, x0, y1, x1]``, each side moved by a random share of
    the glyph height: 0-0.9 along the text, -0.08-0.45 across it (a detector's box is often
    tight or cut across the glyphs, rarely along them: the reader widens it)."""
    y0, x0, y1, x1 = (float(v) for v in yx_box)
    along = rng.uniform(0.0, 0.9, 2) * glyph_h
    across = rng.uniform(-0.08, 0.45, 2) * glyph_h
    if vertical:
        y0, y1, x0, x1 = y0 - along[0], y1 + along[1], x0 - across[0], x1 + across[1]
    else:
        x0, x1, y0, y1 = x0 - along[0], x1 + along[1], y0 - across[0], y1 + across[1]
    h, w = img.shape
    ya, yb = int(max(0, np.floor(y0))), int(min(h, np.ceil(y1)))
    xa, xb = int(max(0, np.floor(x0))), int(min(w, np.ceil(x1)))
    if yb - ya < 4 or xb - xa < 4:
        return None
    return img[ya:yb, xa:xb]


def render_label_sample(seed: int, data: dict | None = None) -> tuple[np.ndarray, dict]:
    """One synthetic micrograph for the label reader.

    With probability ``1 - free_value_fraction`` exactly the detector's sample
    (:func:`~micrometry.train.scalebar_detector.render_detector_sample`, whose bars are
    1, 2, 2.5 or 5 x 10^k); otherwise the same kind of micrograph whose bar is worth
    a value with any leading digits (the bar 8-30 % of the short side long, its value
    that length in nm rounded to 1 or 2 significant digits: "3 µm", "300 nm", "45 nm"),
    so that the reader does not learn the generator's values ("3 µm" read "5 µm").

    Returns
    -------
    image : (M, N) uint8
    info : dict
        ``scalebar``, ``degraded`` and ``distractors`` as in ``render_detector_sample``.
    """
    from micrometry.train.scalebar_detector import render_detector_sample, render_sample, sample_sides
    from micrometry.train.synth import _round_sig

    d = merge_config(DEFAULT_READER_CONFIG["data"], data or {})
    render = {k: d[k] for k in _RENDER_KEYS}
    rng = np.random.default_rng([int(seed), 5151])
    if rng.random() >= float(d["free_value_fraction"]):
        img, _, info = render_detector_sample(seed, render)
        return img, info
    h, w = sample_sides(rng, render)
    nm_per_px = _round_sig(float(np.exp(rng.uniform(np.log(0.1), np.log(50.0)))), 4)

    def draw() -> dict:
        bar_px = rng.uniform(0.08, 0.3) * min(h, w)
        value_nm = _round_sig(bar_px * nm_per_px, int(rng.choice([1, 2], p=[0.7, 0.3])))
        return {"nm_per_px": nm_per_px, "scalebar": {"value_nm": value_nm}}

    return render_sample(rng, (h, w), render, draw)


def label_crop_samples(seed: int, data: dict | None = None) -> list[tuple[np.ndarray, str]]:
    """Training crops of one synthetic micrograph.

    Parameters
    ----------
    seed : int
        Seed of :func:`render_label_sample`.
    data : dict, optional
        The recipe's ``data`` section.

    Returns
    -------
    list of (crop, text)
        ``crop`` (h, w) uint8, text left to right; ``text`` the label as drawn,
        ``""`` for a crop that holds no scale label.
    """
    d = merge_config(DEFAULT_READER_CONFIG["data"], data or {})
    img, info = render_label_sample(seed, d)
    rng = np.random.default_rng([int(seed), 4242])
    out: list[tuple[np.ndarray, str]] = []
    sb = info["scalebar"]
    taken = []
    if sb is not None:
        taken.append(sb["box_bbox"])
        rot = int(sb.get("text_rotation") or 0)
        y0, x0, y1, x1 = sb["text_bbox"]
        glyph_h = (x1 - x0) if rot else (y1 - y0)
        for _ in range(int(d["crops_per_label"])):
            c = _padded_crop(img, sb["text_bbox"], glyph_h, rng, vertical=bool(rot))
            if c is not None:
                out.append((np.ascontiguousarray(np.rot90(c, -1 if rot == 90 else 1)) if rot else c, sb["text"]))
    negatives: list[np.ndarray] = []
    for dist in info.get("distractors", ()):
        taken.append(dist["bbox"])
        if dist["kind"] == "text":
            y0, x0, y1, x1 = dist["ink_bbox"]
            c = _padded_crop(img, dist["ink_bbox"], y1 - y0, rng, vertical=False)
            if c is not None:
                negatives.append(c)
    rng.shuffle(negatives)
    negatives = negatives[: int(d["negatives_per_image"])]
    h, w = img.shape
    for _ in range(20):  # the specimen: a patch the size of a label, clear of every annotation
        if len(negatives) >= int(d["negatives_per_image"]):
            break
        ph = int(rng.integers(10, 40))
        pw = int(ph * rng.uniform(1.5, 6.0))
        if ph >= h or pw >= w:
            continue
        py, px = int(rng.integers(0, h - ph)), int(rng.integers(0, w - pw))
        if any(py < b[2] and b[0] < py + ph and px < b[3] and b[1] < px + pw for b in taken):
            continue
        negatives.append(img[py : py + ph, px : px + pw])
    out += [(c, "") for c in negatives]
    return out


def _prepared(args) -> tuple[np.ndarray, list[str]]:
    from micrometry.calibrate.scalebar.label_reader import prepare_crop

    seed, data = args
    samples = label_crop_samples(seed, data)
    if not samples:
        return np.zeros((0, 0, 0), np.float16), []
    x = np.stack([prepare_crop(c) for c, _ in samples]).astype(np.float16)
    return x, [t for _, t in samples]


def render_label_dataset(seeds, data: dict | None = None, workers: int = 1) -> tuple[np.ndarray, list[str]]:
    """Prepared crops of many synthetic micrographs.

    Returns
    -------
    x : (N, HEIGHT, WIDTH) float16
        :func:`~micrometry.calibrate.scalebar.label_reader.prepare_crop` of each crop.
    texts : list of N str
    """
    from micrometry.calibrate.scalebar.label_reader import HEIGHT, WIDTH

    jobs = [(int(s), data) for s in seeds]
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_prepared, jobs, chunksize=16))
    else:
        parts = [_prepared(j) for j in jobs]
    xs = [x for x, t in parts if len(t)]
    texts = [t for _, ts in parts for t in ts]
    x = np.concatenate(xs) if xs else np.zeros((0, HEIGHT, WIDTH), np.float16)
    return x, texts


def _evaluate(net, x: np.ndarray, texts: list[str], batch: int = 256) -> dict[str, float]:
    """Shares of the labels read exactly (character for character) and right (value and unit
    parse as the truth's), and of the empty crops read as a scale label."""
    import torch

    from micrometry.calibrate.scalebar.label_reader import decode_greedy
    from micrometry.calibrate.scalebar.parse import parse_scale_label

    net.eval()
    reads = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            probs = net(torch.from_numpy(x[i : i + batch].astype(np.float32))[:, None]).exp().numpy()
            reads += [decode_greedy(p)[0] for p in probs]
    pos = [(r, t.replace("μ", "µ")) for r, t in zip(reads, texts) if t]
    neg = [r for r, t in zip(reads, texts) if not t]

    def same_label(read: str, truth: str) -> bool:
        a, b = parse_scale_label(read), parse_scale_label(truth)
        return a is not None and b is not None and a.unit == b.unit and abs(a.value - b.value) <= 1e-9 * max(1.0, b.value)

    return {
        "labels": len(pos),
        "labels_exact": sum(r == t for r, t in pos) / max(1, len(pos)),
        "labels_right": sum(same_label(r, t) for r, t in pos) / max(1, len(pos)),
        "empty_crops": len(neg),
        "empty_read_as_label": sum(parse_scale_label(r) is not None for r in neg) / max(1, len(neg)),
    }


def train_label_reader(config: dict, out_dir: str | os.PathLike, *, command: str = "") -> dict:
    """Render the crops, train the recognizer and write the reader directory.

    Parameters
    ----------
    config : dict
        The recipe (merged over :data:`DEFAULT_READER_CONFIG`).  ``work_dir`` (optional)
        keeps the rendered crops (``crops.npz``) for a rerun with the same data.
    out_dir : path
        Reader directory to write (``model.safetensors``, ``reader.json``, ``train_log.csv``).
    command : str
        The command line, recorded in ``reader.json``.

    Returns
    -------
    dict
        ``reader.json`` contents.
    """
    import torch

    from micrometry.calibrate.scalebar.label_reader import CHARSET, HEIGHT, WIDTH, LabelReaderNet, encode_text, save_label_reader

    cfg = merge_config(DEFAULT_READER_CONFIG, config)
    d, tr, seed = cfg["data"], cfg["train"], int(cfg["seed"])
    torch.manual_seed(seed)
    torch.set_num_threads(int(tr["threads"]))
    t0 = time.time()
    cache = Path(cfg["work_dir"]) / "crops.npz" if cfg.get("work_dir") else None
    stamp = json.dumps({"seed": seed, "data": {k: v for k, v in d.items() if k != "workers"}}, sort_keys=True)
    cached = np.load(cache) if cache is not None and cache.is_file() else None
    if cached is not None and str(cached["stamp"]) == stamp:
        x_tr, t_tr, x_va, t_va = cached["x_tr"], list(cached["t_tr"]), cached["x_va"], list(cached["t_va"])
    else:
        workers = int(d["workers"])
        x_tr, t_tr = render_label_dataset(range(seed * 10**6, seed * 10**6 + int(d["n_train_images"])), d, workers)
        x_va, t_va = render_label_dataset(range(seed * 10**6 + 500_000, seed * 10**6 + 500_000 + int(d["n_val_images"])),
                                          d, workers)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, x_tr=x_tr, t_tr=np.array(t_tr), x_va=x_va, t_va=np.array(t_va), stamp=np.array(stamp))
    t_data = time.time() - t0
    targets = [encode_text(t) for t in t_tr]

    time_stride = int(cfg["net"].get("time_stride", 4))
    net = LabelReaderNet(cfg["net"]["channels"], cfg["net"]["hidden"], len(CHARSET) + 1, time_stride)
    n_params = sum(p.numel() for p in net.parameters())
    batch, epochs = int(tr["batch"]), int(tr["epochs"])
    steps_per_epoch = max(1, len(x_tr) // batch)
    opt = torch.optim.AdamW(net.parameters(), lr=float(tr["lr"]), weight_decay=float(tr["weight_decay"]))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=float(tr["lr"]), total_steps=epochs * steps_per_epoch,
                                                pct_start=0.15)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    rng = np.random.default_rng(seed)
    history: list[dict] = []
    best: dict[str, Any] = {}
    t1 = time.time()
    for epoch in range(1, epochs + 1):
        net.train()
        order = rng.permutation(len(x_tr))
        total = 0.0
        for s in range(steps_per_epoch):
            idx = order[s * batch : (s + 1) * batch]
            xb = torch.from_numpy(x_tr[idx].astype(np.float32))[:, None]
            tg = [targets[i] for i in idx]
            flat = torch.tensor([c for t in tg for c in t], dtype=torch.long)
            lengths = torch.tensor([len(t) for t in tg], dtype=torch.long)
            logp = net(xb)  # (B, T, C)
            in_len = torch.full((len(idx),), logp.shape[1], dtype=torch.long)
            loss = ctc(logp.transpose(0, 1), flat, in_len, lengths)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            sched.step()
            total += float(loss.detach())
        metrics = _evaluate(net, x_va, t_va)
        row = {"epoch": epoch, "train_loss": round(total / steps_per_epoch, 4), "elapsed_s": round(time.time() - t1, 1),
               **{k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}}
        history.append(row)
        print(json.dumps(row), flush=True)
        if not best or metrics["labels_right"] > best["metrics"]["labels_right"]:
            best = {"epoch": epoch, "metrics": metrics,
                    "state": {k: v.detach().clone() for k, v in net.state_dict().items()}}
    net.load_state_dict(best["state"])
    meta = {
        "charset": CHARSET,
        "height": HEIGHT,
        "width": WIDTH,
        "channels": list(cfg["net"]["channels"]),
        "hidden": int(cfg["net"]["hidden"]),
        "time_stride": time_stride,
        "parameters": int(n_params),
        "best_epoch": best["epoch"],
        "validation": best["metrics"],
        "n_train_crops": len(x_tr),
        "n_val_crops": len(x_va),
        "recipe": cfg,
        "command": command,
        "data_seconds": round(t_data, 1),
        "train_seconds": round(time.time() - t1, 1),
        "host": platform.node(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }
    out = Path(out_dir)
    save_label_reader(net, out, meta)
    with open(out / "train_log.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
    return json.loads((out / "reader.json").read_text())


def train_label_reader_from_yaml(recipe: str | os.PathLike, out_dir: str | os.PathLike,
                                 overrides: dict | None = None, *, command: str = "") -> dict:
    """:func:`train_label_reader` with the recipe read (safely) from a YAML file."""
    import yaml

    cfg = set_overrides(yaml.safe_load(Path(recipe).read_text()) or {}, overrides)
    return train_label_reader(cfg, out_dir, command=command)
