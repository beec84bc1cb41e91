"""The objects table: columns to Arrow, Arrow to Parquet, and back.

:func:`objects_table` enforces the registry in :mod:`micrometry.measure.schema`
(every column present, nothing extra, declared types, no nulls where none are
allowed); :func:`write_parquet` writes any table atomically with zstd
compression and the provenance JSON under the file key ``b"micrometry"``;
:func:`read_metadata` reads that JSON back.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .._atomic import atomic_path
from .schema import OBJECT_COLUMNS, SCHEMA_VERSION, objects_schema

__all__ = ["objects_table", "write_parquet", "read_metadata", "METADATA_KEY"]

METADATA_KEY = b"micrometry"


def objects_table(columns: dict[str, np.ndarray], *, sample: str) -> pa.Table:
    """Build the objects table of one image, with the declared schema.

    Parameters
    ----------
    columns : dict of str to (M,) array_like
        Every column of :data:`~micrometry.measure.schema.OBJECT_COLUMNS`
        except ``sample`` (as returned by
        :func:`~micrometry.measure.measure_objects`), all of length M (M may
        be 0).  A ``sample`` entry is not allowed: it comes from `sample`.
    sample : str
        Sample id written in every row.

    Returns
    -------
    table : pyarrow.Table
        M rows, schema equal to :func:`~micrometry.measure.schema.objects_schema`
        (including field metadata).  NaN in a nullable float column (an
        uncalibrated ``_nm`` column, ``mean_intensity`` without an intensity
        image) is stored as null, which pandas reads back as NaN.

    Raises
    ------
    ValueError
        If a column is missing or unknown, the lengths differ, a value cannot
        be converted to the declared type without loss, or a non-nullable
        column holds NaN/null.

    Examples
    --------
    >>> import numpy as np
    >>> from micrometry.measure import measure_objects
    >>> t = objects_table(measure_objects(np.zeros((4, 4), np.uint32)), sample="a/b")
    >>> t.num_rows, t.schema.field("area_nm2").type
    (0, DataType(double))
    """
    if not isinstance(sample, str) or not sample:
        raise ValueError(f"sample must be a non-empty string; got {sample!r}")
    expected = [c.name for c in OBJECT_COLUMNS if c.name != "sample"]
    missing = [name for name in expected if name not in columns]
    extra = [name for name in columns if name not in expected]
    if missing or extra:
        raise ValueError(
            "columns do not match the objects schema: "
            f"missing {missing or 'none'}, unexpected {extra or 'none'}"
        )
    lengths = {name: len(columns[name]) for name in expected}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns have different lengths: {lengths}")
    n_rows = lengths[expected[0]]

    arrays = []
    for col in OBJECT_COLUMNS:
        if col.name == "sample":
            arrays.append(pa.array([sample] * n_rows, type=col.dtype))
            continue
        values = np.asarray(columns[col.name])
        if values.ndim != 1:
            raise ValueError(f"column {col.name!r} must be 1-D; got shape {values.shape}")
        is_float = pa.types.is_floating(col.dtype)
        if is_float and not col.nullable and np.isnan(values.astype(np.float64)).any():
            raise ValueError(f"column {col.name!r} is not nullable but holds NaN")
        try:
            arr = pa.array(values, type=col.dtype, from_pandas=is_float and col.nullable)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise ValueError(f"column {col.name!r} cannot be stored as {col.dtype}: {exc}") from exc
        if not col.nullable and arr.null_count:
            raise ValueError(f"column {col.name!r} is not nullable but holds {arr.null_count} null(s)")
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=objects_schema())


def _jsonable(obj: Any) -> Any:
    """Plain-JSON copy of `obj`: numpy scalars/arrays to Python, paths to str, NaN/Inf to None."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_parquet(table: pa.Table, path: str | os.PathLike, *, metadata: dict) -> None:
    """Write `table` to a Parquet file atomically, with micrometry metadata.

    Parameters
    ----------
    table : pyarrow.Table
        Any table (normally from :func:`objects_table`); its schema, including
        field metadata, is stored as is.
    path : str or path-like
        Destination; written through :func:`micrometry._atomic.atomic_path`,
        so a killed run never leaves a partial file there.  Parent directories
        are created.
    metadata : dict
        Provenance (stage parameters, model SHA-256, calibration source, ...),
        JSON-serialisable after converting numpy values and paths; NaN/Inf are
        written as null.  ``schema_version`` (default
        :data:`~micrometry.measure.schema.SCHEMA_VERSION`) and
        ``micrometry_version`` (default the installed version) are added unless
        given.  Stored as JSON under the file key-value metadata ``b"micrometry"``.

    Raises
    ------
    TypeError
        If `metadata` is not a dict or holds values JSON cannot represent.

    See Also
    --------
    read_metadata : read the JSON back.
    """
    import pyarrow.parquet as pq

    from .. import __version__

    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict; got {type(metadata).__name__}")
    meta = _jsonable(metadata)
    meta.setdefault("schema_version", SCHEMA_VERSION)
    meta.setdefault("micrometry_version", __version__)
    try:
        payload = json.dumps(meta, allow_nan=False, sort_keys=True)
    except TypeError as exc:
        raise TypeError(f"metadata for {os.fspath(path)} is not JSON-serialisable: {exc}") from exc
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[METADATA_KEY] = payload.encode()
    table = table.replace_schema_metadata(schema_meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_metadata(path: str | os.PathLike) -> dict:
    """Read the micrometry metadata JSON of a Parquet file written by :func:`write_parquet`.

    Parameters
    ----------
    path : str or path-like
        A Parquet file.

    Returns
    -------
    metadata : dict
        The dict given to :func:`write_parquet`, plus ``schema_version`` and
        ``micrometry_version``.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ValueError
        If the file is not Parquet or has no micrometry metadata.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such Parquet file")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"{path}: not a readable Parquet file ({exc})") from exc
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ValueError(f"{path}: Parquet file has no micrometry metadata (key {METADATA_KEY!r})")
    return json.loads(raw)
