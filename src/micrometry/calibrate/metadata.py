"""Pixel size from the metadata that instruments write into image files.

Sources, tried in this order for a TIFF (the first that yields a valid,
positive size wins):

1. FEI/Thermo Fisher: tag 34682 (Helios) or 34680 (SFEG), INI-style text;
   ``[Scan] PixelWidth`` / ``PixelHeight`` in metres (then ``[EScan]``,
   ``[IScan]``).
2. Zeiss SmartSEM: ``CZ_SEM`` tag 34118; ``ap_image_pixel_size`` (e.g.
   ``Image Pixel Size = 2.481 nm``), else ``ap_pixel_size``.
3. TESCAN: tag 50431, blocks of ``key=value`` text; ``[MAIN] PixelSizeX`` /
   ``PixelSizeY`` in metres.
4. OME-TIFF: ``Pixels/@PhysicalSizeX`` / ``Y`` with ``PhysicalSizeXUnit``
   (default µm, as in the OME schema).
5. ImageJ TIFF: ``unit=`` in the ImageJ description (``nm``, ``micron``,
   ``\\u00B5m``, ...) with XResolution/YResolution in pixels per unit.
6. Plain TIFF resolution: XResolution/YResolution with ResolutionUnit INCH
   or CENTIMETER.  A resolution without unit (ResolutionUnit NONE) is
   ignored, and so is any resolution equal (within 0.1 %) to a common
   screen/print/scanner default of exporting software — 72, 96, 100, 120,
   144, 150, 180, 200, 240, 300, 360, 400, 600, 720, 1200, 2400, 4800 or
   9600 pixels per inch — because such values describe a page, not the
   specimen.

DM3/DM4: the image's ``ImageData/Calibrations/Dimension`` scale and units of
the x and y axes (read with rosettasciio; non-length units such as ``1/nm``
of diffraction patterns are not a pixel size).

MRC: the header voxel size (``cella / mx``, in Å).  0 means unset; exactly
1.0 Å in both x and y is the default many programs write when the size is
unknown, so it is ignored too (a real 1.0 Å pixel must come from an
override).

PNG, JPEG and BMP carry no pixel size that can be trusted: no calibration.
No number is ever invented: when no source applies the result is ``None``.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from micrometry.calibrate.units import to_nm
from micrometry.io.readers import tiff_rational

__all__ = [
    "MetadataCalibration",
    "calibration_from_metadata",
    "SCREEN_DEFAULT_PPI",
]

#: Pixels-per-inch values written by default by exporting software.
SCREEN_DEFAULT_PPI: tuple[int, ...] = (
    72, 96, 100, 120, 144, 150, 180, 200, 240, 300, 360, 400, 600, 720, 1200, 2400, 4800, 9600,
)
_PPI_RTOL = 1e-3


@dataclass(frozen=True)
class MetadataCalibration:
    """Pixel size read from a file's metadata.

    Attributes
    ----------
    nm_per_px : float
        Pixel size in nm; the x size when x and y agree, else their
        geometric mean (which preserves areas).
    detail : str
        Where it came from, e.g. ``"FEI/Thermo TIFF tag 34682 [Scan]
        PixelWidth/PixelHeight"``.
    nm_per_px_x, nm_per_px_y : float
        Pixel width (along columns) and height (along rows), in nm.
    """

    nm_per_px: float
    detail: str
    nm_per_px_x: float
    nm_per_px_y: float

    @property
    def anisotropy(self) -> float:
        """Relative difference ``|x - y| / min(x, y)``."""
        return abs(self.nm_per_px_x - self.nm_per_px_y) / min(self.nm_per_px_x, self.nm_per_px_y)


def _make(x_nm: Any, y_nm: Any, detail: str) -> MetadataCalibration | None:
    try:
        x, y = float(x_nm), float(y_nm)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(x) and math.isfinite(y) and x > 0 and y > 0):
        return None
    mean = x if x == y else math.sqrt(x * y)
    return MetadataCalibration(nm_per_px=mean, detail=detail, nm_per_px_x=x, nm_per_px_y=y)


def _length_nm(value: Any, unit: str) -> float | None:
    try:
        nm = to_nm(float(value), unit)
    except (TypeError, ValueError):
        return None
    return nm if nm > 0 else None


def calibration_from_metadata(path: str | os.PathLike) -> MetadataCalibration | None:
    """Read the pixel size recorded by the instrument in an image file.

    Parameters
    ----------
    path : str or path-like
        Image file (format detected from its content).

    Returns
    -------
    calibration : MetadataCalibration or None
        ``None`` when the file carries no usable pixel size (see the module
        docstring for the sources and rules).

    Raises
    ------
    micrometry.io.readers.ImageReadError
        If the file does not exist or cannot be opened.
    """
    from micrometry.io.readers import ImageReadError, sniff_format

    p = Path(path)
    if not p.is_file():
        raise ImageReadError(p, "the file does not exist" if not p.exists() else "it is not a regular file")
    try:
        fmt = sniff_format(p)
    except OSError as exc:
        raise ImageReadError(p, f"the file cannot be opened ({exc.strerror or exc})") from exc
    if fmt is None and p.suffix.lower() in (".mrc", ".mrcs", ".map", ".st", ".ali", ".rec"):
        fmt = "mrc"
    if fmt == "tiff":
        return _from_tiff(p)
    if fmt in ("dm3", "dm4"):
        return _from_dm(p, fmt)
    if fmt == "mrc":
        return _from_mrc(p)
    return None  # png/jpeg/bmp or not an image: nothing trustworthy


# --------------------------------------------------------------------------
# TIFF


def _from_tiff(path: Path) -> MetadataCalibration | None:
    import tifffile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with tifffile.TiffFile(path) as tif:
                for source in (_tiff_fei, _tiff_zeiss, _tiff_tescan, _tiff_ome, _tiff_imagej, _tiff_resolution):
                    try:
                        cal = source(tif)
                    except Exception:  # one malformed vendor block must not hide the others
                        cal = None
                    if cal is not None:
                        return cal
    except (tifffile.TiffFileError, OSError, ValueError):
        return None
    return None


def _tiff_fei(tif) -> MetadataCalibration | None:
    if not tif.is_fei:
        return None
    tags = tif.pages.first.tags
    tag = 34682 if 34682 in tags else 34680
    meta = tif.fei_metadata or {}
    for section in ("Scan", "EScan", "IScan"):
        sec = meta.get(section) or {}
        if "PixelWidth" in sec:
            width = sec["PixelWidth"]
            height = sec.get("PixelHeight", width)
            cal = _make(
                _length_nm(width, "m"),
                _length_nm(height, "m"),
                f"FEI/Thermo TIFF tag {tag} [{section}] PixelWidth/PixelHeight",
            )
            if cal is not None:
                return cal
    return None


_VALUE_UNIT = re.compile(r"^\s*([-+]?\d+(?:[.,]\d*)?(?:[eE][-+]?\d+)?)\s*(\S+)\s*$")


def _zeiss_entry_nm(entry: Any) -> tuple[float, str] | None:
    """('Image Pixel Size', 2.481, 'nm') or ('Image Pixel Size', '2,481 nm')."""
    if not isinstance(entry, tuple) or len(entry) < 2:
        return None
    label = str(entry[0])
    if len(entry) >= 3:
        value, unit = entry[1], str(entry[2])
    else:
        m = _VALUE_UNIT.match(str(entry[1]))
        if not m:
            return None
        value, unit = m.group(1).replace(",", "."), m.group(2)
    nm = _length_nm(value, unit)
    if nm is None:
        return None
    return nm, f"{label} = {entry[1]} {unit}" if len(entry) >= 3 else f"{label} = {entry[1]}"


def _tiff_zeiss(tif) -> MetadataCalibration | None:
    if not tif.is_sem:
        return None
    meta = tif.sem_metadata or {}
    for key in ("ap_image_pixel_size", "ap_pixel_size"):
        found = _zeiss_entry_nm(meta.get(key))
        if found is not None:
            nm, text = found
            return _make(nm, nm, f"Zeiss CZ_SEM TIFF tag 34118 {key} ('{text}')")
    return None


def _tiff_tescan(tif) -> MetadataCalibration | None:
    from micrometry.io.readers import _tescan_fields

    payload = tif.pages.first.tags.valueof(50431)
    if payload is None:
        return None
    blocks = _tescan_fields(payload)
    main = blocks.get("MAIN") or {}
    if "PixelSizeX" not in main:
        return None
    x = _length_nm(main["PixelSizeX"], "m")
    y = _length_nm(main.get("PixelSizeY", main["PixelSizeX"]), "m")
    return _make(x, y, "TESCAN TIFF tag 50431 [MAIN] PixelSizeX/PixelSizeY")


def _tiff_ome(tif) -> MetadataCalibration | None:
    from micrometry.io.readers import ome_pixels_attributes

    if not tif.is_ome or not tif.ome_metadata:
        return None
    px = ome_pixels_attributes(tif.ome_metadata)
    if "PhysicalSizeX" not in px:
        return None
    x = _length_nm(px["PhysicalSizeX"], px.get("PhysicalSizeXUnit", "µm"))
    y = _length_nm(px.get("PhysicalSizeY", px["PhysicalSizeX"]), px.get("PhysicalSizeYUnit", px.get("PhysicalSizeXUnit", "µm")))
    return _make(x, y, "OME-XML Pixels PhysicalSizeX/PhysicalSizeY")


def _unescape_imagej(text: str) -> str:
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)


def _tiff_imagej(tif) -> MetadataCalibration | None:
    if not tif.is_imagej:
        return None
    meta = tif.imagej_metadata or {}
    unit = meta.get("unit")
    if not isinstance(unit, str):
        return None
    unit = _unescape_imagej(unit).strip()
    tags = tif.pages.first.tags
    xres, yres = tiff_rational(tags.valueof("XResolution")), tiff_rational(tags.valueof("YResolution"))
    if not xres:
        return None
    yres = yres or xres
    x, y = _length_nm(1.0 / xres, unit), _length_nm(1.0 / yres, unit)
    return _make(x, y, f"ImageJ TIFF unit={unit} with XResolution/YResolution")


def _is_screen_default(ppi: float) -> bool:
    return any(abs(ppi - d) <= _PPI_RTOL * d for d in SCREEN_DEFAULT_PPI)


def _tiff_resolution(tif) -> MetadataCalibration | None:
    tags = tif.pages.first.tags
    unit = tags.valueof("ResolutionUnit")
    if unit is None:
        return None  # no explicit unit written (the TIFF default INCH is not trusted)
    unit_code = int(unit)
    nm_per_unit = {2: 25.4e6, 3: 1e7}.get(unit_code)
    if nm_per_unit is None:
        return None  # NONE (1) or invalid
    xres, yres = tiff_rational(tags.valueof("XResolution")), tiff_rational(tags.valueof("YResolution"))
    if not xres or xres <= 0:
        return None
    yres = yres if yres and yres > 0 else xres
    ppi_x = xres * (2.54 if unit_code == 3 else 1.0)
    ppi_y = yres * (2.54 if unit_code == 3 else 1.0)
    if _is_screen_default(ppi_x) or _is_screen_default(ppi_y):
        return None
    name = "INCH" if unit_code == 2 else "CENTIMETER"
    return _make(nm_per_unit / xres, nm_per_unit / yres, f"TIFF XResolution/YResolution with ResolutionUnit {name}")


# --------------------------------------------------------------------------
# DM3 / DM4


def _from_dm(path: Path, fmt: str) -> MetadataCalibration | None:
    from micrometry.io.readers import _dm_choose_image, _dm_signals

    try:
        signals = _dm_signals(path, lazy=True)
        sig = _dm_choose_image(path, signals)
    except Exception:
        return None
    by_name = {ax.get("name"): ax for ax in sig.get("axes", [])}
    ax_x, ax_y = by_name.get("x"), by_name.get("y")
    if ax_x is None or ax_y is None:
        return None
    x = _length_nm(ax_x.get("scale"), str(ax_x.get("units") or ""))
    y = _length_nm(ax_y.get("scale"), str(ax_y.get("units") or ""))
    if x is None or y is None:
        return None
    return _make(
        x,
        y,
        f"{fmt.upper()} ImageData/Calibrations/Dimension scale "
        f"{ax_x.get('scale'):.6g} {ax_x.get('units')} (x), {ax_y.get('scale'):.6g} {ax_y.get('units')} (y)",
    )


# --------------------------------------------------------------------------
# MRC


def _from_mrc(path: Path) -> MetadataCalibration | None:
    import mrcfile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.open(str(path), mode="r", permissive=True, header_only=True) as mrc:
                vs = mrc.voxel_size
                x_a, y_a = float(vs.x), float(vs.y)
    except Exception:
        return None
    if x_a == 1.0 and y_a == 1.0:
        return None  # the usual "unset" default, see module docstring
    return _make(_length_nm(x_a, "Å"), _length_nm(y_a, "Å"), f"MRC header voxel size {x_a:.6g} x {y_a:.6g} Å (cella/mx)")
