"""Find scale bars and their labels in a micrograph with a YOLO detector.

The detector is an Ultralytics YOLO detection network (two classes, ``bar``
and ``label``) built from the YAML file shipped next to its weights and
trained by the project on synthetic micrographs
(:mod:`micrometry.train.scalebar_detector`).  Nothing is downloaded: the
network is built from the YAML, the weights are read from safetensors (never
unpickled), and Ultralytics is imported with its online checks off
(``YOLO_OFFLINE``; settings ``sync`` false).

A detector directory holds::

    model.yaml          # the Ultralytics architecture (nc: 2)
    model.safetensors   # the weights (state dict of the DetectionModel)
    detector.json       # {"classes": ["bar", "label"], "imgsz": 640, ...}
    MODEL_CARD.md

Boxes are ``(x0, y0, x1, y1)`` in image pixels, ``x1``/``y1`` exclusive, as
in :func:`~micrometry.calibrate.scalebar.measure.measure_bar` and
:func:`~micrometry.calibrate.scalebar.ocr.read_text`.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from micrometry.calibrate.scalebar._image import box_iou, to_uint8
from micrometry.calibrate.scalebar._image import grey as grey_image
from micrometry.io.readers import sha256_file

__all__ = [
    "CLASSES",
    "Detection",
    "ScalebarDetector",
    "default_detector_dir",
    "detector_sha256",
    "import_ultralytics",
    "load_detector",
    "save_detector",
    "WEIGHTS_NAME",
]

#: Class names, in the order of the network's class channels.
CLASSES = ("bar", "label")

#: The weights file of a detector directory.
WEIGHTS_NAME = "model.safetensors"
_YAML = "model.yaml"
_META = "detector.json"


def default_detector_dir() -> Path:
    """``models/scalebar-yolo`` of the repository (or ``$MICROMETRY_SCALEBAR_DETECTOR``)."""
    env = os.environ.get("MICROMETRY_SCALEBAR_DETECTOR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[4] / "models" / "scalebar-yolo"


def detector_sha256(detector_dir: str | os.PathLike | None = None) -> str | None:
    """SHA-256 (hex) of a detector directory's weights, None when it has none.

    `detector_dir` defaults to :func:`default_detector_dir`.  Reads only the
    weights file (no ultralytics, no torch): the workflow calls it at start-up.
    """
    weights = Path(detector_dir or default_detector_dir()) / WEIGHTS_NAME
    return sha256_file(weights) if weights.is_file() else None


def import_ultralytics():
    """Import ``ultralytics`` with every online feature off; return the module.

    Sets ``YOLO_OFFLINE=1`` (no connectivity probes, no downloads of fonts or
    weights), ``YOLO_VERBOSE`` false unless already set, and points
    ``YOLO_CONFIG_DIR`` at a private temporary directory when unset, so that
    the settings file is not written into the user's home; then switches off
    event ``sync`` in the settings.

    Raises
    ------
    ImportError
        If ultralytics is not installed (the message names the extra).
    """
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(tempfile.gettempdir()) / f"micrometry-ultralytics-{os.getuid()}"))
    try:
        import ultralytics
        from ultralytics.utils import SETTINGS
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the scale-bar detector needs ultralytics: pip install 'micrometry[scalebar]'"
        ) from exc
    if SETTINGS.get("sync", False):
        SETTINGS.update({"sync": False})
    return ultralytics


@dataclass(frozen=True)
class Detection:
    """One detected object.

    Attributes
    ----------
    cls : {'bar', 'label'}
        The class.
    score : float
        Detector confidence in [0, 1].
    box : tuple of float
        ``(x0, y0, x1, y1)`` in image pixels, exclusive ends.
    """

    cls: str
    score: float
    box: tuple[float, float, float, float]


class ScalebarDetector:
    """A loaded scale-bar/label detector.

    Parameters
    ----------
    model : torch.nn.Module
        An Ultralytics ``DetectionModel`` in eval mode with its weights.
    meta : mapping
        ``detector.json`` contents: ``classes``, ``imgsz`` and provenance.
    sha256 : str
        SHA-256 of the weights file (recorded in calibration provenance).
    """

    def __init__(self, model, meta: Mapping[str, Any], sha256: str = ""):
        self.model = model
        self.meta = dict(meta)
        self.sha256 = sha256
        self.classes = tuple(self.meta.get("classes", CLASSES))
        self.imgsz = int(self.meta.get("imgsz", 640))

    def _letterbox(self, grey: np.ndarray) -> tuple[np.ndarray, float, tuple[int, int]]:
        import cv2

        h, w = grey.shape
        r = min(self.imgsz / h, self.imgsz / w)
        nh, nw = max(1, round(h * r)), max(1, round(w * r))
        interp = cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR
        small = cv2.resize(grey, (nw, nh), interpolation=interp) if (nh, nw) != (h, w) else grey
        # pad to a multiple of the network stride, centred (as Ultralytics' rect inference)
        stride = 32
        th, tw = -(-nh // stride) * stride, -(-nw // stride) * stride
        top, left = (th - nh) // 2, (tw - nw) // 2
        canvas = np.full((th, tw), 114, np.uint8)
        canvas[top : top + nh, left : left + nw] = small
        return canvas, r, (left, top)

    def detect(
        self,
        image,
        *,
        conf: float = 0.05,
        iou: float = 0.5,
        max_det: int = 50,
    ) -> list[Detection]:
        """Detect scale bars and labels.

        Parameters
        ----------
        image : (M, N) or (M, N, 3|4) array_like, any real dtype
            The micrograph; intensities are stretched to uint8 between their
            0.5 and 99.5 percentiles (uint8 input is used as is).
        conf : float, optional
            Minimum detector confidence.  Default 0.05: the reader ranks
            candidates and checks them, so recall matters more here.
        iou : float, optional
            Non-maximum-suppression IoU threshold (per class).
        max_det : int, optional
            At most this many detections.

        Returns
        -------
        list of Detection
            Sorted by decreasing score.
        """
        import torch

        import_ultralytics()  # offline settings before the NMS import
        from ultralytics.utils.nms import non_max_suppression

        grey = to_uint8(grey_image(image))
        canvas, r, (left, top) = self._letterbox(grey)
        x = torch.from_numpy(canvas).to(torch.float32).div_(255.0)[None, None].expand(1, 3, *canvas.shape).contiguous()
        with torch.inference_mode():
            pred = self.model(x)
        out = non_max_suppression(pred, conf_thres=conf, iou_thres=iou, max_det=max_det, nc=len(self.classes))[0]
        h, w = grey.shape
        dets = []
        for x0, y0, x1, y1, score, cls in out.cpu().numpy().tolist():
            bx = (
                float(np.clip((x0 - left) / r, 0, w)),
                float(np.clip((y0 - top) / r, 0, h)),
                float(np.clip((x1 - left) / r, 0, w)),
                float(np.clip((y1 - top) / r, 0, h)),
            )
            if bx[2] - bx[0] < 1 or bx[3] - bx[1] < 1:
                continue
            dets.append(Detection(self.classes[int(cls)], float(score), bx))
        dets.sort(key=lambda d: -d.score)
        return dets

    def detect_zoomed(
        self,
        image,
        *,
        fraction: float = 0.6,
        conf: float = 0.05,
        iou: float = 0.5,
        max_det: int = 50,
    ) -> list[Detection]:
        """Detect in four overlapping corner windows, each enlarged to the detector's input.

        A label whose glyphs shrink to a few pixels when the whole micrograph is
        fitted into the detector's input (9-px text on a 1,000-px image at 640)
        is often missed there; in a window of `fraction` of each side it is
        1/`fraction` times larger.  The windows overlap (by ``2 * fraction - 1``
        of each side), so a label at the middle of an edge lies whole in one.

        Parameters
        ----------
        image : (M, N) or (M, N, 3|4) array_like, any real dtype
            The micrograph (each window is stretched on its own, as in :meth:`detect`).
        fraction : float, optional
            Window side as a fraction of the image side, in (0.5, 1].  Default 0.6.
        conf, iou, max_det
            As in :meth:`detect`; `iou` is also the threshold of the non-maximum
            suppression that merges the windows' detections (per class).

        Returns
        -------
        list of Detection
            In image pixels, sorted by decreasing score.
        """
        if not 0.5 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0.5, 1], got {fraction}")
        grey = grey_image(image)
        h, w = grey.shape
        wh, ww = max(1, round(fraction * h)), max(1, round(fraction * w))
        found: list[Detection] = []
        for y in (0, h - wh):
            for x in (0, w - ww):
                for d in self.detect(grey[y:y + wh, x:x + ww], conf=conf, iou=iou, max_det=max_det):
                    x0, y0, x1, y1 = d.box
                    found.append(Detection(d.cls, d.score, (x0 + x, y0 + y, x1 + x, y1 + y)))
        found.sort(key=lambda d: -d.score)
        kept: list[Detection] = []
        for d in found:  # greedy per-class suppression across the windows' overlaps
            if not any(k.cls == d.cls and box_iou(k.box, d.box) > iou for k in kept):
                kept.append(d)
        return kept[:max_det]


def build_detection_model(yaml_path: str | os.PathLike, nc: int = len(CLASSES)):
    """Build an untrained Ultralytics ``DetectionModel`` from an architecture YAML."""
    import_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    return DetectionModel(str(yaml_path), ch=3, nc=nc, verbose=False)


def save_detector(model, out_dir: str | os.PathLike, yaml_path: str | os.PathLike, meta: Mapping[str, Any]) -> Path:
    """Write a detector directory: architecture YAML, safetensors weights, ``detector.json``.

    Parameters
    ----------
    model : torch.nn.Module
        The trained ``DetectionModel`` (or its EMA copy).
    out_dir : path
        Directory to create or fill.
    yaml_path : path
        The architecture YAML it was built from (copied as ``model.yaml``).
    meta : mapping
        Stored in ``detector.json`` (``classes``, ``imgsz``, recipe, metrics);
        the weights' SHA-256 is added as ``weights_sha256``.

    Returns
    -------
    pathlib.Path
        `out_dir`.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").float().contiguous() if v.is_floating_point() else v.detach().to("cpu").contiguous()
             for k, v in model.state_dict().items()}
    tmp = out / (WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "classes": ",".join(meta.get("classes", CLASSES))})
    os.replace(tmp, out / WEIGHTS_NAME)
    yaml_text = Path(yaml_path).read_text()
    if Path(yaml_path).resolve() != (out / _YAML).resolve():
        (out / _YAML).write_text(yaml_text)
    full = {"classes": list(CLASSES), **dict(meta), "weights_sha256": sha256_file(out / WEIGHTS_NAME)}
    (out / _META).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return out


