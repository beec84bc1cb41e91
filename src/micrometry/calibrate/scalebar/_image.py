"""Pixel conversions and mask shape tests shared by the scale-bar detector, the OCR reader
and the bar search."""

from __future__ import annotations

import numpy as np

__all__ = ["box_iou", "double_band", "filled_band", "filled_runs", "grey", "longest_row_runs", "only_at_ends", "to_uint8"]


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Grey (M, N) array of any real dtype → uint8, stretched between its 0.5 and 99.5 percentiles.

    uint8 input is returned as is; NaN/Inf are set to the ends of the range;
    a constant image becomes mid-grey (128).
    """
    if arr.dtype == np.uint8:
        return arr
    a = arr.astype(np.float64)
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return np.zeros(a.shape, np.uint8)
    lo, hi = np.percentile(finite, [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        return np.full(a.shape, 128, np.uint8)
    a = np.nan_to_num(a, nan=lo, posinf=hi, neginf=lo)
    return np.clip(np.rint((a - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)


def grey(image) -> np.ndarray:
    """(M, N) grey or (M, N, 3|4) colour array → (M, N) grey (colour channels averaged).

    Raises
    ------
    ValueError
        On any other shape.
    TypeError
        If the dtype is not real (integer, float or bool).
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[..., :3].astype(np.float64).mean(axis=2)
    if arr.ndim != 2:
        raise ValueError(f"image must be (M, N) grey or (M, N, 3|4) colour, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating) or arr.dtype == bool):
        raise TypeError(f"image must have a real dtype, got {arr.dtype}")
    return arr


def longest_row_runs(mask: np.ndarray) -> np.ndarray:
    """Length of the longest run of True in each row of a boolean (M, N) array → (M,) int.

    >>> longest_row_runs(np.array([[1, 1, 0, 1], [0, 0, 0, 0], [1, 1, 1, 0]], bool)).tolist()
    [2, 0, 3]
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    # index of the last False at or before each column; run length = column - that index
    h, w = m.shape
    cols = np.broadcast_to(np.arange(w), (h, w))
    last_false = np.maximum.accumulate(np.where(m, -1, cols), axis=1)
    runs = np.where(m, cols - last_false, 0)
    return runs.max(axis=1) if w else np.zeros(h, int)


def filled_runs(mask: np.ndarray, fill: float = 0.9) -> list[tuple[int, int]]:
    """The contiguous runs ``(start, stop)`` of the rows of a boolean (M, N) mask that are
    filled over `fill` of its width, top first.

    >>> filled_runs(np.array([[1, 1, 1], [0, 1, 0], [1, 1, 1], [1, 1, 1]], bool))
    [(0, 1), (2, 4)]
    """
    full = np.flatnonzero(np.asarray(mask, dtype=bool).sum(axis=1) >= fill * mask.shape[1])
    if full.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(full) > 1)
    starts = np.r_[full[0], full[breaks + 1]]
    stops = np.r_[full[breaks] + 1, full[-1] + 1]
    return [(int(a), int(b)) for a, b in zip(starts, stops)]


def filled_band(mask: np.ndarray, fill: float = 0.9) -> tuple[int, int] | None:
    """The rows ``(start, stop)`` of a boolean (M, N) mask filled over `fill` of its width,
    when they form one contiguous band (a line along the columns); None otherwise.

    >>> filled_band(np.array([[0, 1, 0], [1, 1, 1], [1, 1, 1], [0, 0, 1]], bool))
    (1, 3)
    """
    runs = filled_runs(mask, fill)
    return runs[0] if len(runs) == 1 else None


def double_band(runs: list[tuple[int, int]]) -> tuple[int, int] | None:
    """The rows ``(start, stop)`` from the first to the last filled row when the runs of
    filled rows (:func:`filled_runs`) are exactly two, at most ``max(4, 2 * thicker)`` rows
    apart: the two lines of a double scale bar (the generator draws 1-3 px lines 1-4 px
    apart), not a frame's two sides (a label height apart or more).  None otherwise.

    >>> double_band(filled_runs(np.array([[1, 1, 1], [0, 1, 0], [1, 1, 1], [0, 0, 1]], bool)))
    (0, 3)
    """
    if len(runs) != 2:
        return None
    (a0, a1), (b0, b1) = runs
    if b0 - a1 > max(4, 2 * max(a1 - a0, b1 - b0)):
        return None
    return a0, b1


def only_at_ends(flags: np.ndarray) -> bool:
    """True when the True positions of a 1-D array are all in its outer quarters (none in
    the middle half): the ticks of a bracket, not a particle across a line.

    >>> only_at_ends(np.array([1, 1, 0, 0, 0, 0, 0, 1], bool)), only_at_ends(np.array([0, 0, 0, 1, 0, 0, 0, 0], bool))
    (True, False)
    """
    n = len(flags)
    q = int(np.ceil(0.25 * n))
    return not np.asarray(flags, dtype=bool)[q : n - q].any()


def box_iou(a, b) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes (0 when either is empty)."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1]) + max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
