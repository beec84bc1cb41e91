"""Training data for the flow model: EMPS micrographs and synthetic ones.

Each source image is prepared once (:func:`prepare_image`) and kept in
memory: converted to float32, percentile-normalised like at inference
(:func:`micrometry.segment.model.normalize_image`), and rescaled so that its
median object diameter is ``train_diameter_px``.  :class:`FlowDataset` then
draws training samples from these: a random scaled crop (scale jitter),
flips and 90-degree rotations, intensity augmentations
(:mod:`micrometry.train.augment`), and flow targets computed on the augmented
labels with :func:`micrometry.segment.flows.labels_to_flows`.

Sources:

- EMPS (:func:`load_emps`), through :func:`micrometry.train.realdata.iter_emps`
  with the committed split by DOI;
- synthetic micrographs (:func:`synthetic_images`) from
  :func:`micrometry.train.synth.render_micrograph`; their overlays (scale bar,
  panel letter, data bar) are marked invalid so the loss ignores them.

:class:`FlowDataset` follows the map-style ``torch.utils.data.Dataset``
protocol (``__len__``/``__getitem__``) and returns NumPy arrays, which
``torch.utils.data.DataLoader`` collates into tensors; this module itself does
not import torch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from micrometry.segment.model import median_diameter_px, normalize_image, resize_image
from micrometry.train.augment import augment_sample

__all__ = [
    "TrainImage",
    "prepare_image",
    "load_emps",
    "synthetic_images",
    "FlowDataset",
    "make_targets",
    "summarize_images",
]

# Rescaling limits when preparing an image (objects of 7 px are enlarged at
# most 4x; huge objects shrunk at most 16x).
_MIN_PREP_SCALE, _MAX_PREP_SCALE = 1 / 16, 4.0


@dataclass
class TrainImage:
    """One prepared training image.

    Attributes
    ----------
    name : str
        Identifier (EMPS id, ``synth-<seed>``).
    source : str
        ``"emps"`` or ``"synthetic"``.
    image : (Y, X) float32 ndarray
        Percentile-normalised, rescaled.
    labels : (Y, X) uint32 ndarray
        Instance labels on the rescaled grid.
    valid : (Y, X) bool ndarray or None
        False where the loss ignores pixels; None = all valid.
    scale : float
        Factor applied to the original image (rescaled size / original).
    diameter_px : float
        Median object diameter in the original image, in pixels (NaN if none).
    """

    name: str
    source: str
    image: np.ndarray
    labels: np.ndarray
    valid: np.ndarray | None
    scale: float
    diameter_px: float


def prepare_image(
    image: np.ndarray,
    labels: np.ndarray,
    *,
    train_diameter_px: float,
    valid: np.ndarray | None = None,
    name: str = "",
    source: str = "",
    percentiles: tuple[float, float] = (1.0, 99.8),
) -> TrainImage:
    """Normalise an image and rescale it so its objects are ``train_diameter_px`` across.

    Parameters
    ----------
    image : (Y, X) ndarray, any real dtype
    labels : (Y, X) integer ndarray
        Instance labels (0 = background).
    train_diameter_px : float
        Target median equivalent-circle diameter, in pixels.
    valid : (Y, X) bool ndarray, optional
        False where pixels are to be ignored (excluded from the percentile
        statistics too).
    name, source : str
        Recorded in the result.
    percentiles : (float, float)
        Normalisation percentiles.

    Returns
    -------
    TrainImage
        The scale is ``train_diameter_px / median diameter``, clipped to
        [1/16, 4]; 1 when the image has no objects.
    """
    image = np.asarray(image)
    labels = np.asarray(labels)
    if image.ndim != 2 or labels.shape != image.shape:
        raise ValueError(f"{name or 'image'}: image {image.shape} and labels {labels.shape} must be equal 2-D shapes")
    norm = normalize_image(image, percentiles=percentiles, exclude=None if valid is None else ~valid)
    d = median_diameter_px(labels)
    scale = 1.0 if not np.isfinite(d) else float(np.clip(train_diameter_px / d, _MIN_PREP_SCALE, _MAX_PREP_SCALE))
    shape = (max(8, round(image.shape[0] * scale)), max(8, round(image.shape[1] * scale)))
    lab = labels.astype(np.uint32, copy=False)
    if shape != image.shape:
        norm = resize_image(norm, shape)
        lab = resize_image(lab, shape, order=0)
        if valid is not None:
            valid = resize_image(np.asarray(valid, bool), shape, order=0)
    return TrainImage(name, source, norm, np.ascontiguousarray(lab), valid, scale, d)


def load_emps(
    split: str,
    *,
    train_diameter_px: float,
    root: str | os.PathLike | None = None,
    limit: int | None = None,
    ids: Iterable[str] | None = None,
) -> list[TrainImage]:
    """Load and prepare one side of the EMPS split (kept in memory).

    Parameters
    ----------
    split : {"train", "val"}
        Side of the committed split by DOI.
    train_diameter_px : float
        See :func:`prepare_image`.
    root : path, optional
        EMPS directory (default: :func:`micrometry.train.realdata.emps_dir`).
    limit : int, optional
        Only the first `limit` images (for quick runs).
    ids : iterable of str, optional
        Only these ids.

    Returns
    -------
    list of TrainImage
    """
    from micrometry.train.realdata import iter_emps

    keep = None if ids is None else set(ids)
    out = []
    for item_id, image, labels in iter_emps(split, root):
        if keep is not None and item_id not in keep:
            continue
        out.append(prepare_image(image, labels, train_diameter_px=train_diameter_px, name=item_id, source="emps"))
        if limit is not None and len(out) >= limit:
            break
    return out


def synthetic_images(
    n_images: int,
    *,
    train_diameter_px: float,
    seed: int = 0,
    shape: tuple[int, int] = (384, 384),
) -> list[TrainImage]:
    """Render and prepare synthetic micrographs.

    Parameters
    ----------
    n_images : int
    train_diameter_px : float
        See :func:`prepare_image`.
    seed : int
        Image ``i`` is rendered with seed ``seed + i``.
    shape : (int, int)
        Rendered size before rescaling.

    Returns
    -------
    list of TrainImage
        Overlays (scale bar, panel letter, data bar) are invalid pixels.
    """
    from micrometry.train.synth import render_micrograph

    out = []
    for i in range(int(n_images)):
        m = render_micrograph(seed + i, shape=tuple(shape))
        valid = ~m.ignore_mask()
        out.append(
            prepare_image(
                m.image, m.labels, train_diameter_px=train_diameter_px, valid=valid,
                name=f"synth-{seed + i}", source="synthetic",
            )
        )
    return out


def make_targets(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training targets of a label crop.

    Parameters
    ----------
    labels : (Y, X) integer ndarray

    Returns
    -------
    foreground : (Y, X) float32
        1 inside objects, 0 outside.
    flows : (2, Y, X) float32
        :func:`micrometry.segment.flows.labels_to_flows` unit vectors.
    distance : (Y, X) float32
        Per-object normalised distance (peak 1).
    """
    from micrometry.segment.flows import labels_to_flows

    flows, distance = labels_to_flows(labels)
    return (labels > 0).astype(np.float32), flows.astype(np.float32), distance.astype(np.float32)


