"""Stage orchestration: what each Snakemake rule runs, through the CLI.

Each ``run_*`` function reads a stage's inputs, calls the array-level
functions of :mod:`micrometry.io`, :mod:`micrometry.calibrate`,
:mod:`micrometry.segment`, :mod:`micrometry.measure` and
:mod:`micrometry.aggregate`, and writes the stage's outputs atomically.

Bad input never stops a batch: when a file cannot be read, ingest writes a
*failed* store (attributes only, ``status: "error"`` with the reason) and
``{results}/errors/{sample}.json``; every later stage sees the status and
writes its own outputs marked as failed, so the dataset tables are still
written and list the sample with its reason.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from micrometry._atomic import atomic_dir, write_json
from micrometry.provenance import stage_provenance

__all__ = [
    "run_ingest",
    "run_calibrate",
    "run_segment",
    "run_measure",
    "run_qc",
    "run_aggregate",
    "errors_path",
]


def errors_path(results_dir: str | os.PathLike, sample: str) -> Path:
    """Where a sample's error report goes: ``{results}/errors/{sample}.json``.

    Raises
    ------
    ValueError
        If `sample` is not a safe sample name (see
        :func:`micrometry.samples.check_sample_name`) or the path would lie
        outside `results_dir`; the message names the sample.
    """
    return _sample_path(results_dir, "errors", sample, ".json")


def _sample_path(results_dir: str | os.PathLike, folder: str, sample: str, suffix: str) -> Path:
    """``{results_dir}/{folder}/{sample}{suffix}``, refusing unsafe sample names."""
    from micrometry.samples import check_sample_name, safe_result_path

    check_sample_name(sample)
    return safe_result_path(results_dir, folder, f"{sample}{suffix}")


def _record_error(error_json: str | os.PathLike | None, *, sample: str, file: str, stage: str, reason: str) -> dict:
    err = {"sample": sample, "file": str(file), "stage": stage, "reason": reason}
    if error_json is not None:
        write_json(error_json, err)
    return err


def _clear_error(error_json: str | os.PathLike | None, stage: str) -> None:
    """Remove a stale error report of `stage` (the input was fixed since)."""
    if error_json is None or not Path(error_json).exists():
        return
    try:
        old = json.loads(Path(error_json).read_text())
    except (OSError, ValueError):
        old = {}
    if old.get("stage") in (stage, None):
        Path(error_json).unlink(missing_ok=True)


# --------------------------------------------------------------------------- ingest
def run_ingest(
    image_path: str | os.PathLike,
    store_path: str | os.PathLike,
    *,
    sample: str,
    chunk_px: int = 1024,
    max_pixels: int | None = None,
    error_json: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Read one micrograph and write its OME-Zarr store.

    Parameters
    ----------
    image_path : path
        The micrograph (any format :func:`micrometry.io.readers.read_image` reads).
    store_path : path
        OME-Zarr store to write.
    sample : str
        Sample name, recorded in the attributes and the error report.
    chunk_px : int
        Chunk edge length in pixels.
    max_pixels : int, optional
        Decompression-bomb limit (Y * X pixels); None means
        :data:`~micrometry.io.readers.DEFAULT_MAX_PIXELS` (the config's
        ``ingest.max_pixels`` is always an integer >= 1).
    error_json : path, optional
        Where to write ``{file, stage, reason}`` when the file cannot be read;
        a stale ingest report there is removed when the file reads.

    Returns
    -------
    dict
        The ``micrometry`` attributes written to the store; on unreadable
        input (missing, not a regular file, unreadable, empty, not an image,
        truncated, corrupt, larger than `max_pixels`) the store holds only
        those attributes, with ``status: "error"`` and the reason in plain
        words naming the file.  Bad input never raises.
    """
    import zarr

    from micrometry.calibrate.metadata import calibration_from_metadata
    from micrometry.io.omezarr import write_image_store
    from micrometry.io.readers import DEFAULT_MAX_PIXELS, ImageReadError, read_image, sha256_file

    image_path = Path(image_path)
    params = {"chunk_px": chunk_px, "max_pixels": max_pixels if max_pixels is not None else DEFAULT_MAX_PIXELS}
    raw, sha, reason = None, None, None
    try:
        raw = read_image(image_path, max_pixels=params["max_pixels"])
        sha = sha256_file(image_path)
    except ImageReadError as exc:
        raw, reason = None, str(exc)
    except OSError as exc:  # read, then unreadable for hashing (removed, permissions changed)
        raw = None
        reason = str(ImageReadError(image_path, f"the file cannot be read ({exc.strerror or exc})"))
    if raw is None and sha is None and image_path.is_file():  # never open a named pipe
        with contextlib.suppress(OSError):  # the bytes' checksum, when there are bytes
            sha = sha256_file(image_path)
    attrs: dict[str, Any] = {
        "sample": sample,
        "source_path": str(image_path),
        "source_sha256": sha,
        "provenance": stage_provenance("ingest", params),
    }
    if raw is None:
        attrs.update(status="error", reason=reason)
        with atomic_dir(store_path) as tmp:
            zarr.open_group(str(tmp), mode="w").attrs["micrometry"] = attrs
        _record_error(error_json, sample=sample, file=str(image_path), stage="ingest", reason=reason)
        return attrs

    try:
        meta_cal = calibration_from_metadata(image_path)
    except Exception:  # metadata is optional at ingest; calibrate reports problems
        meta_cal = None
    attrs.update(
        status="ok",
        reason=None,
        format=raw.format,
        shape=list(raw.data.shape),
        dtype=str(raw.data.dtype),
        color_conversion=raw.color_conversion,
        instrument_metadata=raw.metadata,
        metadata_nm_per_px=meta_cal.nm_per_px if meta_cal else None,
    )
    write_image_store(
        store_path, raw.data, attrs=attrs, nm_per_px=meta_cal.nm_per_px if meta_cal else None, chunk_px=chunk_px
    )
    _clear_error(error_json, "ingest")
    return attrs


