"""OME-Zarr (NGFF) stores: one per micrograph, holding image, labels, predictions.

Layout of ``{sample}.ome.zarr`` (written with the ``ome-zarr`` package, NGFF
0.5 on Zarr v3 with the installed versions)::

    zarr.json                 attrs: "ome" (multiscales, axes y/x), "micrometry"
    s0, s1, ...               image pyramid, factor 2, chunks <= chunk_px
    labels/zarr.json          attrs: "ome": {"labels": ["instances", ...]}
    labels/instances/s0, ...  uint32 instance labels, nearest downsampling,
                              same level shapes as the image; "image-label"
    predictions/{name}        float16 (C, Y, X) or (Y, X), chunks ~1024^2

Pyramid rule: level ``i`` is the image downsampled by ``2**i``; levels are
added while the largest side of the last level is above 1024 px, so an image
of at most 1024 px per side has one level and 2500 x 1300 has three
(2500, 1250, 625 rows).

Every write is atomic: the image store is built in a temporary directory next
to its target and renamed (:func:`micrometry._atomic.atomic_dir`); a labels or
predictions node is built as ``.{name}.tmp-*`` inside its group and renamed
over the old node, leaving the image arrays untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from micrometry._atomic import atomic_dir

__all__ = [
    "MAX_LEVEL_SIDE_PX",
    "LABEL_DTYPE",
    "PREDICTION_DTYPE",
    "pyramid_shapes",
    "write_image_store",
    "open_image",
    "load_image",
    "read_attrs",
    "write_labels",
    "load_labels",
    "write_prediction",
    "load_prediction",
]

#: The smallest pyramid level has no side longer than this.
MAX_LEVEL_SIDE_PX = 1024
LABEL_DTYPE = np.dtype(np.uint32)
PREDICTION_DTYPE = np.dtype(np.float16)
_ATTRS_KEY = "micrometry"
_AXES = "yx"


def pyramid_shapes(shape: tuple[int, int], max_side_px: int = MAX_LEVEL_SIDE_PX) -> list[tuple[int, int]]:
    """Shapes of the pyramid levels written for an image of `shape`.

    Parameters
    ----------
    shape : (int, int)
        (Y, X) size of level 0.
    max_side_px : int, optional
        Levels are added while the largest side of the last one exceeds it.

    Returns
    -------
    shapes : list of (int, int)
        Level 0 first; level ``i`` is ``floor(shape / 2**i)`` (ome-zarr's
        rounding for factor-2 resizing).

    Examples
    --------
    >>> pyramid_shapes((2500, 1300))
    [(2500, 1300), (1250, 650), (625, 325)]
    >>> pyramid_shapes((1024, 700))
    [(1024, 700)]
    """
    y, x = (int(s) for s in shape)
    shapes = [(y, x)]
    factor = 1
    while max(shapes[-1]) > max_side_px:
        factor *= 2
        shapes.append((max(1, y // factor), max(1, x // factor)))
    return shapes


def _ome_writer():
    """Import ``ome_zarr.writer`` (its import emits a DeprecationWarning
    about its own default ``Scaler`` argument, which we do not use)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr import writer
    return writer


def _scale_factors(n_levels: int) -> list[int]:
    return [2**i for i in range(1, n_levels)]


def _chunks(shape: tuple[int, ...], chunk_px: int) -> tuple[int, ...]:
    return tuple(max(1, min(int(s), int(chunk_px))) for s in shape)


def _plain(obj: Any) -> Any:
    """Deep-convert to JSON types (numpy scalars/arrays, tuples, paths)."""
    import json

    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, (Path, os.PathLike)):
            return os.fspath(o)
        if isinstance(o, (set, frozenset)):
            return sorted(o)
        raise TypeError(f"attribute value of type {type(o).__name__} is not JSON-serialisable")

    def clean(o):
        if isinstance(o, float) and not np.isfinite(o):
            return None
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, list):
            return [clean(v) for v in o]
        return o

    return clean(json.loads(json.dumps(obj, default=default)))


def _check_nm_per_px(nm_per_px: float | None) -> float | None:
    if nm_per_px is None:
        return None
    value = float(nm_per_px)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"nm_per_px must be a positive finite number, got {nm_per_px!r}")
    return value


def _scale_kwargs(nm_per_px: float | None) -> dict:
    if nm_per_px is None:
        return {}
    return {"scale": {"y": nm_per_px, "x": nm_per_px}, "axes_units": {"y": "nanometer", "x": "nanometer"}}


