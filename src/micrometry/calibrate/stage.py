"""The calibrate stage: decide one image's pixel size and record how.

Order: an override for this sample → the instrument metadata in the file →
(scale-bar reading, when requested and available) → none.  The result is
the JSON contract of ``{results}/calibration/{sample}.json``::

    {"image": "raw/plate1/img_001.tif", "sample": "plate1/img_001",
     "nm_per_px": 2.481, "source": "metadata",
     "source_detail": "Zeiss CZ_SEM TIFF tag 34118 ap_image_pixel_size (...)",
     "confidence": 0.95, "nm_per_px_x": 2.481, "nm_per_px_y": 2.481,
     "scalebar": null, "micrometry_version": "0.1.0"}

``source`` is one of ``"override"``, ``"metadata"``, ``"scalebar"``,
``"none"``.  Confidence: override 1.0; metadata 0.95, or
:data:`ANISOTROPIC_CONFIDENCE` with a warning in ``source_detail`` when the
pixel width and height differ by more than 1 %; none 0.0 with
``nm_per_px`` null.  No number is ever invented.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import micrometry
from micrometry.calibrate.metadata import MetadataCalibration, calibration_from_metadata

__all__ = [
    "SOURCES",
    "OVERRIDE_CONFIDENCE",
    "METADATA_CONFIDENCE",
    "ANISOTROPIC_CONFIDENCE",
    "ANISOTROPY_TOLERANCE",
    "calibrate_image",
    "scalebar_calibration",
]

SOURCES = ("override", "metadata", "scalebar", "none")
OVERRIDE_CONFIDENCE = 1.0
METADATA_CONFIDENCE = 0.95
ANISOTROPIC_CONFIDENCE = 0.6
ANISOTROPY_TOLERANCE = 0.01

#: Scale-bar reader, ``f(image_path) -> dict | None``.  ``None`` until the
#: detector/OCR issue lands; it must return ``{"nm_per_px": float,
#: "confidence": float, "detail": str, ...}`` (the whole dict is stored under
#: ``"scalebar"`` in the result) or ``None`` when no bar is found.
SCALEBAR_READER: Callable[[str], dict | None] | None = None


def scalebar_calibration(image_path: str | os.PathLike) -> tuple[dict | None, str]:
    """Run the scale-bar reader when one is available.

    Returns
    -------
    result : dict or None
        What the reader found, or ``None``.
    note : str
        Why there is no result (empty when there is one).
    """
    if SCALEBAR_READER is None:
        return None, "scale-bar reading requested but not available in this version"
    result = SCALEBAR_READER(str(image_path))
    if result is None:
        return None, "no scale bar found"
    return result, ""


def calibration_result(image_path, sample, **fields: Any) -> dict:
    """The calibration JSON contract, uncalibrated unless `fields` say otherwise."""
    out = {
        "image": str(image_path),
        "sample": sample,
        "nm_per_px": None,
        "source": "none",
        "source_detail": None,
        "confidence": 0.0,
        "nm_per_px_x": None,
        "nm_per_px_y": None,
        "scalebar": None,
        "micrometry_version": micrometry.__version__,
    }
    out.update(fields)
    return out


def _from_metadata(cal: MetadataCalibration) -> dict:
    detail, confidence = cal.detail, METADATA_CONFIDENCE
    if cal.anisotropy > ANISOTROPY_TOLERANCE:
        confidence = ANISOTROPIC_CONFIDENCE
        detail += (
            f"; WARNING: pixel width {cal.nm_per_px_x:.6g} nm and height {cal.nm_per_px_y:.6g} nm "
            f"differ by {100 * cal.anisotropy:.1f}%, nm_per_px is their geometric mean"
        )
    return {
        "nm_per_px": cal.nm_per_px,
        "source": "metadata",
        "source_detail": detail,
        "confidence": confidence,
        "nm_per_px_x": cal.nm_per_px_x,
        "nm_per_px_y": cal.nm_per_px_y,
    }


def calibrate_image(
    image_path: str | os.PathLike,
    *,
    sample: str,
    overrides: Mapping[str, float] | None = None,
    scalebar: bool = False,
) -> dict:
    """Decide the pixel size of one image and record its provenance.

    Parameters
    ----------
    image_path : str or path-like
        Raw image file.
    sample : str
        Sample id (input path relative to ``input_dir``, no extension); the
        key looked up in `overrides`.
    overrides : mapping of str to float, optional
        ``{sample: nm_per_px}``, e.g. from
        :func:`micrometry.calibrate.overrides.load_overrides`.
    scalebar : bool, optional
        Try to read a scale bar when neither an override nor metadata gives
        the size.  Reserved: the reader is not available yet, so this only
        adds a note to ``source_detail``.

    Returns
    -------
    calibration : dict
        The JSON contract described in the module docstring.

    Raises
    ------
    micrometry.io.readers.ImageReadError
        If the image file does not exist or cannot be opened.
    ValueError
        If the override for `sample` is not a positive finite number.
    """
    if overrides and sample in overrides:
        value = float(overrides[sample])
        if not (value > 0 and value != float("inf")):
            raise ValueError(f"override nm_per_px for sample {sample!r} must be positive, got {overrides[sample]!r}")
        return calibration_result(
            image_path,
            sample,
            nm_per_px=value,
            source="override",
            source_detail="per-sample override table",
            confidence=OVERRIDE_CONFIDENCE,
            nm_per_px_x=value,
            nm_per_px_y=value,
        )

    cal = calibration_from_metadata(image_path)
    if cal is not None:
        return calibration_result(image_path, sample, **_from_metadata(cal))

    if scalebar:
        found, note = scalebar_calibration(image_path)
        if found is not None:
            nm = float(found["nm_per_px"])
            return calibration_result(
                image_path,
                sample,
                nm_per_px=nm,
                source="scalebar",
                source_detail=str(found.get("detail", "scale bar")),
                confidence=float(found.get("confidence", 0.0)),
                nm_per_px_x=nm,
                nm_per_px_y=nm,
                scalebar=found,
            )
        return calibration_result(image_path, sample, source_detail=f"no override, no instrument metadata; {note}")

    return calibration_result(image_path, sample, source_detail="no override and no instrument metadata with a pixel size")
