"""Dataset-wide tables: all objects, and one summary row per image.

The per-image stages leave, for every sample, an objects Parquet file, a
calibration JSON, a segment summary JSON and, when a stage failed, an error
JSON.  :func:`aggregate_dataset` joins them into two Arrow tables and
:func:`write_dataset` writes them as Parquet.

Size statistics conventions (used by every ``eqd_*`` column of the images
table):

* Only objects that do **not** touch the image border (``touches_border`` is
  false) enter the size statistics: a border-touching object is cut off, so its
  size is biased low.  ``n_objects`` still counts every object.
* ``area_fraction`` is the summed ``area_px`` of *all* objects (border-touching
  ones included: their visible area does cover the image) divided by the
  number of analysed (non-excluded) pixels from the segment summary.
* D10 / D50 / D90 are number-weighted percentiles of the equivalent diameter,
  computed with :func:`numpy.percentile` and ``method="linear"`` (NumPy's
  default, Hyndman & Fan type 7).  ``eqd_median_*`` equals ``eqd_d50_*``.
* ``eqd_std_*`` is the sample standard deviation (``ddof=1``); it is null when
  fewer than two objects qualify.
* ``_nm`` statistics use only finite ``equivalent_diameter_nm`` values, so they
  are null for an uncalibrated image; ``_px`` statistics are present whenever a
  qualifying object exists.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from micrometry._atomic import atomic_path

__all__ = [
    "IMAGES_COLUMNS",
    "IMAGES_SCHEMA",
    "PERCENTILE_METHOD",
    "aggregate_dataset",
    "diameter_statistics",
    "write_dataset",
]

PathLike = str | os.PathLike

#: Method passed to :func:`numpy.percentile` for D10/D50/D90.
PERCENTILE_METHOD = "linear"

_STATS = ("mean", "median", "std", "d10", "d50", "d90")

#: The images table, declared once: name -> (arrow type, unit, description).
IMAGES_COLUMNS: dict[str, tuple[pa.DataType, str, str]] = {
    "sample": (pa.string(), "", "sample id: input path relative to input_dir, without extension "
               "(a file refused at discovery: its relative path, extension included)"),
    "status": (pa.string(), "", '"ok" or "error"'),
    "reason": (pa.string(), "", "why the sample failed (null when ok)"),
    "stage_failed": (pa.string(), "", "stage that failed (null when ok)"),
    "n_objects": (pa.int64(), "count", "objects in the objects table, border-touching included"),
    "n_objects_not_touching_border": (pa.int64(), "count", "objects used for size statistics"),
    "calibration_source": (pa.string(), "", '"override", "metadata", "scalebar" or "none"'),
    "nm_per_px": (pa.float64(), "nm/px", "pixel size (null when uncalibrated)"),
    "calibration_confidence": (pa.float64(), "", "calibration confidence in [0, 1]"),
    **{
        f"eqd_{s}_nm": (pa.float64(), "nm", f"{s} of equivalent diameter, objects not touching the border")
        for s in _STATS
    },
    **{
        f"eqd_{s}_px": (pa.float64(), "px", f"{s} of equivalent diameter, objects not touching the border")
        for s in _STATS
    },
    "area_fraction": (pa.float64(), "1", "summed object area / analysed (non-excluded) area"),
    "analysed_px": (pa.int64(), "px", "pixels analysed (not excluded) by segmentation"),
    "image_height_px": (pa.int64(), "px", "image height Y"),
    "image_width_px": (pa.int64(), "px", "image width X"),
    "segment_method": (pa.string(), "", '"flow" or "classical" (null when segmentation did not run)'),
    "input_sha256": (pa.string(), "", "SHA-256 of the input file as ingested"),
    "model_sha256": (pa.string(), "", "SHA-256 of the flow model's weights (null for classical)"),
}

#: Arrow schema of the images table (every column nullable except ``sample`` and ``status``).
IMAGES_SCHEMA = pa.schema(
    [
        pa.field(
            name,
            dtype,
            nullable=name not in ("sample", "status"),
            metadata={b"unit": unit.encode(), b"description": desc.encode()},
        )
        for name, (dtype, unit, desc) in IMAGES_COLUMNS.items()
    ]
)

_FALLBACK_OBJECTS_SCHEMA = pa.schema([pa.field("sample", pa.string()), pa.field("label", pa.uint32())])


def _read_json(path: PathLike, what: str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} file does not exist")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read {what} JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: {what} JSON must hold an object, got {type(obj).__name__}")
    return obj


def _read_objects(path: PathLike, sample: str) -> tuple[pa.Table, dict[str, Any] | None]:
    """The objects table with a ``sample`` column and no file metadata, and its provenance record."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: objects table for sample {sample!r} does not exist and no error file explains why"
        )
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(f"{path}: cannot read objects Parquet ({exc})") from exc
    for col in ("equivalent_diameter_px", "equivalent_diameter_nm", "area_px", "touches_border"):
        if col not in table.column_names:
            raise ValueError(f"{path}: objects table has no column {col!r}")
    # Per-file metadata (stage parameters of one image) does not describe the
    # concatenation; the dataset writer sets its own (with the distinct provenance records).
    meta = (table.schema.metadata or {}).get(b"micrometry")
    try:
        provenance = json.loads(meta).get("provenance") if meta else None
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: file metadata 'micrometry' is not a JSON object ({exc})") from exc
    table = table.replace_schema_metadata(None)
    sample_col = pa.array([sample] * table.num_rows, type=pa.string())
    if "sample" in table.column_names:
        i = table.column_names.index("sample")
        table = table.set_column(i, table.schema.field(i).with_type(pa.string()), sample_col)
    else:
        table = table.add_column(0, pa.field("sample", pa.string()), sample_col)
    return table, provenance