def write_image_store(
    store_path: str | os.PathLike,
    image: np.ndarray,
    *,
    attrs: dict,
    nm_per_px: float | None = None,
    chunk_px: int = 1024,
) -> None:
    """Write a grey image as a multiscale OME-Zarr store, replacing any old one.

    Parameters
    ----------
    store_path : str or path-like
        Target directory, e.g. ``results/images/plate1/img_001.ome.zarr``.
    image : (Y, X) ndarray
        Grey image in its original dtype (kept exactly at level 0).
    attrs : dict
        JSON-serialisable provenance stored under the root attribute
        ``"micrometry"`` (source path, sha256, shape, dtype, format,
        color_conversion, metadata; filled by the caller).
    nm_per_px : float, optional
        Pixel size; written as the NGFF ``scale`` coordinate transformation
        in nanometres (axes unit ``"nanometer"``).  Without it the scale is
        1 per pixel and the axes carry no unit.
    chunk_px : int, optional
        Chunk side in pixels (chunks are ``min(chunk_px, side)`` per axis).

    Raises
    ------
    ValueError
        If `image` is not 2-D or is empty, or `nm_per_px` is not positive.
    """
    import zarr

    write_image = _ome_writer().write_image
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"image must be a non-empty 2-D (Y, X) array, got shape {image.shape}")
    if image.dtype.kind not in "biuf":
        raise ValueError(f"image dtype {image.dtype} is not supported (expected integer or float)")
    if image.dtype == bool:
        image = image.astype(np.uint8)
    nm_per_px = _check_nm_per_px(nm_per_px)
    micrometry_attrs = _plain(attrs)
    n_levels = len(pyramid_shapes(image.shape))
    with atomic_dir(store_path) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        write_image(
            image,
            root,
            scale_factors=_scale_factors(n_levels),
            axes=_AXES,
            storage_options={"chunks": _chunks(image.shape, chunk_px)},
            **_scale_kwargs(nm_per_px),
        )
        root.attrs[_ATTRS_KEY] = micrometry_attrs


def _open_root(store_path: str | os.PathLike, mode: str = "r"):
    import zarr

    path = Path(store_path)
    if not path.exists():
        raise FileNotFoundError(f"OME-Zarr store '{path}' does not exist")
    try:
        return zarr.open_group(str(path), mode=mode)
    except Exception as exc:
        raise ValueError(f"'{path}' is not a readable Zarr group: {exc}") from exc


def _multiscale(group, where: str) -> dict:
    ome = group.attrs.get("ome")
    meta = ome if isinstance(ome, dict) else dict(group.attrs)
    multiscales = meta.get("multiscales")
    if not multiscales:
        raise ValueError(f"{where} has no NGFF 'multiscales' metadata")
    return multiscales[0]


def _level_array(group, level: int, where: str):
    ms = _multiscale(group, where)
    datasets = ms["datasets"]
    if not 0 <= level < len(datasets):
        raise ValueError(f"{where} has {len(datasets)} pyramid level(s); level {level} does not exist")
    return group[datasets[level]["path"]]


def open_image(store_path: str | os.PathLike, level: int = 0):
    """Open one pyramid level of the image lazily.

    Parameters
    ----------
    store_path : str or path-like
        Store written by :func:`write_image_store`.
    level : int, optional
        0 is full resolution.

    Returns
    -------
    image : (Y, X) dask.array.Array
        Stored dtype, chunked like the store.
    """
    import dask.array as da

    root = _open_root(store_path)
    arr = _level_array(root, level, f"OME-Zarr store '{store_path}'")
    return da.from_zarr(arr)


def load_image(store_path: str | os.PathLike, level: int = 0) -> np.ndarray:
    """Read one pyramid level of the image into memory.

    Returns
    -------
    image : (Y, X) ndarray
        Stored dtype.
    """
    root = _open_root(store_path)
    return np.asarray(_level_array(root, level, f"OME-Zarr store '{store_path}'")[...])


def read_attrs(store_path: str | os.PathLike) -> dict:
    """Return the ``"micrometry"`` root attributes written at ingest.

    Raises
    ------
    KeyError
        If the store has no ``"micrometry"`` attributes.
    """
    root = _open_root(store_path)
    if _ATTRS_KEY not in root.attrs:
        raise KeyError(f"OME-Zarr store '{store_path}' has no '{_ATTRS_KEY}' attributes")
    return dict(root.attrs[_ATTRS_KEY])


