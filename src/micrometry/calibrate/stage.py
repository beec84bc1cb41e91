"""The calibrate stage: decide one image's pixel size and record how.

Order: an override for this sample → the instrument metadata in the file →
the scale bar burned into the image (when requested) → none.  When both
metadata and a scale bar are there, the bar is read as well and the two are
compared (``metadata_agreement``): a disagreement of more than
:data:`AGREEMENT_TOLERANCE` lowers the metadata's confidence and is named in
``source_detail``.  The result is
the JSON contract of ``{results}/calibration/{sample}.json``::

    {"image": "raw/plate1/img_001.tif", "sample": "plate1/img_001",
     "nm_per_px": 2.481, "source": "metadata",
     "source_detail": "Zeiss CZ_SEM TIFF tag 34118 ap_image_pixel_size (...)",
     "confidence": 0.95, "nm_per_px_x": 2.481, "nm_per_px_y": 2.481,
     "scalebar": null, "micrometry_version": "0.1.0"}

``source`` is one of ``"override"``, ``"metadata"``, ``"scalebar"``,
``"none"``.  ``scalebar`` holds what the reader found
(:meth:`~micrometry.calibrate.scalebar.read.ScalebarReading.to_json`:
``value, unit, text, bar_px, bar_bbox, text_bbox`` (boxes ``[x0, y0, x1,
y1]``, image pixels), ``confidence``, ``checks``) or null.  A scale-bar
reading keeps its own confidence; the measure stage does not use a pixel
size below ``calibration.min_confidence`` for physical units unless
``calibration.use_low_confidence`` is set.  Confidence: override 1.0; metadata 0.95, or
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
    "AGREEMENT_TOLERANCE",
    "DISAGREEMENT_CONFIDENCE",
    "calibrate_image",
    "scalebar_calibration",
]

SOURCES = ("override", "metadata", "scalebar", "none")
OVERRIDE_CONFIDENCE = 1.0
METADATA_CONFIDENCE = 0.95
ANISOTROPIC_CONFIDENCE = 0.6
ANISOTROPY_TOLERANCE = 0.01
#: Relative difference between metadata and scale bar still counted as agreement.
AGREEMENT_TOLERANCE = 0.03
#: Confidence of instrument metadata that a confident scale-bar reading contradicts.
DISAGREEMENT_CONFIDENCE = 0.5


def read_scalebar_file(image_path: str | os.PathLike, **options: Any) -> dict | None:
    """The default scale-bar reader: read the image, run :func:`~micrometry.calibrate.scalebar.read.read_scalebar`.

    Parameters
    ----------
    image_path : path
        Raw image file.
    **options
        ``detector_dir``, ``threads``, ``max_pixels``.

    Returns
    -------
    dict or None
        ``{"nm_per_px", "confidence", "detail", "value", "unit", "text",
        "bar_px", "bar_bbox", "text_bbox", "checks", ...}`` or ``None`` when
        no scale bar was read.
    """
    from micrometry.calibrate.scalebar.read import read_scalebar
    from micrometry.io.readers import DEFAULT_MAX_PIXELS, read_image

    raw = read_image(image_path, max_pixels=options.get("max_pixels", DEFAULT_MAX_PIXELS))
    reading = read_scalebar(raw.data, detector_dir=options.get("detector_dir"), threads=options.get("threads", 1))
    if reading is None:
        return None
    out = reading.to_json()
    out["detail"] = (
        f"scale bar {reading.text!r} = {reading.value_nm:g} nm over {reading.bar_px:.1f} px "
        f"(label by {reading.checks['label_found_by']}, bar by {reading.checks['bar_found_by']})"
    )
    return out


#: Scale-bar reader, ``f(image_path, **options) -> dict | None``: returns
#: ``{"nm_per_px": float, "confidence": float, "detail": str, ...}`` (the
#: whole dict is stored under ``"scalebar"`` in the result) or ``None`` when
#: no bar is found.  Replaceable (tests, other readers).
SCALEBAR_READER: Callable[..., dict | None] | None = read_scalebar_file


def scalebar_calibration(image_path: str | os.PathLike, **options: Any) -> tuple[dict | None, str]:
    """Run the scale-bar reader when one is available.

    Returns
    -------
    result : dict or None
        What the reader found, or ``None``.
    note : str
        Why there is no result (empty when there is one).
    """
    if SCALEBAR_READER is None:
        return None, "scale-bar reading requested but no reader is set"
    from micrometry.io.readers import ImageReadError

    try:
        result = SCALEBAR_READER(str(image_path), **options)
    except ImageReadError:
        raise
    except ImportError as exc:  # the scalebar extra is not installed
        return None, f"scale-bar reading unavailable: {exc}"
    except Exception as exc:  # a reader failure must not lose the image's other results
        return None, f"scale-bar reading failed: {type(exc).__name__}: {exc}"
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
    scalebar_options: Mapping[str, Any] | None = None,
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
        Read the scale bar when no override gives the size: as the source
        when the metadata has no pixel size, as a cross-check when it has.
    scalebar_options : mapping, optional
        Passed to :data:`SCALEBAR_READER` (``detector_dir``, ``threads``,
        ``max_pixels``).

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
    options = dict(scalebar_options or {})
    if cal is not None:
        fields = _from_metadata(cal)
        if scalebar:
            found, _ = scalebar_calibration(image_path, **options)
            if found is not None:
                ratio = float(found["nm_per_px"]) / float(cal.nm_per_px)
                found["metadata_agreement"] = round(ratio, 6)
                if abs(ratio - 1.0) <= AGREEMENT_TOLERANCE:
                    fields["source_detail"] += f"; the scale bar agrees ({found['nm_per_px']:.6g} nm/px)"
                elif float(found.get("confidence", 0.0)) >= 0.5:
                    fields["confidence"] = min(fields["confidence"], DISAGREEMENT_CONFIDENCE)
                    fields["source_detail"] += (
                        f"; WARNING: the scale bar reads {found['nm_per_px']:.6g} nm/px, "
                        f"{ratio:.3g}x the metadata's: check the image"
                    )
                fields["scalebar"] = found
        return calibration_result(image_path, sample, **fields)

    if scalebar:
        found, note = scalebar_calibration(image_path, **options)
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