def diameter_statistics(diameters: np.ndarray) -> dict[str, float | None]:
    """Summary statistics of a set of equivalent diameters.

    Parameters
    ----------
    diameters : (N,) ndarray of float
        Equivalent diameters in one unit (nm or px).  Non-finite values are
        ignored.

    Returns
    -------
    stats : dict
        Keys ``mean``, ``median``, ``std`` (``ddof=1``), ``d10``, ``d50``,
        ``d90`` (:func:`numpy.percentile`, ``method="linear"``), in the unit of
        the input.  Every value is ``None`` when no finite value is given;
        ``std`` is ``None`` with fewer than two.

    Examples
    --------
    >>> s = diameter_statistics(np.arange(10.0, 101.0, 10.0))
    >>> s["d50"], s["d10"], s["d90"]
    (55.0, 19.0, 91.0)
    """
    d = np.asarray(diameters, dtype=np.float64).ravel()
    d = d[np.isfinite(d)]
    if d.size == 0:
        return dict.fromkeys(_STATS)
    d10, d50, d90 = np.percentile(d, [10, 50, 90], method=PERCENTILE_METHOD)
    return {
        "mean": float(d.mean()),
        "median": float(np.median(d)),
        "std": float(d.std(ddof=1)) if d.size >= 2 else None,
        "d10": float(d10),
        "d50": float(d50),
        "d90": float(d90),
    }


def _column_float(table: pa.Table, name: str) -> np.ndarray:
    return pc.fill_null(table.column(name).cast(pa.float64()), np.nan).to_numpy()


def _image_row_ok(
    sample: str,
    objects: pa.Table,
    calibration: dict[str, Any],
    segment: dict[str, Any],
    *,
    calibration_path: PathLike,
    segment_path: PathLike,
) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(IMAGES_COLUMNS)
    row.update(sample=sample, status="ok")
    row.update(_calibration_fields(calibration, calibration_path))
    row.update(_segment_fields(segment, segment_path, required=True))

    touches = pc.fill_null(objects.column("touches_border").cast(pa.bool_()), True).to_numpy(zero_copy_only=False)
    inner = ~touches.astype(bool)
    row["n_objects"] = objects.num_rows
    row["n_objects_not_touching_border"] = int(inner.sum())
    for unit in ("nm", "px"):
        stats = diameter_statistics(_column_float(objects, f"equivalent_diameter_{unit}")[inner])
        row.update({f"eqd_{k}_{unit}": v for k, v in stats.items()})

    analysed_px = row["analysed_px"]
    if analysed_px is not None and analysed_px > 0:
        area_px = _column_float(objects, "area_px")
        row["area_fraction"] = float(np.nansum(area_px)) / analysed_px
    return row


def _image_row_error(
    sample: str,
    error: dict[str, Any],
    calibration: dict[str, Any] | None,
    segment: dict[str, Any] | None,
    *,
    calibration_path: PathLike | None,
    segment_path: PathLike | None,
) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(IMAGES_COLUMNS)
    row.update(sample=sample, status="error")
    row["reason"] = str(error.get("reason", "")) or "unknown (error file gives no reason)"
    row["stage_failed"] = None if error.get("stage") is None else str(error["stage"])
    if calibration is not None:
        row.update(_calibration_fields(calibration, calibration_path))
    if segment is not None:
        row.update(_segment_fields(segment, segment_path, required=False))
    return row