def _nearest_downsample(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resampling of (Y, X) to `shape` (pixel centres)."""
    iy = np.minimum(((np.arange(shape[0]) + 0.5) * labels.shape[0] / shape[0]).astype(np.intp), labels.shape[0] - 1)
    ix = np.minimum(((np.arange(shape[1]) + 0.5) * labels.shape[1] / shape[1]).astype(np.intp), labels.shape[1] - 1)
    return labels[np.ix_(iy, ix)]


def _align_to_image(group, image_ms: dict, nm_per_px: float | None) -> None:
    """Give a label multiscale the image's axes and per-level transformations.

    With `nm_per_px`, scales and translations are rescaled so that level 0
    has that pixel size in nanometres; without it they are the image's own.
    """
    import copy

    ome = dict(group.attrs["ome"])
    ms = ome["multiscales"][0]
    axes = copy.deepcopy(image_ms["axes"])
    ratio = 1.0
    if nm_per_px is not None:
        base = next(t["scale"] for t in image_ms["datasets"][0]["coordinateTransformations"] if t["type"] == "scale")
        ratio = nm_per_px / float(base[-1])
        for ax in axes:
            ax["unit"] = "nanometer"
    for mine, theirs in zip(ms["datasets"], image_ms["datasets"]):
        transforms = copy.deepcopy(theirs["coordinateTransformations"])
        for t in transforms:
            key = t["type"]
            if key in ("scale", "translation"):
                t[key] = [v * ratio for v in t[key]]
        mine["coordinateTransformations"] = transforms
    ms["axes"] = axes
    group.attrs["ome"] = ome


def _tmp_node(parent: Path, name: str) -> Path:
    token = next(tempfile._get_candidate_names())  # same naming as micrometry._atomic
    return parent / f".{name}.tmp-{os.getpid()}-{token}"


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace directory `final` by `tmp` (rename; old one removed after)."""
    old = None
    if final.exists():
        old = _tmp_node(final.parent, final.name + ".old")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _check_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or name.startswith(".") or name in ("..",):
        raise ValueError(f"invalid node name {name!r}: must be non-empty, without '/', not starting with '.'")


def write_labels(
    store_path: str | os.PathLike,
    labels: np.ndarray,
    *,
    name: str = "instances",
    nm_per_px: float | None = None,
    attrs: dict | None = None,
) -> None:
    """Write an instance label image into an existing store (NGFF labels).

    Parameters
    ----------
    store_path : str or path-like
        Store written by :func:`write_image_store`.
    labels : (Y, X) integer ndarray
        Instance ids, 0 = background, same shape as the image; stored as
        uint32 (a ValueError is raised for negative or too large ids).
    name : str, optional
        Label image name; listed in ``labels/`` attributes.
    nm_per_px : float, optional
        Pixel size for the coordinate transformations; default: the image's
        own transformations (so labels overlay the image exactly).
    attrs : dict, optional
        JSON-serialisable provenance stored under ``"micrometry"`` in the
        label group's attributes.

    Notes
    -----
    The pyramid has the image's level shapes, made by nearest-neighbour
    sampling so ids are never mixed.  Replacing labels of the same name is
    atomic and leaves the image arrays untouched.
    """
    import zarr

    writer = _ome_writer()
    add_metadata, get_metadata, write_multiscale = writer.add_metadata, writer.get_metadata, writer.write_multiscale
    _check_name(name)
    root = _open_root(store_path, mode="r+")
    where = f"OME-Zarr store '{store_path}'"
    labels = np.asarray(labels)
    image_shape = tuple(_level_array(root, 0, where).shape)
    if labels.shape != image_shape:
        raise ValueError(f"labels shape {labels.shape} does not match the image shape {image_shape} in {where}")
    if labels.dtype.kind not in "biu":
        raise ValueError(f"labels must be an integer array, got dtype {labels.dtype}")
    if labels.size and labels.dtype.kind == "i" and labels.min() < 0:
        raise ValueError("labels must be non-negative (0 = background)")
    if labels.size and labels.dtype.itemsize > 4 and labels.max() > np.iinfo(LABEL_DTYPE).max:
        raise ValueError("label ids exceed the uint32 range")
    labels = labels.astype(LABEL_DTYPE, copy=False)
    nm = _check_nm_per_px(nm_per_px)

    ms = _multiscale(root, where)
    shapes = [tuple(root[d["path"]].shape) for d in ms["datasets"]]
    chunk_shapes = [tuple(root[d["path"]].chunks) for d in ms["datasets"]]
    pyramid = [labels] + [_nearest_downsample(labels, s) for s in shapes[1:]]

    labels_dir = Path(store_path) / "labels"
    labels_group = zarr.open_group(str(labels_dir), mode="a")
    tmp = _tmp_node(labels_dir, name)
    try:
        group = zarr.open_group(str(tmp), mode="w")
        write_multiscale(
            pyramid,
            group,
            axes=_AXES,
            name=name,
            storage_options=[{"chunks": c} for c in chunk_shapes],
        )
        _align_to_image(group, ms, nm)
        add_metadata(group, {"image-label": {"version": get_metadata(root).get("version", "0.5"), "source": {"image": "../../"}}})
        if attrs is not None:
            group.attrs[_ATTRS_KEY] = _plain(attrs)
        _swap_in(tmp, labels_dir / name)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    listed = list(get_metadata(labels_group).get("labels", []))
    if name not in listed:
        add_metadata(labels_group, {"labels": listed + [name]})


def load_labels(store_path: str | os.PathLike, name: str = "instances") -> np.ndarray:
    """Read full-resolution labels.

    Returns
    -------
    labels : (Y, X) uint32 ndarray
    """
    root = _open_root(store_path)
    where = f"labels '{name}' of OME-Zarr store '{store_path}'"
    try:
        group = root[f"labels/{name}"]
    except KeyError:
        raise KeyError(f"OME-Zarr store '{store_path}' has no labels named '{name}'") from None
    return np.asarray(_level_array(group, 0, where)[...]).astype(LABEL_DTYPE, copy=False)


def write_prediction(
    store_path: str | os.PathLike,
    name: str,
    array: np.ndarray,
    *,
    attrs: dict | None = None,
) -> None:
    """Store a model output (probabilities, flows) under ``predictions/{name}``.

    Parameters
    ----------
    store_path : str or path-like
        Existing store.
    name : str
        Node name, e.g. ``"foreground"`` or ``"flows"``.
    array : (C, Y, X) or (Y, X) ndarray
        Values; stored as float16 (probabilities and unit flows fit its
        precision of about 3 significant digits), chunks ``(C, 1024, 1024)``.
    attrs : dict, optional
        JSON-serialisable attributes stored with the array (``"axes"`` is
        added: ``"cyx"`` or ``"yx"``).

    Notes
    -----
    Atomic: written as ``predictions/.{name}.tmp-*`` then renamed over any
    previous array of the same name; the image and labels are untouched.
    """
    import zarr

    _check_name(name)
    root = _open_root(store_path, mode="r+")
    array = np.asarray(array)
    if array.ndim not in (2, 3):
        raise ValueError(f"prediction must be (C, Y, X) or (Y, X), got shape {array.shape}")
    image_shape = tuple(_level_array(root, 0, f"OME-Zarr store '{store_path}'").shape)
    if tuple(array.shape[-2:]) != image_shape:
        raise ValueError(f"prediction spatial shape {array.shape[-2:]} does not match the image shape {image_shape}")
    chunks = ((array.shape[0],) if array.ndim == 3 else ()) + _chunks(array.shape[-2:], 1024)
    pred_dir = Path(store_path) / "predictions"
    zarr.open_group(str(pred_dir), mode="a")
    tmp = _tmp_node(pred_dir, name)
    try:
        z = zarr.create_array(store=str(tmp), shape=array.shape, dtype=PREDICTION_DTYPE, chunks=chunks)
        z[...] = array.astype(PREDICTION_DTYPE)
        meta = {"axes": "cyx" if array.ndim == 3 else "yx"}
        if attrs:
            meta.update(_plain(attrs))
        z.attrs.update(meta)
        _swap_in(tmp, pred_dir / name)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load_prediction(store_path: str | os.PathLike, name: str) -> np.ndarray:
    """Read ``predictions/{name}`` as a float16 array of its stored shape."""
    root = _open_root(store_path)
    try:
        arr = root[f"predictions/{name}"]
    except KeyError:
        raise KeyError(f"OME-Zarr store '{store_path}' has no prediction named '{name}'") from None
    return np.asarray(arr[...])
