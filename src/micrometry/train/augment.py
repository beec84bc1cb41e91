"""Augmentations for flow-model training: geometry on image + labels, then intensity.

Every function takes a :class:`numpy.random.Generator` (or explicit
parameters) and returns new arrays; inputs are never modified.  Geometric
transforms are applied identically to the image, the instance labels and the
validity mask (labels and masks with nearest-neighbour sampling, so ids are
never blended); flow targets are computed afterwards from the transformed
labels (:func:`micrometry.segment.flows.labels_to_flows`), so they are exact
for the augmented geometry.

Conventions: images are ``(Y, X)`` float32, percentile-normalised (the
specimen's 1st percentile ~ 0, 99.8th ~ 1); labels ``(Y, X)`` uint32 with
0 = background; ``valid`` ``(Y, X)`` bool, False where the loss must ignore
the pixel (padding, overlays of synthetic images).

Nothing here imports torch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "DEFAULT_AUGMENT",
    "flip_rotate",
    "random_flip_rotate",
    "scaled_crop",
    "random_scaled_crop",
    "invert",
    "adjust_gamma_contrast",
    "add_noise",
    "blur",
    "random_intensity",
    "augment_sample",
]

#: Default augmentation parameters (probabilities and ranges).
DEFAULT_AUGMENT: dict[str, Any] = {
    "scale_jitter": (0.7, 1.4),  # object size x this, log-uniform
    "foreground_crop_prob": 0.8,  # centre the crop on a random object pixel
    "invert_prob": 0.5,  # dark-on-bright <-> bright-on-dark
    "gamma": (0.6, 1.6),  # log-uniform
    "contrast": (0.6, 1.4),  # multiply deviation from the mean
    "brightness": (-0.15, 0.15),  # additive offset
    "blur_prob": 0.3,
    "blur_sigma_px": (0.5, 1.5),
    "gauss_noise_prob": 0.4,
    "gauss_noise_sigma": (0.01, 0.12),
    "poisson_noise_prob": 0.25,
    "poisson_peak": (5.0, 100.0),  # counts at intensity 1, log-uniform
}


def _check_pair(image: np.ndarray, *others: np.ndarray | None) -> None:
    for o in others:
        if o is not None and o.shape != image.shape:
            raise ValueError(f"image shape {image.shape} and label/mask shape {o.shape} differ")


# --------------------------------------------------------------------------- geometry


def flip_rotate(arrays: list[np.ndarray], *, k: int = 0, flip_y: bool = False, flip_x: bool = False) -> list[np.ndarray]:
    """Apply the same flips and 90-degree rotation to every (Y, X) array.

    Parameters
    ----------
    arrays : list of (Y, X) ndarray
        Image, labels, masks -- all the same shape.
    k : int
        Number of counter-clockwise quarter turns (:func:`numpy.rot90`),
        applied after the flips.
    flip_y, flip_x : bool
        Flip rows (up-down) / columns (left-right) first.

    Returns
    -------
    list of ndarray
        C-contiguous copies, in the input order.
    """
    out = []
    for a in arrays:
        if a.shape != arrays[0].shape:
            raise ValueError(f"all arrays must have the same shape, got {arrays[0].shape} and {a.shape}")
        if flip_y:
            a = a[::-1]
        if flip_x:
            a = a[:, ::-1]
        out.append(np.ascontiguousarray(np.rot90(a, k % 4)))
    return out


def random_flip_rotate(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """:func:`flip_rotate` with a random one of the 8 symmetries of the square."""
    return flip_rotate(arrays, k=int(rng.integers(4)), flip_y=bool(rng.integers(2)), flip_x=False)


def scaled_crop(
    image: np.ndarray,
    labels: np.ndarray,
    valid: np.ndarray | None,
    *,
    top_left: tuple[float, float],
    window_px: float,
    crop_px: int,
    fill: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut a square window and resample it to ``crop_px x crop_px``.

    The output pixel ``(i, j)`` samples the input at
    ``top_left + (i + 0.5) * window_px / crop_px - 0.5`` (pixel centres at
    integer coordinates), so a window of ``crop_px / s`` pixels magnifies the
    content by ``s``.  Image: bilinear (Gaussian pre-filter when shrinking by
    more than 1.5x); labels and mask: nearest.  Outside the input the image is
    `fill`, labels 0 and ``valid`` False.

    Parameters
    ----------
    image : (Y, X) float ndarray
    labels : (Y, X) integer ndarray
    valid : (Y, X) bool ndarray or None
        None means all valid.
    top_left : (float, float)
        Window origin ``(y0, x0)`` in input pixels (may be negative).
    window_px : float
        Window side in input pixels.
    crop_px : int
        Output side.
    fill : float
        Image value outside the input.

    Returns
    -------
    image : (crop_px, crop_px) float32
    labels : (crop_px, crop_px) uint32
    valid : (crop_px, crop_px) bool
    """
    _check_pair(image, labels, valid)
    step = float(window_px) / int(crop_px)
    y0, x0 = float(top_left[0]), float(top_left[1])
    ys = y0 + (np.arange(crop_px) + 0.5) * step - 0.5
    xs = x0 + (np.arange(crop_px) + 0.5) * step - 0.5
    img = image.astype(np.float32, copy=False)
    if step > 1.5:
        img = ndi.gaussian_filter(img, sigma=0.5 * math.sqrt(step**2 - 1.0), mode="reflect")
    # restrict the interpolation to the rows/columns the window touches
    ry0 = int(max(0, math.floor(ys[0]) - 1))
    ry1 = int(min(image.shape[0], math.ceil(ys[-1]) + 2))
    rx0 = int(max(0, math.floor(xs[0]) - 1))
    rx1 = int(min(image.shape[1], math.ceil(xs[-1]) + 2))
    out_img = np.full((crop_px, crop_px), fill, np.float32)
    out_lab = np.zeros((crop_px, crop_px), np.uint32)
    out_valid = np.zeros((crop_px, crop_px), bool)
    if ry1 <= ry0 or rx1 <= rx0:
        return out_img, out_lab, out_valid
    sub = img[ry0:ry1, rx0:rx1]
    gy, gx = np.meshgrid(ys - ry0, xs - rx0, indexing="ij")
    inside = (gy > -0.5) & (gy < sub.shape[0] - 0.5) & (gx > -0.5) & (gx < sub.shape[1] - 0.5)
    out_img = ndi.map_coordinates(sub, [gy, gx], order=1, mode="nearest").astype(np.float32)
    out_img[~inside] = fill
    iy = np.clip(np.floor(ys + 0.5).astype(np.int64), 0, image.shape[0] - 1)
    ix = np.clip(np.floor(xs + 0.5).astype(np.int64), 0, image.shape[1] - 1)
    out_lab = np.asarray(labels)[iy[:, None], ix[None, :]].astype(np.uint32)
    out_valid = inside.copy() if valid is None else (np.asarray(valid)[iy[:, None], ix[None, :]] & inside)
    out_lab[~inside] = 0
    return out_img, out_lab, out_valid