class FlowDataset:
    """Map-style dataset of augmented training crops with flow targets.

    Sample ``i`` is a deterministic function of ``(seed, i)``: the source
    (chosen with `source_weights`), the image within it (uniformly), the
    crop, and all augmentations.  The length is the number of samples the
    training run draws (no epochs: every step sees new crops).

    Parameters
    ----------
    images : sequence of TrainImage
    n_samples : int
        Length of the dataset.
    crop_px : int
        Side of the crops.
    seed : int
    source_weights : dict, optional
        ``{source: weight}``; default: every source in proportion to its
        image count.
    augment : dict, optional
        Overrides of :data:`micrometry.train.augment.DEFAULT_AUGMENT`.

    Notes
    -----
    ``__getitem__`` returns a dict of NumPy arrays: ``image`` (1, C, C)
    float32, ``foreground`` (C, C) float32, ``flows`` (2, C, C) float32,
    ``distance`` (C, C) float32, ``valid`` (C, C) float32 (1 = counts in the
    loss).
    """

    def __init__(
        self,
        images: Sequence[TrainImage],
        *,
        n_samples: int,
        crop_px: int = 256,
        seed: int = 0,
        source_weights: dict[str, float] | None = None,
        augment: dict[str, Any] | None = None,
    ) -> None:
        if not images:
            raise ValueError("FlowDataset needs at least one training image")
        self.images = list(images)
        self.n_samples = int(n_samples)
        self.crop_px = int(crop_px)
        self.seed = int(seed)
        self.augment = dict(augment or {})
        by_source: dict[str, list[int]] = {}
        for i, im in enumerate(self.images):
            by_source.setdefault(im.source, []).append(i)
        self._sources = sorted(by_source)
        self._members = [np.asarray(by_source[s]) for s in self._sources]
        if source_weights is None:
            w = np.array([len(m) for m in self._members], float)
        else:
            w = np.array([float(source_weights.get(s, 0.0)) for s in self._sources])
        if not (w.sum() > 0 and np.all(w >= 0)):
            raise ValueError(f"source_weights must be non-negative with a positive sum for sources {self._sources}")
        self._p = w / w.sum()

    def __len__(self) -> int:
        return self.n_samples

    def pick(self, index: int) -> tuple[TrainImage, np.random.Generator]:
        """The image and the random generator used for sample `index`."""
        rng = np.random.default_rng([self.seed, int(index)])
        s = int(rng.choice(len(self._sources), p=self._p))
        members = self._members[s]
        return self.images[int(members[rng.integers(members.size)])], rng

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if not 0 <= index < self.n_samples:
            raise IndexError(index)
        item, rng = self.pick(index)
        img, lab, ok = augment_sample(item.image, item.labels, item.valid, rng, crop_px=self.crop_px, params=self.augment)
        fg, flows, dist = make_targets(lab)
        return {
            "image": img[None].astype(np.float32),
            "foreground": fg,
            "flows": flows,
            "distance": dist,
            "valid": ok.astype(np.float32),
        }


def summarize_images(images: Sequence[TrainImage]) -> dict[str, Any]:
    """Counts and object-size statistics per source (for the model config)."""
    out: dict[str, Any] = {}
    for src in sorted({im.source for im in images}):
        ims = [im for im in images if im.source == src]
        d = np.array([im.diameter_px for im in ims], float)
        d = d[np.isfinite(d)]
        out[src] = {
            "n_images": len(ims),
            "n_objects": int(sum(int(im.labels.max(initial=0)) for im in ims)),
            "median_diameter_px": {
                "p5": float(np.percentile(d, 5)) if d.size else math.nan,
                "p50": float(np.median(d)) if d.size else math.nan,
                "p95": float(np.percentile(d, 95)) if d.size else math.nan,
            },
        }
    return out