def _store_status(store_path: str | os.PathLike) -> dict[str, Any]:
    from micrometry.io.omezarr import read_attrs

    return read_attrs(store_path)


# --------------------------------------------------------------------------- calibrate
def run_calibrate(
    image_path: str | os.PathLike,
    out_json: str | os.PathLike,
    *,
    sample: str,
    overrides_csv: str | os.PathLike | None = None,
    scalebar: bool = False,
    detector_dir: str | os.PathLike | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Calibrate one image (override → metadata → scale bar → none) and write its JSON.

    `detector_dir` is the scale-bar detector (default ``models/scalebar-yolo``);
    its weights' SHA-256 is recorded in the provenance when `scalebar` is set.
    """
    from micrometry.calibrate.overrides import load_overrides
    from micrometry.calibrate.stage import calibrate_image, calibration_result

    overrides = load_overrides(overrides_csv) if overrides_csv else None
    options = {"detector_dir": detector_dir, "threads": threads}
    try:
        result = calibrate_image(image_path, sample=sample, overrides=overrides, scalebar=scalebar,
                                 scalebar_options=options)
        result["status"] = "ok"
    except Exception as exc:  # unreadable file: the ingest stage reports it in full
        result = calibration_result(image_path, sample, status="error", reason=f"{type(exc).__name__}: {exc}")
        if overrides and sample in overrides:  # an override needs no pixels
            result.update(nm_per_px=overrides[sample], source="override", confidence=1.0)
    params: dict[str, Any] = {"overrides_csv": str(overrides_csv) if overrides_csv else None, "scalebar": scalebar}
    if scalebar:
        from micrometry.calibrate.scalebar.detect import detector_sha256

        params["scalebar_detector_sha256"] = detector_sha256(detector_dir)
    result["provenance"] = stage_provenance("calibrate", params)
    write_json(out_json, result)
    return result


# --------------------------------------------------------------------------- segment
def run_segment(
    store_path: str | os.PathLike,
    summary_json: str | os.PathLike,
    *,
    sample: str,
    settings: dict[str, Any],
    roi_path: str | os.PathLike | None = None,
    model_dir: str | os.PathLike | None = None,
    threads: int = 1,
    mem_mb: int | None = None,
    dask_address: str | None = None,
    dask_cuda: bool = False,
) -> dict[str, Any]:
    """Segment one stored image and write ``labels/instances`` into its store.

    Parameters
    ----------
    settings : dict
        The config's ``segment`` section: ``method``, ``exclude_data_bar``,
        ``exclude_annotations`` and the method's own block (``classical``).
    roi_path : path, optional
        Mask image (nonzero = specimen); pixels outside are never labelled.
    model_dir : path, optional
        Flow model directory (``method: flow``); default ``settings["flow"]["model"]``.
    threads : int
        CPU threads for the network and tracking.
    mem_mb : int, optional
        The job's memory (MiB): sizes the in-job Dask cluster of tiled inference.
    dask_address : str, optional
        Send the tiles of large images to this Dask scheduler (config
        ``dask.address``) instead of an in-job cluster.
    dask_cuda : bool
        The in-job cluster is a dask-cuda ``LocalCUDACluster`` (config ``dask.cuda``).

    Returns
    -------
    dict
        The summary written to `summary_json`: ``status``, ``n_objects``,
        ``image_shape``, ``analysed_px``, ``excluded_px`` and provenance.
    """
    import numpy as np

    from micrometry.io.omezarr import load_image, write_labels

    attrs = _store_status(store_path)
    method = settings.get("method", "classical")
    model = None
    model_sha = None
    if method == "flow":
        from micrometry.segment.model import model_sha256

        model_dir = model_dir or settings.get("flow", {}).get("model")
        if not model_dir:
            raise ValueError("method 'flow' needs a model directory (config segment.flow.model)")
        model_sha = model_sha256(model_dir)
    prov = stage_provenance("segment", settings, input_sha256=attrs.get("source_sha256"), model_sha256=model_sha)
    summary: dict[str, Any] = {"sample": sample, "method": method}
    if attrs.get("status") != "ok":
        summary.update(status="error", reason=attrs.get("reason"), stage_failed="ingest", n_objects=0,
                       image_shape=None, analysed_px=0, excluded_px=0, provenance=prov)
        write_json(summary_json, summary)
        return summary

    from micrometry.segment.dispatch import load_flow_model_for, segment_image
    from micrometry.segment.exclusion import load_roi_mask

    image = load_image(store_path)
    roi_excluded = load_roi_mask(roi_path, image.shape) if roi_path else None
    if method == "flow":
        model = load_flow_model_for(settings, model_dir, threads=threads)
        model.use_dask(dask_address, threads=threads, mem_mb=mem_mb, cuda=dask_cuda)
    labels, excluded, prediction = segment_image(image, settings, model=model, roi_excluded=roi_excluded)
    write_labels(store_path, labels, name="instances", nm_per_px=attrs.get("metadata_nm_per_px"),
                 attrs={"provenance": prov})
    write_labels(store_path, excluded.astype(np.uint8), name="excluded", nm_per_px=attrs.get("metadata_nm_per_px"),
                 attrs={"description": "1 = not specimen (data bar, annotations, outside ROI)"})

    if prediction is not None and settings.get("flow", {}).get("save_predictions", True):
        from micrometry.io.omezarr import write_prediction

        write_prediction(store_path, "flow", prediction.astype(np.float16), attrs={
            "channels": ["foreground_probability", "flow_y", "flow_x", "distance"],
            "model_sha256": model_sha,
        })
    n_excluded = int(excluded.sum())
    summary.update(
        status="ok",
        reason=None,
        stage_failed=None,
        n_objects=int(labels.max()) if labels.size else 0,
        image_shape=list(image.shape),
        analysed_px=int(image.size - n_excluded),
        excluded_px=n_excluded,
        roi=str(roi_path) if roi_path else None,
        # what ran the network: onnxruntime | torch (same outputs to ~1e-5; not part of the
        # provenance block, which must be one for the whole dataset)
        network_runtime=model.runtime if model is not None else None,
        provenance=prov,
    )
    write_json(summary_json, summary)
    return summary


# --------------------------------------------------------------------------- measure
def _usable_nm_per_px(calibration: dict[str, Any], *, min_confidence: float, use_low_confidence: bool) -> float | None:
    nm = calibration.get("nm_per_px")
    if nm is None:
        return None
    if calibration.get("confidence", 0.0) < min_confidence and not use_low_confidence:
        return None
    return float(nm)


def run_measure(
    store_path: str | os.PathLike,
    calibration_json: str | os.PathLike,
    segment_json: str | os.PathLike,
    out_parquet: str | os.PathLike,
    *,
    sample: str,
    min_confidence: float = 0.5,
    use_low_confidence: bool = False,
) -> int:
    """Measure every object of one sample and write its Parquet table.

    A calibration below `min_confidence` is not used for physical units
    unless `use_low_confidence`.  Returns the number of rows written.
    """
    from micrometry.measure.morphology import measure_objects
    from micrometry.measure.table import objects_table, write_parquet

    calibration = json.loads(Path(calibration_json).read_text())
    segment = json.loads(Path(segment_json).read_text())
    nm_per_px = _usable_nm_per_px(calibration, min_confidence=min_confidence, use_low_confidence=use_low_confidence)
    params = {"min_confidence": min_confidence, "use_low_confidence": use_low_confidence}
    if segment.get("status") == "ok":
        from micrometry.io.omezarr import load_image, load_labels

        columns = measure_objects(load_labels(store_path, "instances"), load_image(store_path), nm_per_px=nm_per_px)
    else:  # failed sample: the full schema with no rows
        import numpy as np

        columns = measure_objects(np.zeros((1, 1), np.uint32), None, nm_per_px=nm_per_px)
    table = objects_table(columns, sample=sample)
    seg_prov = segment.get("provenance", {})
    metadata = {
        "sample": sample,
        "status": segment.get("status"),
        "reason": segment.get("reason"),
        "nm_per_px": nm_per_px,
        "calibration_source": calibration.get("source"),
        "calibration_confidence": calibration.get("confidence"),
        "input_sha256": seg_prov.get("input_sha256"),
        "model_sha256": seg_prov.get("model_sha256"),
        "segment": seg_prov,
        "provenance": stage_provenance("measure", params),
    }
    write_parquet(table, out_parquet, metadata=metadata)
    return table.num_rows


# --------------------------------------------------------------------------- qc
def run_qc(
    store_path: str | os.PathLike,
    calibration_json: str | os.PathLike,
    segment_json: str | os.PathLike,
    objects_parquet: str | os.PathLike,
    overlay_png: str | os.PathLike,
    sizes_png: str | os.PathLike,
    *,
    sample: str,
) -> None:
    """Write the outline overlay and the size-distribution plot of one sample."""
    import numpy as np
    import pyarrow.parquet as pq

    from micrometry.aggregate.plots import plot_size_distribution
    from micrometry.aggregate.qc import qc_overlay

    segment = json.loads(Path(segment_json).read_text())
    calibration = json.loads(Path(calibration_json).read_text())
    objects = pq.read_table(objects_parquet)
    if segment.get("status") == "ok":
        from micrometry.io.omezarr import load_image, load_labels

        image = load_image(store_path)
        labels = load_labels(store_path, "instances")
        excluded = load_labels(store_path, "excluded").astype(bool)
        title = sample
    else:
        image = np.zeros((64, 64), np.uint8)
        labels = np.zeros((64, 64), np.uint32)
        excluded = None
        title = f"{sample}: {segment.get('reason')}"
    qc_overlay(image, labels, overlay_png, nm_per_px=calibration.get("nm_per_px"), excluded=excluded, title=title)
    plot_size_distribution(objects, sizes_png, title=sample)


# --------------------------------------------------------------------------- aggregate
def write_dataset_inputs(
    path: str | os.PathLike,
    samples: list[str],
    refused: dict[str, str],
    *,
    log: str | os.PathLike | None = None,
) -> Path:
    """Write the dataset's sample names and refused input files (``{relative path:
    reason}``) as ``{"samples": [...], "refused": {...}}`` JSON, atomically: what
    ``micrometry aggregate --inputs`` reads.  A file, not a command line: Linux passes at
    most 128 KiB as one argument, a few thousand sample names.  `log` gets one line."""
    from micrometry._atomic import write_json

    write_json(path, {"samples": [str(s) for s in samples], "refused": {str(k): str(v) for k, v in refused.items()}})
    if log is not None:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        Path(log).write_text(f"{len(samples)} samples, {len(refused)} input files refused\n", encoding="utf-8")
    return Path(path)


def run_aggregate(
    samples: list[str],
    results_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    params: dict[str, Any] | None = None,
    refused: dict[str, str] | None = None,
) -> dict[str, Path]:
    """Build the dataset tables and plots from every sample's outputs; `refused`
    (``{relative path: reason}``, files that could not become a sample) adds error rows."""
    from micrometry.aggregate.plots import plot_dataset_summary, plot_size_distribution
    from micrometry.aggregate.tables import aggregate_dataset, write_dataset
    from micrometry.measure.schema import objects_schema

    results = Path(results_dir)
    paths = {
        "objects_paths": {s: _sample_path(results, "objects", s, ".parquet") for s in samples},
        "calibration_paths": {s: _sample_path(results, "calibration", s, ".json") for s in samples},
        "segment_paths": {s: _sample_path(results, "segment", s, ".json") for s in samples},
        "error_paths": {s: errors_path(results, s) for s in samples if errors_path(results, s).exists()},
    }
    objects, images, upstream = aggregate_dataset(samples, objects_schema=objects_schema(), refused=refused, **paths)
    out_dir = Path(out_dir)
    metadata = {
        "provenance": stage_provenance("aggregate", params),
        "n_samples": len(samples),
        # what produced the rows (per image: images.parquet's input_sha256 / model_sha256 columns)
        "upstream": upstream,
    }
    written = write_dataset(objects, images, out_dir, metadata=metadata)
    plot_size_distribution(objects, out_dir / "size_distribution.png", title="All images")
    plot_size_distribution(objects, out_dir / "size_distribution_by_image.png", by_sample=True, title="By image")
    plot_dataset_summary(images, out_dir / "summary.png")
    return written