def check_state_dict(own: Mapping[str, Any], state: Mapping[str, Any], *, where: str) -> None:
    """Raise ``ValueError`` unless `state` has exactly the keys and shapes of `own`."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shape = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or bad_shape:
        raise ValueError(
            f"scale-bar detector {where}: the weights do not fit {_YAML} "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}, shape mismatch {bad_shape[:3]})"
        )


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, threads: int | None) -> ScalebarDetector:
    import torch
    from safetensors.torch import load_file

    d = Path(path)
    for name in (_YAML, WEIGHTS_NAME, _META):
        if not (d / name).is_file():
            raise FileNotFoundError(f"scale-bar detector {d}: {name} is missing")
    meta = json.loads((d / _META).read_text())
    classes = tuple(meta.get("classes", CLASSES))
    if classes != CLASSES:
        raise ValueError(f"scale-bar detector {d}: classes {classes} are not {CLASSES}")
    if threads:
        torch.set_num_threads(int(threads))
    model = build_detection_model(d / _YAML, nc=len(classes))
    state = load_file(str(d / WEIGHTS_NAME))
    check_state_dict(model.state_dict(), state, where=str(d))
    model.load_state_dict(state)
    model = model.fuse(verbose=False) if hasattr(model, "fuse") else model
    model.eval()
    return ScalebarDetector(model, meta, sha256=sha256_file(d / WEIGHTS_NAME))


def load_detector(path: str | os.PathLike | None = None, *, threads: int | None = None) -> ScalebarDetector:
    """Load a detector directory (cached per path).

    Parameters
    ----------
    path : path, optional
        Detector directory; default :func:`default_detector_dir`.
    threads : int, optional
        Torch intra-op threads to set (``None``: leave as is).

    Raises
    ------
    FileNotFoundError
        If a file of the directory is missing.
    ValueError
        If the weights do not match the architecture or the classes differ.
    ImportError
        If ultralytics or torch is not installed.
    """
    return _load_cached(str(Path(path or default_detector_dir()).resolve()), threads)