def random_scaled_crop(
    image: np.ndarray,
    labels: np.ndarray,
    valid: np.ndarray | None,
    rng: np.random.Generator,
    *,
    crop_px: int,
    scale_jitter: tuple[float, float] = (0.7, 1.4),
    foreground_crop_prob: float = 0.8,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random :func:`scaled_crop` with log-uniform scale jitter.

    The content is magnified by ``s ~ logU(scale_jitter)`` (the window is
    ``crop_px / s`` input pixels).  With probability `foreground_crop_prob`
    the window is centred on a random labelled pixel (so sparse images still
    give crops with objects), otherwise placed uniformly so that it overlaps
    the image.  The image is padded with its median.
    """
    lo, hi = scale_jitter
    s = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    window = crop_px / s
    ny, nx = image.shape
    fg = None
    if labels.any() and rng.random() < foreground_crop_prob:
        fg = np.flatnonzero(labels.ravel())
    if fg is not None:
        c = int(fg[rng.integers(fg.size)])
        cy, cx = divmod(c, nx)
        y0 = cy - window / 2 + rng.uniform(-window / 4, window / 4)
        x0 = cx - window / 2 + rng.uniform(-window / 4, window / 4)
    else:
        y0 = rng.uniform(min(0.0, ny - window), max(0.0, ny - window))
        x0 = rng.uniform(min(0.0, nx - window), max(0.0, nx - window))
    fill = float(np.median(image[:: max(1, ny // 64), :: max(1, nx // 64)]))
    return scaled_crop(image, labels, valid, top_left=(y0, x0), window_px=window, crop_px=crop_px, fill=fill)


# --------------------------------------------------------------------------- intensity


def invert(image: np.ndarray) -> np.ndarray:
    """Swap dark-on-bright and bright-on-dark: ``1 - image`` (for [0, 1] normalised images)."""
    return (1.0 - np.asarray(image, dtype=np.float32)).astype(np.float32)


def adjust_gamma_contrast(
    image: np.ndarray, *, gamma: float = 1.0, contrast: float = 1.0, brightness: float = 0.0
) -> np.ndarray:
    """Gamma on the clipped ``[0, 1]`` range, then contrast about the mean and an offset.

    ``out = (clip(x, 0, 1) ** gamma - m) * contrast + m + brightness`` with
    ``m`` the mean of the gamma-corrected image.
    """
    x = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0) ** np.float32(gamma)
    m = np.float32(x.mean()) if x.size else np.float32(0)
    return ((x - m) * np.float32(contrast) + m + np.float32(brightness)).astype(np.float32)


def add_noise(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    gauss_sigma: float = 0.0,
    poisson_peak: float | None = None,
) -> np.ndarray:
    """Shot noise (Poisson, `poisson_peak` counts at intensity 1) then Gaussian noise."""
    x = np.asarray(image, dtype=np.float32)
    if poisson_peak:
        lam = np.clip(x, 0.0, None) * np.float32(poisson_peak)
        x = (rng.poisson(lam).astype(np.float32) / np.float32(poisson_peak)).astype(np.float32)
    if gauss_sigma > 0:
        x = x + rng.normal(0.0, gauss_sigma, x.shape).astype(np.float32)
    return x.astype(np.float32)


def blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur of standard deviation `sigma_px` (pixels)."""
    return ndi.gaussian_filter(np.asarray(image, dtype=np.float32), sigma_px, mode="reflect").astype(np.float32)


def _log_u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def random_intensity(image: np.ndarray, rng: np.random.Generator, params: dict[str, Any] | None = None) -> np.ndarray:
    """Random inversion, gamma/contrast/brightness, blur and noise (in that order).

    Parameters
    ----------
    image : (Y, X) float32 ndarray
        Normalised image.
    rng : numpy.random.Generator
    params : dict, optional
        Overrides of :data:`DEFAULT_AUGMENT`.

    Returns
    -------
    (Y, X) float32 ndarray
    """
    p = {**DEFAULT_AUGMENT, **(params or {})}
    x = np.asarray(image, dtype=np.float32)
    if rng.random() < p["invert_prob"]:
        x = invert(x)
    x = adjust_gamma_contrast(
        x,
        gamma=_log_u(rng, *p["gamma"]),
        contrast=rng.uniform(*p["contrast"]),
        brightness=rng.uniform(*p["brightness"]),
    )
    if rng.random() < p["blur_prob"]:
        x = blur(x, rng.uniform(*p["blur_sigma_px"]))
    peak = _log_u(rng, *p["poisson_peak"]) if rng.random() < p["poisson_noise_prob"] else None
    sigma = rng.uniform(*p["gauss_noise_sigma"]) if rng.random() < p["gauss_noise_prob"] else 0.0
    if peak or sigma:
        x = add_noise(x, rng, gauss_sigma=sigma, poisson_peak=peak)
    return x


def augment_sample(
    image: np.ndarray,
    labels: np.ndarray,
    valid: np.ndarray | None,
    rng: np.random.Generator,
    *,
    crop_px: int,
    params: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One training sample: scaled random crop, flips/rotation, intensity.

    Parameters
    ----------
    image : (Y, X) float32 ndarray
        Normalised image already rescaled to the training object size.
    labels : (Y, X) uint32 ndarray
    valid : (Y, X) bool ndarray or None
    rng : numpy.random.Generator
    crop_px : int
        Output side.
    params : dict, optional
        Overrides of :data:`DEFAULT_AUGMENT`.

    Returns
    -------
    image : (crop_px, crop_px) float32
    labels : (crop_px, crop_px) uint32
    valid : (crop_px, crop_px) bool
    """
    p = {**DEFAULT_AUGMENT, **(params or {})}
    img, lab, ok = random_scaled_crop(
        image,
        labels,
        valid,
        rng,
        crop_px=crop_px,
        scale_jitter=tuple(p["scale_jitter"]),
        foreground_crop_prob=p["foreground_crop_prob"],
    )
    img, lab, ok = random_flip_rotate([img, lab, ok], rng)
    img = random_intensity(img, rng, p)
    return img, lab, ok