def _calibration_fields(cal: dict[str, Any], path: PathLike | None) -> dict[str, Any]:
    nm, conf = cal.get("nm_per_px"), cal.get("confidence")
    try:
        nm = None if nm is None else float(nm)
        conf = None if conf is None else float(conf)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: nm_per_px and confidence must be numbers or null ({exc})") from exc
    if nm is not None and not (np.isfinite(nm) and nm > 0):
        raise ValueError(f"{path}: nm_per_px must be a positive finite number or null, got {nm!r}")
    return {
        "calibration_source": None if cal.get("source") is None else str(cal["source"]),
        "nm_per_px": nm,
        "calibration_confidence": conf,
    }


def _segment_fields(seg: dict[str, Any], path: PathLike | None, *, required: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    shape = seg.get("image_shape")
    if shape is not None:
        if not (isinstance(shape, (list, tuple)) and len(shape) == 2):
            raise ValueError(f"{path}: image_shape must be [Y, X], got {shape!r}")
        out["image_height_px"], out["image_width_px"] = int(shape[0]), int(shape[1])
    elif required:
        raise ValueError(f"{path}: segment summary has no 'image_shape'")
    analysed = seg.get("analysed_px")
    if analysed is not None:
        if int(analysed) < 0:
            raise ValueError(f"{path}: analysed_px must be >= 0, got {analysed!r}")
        out["analysed_px"] = int(analysed)
    elif required:
        raise ValueError(f"{path}: segment summary has no 'analysed_px'")
    prov = seg.get("provenance") or {}
    out["segment_method"] = seg.get("method")
    out["input_sha256"] = prov.get("input_sha256")
    out["model_sha256"] = prov.get("model_sha256")
    return out


def _optional_json(paths: Mapping[str, PathLike] | None, sample: str, what: str) -> dict[str, Any] | None:
    if paths is None or sample not in paths or not Path(paths[sample]).is_file():
        return None
    return _read_json(paths[sample], what)


def aggregate_dataset(
    samples: Sequence[str],
    *,
    objects_paths: Mapping[str, PathLike],
    calibration_paths: Mapping[str, PathLike],
    segment_paths: Mapping[str, PathLike],
    error_paths: Mapping[str, PathLike] | None = None,
    objects_schema: pa.Schema | None = None,
    refused: Mapping[str, str] | None = None,
) -> tuple[pa.Table, pa.Table, dict[str, list[dict[str, Any]]]]:
    """Join the per-image outputs of a dataset into two tables.

    Parameters
    ----------
    samples : sequence of str
        Sample ids, in the order wanted for the images table.  Every sample
        gets one row, failed ones included.
    objects_paths, calibration_paths, segment_paths : mapping str -> path
        Per-sample ``objects/{sample}.parquet``, ``calibration/{sample}.json``
        and ``segment/{sample}.json``.
    error_paths : mapping str -> path, optional
        Per-sample ``errors/{sample}.json``.  A listed path that does not
        exist means the sample did not fail.  When the error file exists the
        sample is reported with status ``"error"`` and its objects file (if
        any, e.g. left from an earlier run) is ignored.
    objects_schema : pyarrow.Schema, optional
        Schema of the objects table to return when no sample has objects
        (every sample failed).  Defaults to ``sample`` and ``label`` only.
    refused : mapping str -> str, optional
        Input files that could not become a sample (``{relative path:
        reason}``, :func:`micrometry.samples.discover_inputs`): each gets a
        row after the samples', ``sample`` = its relative path (extension
        included), status ``"error"``, ``stage_failed`` ``"discover"``.

    Returns
    -------
    objects : pyarrow.Table
        All per-image object tables concatenated in ``samples`` order; the
        column ``sample`` (string) holds the sample id.  Columns missing in
        some files are null-filled; the per-file metadata is dropped.
    images : pyarrow.Table
        One row per sample with schema :data:`IMAGES_SCHEMA`; see the module
        docstring for how each statistic is computed.
    upstream : dict
        ``{"segment": [...], "measure": [...]}``: the distinct provenance
        records (stage, version, parameters, model SHA-256; not the per-image
        input SHA-256) of the segment summaries and objects tables read, in
        first-seen order -- what produced the rows, for the tables' metadata.

    Raises
    ------
    FileNotFoundError
        A sample has no error file and one of its objects, calibration or
        segment files is missing.
    ValueError
        A file cannot be read, lacks a required column/key, or a sample is
        listed twice.
    """
    samples = list(samples)
    dupes = sorted({s for s in samples if samples.count(s) > 1})
    if dupes:
        raise ValueError(f"samples listed more than once: {dupes}")

    tables: list[pa.Table] = []
    rows: list[dict[str, Any]] = []
    upstream: dict[str, dict[str, dict[str, Any]]] = {"segment": {}, "measure": {}}

    def note(stage: str, prov: Any) -> None:
        if isinstance(prov, dict) and prov:
            prov = {k: v for k, v in prov.items() if k != "input_sha256"}
            upstream[stage].setdefault(json.dumps(prov, sort_keys=True), prov)

    for sample in samples:
        error = _optional_json(error_paths, sample, "error")
        if error is not None:
            segment = _optional_json(segment_paths, sample, "segment summary")
            if segment is not None:
                note("segment", segment.get("provenance"))
            rows.append(
                _image_row_error(
                    sample,
                    error,
                    _optional_json(calibration_paths, sample, "calibration"),
                    segment,
                    calibration_path=calibration_paths.get(sample),
                    segment_path=segment_paths.get(sample),
                )
            )
            continue
        for name, mapping in (("objects", objects_paths), ("calibration", calibration_paths),
                              ("segment summary", segment_paths)):
            if sample not in mapping:
                raise ValueError(f"sample {sample!r}: no {name} path given")
        objects, measure_provenance = _read_objects(objects_paths[sample], sample)
        calibration = _read_json(calibration_paths[sample], "calibration")
        segment = _read_json(segment_paths[sample], "segment summary")
        note("segment", segment.get("provenance"))
        note("measure", measure_provenance)
        rows.append(
            _image_row_ok(
                sample,
                objects,
                calibration,
                segment,
                calibration_path=calibration_paths[sample],
                segment_path=segment_paths[sample],
            )
        )
        tables.append(objects)

    if tables:
        objects_all = pa.concat_tables(tables, promote_options="permissive")
    else:
        schema = (objects_schema or _FALLBACK_OBJECTS_SCHEMA).remove_metadata()
        objects_all = schema.empty_table()
    for path, reason in (refused or {}).items():
        row = dict.fromkeys(IMAGES_COLUMNS)
        row.update(sample=str(path), status="error", reason=str(reason), stage_failed="discover")
        rows.append(row)
    images = pa.Table.from_pylist(rows, schema=IMAGES_SCHEMA)
    return objects_all, images, {stage: list(records.values()) for stage, records in upstream.items()}


def write_dataset(
    objects: pa.Table, images: pa.Table, out_dir: PathLike, *, metadata: Mapping[str, Any]
) -> dict[str, Path]:
    """Write the dataset tables as zstd-compressed Parquet, atomically.

    Parameters
    ----------
    objects, images : pyarrow.Table
        As returned by :func:`aggregate_dataset`.
    out_dir : path
        Directory receiving ``objects.parquet`` and ``images.parquet``
        (created if needed).
    metadata : mapping
        JSON-serialisable provenance (stage parameters, versions, ...).  It is
        stored, with ``"table"`` and ``"micrometry_version"`` added, under the
        file key-value metadata key ``b"micrometry"`` of both files.

    Returns
    -------
    paths : dict
        ``{"objects": Path, "images": Path}``.
    """
    from micrometry import __version__

    if not isinstance(objects, pa.Table) or not isinstance(images, pa.Table):
        raise TypeError("objects and images must be pyarrow.Table")
    out_dir = Path(out_dir)
    paths = {"objects": out_dir / "objects.parquet", "images": out_dir / "images.parquet"}
    for name, table in (("objects", objects), ("images", images)):
        meta = {"micrometry_version": __version__, **dict(metadata), "table": name}
        try:
            meta_json = json.dumps(meta, allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{paths[name]}: metadata is not JSON-serialisable ({exc})") from exc
        table = table.replace_schema_metadata({b"micrometry": meta_json.encode("utf-8")})
        with atomic_path(paths[name]) as tmp:
            pq.write_table(table, tmp, compression="zstd")
    return paths
