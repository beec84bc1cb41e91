"""Training data and recipes.

:mod:`micrometry.train.synth` renders synthetic TEM/SEM micrographs with exact
ground truth (instance labels, pixel size, scale-bar geometry).  Names are
loaded lazily so that ``import micrometry.train`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "SynthMicrograph": "micrometry.train.synth",
    "render_micrograph": "micrometry.train.synth",
    "write_synthetic_dataset": "micrometry.train.synth",
    "fei_metadata_text": "micrometry.train.synth",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
