"""Segmentation: particle instance labels from a micrograph.

Sub-modules (imported on use, so ``import micrometry.segment`` stays cheap):

- :mod:`micrometry.segment.classical`: threshold, distance transform and
  watershed (``method: classical``); also the reusable size filter
  :func:`~micrometry.segment.classical.remove_small_and_large`.
- :mod:`micrometry.segment.exclusion`: masks of what is not specimen
  (instrument data bar, burned-in scale bars and labels, a user ROI).
- :mod:`micrometry.segment.flows`: flow targets from masks and their inverse
  (``labels_to_flows`` / ``flows_to_labels``); never imports torch.
- :mod:`micrometry.segment.tracking`: Euler flow following and endpoint
  clustering, NumPy / Numba / CuPy back-ends (``micrometry._backend``).
- :mod:`micrometry.segment.tiled`: Dask tiled inference with tapered blending.
- :mod:`micrometry.segment.network`, :mod:`micrometry.segment.model`: the
  PyTorch network and its safetensors model directories (``method: flow``).
- :mod:`micrometry.segment.dispatch`: ``segment_image``, the one entry point
  for every method.

The names below are loaded lazily on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "estimate_polarity": "classical",
    "segment_classical": "classical",
    "remove_small_and_large": "classical",
    "detect_data_bar": "exclusion",
    "detect_annotations": "exclusion",
    "exclusion_mask": "exclusion",
    "load_roi_mask": "exclusion",
    "labels_to_flows": "flows",
    "flows_to_labels": "flows",
    "flow_error": "flows",
    "follow_flows": "tracking",
    "predict_tiled": "tiled",
    "normalize_percentiles": "tiled",
    "load_model": "model",
    "model_sha256": "model",
    "segment_image": "dispatch",
    "load_flow_model": "dispatch",
    "load_flow_model_for": "dispatch",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
