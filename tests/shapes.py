"""Label images with known geometry, shared by the tests (imported like dmwriter)."""

from __future__ import annotations

import numpy as np


def disc_labels(shape, centres, radius):
    """(Y, X) uint32 labels: disc ``i`` (1-based) of `radius` px at ``centres[i - 1] = (cy, cx)``."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lab = np.zeros(shape, np.uint32)
    for i, (cy, cx) in enumerate(centres, start=1):
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = i
    return lab
