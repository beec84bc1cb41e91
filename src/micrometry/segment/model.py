"""Flow-model files and inference: a model is a directory.

A model directory holds

- ``config.json``: everything needed to rebuild and use the network --
  ``architecture`` (keyword arguments of
  :class:`micrometry.segment.network.FlowNet` plus the backbone name),
  ``normalization`` (input percentiles), ``train_diameter_px`` (the median
  object diameter, in pixels, that training images were rescaled to),
  ``inference`` thresholds (``fg_threshold``, ``min_area_px``, ``n_iter``,
  ``flow_error_max``),
  ``weights_sha256``, and free-form ``training`` / ``validation`` records;
- ``weights.safetensors``: the state dict, float32, written with
  :func:`safetensors.torch.save_file`.  Nothing is ever unpickled: loading goes
  through :func:`safetensors.torch.load_file` only, after checking every
  tensor name and shape against the architecture;
- optionally ``MODEL_CARD.md`` and a training log, which this module leaves
  alone.

Inference (:meth:`FlowModel.segment`) is a chain of separately testable steps:

1. :func:`normalize_image` -- percentile normalisation (1st -> 0,
   99.8th -> 1) over the specimen pixels (``exclude`` is ignored);
2. object size: ``diameter_px`` if given, else :meth:`FlowModel.estimate_diameter_px`;
3. :meth:`FlowModel.predict_scaled` -- rescale so objects are about
   ``inference.label_diameter_px`` across (default ``train_diameter_px``)
   and run the network (tile by tile through
   :func:`micrometry.segment.tiled.predict_tiled` for large images);
4. :meth:`FlowModel.labels_at_scale` -- flow tracking
   (:func:`labels_from_prediction`, i.e.
   :func:`micrometry.segment.flows.flows_to_labels` on ``probability >
   fg_threshold``, exclusion, size filter and flow-error QC) on the *coarser* of the two
   grids: at model scale when objects were shrunk (so the number of Euler
   steps is set by the training object size) with the labels brought back
   inside the full-resolution foreground (:func:`upsample_labels`), else on
   the image grid after resizing the prediction back.

This module does not import torch at import time (only the functions that
run or load a network do), so reading a model's config or checksum works
without it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from micrometry._atomic import atomic_path, write_json

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "MODEL_FORMAT",
    "DEFAULT_PERCENTILES",
    "FlowModel",
    "ScalePass",
    "normalize_image",
    "median_diameter_px",
    "resize_image",
    "labels_from_prediction",
    "upsample_labels",
    "save_model",
    "load_model",
    "read_model_config",
    "model_sha256",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.safetensors"
MODEL_FORMAT = "micrometry-flow-model"
MODEL_FORMAT_VERSION = 1
#: Input normalisation: these percentiles of the specimen pixels map to 0 and 1.
DEFAULT_PERCENTILES = (1.0, 99.8)
LABEL_DTYPE = np.uint32

_MAX_STAT_SAMPLES = 1_000_000
_DEFAULT_INFERENCE = {
    "fg_threshold": 0.5,
    "min_area_px": 8,  # pixels at the training scale
    # flow-error QC (Cellpose's flow_threshold): drop objects whose predicted flows disagree
    # with the flows of their own mask by more than this (mean squared difference of unit
    # vectors, see segment.flows.flow_error); None or 0: no QC
    "flow_error_max": None,
    "n_iter": None,  # None: from the foreground, at most max_diameter_factor x train_diameter_px
    "max_diameter_factor": 8.0,
    "backend": "auto",  # flow-tracking back-end
    "diameter_method": "search",  # search | multiscale | refine: see FlowModel.estimate_diameter_px
    "diameter_accept_factor": 1.4142135623730951,  # search: accept a scale whose objects are this close to training size
    "reuse_factor": 1.2,  # search: reuse the accepted pass for the labels when this close
    # objects are labelled at this size on the model's grid (None: train_diameter_px); the
    # shipped model labels best a little below its training size (chosen on the train split)
    "label_diameter_px": None,
    # model-scale images with a side above tile_px go through segment.tiled.predict_tiled in
    # tiles of this side (2048 + overlap: 4096-px images make 2 x 2 tiles; ~2.8 GB peak on CPU)
    "tile_px": 2144,
    "overlap_px": 96,
}
# diameter estimation: refine when the first flow pass finds objects more than
# this factor away from the training size
_DIAMETER_REFINE_FACTOR = 1.3
_MIN_SCALE, _MAX_SCALE = 1 / 32, 8.0
#: The size search enlarges an image at most this much per side (objects >= train size / 4).
_MAX_SEARCH_ENLARGEMENT = 4.0


@dataclass(frozen=True)
class ScalePass:
    """One network + tracking pass at a scale, on the model-scale grid.

    Attributes
    ----------
    scale : float
        Rescaling factor applied to the image (``> 1`` enlarges).
    prediction : (4, y, x) float32 ndarray
        :meth:`FlowModel.predict` output on the scaled grid.
    labels : (y, x) uint32 ndarray
        Tracked labels on the scaled grid.
    fg_threshold, min_area_px : float, int
        Settings the labels were tracked with (``min_area_px`` in pixels of
        the scaled grid).  No flow-error QC (see :meth:`FlowModel.search_diameter`).
    found_diameter_px : float
        Median equivalent diameter of `labels`, pixels of the scaled grid
        (NaN when none).
    n_objects : int
    """

    scale: float
    prediction: np.ndarray
    labels: np.ndarray
    fg_threshold: float
    min_area_px: int
    found_diameter_px: float
    n_objects: int


# --------------------------------------------------------------------------- numpy steps


def normalize_image(
    image: np.ndarray,
    *,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Percentile-normalise a grey image: the low percentile -> 0, the high -> 1.

    Parameters
    ----------
    image : (Y, X) ndarray, any real dtype
        Grey-level micrograph.  Not modified.
    percentiles : (float, float)
        Low and high percentiles (default 1 and 99.8), computed over the valid
        pixels (finite, not excluded; at most 10**6 of them, evenly sampled).
    exclude : (Y, X) bool ndarray, optional
        Pixels that are not specimen; they do not enter the statistics and are
        set to the median of the valid normalised pixels in the output, so
        burned-in text does not reach the network.

    Returns
    -------
    (Y, X) ndarray of float32
        Not clipped (values outside ``[0, 1]`` are kept).  All zeros when the
        valid pixels are constant or there are none.
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"image must be a 2-D grey image (Y, X), got shape {img.shape}")
    if not (np.issubdtype(img.dtype, np.number) or img.dtype == bool) or np.iscomplexobj(img):
        raise TypeError(f"image must be real-valued, got dtype {img.dtype}")
    from micrometry.segment.classical import as_float32

    img = as_float32(img, copy=False)
    valid = np.isfinite(img)
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=bool)
        if exclude.shape != img.shape:
            raise ValueError(f"exclude mask shape {exclude.shape} does not match image shape {img.shape}")
        valid &= ~exclude
    values = img[valid]
    if values.size > _MAX_STAT_SAMPLES:
        values = values[:: int(math.ceil(values.size / _MAX_STAT_SAMPLES))]
    out = np.zeros(img.shape, np.float32)
    if values.size == 0:
        return out
    lo, hi = np.percentile(values, percentiles)
    if not hi > lo:
        return out
    out = ((img - np.float32(lo)) / np.float32(hi - lo)).astype(np.float32)
    if not valid.all():
        out[~valid] = np.float32(np.median(out[valid]))
    return out


def median_diameter_px(labels: np.ndarray) -> float:
    """Median equivalent-circle diameter of the objects in a label image.

    Parameters
    ----------
    labels : (Y, X) integer ndarray
        0 = background.

    Returns
    -------
    float
        ``median(2 * sqrt(area_px / pi))`` over the labels present, in pixels;
        NaN when there are none.
    """
    lab = np.asarray(labels)
    if not np.issubdtype(lab.dtype, np.integer):
        raise TypeError(f"labels must be an integer array, got {lab.dtype}")
    area_px = np.bincount(lab.ravel().astype(np.int64))[1:]
    area_px = area_px[area_px > 0]
    if area_px.size == 0:
        return float("nan")
    return float(np.median(2.0 * np.sqrt(area_px / np.pi)))


def resize_image(image: np.ndarray, shape: tuple[int, int], *, order: int = 1) -> np.ndarray:
    """Resize a (Y, X) or (C, Y, X) array to `shape` on the last two axes.

    Parameters
    ----------
    image : (Y, X) or (C, Y, X) ndarray
    shape : (int, int)
        Output ``(Y, X)``.
    order : {1, 0}
        1: bilinear for intensities, anti-aliased when shrinking (a triangle
        filter as wide as the shrink factor, as PIL does), via
        :func:`torch.nn.functional.interpolate` (``align_corners=False``;
        multi-threaded, ~15x faster than :func:`skimage.transform.resize`,
        which the first two shipped models were trained with: the results
        differ by < 1 % of the range).  0: nearest neighbour for labels and
        masks (dtype kept, no torch needed).

    Returns
    -------
    ndarray
        ``(..., *shape)``; float32 for ``order > 0``, the input dtype for 0.
    """
    arr = np.asarray(image)
    shape = (int(shape[0]), int(shape[1]))
    if order not in (0, 1):
        raise ValueError(f"order must be 0 (nearest) or 1 (bilinear), got {order}")
    if arr.ndim not in (2, 3):
        raise ValueError(f"image must have shape (Y, X) or (C, Y, X), got {arr.shape}")
    if arr.shape[-2:] == shape:
        return arr.astype(np.float32, copy=False) if order else arr
    if order == 0:
        iy = np.minimum(((np.arange(shape[0]) + 0.5) * arr.shape[-2] / shape[0]).astype(np.int64), arr.shape[-2] - 1)
        ix = np.minimum(((np.arange(shape[1]) + 0.5) * arr.shape[-1] / shape[1]).astype(np.int64), arr.shape[-1] - 1)
        return arr[..., iy[:, None], ix[None, :]]
    import torch
    import torch.nn.functional as F

    shrink = shape[0] < arr.shape[-2] or shape[1] < arr.shape[-1]
    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    x = x[None, None] if arr.ndim == 2 else x[None]
    with torch.inference_mode():
        out = F.interpolate(x, size=shape, mode="bilinear", align_corners=False, antialias=shrink)
    out = out[0, 0] if arr.ndim == 2 else out[0]
    return np.ascontiguousarray(out.numpy())


def labels_from_prediction(
    prediction: np.ndarray,
    *,
    fg_threshold: float = 0.5,
    min_area_px: int = 8,
    n_iter: int | None = None,
    max_n_iter: int | None = None,
    exclude: np.ndarray | None = None,
    backend: str = "auto",
    flow_error_max: float | None = None,
) -> np.ndarray:
    """Instance labels from a flow-model prediction.

    Parameters
    ----------
    prediction : (4, Y, X) float ndarray
        Foreground probability, flow_y, flow_x, distance (as returned by
        :meth:`FlowModel.predict`).
    fg_threshold : float
        Pixels with probability above this are foreground.
    min_area_px : int
        Objects smaller than this (pixels) are dropped.
    n_iter : int, optional
        Euler steps of flow tracking (None: the tracker's default,
        :func:`micrometry.segment.tracking.default_n_iter` of the foreground).
    max_n_iter : int, optional
        Upper bound on the default `n_iter` (a foreground that is one huge
        blob would otherwise ask for thousands of steps).
    exclude : (Y, X) bool ndarray, optional
        Pixels that are not specimen: never labelled.
    backend : str
        Flow-tracking back-end (see :mod:`micrometry._backend`).
    flow_error_max : float, optional
        Flow-error QC: objects whose
        :func:`~micrometry.segment.flows.flow_error` (mean squared difference
        between the predicted flows and the flows of the object's own mask,
        unit vectors: 0 = perfect, 4 = reversed) exceeds this are dropped
        (Cellpose's ``flow_threshold``).  None or 0: no QC.

    Returns
    -------
    (Y, X) ndarray of uint32
        0 = background, objects ``1..N``.
    """
    from micrometry.segment.classical import remove_small_and_large
    from micrometry.segment.flows import flows_to_labels

    pred = np.asarray(prediction)
    if pred.ndim != 3 or pred.shape[0] != 4:
        raise ValueError(f"prediction must have shape (4, Y, X), got {pred.shape}")
    fg = pred[0] > fg_threshold
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=bool)
        if exclude.shape != fg.shape:
            raise ValueError(f"exclude mask shape {exclude.shape} does not match prediction {fg.shape}")
        fg &= ~exclude
    if not fg.any():
        return np.zeros(fg.shape, LABEL_DTYPE)
    if n_iter is None and max_n_iter is not None:
        from micrometry.segment.tracking import default_n_iter

        n_iter = min(default_n_iter(fg), int(max_n_iter))
    labels = flows_to_labels(
        np.ascontiguousarray(pred[1:3], dtype=np.float32),
        fg,
        n_iter=n_iter,
        backend=backend,
        min_area_px=int(min_area_px),
        flow_error_max=flow_error_max,
    )
    labels = np.asarray(labels)
    labels[~fg] = 0
    return remove_small_and_large(labels, min_area_px=int(min_area_px))


# --------------------------------------------------------------------------- the model


class FlowModel:
    """A flow network with its configuration, ready for inference.

    Parameters
    ----------
    net : micrometry.segment.network.FlowNet
        The network (put in eval mode on the given device).
    config : dict
        Model configuration (see the module docstring); must hold
        ``architecture`` and ``train_diameter_px``.
    device : str or torch.device
        Where the network runs.

    Notes
    -----
    :meth:`predict` does not call ``torch.set_num_threads``: the caller
    decides how many threads torch may use.
    """

    def __init__(self, net: Any, config: dict, device: Any = "cpu") -> None:
        import torch

        if "architecture" not in config:
            raise ValueError("model config has no 'architecture' entry")
        self.config = dict(config)
        self.config.setdefault("normalization", {"method": "percentile", "percentiles": list(DEFAULT_PERCENTILES)})
        self.config.setdefault("inference", dict(_DEFAULT_INFERENCE))
        self.device = torch.device(device)
        #: Dask placement of tiled inference (:meth:`use_dask`); None = in this process, synchronously
        self.dask: dict[str, Any] | None = None
        #: ONNX Runtime graph of the network (:meth:`use_onnx`); None = PyTorch runs it
        self.onnx: Any = None
        # channels-last activations: ~1.4x faster convolutions on CPU (oneDNN), same results to ~1e-5
        self.net = net.to(self.device, memory_format=torch.channels_last).eval()

    # -- configuration
    @property
    def train_diameter_px(self) -> float:
        """Median object diameter (px) the network was trained at."""
        return float(self.config["train_diameter_px"])

    @property
    def percentiles(self) -> tuple[float, float]:
        """Input normalisation percentiles ``(low, high)``."""
        p = self.config["normalization"].get("percentiles", DEFAULT_PERCENTILES)
        return float(p[0]), float(p[1])

    def _inference(self, key: str) -> Any:
        return self.config["inference"].get(key, _DEFAULT_INFERENCE.get(key))

    @property
    def max_n_iter(self) -> int:
        """Bound on the tracking steps: ``max_diameter_factor`` x the training diameter.

        Tracking always runs on a grid where objects are at most about the
        training size (see :meth:`labels_at_scale`), so this allows objects
        up to that many times the median size.
        """
        return int(math.ceil(float(self._inference("max_diameter_factor")) * self.train_diameter_px))

    # -- steps
    def predict(self, image_norm: np.ndarray) -> np.ndarray:
        """Run the network on a normalised image at its own scale.

        Parameters
        ----------
        image_norm : (Y, X) float32 ndarray
            Percentile-normalised image (:func:`normalize_image`).

        Returns
        -------
        (4, Y, X) float32 ndarray
            Foreground probability (sigmoid of the logit), flow_y, flow_x and
            distance (per-object normalised, peak 1, as trained).
        """
        arr = np.asarray(image_norm, dtype=np.float32)
        if arr.ndim != 2:
            raise ValueError(f"image_norm must have shape (Y, X), got {arr.shape}")
        if self.onnx is not None:
            from scipy.special import expit

            out = self.onnx(arr)
            out[0] = expit(out[0])
            return out
        import torch

        self.net.eval()
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(arr))[None, None].to(self.device)
            out = self.net(x.contiguous(memory_format=torch.channels_last))[0]
            out[0] = torch.sigmoid(out[0])
            return np.ascontiguousarray(out.float().cpu().numpy())

    @property
    def runtime(self) -> str:
        """What runs the network: ``"onnxruntime"`` or ``"torch"``."""
        return "onnxruntime" if self.onnx is not None else "torch"

    def use_onnx(self, onnx_path: str | os.PathLike, *, threads: int = 1) -> None:
        """Run the network with ONNX Runtime from now on (CPU).

        Parameters
        ----------
        onnx_path : path
            The model's ``model.onnx`` (:func:`micrometry.segment.onnx.export_onnx`);
            its recorded weights SHA-256 must match ``config["weights_sha256"]``.
        threads : int
            Intra-op threads.
        """
        from micrometry.segment.onnx import OnnxNetwork

        self.onnx = OnnxNetwork(onnx_path, weights_sha256=str(self.config.get("weights_sha256", "")), threads=threads)

    def use_dask(
        self, address: str | None = None, *, threads: int = 1, mem_mb: int | None = None, cuda: bool = False
    ) -> None:
        """Compute the tiles of large images on Dask.

        Parameters
        ----------
        address : str, optional
            A running scheduler (``tcp://host:8786``; dask-jobqueue,
            dask-cuda's ``LocalCUDACluster``...): tiles go to its workers,
            which need micrometry installed.  None: an in-job
            :class:`distributed.LocalCluster` of `threads` threaded workers'
            worth (:func:`micrometry._dask.cluster_size_from_resources`, one
            BLAS thread each), started only when an image is large enough to
            be tiled and closed afterwards.
        threads, mem_mb : int, optional
            The job's threads and memory (MiB) for the in-job cluster.
        cuda : bool, optional
            The in-job cluster is a dask-cuda ``LocalCUDACluster`` (one worker
            per GPU) instead.
        """
        self.dask = {"address": address, "threads": int(threads), "mem_mb": mem_mb, "cuda": bool(cuda)}

    def _tile_compute(self, lazy: Any) -> np.ndarray:
        if self.dask is None:
            return np.asarray(lazy.compute(scheduler="synchronous"), dtype=np.float32)
        from micrometry._dask import cluster_size_from_resources, dask_client

        address, cuda = self.dask["address"], self.dask.get("cuda", False)
        size = {} if address or cuda else cluster_size_from_resources(self.dask["threads"], self.dask["mem_mb"])
        with dask_client(address, cuda=cuda and not address, **size):
            return np.asarray(lazy.compute(), dtype=np.float32)

    def _predict_any_size(self, image_norm: np.ndarray) -> np.ndarray:
        """:meth:`predict`, through the tiled Dask path (:meth:`use_dask`) for large images."""
        tile_px = int(self._inference("tile_px") or _DEFAULT_INFERENCE["tile_px"])
        if max(image_norm.shape) > tile_px:
            try:
                from micrometry.segment.tiled import predict_tiled
            except ImportError:  # pragma: no cover - tiled inference not installed
                return self.predict(image_norm)
            lazy = predict_tiled(
                image_norm,
                self.predict,
                n_channels=4,
                tile_px=tile_px,
                overlap_px=int(self._inference("overlap_px") or 96),
                pad_multiple_px=self.net.size_multiple,
            )
            return self._tile_compute(lazy)
        return self.predict(image_norm)

    @property
    def label_diameter_px(self) -> float:
        """Object diameter (px) on the model's grid at which labels are computed.

        ``inference.label_diameter_px``, else :attr:`train_diameter_px`.  Training
        rescales objects to ``train_diameter_px`` with a x0.7-1.4 jitter, so
        any size in that band is in-distribution; the size search still aims
        at the training size.
        """
        return float(self._inference("label_diameter_px") or self.train_diameter_px)

    def scale_for(self, diameter_px: float, *, target_px: float | None = None) -> float:
        """Rescaling factor that brings objects of `diameter_px` to `target_px`.

        `target_px` defaults to the training size; :meth:`segment` labels at
        ``target_px=self.label_diameter_px``.
        """
        if not (diameter_px and np.isfinite(diameter_px) and diameter_px > 0):
            raise ValueError(f"diameter_px must be a positive number, got {diameter_px!r}")
        target = self.train_diameter_px if target_px is None else float(target_px)
        return float(np.clip(target / float(diameter_px), _MIN_SCALE, _MAX_SCALE))

    def predict_scaled(self, image_norm: np.ndarray, scale: float) -> np.ndarray:
        """Predict at ``scale`` x the image size (the prediction stays on that grid).

        Parameters
        ----------
        image_norm : (Y, X) float32 ndarray
            Normalised image.
        scale : float
            Rescaling factor (``> 1`` enlarges).

        Returns
        -------
        (4, round(Y * scale), round(X * scale)) float32 ndarray
            See :meth:`predict`.  :func:`resize_image` brings it back to the
            image grid (bilinear: probability, unit-free flow directions and
            the per-object normalised distance all resample as they are).
        """
        shape = image_norm.shape
        small = _scaled_shape(shape, scale)
        img = resize_image(image_norm, small) if small != shape else image_norm
        return self._predict_any_size(np.ascontiguousarray(img, dtype=np.float32))

    @property
    def flow_error_max(self) -> float | None:
        """The model's flow-error QC limit (``inference.flow_error_max``), None when off."""
        from micrometry.segment.flows import check_flow_error_max

        return check_flow_error_max(self._inference("flow_error_max"))

    def _track(self, pred: np.ndarray, *, fg_threshold: float, min_area_px: int, exclude: np.ndarray | None,
               flow_error_max: float | None):
        return labels_from_prediction(
            pred,
            fg_threshold=fg_threshold,
            min_area_px=min_area_px,
            n_iter=self._inference("n_iter"),
            max_n_iter=self.max_n_iter,
            backend=self._inference("backend"),
            exclude=exclude,
            flow_error_max=flow_error_max,
        )

    def labels_at_scale(
        self,
        image_norm: np.ndarray,
        scale: float,
        *,
        exclude: np.ndarray | None = None,
        fg_threshold: float | None = None,
        min_area_px: int | None = None,
        flow_error_max: float | None = None,
        cached: "ScalePass | None" = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predict at `scale` and track flows on the coarser of the two grids.

        When ``scale < 1`` (objects larger than the training size) the flows
        are tracked on the small, model-scale grid -- the Euler steps needed
        are then set by the training object size, not by the (large) native
        one -- and the labels are brought back with :func:`upsample_labels`
        inside the foreground resampled bilinearly to the image grid, so
        object outlines keep native resolution.  When ``scale >= 1`` the
        prediction is resized back and tracked on the image grid.

        Parameters
        ----------
        image_norm : (Y, X) float32 ndarray
        scale : float
        exclude : (Y, X) bool ndarray, optional
        fg_threshold : float, optional
            Default: the model's ``inference.fg_threshold``.
        min_area_px : int, optional
            Smallest object in pixels of the image; default: the model's
            ``inference.min_area_px`` (pixels at the training scale) / scale**2.
        flow_error_max : float, optional
            Flow-error QC limit (see :func:`labels_from_prediction`); default:
            the model's ``inference.flow_error_max``; 0 turns the QC off.
        cached : ScalePass, optional
            A pass at this `scale` from :meth:`estimate_diameter_px`: its
            prediction (and, when the settings match, its model-grid labels)
            are reused instead of running the network again.

        Returns
        -------
        labels : (Y, X) uint32 ndarray
        prediction : (4, Y, X) float32 ndarray
            On the image grid.
        """
        from micrometry.segment.classical import remove_small_and_large
        from micrometry.segment.flows import check_flow_error_max, remove_flow_errors

        thr = float(self._inference("fg_threshold") if fg_threshold is None else fg_threshold)
        qc = self.flow_error_max if flow_error_max is None else check_flow_error_max(flow_error_max)
        min_area_model = int(self._inference("min_area_px"))
        if min_area_px is None:
            min_area_px = max(1, int(round(min_area_model / scale**2)))
        shape = image_norm.shape
        if cached is not None and cached.scale != scale:
            raise ValueError(f"cached pass is at scale {cached.scale}, not {scale}")
        pred_s = cached.prediction if cached is not None else self.predict_scaled(image_norm, scale)
        small = pred_s.shape[1:]
        pred = resize_image(pred_s, shape) if small != shape else pred_s
        if scale >= 1.0 or small == shape:
            labels = self._track(pred, fg_threshold=thr, min_area_px=min_area_px, exclude=exclude, flow_error_max=qc)
            return labels, pred
        if cached is not None and cached.fg_threshold == thr and cached.min_area_px == min_area_model:
            lab_s = remove_flow_errors(cached.labels, pred_s[1:3], qc)
        else:
            exc_s = None if exclude is None else resize_image(exclude, small, order=0)
            lab_s = self._track(pred_s, fg_threshold=thr, min_area_px=min_area_model, exclude=exc_s,
                                flow_error_max=qc)
        fg = pred[0] > thr
        if exclude is not None:
            fg &= ~exclude
        labels = upsample_labels(lab_s, fg)
        return remove_small_and_large(labels, min_area_px=min_area_px), pred

    def _classical_guess(self, image_norm: np.ndarray, exclude: np.ndarray | None) -> float:
        """Median object diameter (px) found by the classical segmentation, NaN if none."""
        from micrometry.segment.classical import segment_classical

        shape = image_norm.shape
        f = min(1.0, 1024.0 / max(shape))
        small = _scaled_shape(shape, f)
        img_s = resize_image(image_norm, small)
        exc_s = None if exclude is None else resize_image(np.asarray(exclude, bool), small, order=0)
        try:
            return median_diameter_px(segment_classical(img_s, exclude=exc_s)) / f
        except ValueError:
            return float("nan")

    def _pass(self, image_norm: np.ndarray, scale: float, exclude: np.ndarray | None) -> ScalePass:
        """Network + tracking at `scale`, on the model-scale grid (model's own settings, no flow-error QC).

        The size search judges a scale by the objects it finds there; the QC
        would remove some of that evidence (on EMPS train images, QC in the
        search passes lowered AP_cp@0.5 from 0.793 to 0.719), so it is applied
        to the labels only (:meth:`labels_at_scale`).
        """
        pred_s = self.predict_scaled(image_norm, scale)
        exc = None if exclude is None else resize_image(np.asarray(exclude, bool), pred_s.shape[1:], order=0)
        thr = float(self._inference("fg_threshold"))
        min_area = int(self._inference("min_area_px"))
        lab = self._track(pred_s, fg_threshold=thr, min_area_px=min_area, exclude=exc, flow_error_max=None)
        return ScalePass(scale=scale, prediction=pred_s, labels=lab, fg_threshold=thr, min_area_px=min_area,
                         found_diameter_px=median_diameter_px(lab), n_objects=int(lab.max(initial=0)))

    def _found_at(self, image_norm: np.ndarray, scale: float, exclude: np.ndarray | None) -> tuple[float, int]:
        """Median diameter (px of the model-scale grid) and count of the objects found at `scale`."""
        p = self._pass(image_norm, scale, exclude)
        return p.found_diameter_px, p.n_objects

    def _diameter_method(self, method: str | None = None) -> str:
        """`method`, else the model's ``inference.diameter_method``, checked."""
        method = method or self._inference("diameter_method") or "search"
        if method not in ("search", "multiscale", "refine"):
            raise ValueError(f"diameter method must be 'search', 'multiscale' or 'refine', got {method!r}")
        return method

    def search_diameter(
        self, image_norm: np.ndarray, *, exclude: np.ndarray | None = None
    ) -> tuple[float, ScalePass | None]:
        """Coarse-to-fine object-size search that keeps the pass it settles on.

        The network is run at the scales that suit objects of
        ``train_diameter_px x 2**k`` pixels, from the coarsest (k as large as
        the image allows) down to k = 0; at the right scale the objects it
        finds are about ``train_diameter_px`` across on its own grid.  The
        search stops at the first scale whose found median diameter is within
        ``accept_factor`` (model ``inference.diameter_accept_factor``, default
        sqrt(2): every size is that close to one octave) of the training size
        -- the coarsest such scale, since a network shown objects far larger
        than it was trained on cuts them into training-sized pieces.  Coarse
        passes are cheap (a pass at scale s costs s**2 of a native one), so
        for objects twice the training size or more the search costs at most
        about 0.35 native passes.  Failing that (objects smaller than
        ``train_diameter_px / accept_factor``), the best candidate's estimate
        is refined by one enlarged pass (at most 4 x).

        Returns
        -------
        diameter_px : float
            Estimated median object diameter in pixels of `image_norm` (the
            training diameter when nothing is found); never below
            ``train_diameter_px / 4``, the finest size the search looks at.
        kept : ScalePass or None
            The accepted pass when the found size is within the model's
            ``inference.reuse_factor`` (default 1.2) of
            :attr:`label_diameter_px`:
            :meth:`segment` then reuses it at scale ``kept.scale`` instead of
            running the network again.
        """
        d_train = self.train_diameter_px
        finest = d_train / _MAX_SEARCH_ENLARGEMENT  # the smallest size the search can vouch for
        accept = float(self._inference("diameter_accept_factor") or math.sqrt(2.0))
        reuse = float(self._inference("reuse_factor") or 1.2)
        ks = [k for k in range(6) if d_train * 2.0**k <= max(image_norm.shape)]
        results: list[ScalePass] = []
        for k in sorted(ks, reverse=True):
            p = self._pass(image_norm, self.scale_for(d_train * 2.0**k), exclude)
            if p.n_objects and np.isfinite(p.found_diameter_px):
                results.append(p)
                if abs(math.log(p.found_diameter_px / d_train)) <= math.log(accept):
                    break
        if not results:
            return d_train, None

        def closest() -> ScalePass:
            return min(results, key=lambda r: abs(math.log(r.found_diameter_px / d_train)))

        best = closest()
        if best.found_diameter_px / best.scale < d_train / accept:
            # objects smaller than the training size: one enlarged pass (at most 4x)
            estimate = max(best.found_diameter_px / best.scale, finest)
            p = self._pass(image_norm, self.scale_for(estimate), exclude)
            if p.n_objects and np.isfinite(p.found_diameter_px):
                results.append(p)
            best = closest()
        # The search looks no finer than a 4x enlargement: smaller "objects" found
        # there are texture, not a size it can vouch for (and an estimate of a few
        # pixels would make the labelling pass enlarge the image up to 8x per side).
        estimate = max(float(best.found_diameter_px / best.scale), finest)
        kept = best if abs(math.log(best.found_diameter_px / self.label_diameter_px)) <= math.log(reuse) else None
        return estimate, kept

    def estimate_diameter_px(
        self, image_norm: np.ndarray, *, exclude: np.ndarray | None = None, method: str | None = None
    ) -> float:
        """Estimate the median object diameter (px) of a normalised image.

        ``method="search"`` (default; the model's ``inference.diameter_method``):
        :meth:`search_diameter`, coarse to fine.

        ``method="multiscale"``: the network is run at the scales that
        would suit objects of ``train_diameter_px x 2**k`` pixels (k = 0..5,
        those not larger than the image) and at the scale suggested by the
        classical segmentation
        (:func:`micrometry.segment.classical.segment_classical`) when that
        shrinks the image.  At the
        right scale the objects the network finds are about
        ``train_diameter_px`` across on its own grid; the candidate whose
        found median diameter is closest to it (in log ratio) wins -- among
        candidates within a factor 1.3 of the best, the one with the largest
        objects, since a network shown objects far larger than it was trained
        on tends to cut them into training-sized pieces.  The estimate is the
        found median diameter divided by that candidate's scale.  When that
        estimate is below the training size (by more than 1.3 x), one more
        pass enlarges the image to it (at most 4 x) and the choice is made
        again.  The shrinking passes cost about 1.4 network passes at native
        size in all; the enlarging one, only run for small objects, up to 16.

        ``method="refine"``: start from the classical guess, run the network
        at the scale it implies and take the median diameter found; repeat
        once when that differs from the guess by more than 1.3 x.

        Returns
        -------
        float
            Estimated median diameter in pixels of the input image (the
            training diameter when nothing is found).
        """
        method = self._diameter_method(method)
        if method == "search":
            return self.search_diameter(image_norm, exclude=exclude)[0]
        d_train = self.train_diameter_px
        guess = self._classical_guess(image_norm, exclude)
        if not np.isfinite(guess) or guess <= 0:
            guess = d_train
        if method == "refine":
            estimate = guess
            for _ in range(2):
                scale = self.scale_for(estimate)
                found, _n = self._found_at(image_norm, scale, exclude)
                if not np.isfinite(found):
                    break
                previous, estimate = estimate, found / scale
                if max(estimate / previous, previous / estimate) <= _DIAMETER_REFINE_FACTOR:
                    break
            return float(estimate)
        candidates = {d_train * 2.0**k for k in range(6) if d_train * 2.0**k <= max(image_norm.shape)}
        candidates.add(float(max(guess, d_train)))  # shrinking candidates only: cheap
        results = []

        def run(d: float) -> None:
            scale = self.scale_for(d)
            found, n = self._found_at(image_norm, scale, exclude)
            if n and np.isfinite(found):
                results.append((abs(math.log(found / d_train)), d, found / scale))

        def pick() -> float:
            if not results:
                return float(guess)
            best = min(r[0] for r in results)
            close = [r for r in results if r[0] <= best + math.log(_DIAMETER_REFINE_FACTOR)]
            return float(max(close, key=lambda r: r[1])[2])

        for d in sorted(candidates):
            run(d)
        estimate = pick()
        # objects smaller than the training size: one enlarged pass (at most 4x)
        if estimate < d_train / _DIAMETER_REFINE_FACTOR:
            run(max(estimate, d_train / 4.0))
            estimate = pick()
        return estimate

    def segment(
        self,
        image: np.ndarray,
        *,
        exclude: np.ndarray | None = None,
        diameter_px: float | None = None,
        fg_threshold: float | None = None,
        min_area_px: int | None = None,
        flow_error_max: float | None = None,
        return_prediction: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Segment particles in a micrograph.

        normalise (:func:`normalize_image`) -> object size (`diameter_px` or
        :meth:`estimate_diameter_px`) -> :meth:`labels_at_scale` at
        ``label_diameter_px / diameter_px``.  With the default ``search``
        size estimate, the pass the search settled on is reused when its
        objects are within ``inference.reuse_factor`` of
        :attr:`label_diameter_px` (the labels are then those of scale
        ``kept.scale``, not exactly ``label_diameter_px / diameter_px``).

        Parameters
        ----------
        image : (Y, X) ndarray, any real dtype
            Grey-level micrograph.  Not modified.
        exclude : (Y, X) bool ndarray, optional
            Pixels that are not specimen (scale bar, data bar, outside a ROI):
            ignored by the normalisation, never labelled.
        diameter_px : float, optional
            Median object diameter in pixels of `image`; estimated when None.
        fg_threshold, min_area_px, flow_error_max : optional
            Override the model's ``inference`` settings; ``min_area_px`` is in
            pixels of `image`; ``flow_error_max=0`` turns the flow-error QC off.
        return_prediction : bool
            Also return the (4, Y, X) prediction on the image grid.

        Returns
        -------
        labels : (Y, X) ndarray of uint32
            0 = background, objects ``1..N``.
        prediction : (4, Y, X) float32 ndarray
            Only with ``return_prediction=True``.
        """
        if exclude is not None:
            exclude = np.asarray(exclude, dtype=bool)
        norm = normalize_image(image, percentiles=self.percentiles, exclude=exclude)
        kept = None
        if diameter_px is None:
            if self._diameter_method() == "search":  # keep its last pass for the labels
                diameter_px, kept = self.search_diameter(norm, exclude=exclude)
            else:
                diameter_px = self.estimate_diameter_px(norm, exclude=exclude)
        scale = kept.scale if kept is not None else self.scale_for(diameter_px, target_px=self.label_diameter_px)
        labels, pred = self.labels_at_scale(
            norm, scale, exclude=exclude, fg_threshold=fg_threshold, min_area_px=min_area_px,
            flow_error_max=flow_error_max, cached=kept,
        )
        return (labels, pred) if return_prediction else labels


def _scaled_shape(shape: tuple[int, ...], scale: float) -> tuple[int, int]:
    return (max(1, int(round(shape[0] * scale))), max(1, int(round(shape[1] * scale))))


def upsample_labels(labels_small: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """Bring labels from a coarse grid to a fine one, inside a fine foreground mask.

    Each fine pixel takes the label of the coarse pixel it falls in (nearest
    neighbour); foreground pixels left unlabelled (the fine outline reaches
    past the coarse one) take the nearest label within one coarse pixel
    (:func:`skimage.segmentation.expand_labels`); pixels outside the
    foreground are 0.

    Parameters
    ----------
    labels_small : (y, x) integer ndarray
    foreground : (Y, X) bool ndarray
        With ``Y >= y`` and ``X >= x``.

    Returns
    -------
    (Y, X) uint32 ndarray
        Ids as in `labels_small` (not relabelled).
    """
    from skimage.segmentation import expand_labels

    fg = np.asarray(foreground, dtype=bool)
    lab = resize_image(np.asarray(labels_small).astype(LABEL_DTYPE, copy=False), fg.shape, order=0)
    reach = max(fg.shape[0] / labels_small.shape[0], fg.shape[1] / labels_small.shape[1])
    if (fg & (lab == 0)).any():
        lab = expand_labels(lab, distance=float(math.ceil(reach)))
    lab = np.where(fg, lab, 0).astype(LABEL_DTYPE)
    return lab


# --------------------------------------------------------------------------- files


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_sha256(model_dir: str | os.PathLike) -> str:
    """SHA-256 (hex) of a model directory's weights file."""
    path = Path(model_dir) / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no weights file ({WEIGHTS_NAME}) in model directory {model_dir}")
    return _sha256_file(path)


def read_model_config(model_dir: str | os.PathLike) -> dict:
    """Read and check a model directory's ``config.json`` (no torch needed).

    Raises
    ------
    FileNotFoundError
        The directory or its config file does not exist (the message says
        where models come from).
    ValueError
        The file is not valid JSON or not a micrometry flow model config.
    """
    model_dir = Path(model_dir)
    path = model_dir / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: model config not found. A flow model is a directory with {CONFIG_NAME} and "
            f"{WEIGHTS_NAME} (shipped ones live in models/, e.g. models/flow-light); "
            "train one with `micrometry train` or point segment.model at an existing one."
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(config, dict) or config.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path}: not a micrometry flow model config (expected format {MODEL_FORMAT!r})")
    if int(config.get("format_version", 0)) > MODEL_FORMAT_VERSION:
        raise ValueError(
            f"{path}: model format version {config.get('format_version')} is newer than this "
            f"micrometry supports ({MODEL_FORMAT_VERSION}); upgrade micrometry"
        )
    for key in ("architecture", "train_diameter_px"):
        if key not in config:
            raise ValueError(f"{path}: missing required entry {key!r}")
    return config


def _build(architecture: dict) -> Any:
    from micrometry.segment.network import build_network

    arch = dict(architecture)
    backbone = arch.pop("backbone", "light")
    arch.pop("in_channels", None)
    arch.pop("out_channels", None)
    return build_network(backbone, **arch)


def _check_state(state: dict, expected: dict, where: str) -> None:
    """Raise ValueError naming `where` and the first tensor that does not fit."""
    for name, ref in expected.items():
        if name not in state:
            raise ValueError(f"{where}: tensor {name!r} missing (expected shape {tuple(ref.shape)})")
        got = state[name]
        if tuple(got.shape) != tuple(ref.shape):
            raise ValueError(
                f"{where}: tensor {name!r} has shape {tuple(got.shape)}, the architecture expects {tuple(ref.shape)}"
            )
        if got.dtype != ref.dtype:
            raise ValueError(f"{where}: tensor {name!r} has dtype {got.dtype}, expected {ref.dtype}")
    for name in state:
        if name not in expected:
            raise ValueError(f"{where}: unexpected tensor {name!r} not in the architecture")


def save_model(model: Any, config: dict, out_dir: str | os.PathLike) -> Path:
    """Write a model directory: ``weights.safetensors`` and ``config.json``.

    Parameters
    ----------
    model : FlowModel or torch.nn.Module
        The network to save.
    config : dict
        Model configuration; must hold ``architecture`` (which must rebuild a
        network whose tensors match `model`'s) and ``train_diameter_px``.
        JSON-serialisable.  ``format``, ``format_version``, ``weights_sha256``
        and ``n_parameters`` are filled in.
    out_dir : path
        Model directory (created).  Each file is written atomically, weights
        first; other files in the directory (model card, logs) are kept.

    Returns
    -------
    pathlib.Path
        `out_dir`.
    """
    from safetensors.torch import save_file

    net = model.net if isinstance(model, FlowModel) else model
    for key in ("architecture", "train_diameter_px"):
        if key not in config:
            raise ValueError(f"model config lacks required entry {key!r}")
    out_dir = Path(out_dir)
    state = {k: v.detach().to("cpu", copy=True).contiguous().float() if v.is_floating_point() else v.detach().cpu().contiguous()
             for k, v in net.state_dict().items()}
    _check_state(state, _build(config["architecture"]).state_dict(), f"model to save in {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": MODEL_FORMAT})
        os.chmod(tmp, 0o644)
    full = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        **{k: v for k, v in config.items() if k not in ("format", "format_version")},
        "weights_sha256": model_sha256(out_dir),
        "n_parameters": int(sum(int(v.numel()) for k, v in state.items() if "running" not in k and "num_batches" not in k)),
    }
    full.setdefault("normalization", {"method": "percentile", "percentiles": list(DEFAULT_PERCENTILES)})
    full.setdefault("inference", dict(_DEFAULT_INFERENCE))
    write_json(out_dir / CONFIG_NAME, full)
    return out_dir


def load_model(model_dir: str | os.PathLike, device: Any = "cpu") -> FlowModel:
    """Load a model directory written by :func:`save_model`.

    The architecture is rebuilt from ``config.json``; the weights are read
    with :func:`safetensors.torch.load_file` (never pickle), their checksum is
    compared with the config's ``weights_sha256``, and every tensor's name and
    shape is checked before ``load_state_dict(strict=True)``.

    Parameters
    ----------
    model_dir : path
        The model directory.
    device : str or torch.device
        Where the network runs ("cpu", "cuda", ...).

    Returns
    -------
    FlowModel
        In eval mode.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing files, invalid config, corrupted weights, or a tensor that does
        not match the architecture; the message names the file and the tensor.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    config = read_model_config(model_dir)
    weights = model_dir / WEIGHTS_NAME
    sha = model_sha256(model_dir)
    if config.get("weights_sha256") and config["weights_sha256"] != sha:
        raise ValueError(
            f"{weights}: checksum {sha[:12]}... does not match config.json's weights_sha256 "
            f"{str(config['weights_sha256'])[:12]}... (corrupted or replaced weights file)"
        )
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{weights}: not a readable safetensors file ({exc})") from exc
    try:
        net = _build(config["architecture"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{model_dir / CONFIG_NAME}: invalid architecture ({exc})") from exc
    _check_state(state, net.state_dict(), str(weights))
    net.load_state_dict(state, strict=True)
    return FlowModel(net, config, device=device)
