"""One entry point for every segmentation method.

:func:`segment_image` is what the segment stage runs on each image and what
the evaluation runs on the EMPS split, so both measure the same code path.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["METHODS", "segment_image", "load_flow_model", "load_flow_model_for"]

#: Segmentation methods understood by :func:`segment_image`.
METHODS: tuple[str, ...] = ("classical", "flow")


def load_flow_model(model_dir: str | os.PathLike, *, device: str = "auto", threads: int = 1, runtime: str = "auto"):
    """Load a flow model for inference.

    Parameters
    ----------
    model_dir : path
        Model directory (``config.json``, ``weights.safetensors``, optionally
        ``model.onnx``).
    device : str
        Torch device; ``"auto"`` = CUDA when available, else CPU.
    threads : int
        CPU threads for the network.
    runtime : {"auto", "torch", "onnxruntime"}
        What runs the network.  ``"auto"``: ONNX Runtime on CPU when the
        model directory has a ``model.onnx`` exported from its weights and
        :mod:`onnxruntime` is installed, else PyTorch.  ``"onnxruntime"``
        raises when that is not possible (the message says why).

    Returns
    -------
    FlowModel
        ``model.runtime`` says which runtime was chosen.
    """
    import torch

    from micrometry.segment.model import load_model
    from micrometry.segment.onnx import ONNX_NAME, RUNTIMES, OnnxUnavailable

    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(map(repr, RUNTIMES))}, got {runtime!r}")
    torch.set_num_threads(max(1, int(threads)))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(model_dir, device=device)
    if runtime == "torch":
        return model
    try:
        if model.device.type != "cpu":
            raise OnnxUnavailable(f"ONNX Runtime runs on CPU only here, the device is {model.device}")
        model.use_onnx(Path(model_dir) / ONNX_NAME, threads=threads)
    except OnnxUnavailable as exc:
        if runtime == "onnxruntime":
            raise ValueError(f"runtime 'onnxruntime' is not possible: {exc}") from exc
        log.info("flow network runs in PyTorch: %s", exc)
    return model


def load_flow_model_for(settings: dict[str, Any], model_dir: str | os.PathLike, *, threads: int = 1):
    """:func:`load_flow_model` with the ``device`` and ``runtime`` of the config's ``segment`` section."""
    flow = settings.get("flow", {})
    return load_flow_model(model_dir, device=flow.get("device", "auto"), threads=threads,
                           runtime=flow.get("runtime", "auto"))


def segment_image(
    image: np.ndarray,
    settings: dict[str, Any],
    *,
    model: Any = None,
    roi_excluded: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Segment one micrograph with the method named in `settings`.

    Parameters
    ----------
    image : (Y, X) ndarray, any real dtype
        Grey-level micrograph (NaN/Inf allowed: excluded).
    settings : dict
        The config's ``segment`` section: ``method``, ``exclude_data_bar``,
        ``exclude_annotations``, and the method's block (``classical`` or
        ``flow``).
    model : FlowModel, optional
        Loaded flow model (``method: flow``); see :func:`load_flow_model`.
    roi_excluded : (Y, X) bool ndarray, optional
        True outside the region of interest.

    Returns
    -------
    labels : (Y, X) uint32 ndarray
        0 = background, objects 1..N.
    excluded : (Y, X) bool ndarray
        Pixels that were not analysed (data bar, annotations, outside ROI).
    prediction : (4, Y, X) float32 ndarray or None
        Flow-model output (foreground probability, flow_y, flow_x, distance);
        None for the classical method.
    """
    from micrometry.segment.exclusion import exclusion_mask

    method = settings.get("method", "classical")
    if method not in METHODS:
        raise ValueError(f"unknown segmentation method {method!r} (available: {', '.join(map(repr, METHODS))})")
    excluded = exclusion_mask(
        image,
        data_bar=settings.get("exclude_data_bar", True),
        annotations=settings.get("exclude_annotations", True),
        roi=roi_excluded,
    )
    if method == "classical":
        from micrometry.segment.classical import segment_classical

        labels = segment_classical(image, exclude=excluded, **settings.get("classical", {}))
        return labels.astype(np.uint32, copy=False), excluded, None
    if model is None:
        raise ValueError("method 'flow' needs a loaded model (micrometry.segment.dispatch.load_flow_model)")
    flow = settings.get("flow", {})
    labels, prediction = model.segment(
        image, exclude=excluded, diameter_px=flow.get("diameter_px"), fg_threshold=flow.get("fg_threshold"),
        min_area_px=flow.get("min_area_px"), flow_error_max=flow.get("flow_error_max"), return_prediction=True,
    )
    return labels.astype(np.uint32, copy=False), excluded, prediction
