"""The objects-table column registry, declared once.

Every column of ``{results}/objects/{sample}.parquet`` is declared here with its
Arrow type, unit, nullability and a one-line description.  The measurement code
(:func:`micrometry.measure.measure_objects`), the Parquet writer
(:func:`micrometry.measure.objects_table`), the tests and the report captions all
read this registry, so a column cannot exist in one place and not in another.

Conventions
-----------
- Units are in the column names: ``_px`` (pixels), ``_px`` areas are pixel
  counts, ``_nm`` / ``_nm2`` (nanometres, square nanometres), ``_deg``
  (degrees).  ``unit`` repeats it in words for tools that read field metadata.
- Pixel coordinates follow scikit-image: row ``y`` (down), column ``x``
  (right); a pixel's centre is at its integer index.  Bounding boxes are
  half-open, ``[y0, y1) x [x0, x1)``.
- ``nullable=True`` columns hold null (read as NaN by pandas) where the value is
  unknown or undefined: physical columns when the image has no calibration,
  ``mean_intensity`` when no intensity image was given.  Non-nullable columns
  never hold null.

Bump :data:`SCHEMA_VERSION` whenever a column is added, removed, renamed or
changes meaning; it is written into each Parquet file's metadata.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

__all__ = [
    "Column",
    "SCHEMA_VERSION",
    "OBJECT_COLUMNS",
    "COLUMNS_BY_NAME",
    "objects_schema",
    "numpy_dtype",
]

SCHEMA_VERSION: str = "1"


@dataclass(frozen=True)
class Column:
    """One column of a micrometry table.

    Attributes
    ----------
    name : str
        Column name; carries its unit suffix (``_px``, ``_nm``, ``_nm2``, ``_deg``).
    dtype : pyarrow.DataType
        Arrow type written to Parquet.
    unit : str or None
        Unit in words (``"px"``, ``"px^2"``, ``"nm"``, ``"nm^2"``, ``"deg"``);
        None for identifiers, flags and dimensionless ratios.
    nullable : bool
        Whether the column may hold nulls (missing or undefined values).
    description : str
        One line, used in the Parquet field metadata and report captions.
    """

    name: str
    dtype: pa.DataType
    unit: str | None
    nullable: bool
    description: str

    def field(self) -> pa.Field:
        """The Arrow field, with ``unit`` and ``description`` as field metadata."""
        meta = {b"description": self.description.encode()}
        if self.unit is not None:
            meta[b"unit"] = self.unit.encode()
        return pa.field(self.name, self.dtype, nullable=self.nullable, metadata=meta)


_F64 = pa.float64()
_I64 = pa.int64()

OBJECT_COLUMNS: tuple[Column, ...] = (
    Column("sample", pa.string(), None, False,
           "Sample id: input path relative to input_dir, without extension."),
    Column("label", pa.uint32(), None, False,
           "Instance label in labels/instances (0 is background, never listed)."),
    Column("centroid_y_px", _F64, "px", False, "Row of the object's centroid (pixel centres at integers)."),
    Column("centroid_x_px", _F64, "px", False, "Column of the object's centroid (pixel centres at integers)."),
    Column("bbox_y0_px", _I64, "px", False, "First row of the bounding box (inclusive)."),
    Column("bbox_x0_px", _I64, "px", False, "First column of the bounding box (inclusive)."),
    Column("bbox_y1_px", _I64, "px", False, "Last row of the bounding box plus one (exclusive)."),
    Column("bbox_x1_px", _I64, "px", False, "Last column of the bounding box plus one (exclusive)."),
    Column("area_px", _I64, "px^2", False, "Area as a pixel count."),
    Column("area_nm2", _F64, "nm^2", True, "Area in square nanometres (area_px * nm_per_px**2)."),
    Column("equivalent_diameter_px", _F64, "px", False,
           "Diameter of the disc with the same area, sqrt(4 * area_px / pi)."),
    Column("equivalent_diameter_nm", _F64, "nm", True, "Equivalent diameter in nanometres."),
    Column("perimeter_px", _F64, "px", False,
           "Perimeter, Crofton estimator with 4 directions (bias < 0.5 % on discs r >= 5 px)."),
    Column("perimeter_nm", _F64, "nm", True, "Perimeter in nanometres."),
    Column("feret_max_px", _F64, "px", False,
           "Maximum caliper (Feret) diameter of the convex hull of the pixel squares."),
    Column("feret_max_nm", _F64, "nm", True, "Maximum Feret diameter in nanometres."),
    Column("feret_min_px", _F64, "px", False,
           "Minimum caliper (Feret) width of the convex hull of the pixel squares."),
    Column("feret_min_nm", _F64, "nm", True, "Minimum Feret diameter in nanometres."),
    Column("major_axis_px", _F64, "px", False,
           "Full major axis of the ellipse with the same second moments (4 * sqrt(largest eigenvalue))."),
    Column("minor_axis_px", _F64, "px", False,
           "Full minor axis of the ellipse with the same second moments (4 * sqrt(smallest eigenvalue))."),
    Column("major_axis_nm", _F64, "nm", True, "Major axis length in nanometres."),
    Column("minor_axis_nm", _F64, "nm", True, "Minor axis length in nanometres."),
    Column("aspect_ratio", _F64, None, False, "feret_max_px / feret_min_px (>= 1)."),
    Column("circularity", _F64, None, False,
           "4 * pi * area_px / perimeter_px**2, clipped to at most 1 (1 for a disc)."),
    Column("solidity", _F64, None, False,
           "area_px / number of pixels whose centres lie in the convex hull of the object's pixel centres."),
    Column("eccentricity", _F64, None, False,
           "Eccentricity of the same-moments ellipse, sqrt(1 - minor**2 / major**2); 0 for a disc."),
    Column("orientation_deg", _F64, "deg", False,
           "Angle of the major axis, counter-clockwise from +x (columns) as displayed (row 0 at top), in (-90, 90]."),
    Column("mean_intensity", _F64, None, True,
           "Mean raw intensity over the object's pixels (null without an intensity image)."),
    Column("touches_border", pa.bool_(), None, False,
           "True if any pixel of the object lies on the image border (the object may be cut off)."),
)

COLUMNS_BY_NAME: dict[str, Column] = {c.name: c for c in OBJECT_COLUMNS}


def objects_schema() -> pa.Schema:
    """Arrow schema of the objects table.

    Returns
    -------
    schema : pyarrow.Schema
        One field per entry of :data:`OBJECT_COLUMNS`, in order, each with
        ``description`` (and ``unit`` where it has one) as field metadata, and
        ``micrometry_schema_version`` as schema metadata.
    """
    return pa.schema(
        [c.field() for c in OBJECT_COLUMNS],
        metadata={b"micrometry_schema_version": SCHEMA_VERSION.encode()},
    )


def numpy_dtype(column: Column):
    """NumPy dtype that holds `column` in memory (``object`` for strings).

    Examples
    --------
    >>> numpy_dtype(COLUMNS_BY_NAME["label"])
    dtype('uint32')
    >>> numpy_dtype(COLUMNS_BY_NAME["touches_border"])
    dtype('bool')
    """
    import numpy as np

    if pa.types.is_string(column.dtype) or pa.types.is_large_string(column.dtype):
        return np.dtype(object)
    return np.dtype(column.dtype.to_pandas_dtype())
