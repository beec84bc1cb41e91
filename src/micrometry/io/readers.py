"""Read a micrograph file of any supported format into a grey NumPy array.

The format is taken from the file's content (its magic bytes), never from
its extension, so JPEG data saved as ``.png`` still reads and a text file
named ``.tif`` is refused with a clear message.

=========  ===================================  ==================================
format     library                              notes
=========  ===================================  ==================================
png        Pillow (imagecodecs for 16-bit RGB)  8/16-bit grey, RGB(A), LA, palette
jpeg       Pillow                               grey, RGB, CMYK
bmp        Pillow                               grey, palette, RGB(A)
tiff       tifffile                             first page; 8-64 bit int/float
dm3, dm4   rosettasciio                         first non-thumbnail image
mrc        mrcfile                              first section of a stack
=========  ===================================  ==================================

Intensities are returned unchanged, in the file's dtype.  Colour input is
reduced to grey and the conversion is recorded in
:attr:`RawImage.color_conversion`: equal channels give channel 0 exactly,
otherwise the BT.709 luma ``0.2125 R + 0.7154 G + 0.0721 B`` is computed in
float64 and rounded back to the input dtype.  Alpha is dropped.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import enum
import hashlib
import math
import os
import re
import stat
import struct
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "DEFAULT_MAX_PIXELS",
    "LUMA_BT709",
    "ImageReadError",
    "RawImage",
    "read_image",
    "sniff_format",
    "sha256_file",
    "jsonable",
    "tiff_metadata",
]

SUPPORTED_EXTENSIONS: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".tif",
    ".tiff",
    ".dm3",
    ".dm4",
    ".mrc",
)

#: Largest image (Y * X pixels) read by default: a decompression-bomb guard.
DEFAULT_MAX_PIXELS: int = 20_000 * 20_000

#: BT.709 luma weights for (R, G, B), as used by ``skimage.color.rgb2gray``.
LUMA_BT709: tuple[float, float, float] = (0.2125, 0.7154, 0.0721)

_HEAD_BYTES = 1024
_MRC_EXTENSIONS = (".mrc", ".mrcs", ".map", ".st", ".ali", ".rec")
_PILLOW_LOCK = threading.Lock()


class ImageReadError(ValueError):
    """A file could not be read as an image.

    ``str(error)`` names the file and the reason in plain words; the two are
    also available as :attr:`path` and :attr:`reason`.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image '{self.path}': {reason}")

    def __reduce__(self):  # keep picklable (dask, multiprocessing)
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class RawImage:
    """A decoded micrograph.

    Attributes
    ----------
    data : (Y, X) ndarray
        Grey intensities in the file's dtype (uint8, uint16, int16, int32,
        float32, ...), unchanged except for the colour reduction recorded in
        `color_conversion`.  Float data may contain NaN/Inf.
    path : str
        The file read.
    format : str
        ``"png"``, ``"jpeg"``, ``"bmp"``, ``"tiff"``, ``"dm3"``, ``"dm4"`` or
        ``"mrc"``, detected from the content.
    color_conversion : dict or None
        ``None`` for grey input.  Otherwise what was done, e.g.
        ``{"from": "RGB", "method": "luma_bt709", "weights": [0.2125, 0.7154,
        0.0721], "alpha_dropped": False}``.  ``method`` is
        ``"equal_channels"`` (all colour channels identical: channel 0 taken
        exactly), ``"luma_bt709"``, ``"grey_channel"`` (grey + alpha input:
        the grey channel taken exactly) or ``"bilevel_to_0_255"`` (1-bit input).
    metadata : dict
        JSON-serialisable instrument metadata found in the file (may be
        empty); large binary blobs are left out.
    """

    data: np.ndarray
    path: str
    format: str
    color_conversion: dict | None
    metadata: dict


# --------------------------------------------------------------------------
# format detection


def _sniff_head(head: bytes) -> str | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head.startswith(b"BM") and len(head) >= 26:
        # BITMAPFILEHEADER: the DIB header size at byte 14 is one of a few values.
        (dib_size,) = struct.unpack_from("<I", head, 14)
        if dib_size in (12, 16, 40, 52, 56, 64, 108, 124):
            return "bmp"
    if len(head) >= 18 and head[:4] == b"\x00\x00\x00\x03":
        if head[8:12] in (b"\x00\x00\x00\x00", b"\x00\x00\x00\x01") and head[12] <= 1 and head[13] <= 1:
            return "dm3"
    if len(head) >= 18 and head[:4] == b"\x00\x00\x00\x04":
        if head[12:16] in (b"\x00\x00\x00\x00", b"\x00\x00\x00\x01") and head[16] <= 1 and head[17] <= 1:
            return "dm4"
    if len(head) >= 212 and head[208:212] == b"MAP ":
        return "mrc"
    return None


_OTHER_SIGNATURES = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\x89HDF\r\n\x1a\n", "HDF5 (e.g. EMD/Velox)"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"%PDF", "PDF"),
)


def sniff_format(path: str | os.PathLike) -> str | None:
    """Detect a supported image format from the first bytes of a file.

    Parameters
    ----------
    path : str or path-like
        File to inspect.

    Returns
    -------
    format : str or None
        ``"png"``, ``"jpeg"``, ``"bmp"``, ``"tiff"``, ``"dm3"``, ``"dm4"``,
        ``"mrc"``, or ``None`` if the content matches no supported format.
        The extension is not used, except that an MRC file from before the
        MRC2014 ``MAP`` signature is only recognised by :func:`read_image`
        when named ``.mrc``/``.mrcs``/``.map``/``.st``/``.ali``/``.rec``.
    """
    with open(path, "rb") as fh:
        return _sniff_head(fh.read(_HEAD_BYTES))


# --------------------------------------------------------------------------
# public entry points


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Return the SHA-256 hex digest of a file's bytes.

    Parameters
    ----------
    path : str or path-like
        File to hash.
    chunk_bytes : int, optional
        Read size; memory use is bounded by it.

    Returns
    -------
    digest : str
        64 lower-case hexadecimal characters.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


def read_image(path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> RawImage:
    """Read a micrograph as a grey (Y, X) array with its metadata.

    Parameters
    ----------
    path : str or path-like
        Image file; its format is detected from the content.
    max_pixels : int or None, optional
        Decompression-bomb guard: refuse images with more than this many
        pixels (Y * X), checked from the header before any pixel data is
        decoded (default :data:`DEFAULT_MAX_PIXELS`).  ``None`` disables the
        check; otherwise it must be a positive integer (0 is not "no limit":
        it raises ``ValueError``).  Pillow's own global limit,
        ``PIL.Image.MAX_IMAGE_PIXELS``, is lifted only while a file is
        decoded, so that this limit is the one that applies, and is restored
        afterwards, also on error.

    Returns
    -------
    image : RawImage
        ``image.data`` is (Y, X) in the file's dtype.

    Raises
    ------
    ImageReadError
        If the file is missing (or a broken symbolic link), not a regular
        file (a folder, a named pipe, a device), unreadable, empty, not an
        image, of an unsupported kind, truncated or corrupt, or larger than
        `max_pixels`.  The message names the file and the reason.
    ValueError
        If `max_pixels` is neither None nor a positive integer (a
        programming or configuration error, not bad input).
    """
    if max_pixels is not None and (
        isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1
    ):
        raise ValueError(f"max_pixels must be a positive integer or None (no limit), got {max_pixels!r}")
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        if _is_symlink(p):
            target = os.readlink(p)
            raise ImageReadError(p, f"the file does not exist: it is a broken symbolic link to '{target}'") from exc
        if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
            raise ImageReadError(p, "the file does not exist") from exc
        raise ImageReadError(p, f"the file cannot be opened ({exc.strerror or exc})") from exc
    if stat.S_ISDIR(st.st_mode):
        raise ImageReadError(p, "it is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):  # opening a named pipe would wait forever
        raise ImageReadError(p, f"it is not a regular file but a {_file_kind(st.st_mode)}")
    size = st.st_size
    try:
        with open(p, "rb") as fh:
            head = fh.read(_HEAD_BYTES)
    except OSError as exc:
        raise ImageReadError(p, f"the file cannot be opened ({exc.strerror or exc})") from exc
    if size == 0:
        raise ImageReadError(p, "the file is empty (0 bytes)")

    fmt = _sniff_head(head)
    if fmt is None and p.suffix.lower() in _MRC_EXTENSIONS and len(head) >= 1024:
        fmt = "mrc"  # pre-MRC2014 files lack the 'MAP ' signature; mrcfile validates
    if fmt is None:
        for sig, name in _OTHER_SIGNATURES:
            if head.startswith(sig):
                raise ImageReadError(p, f"{name} files are not a supported image format")
        raise ImageReadError(
            p,
            "not an image: its content does not match any supported format "
            "(PNG, JPEG, BMP, TIFF, DM3/DM4, MRC)",
        )

    reader = {
        "png": _read_pillow,
        "jpeg": _read_pillow,
        "bmp": _read_pillow,
        "tiff": _read_tiff,
        "dm3": _read_dm,
        "dm4": _read_dm,
        "mrc": _read_mrc,
    }[fmt]
    try:
        data, mode, metadata = reader(p, fmt, head, max_pixels)
    except ImageReadError:
        raise
    except MemoryError as exc:
        raise ImageReadError(p, "not enough memory to decode it") from exc
    except Exception as exc:  # library errors on corrupt input come in many types
        if _is_bomb_error(exc):
            raise ImageReadError(
                p,
                f"the {fmt.upper()} file holds compressed data that expands far beyond its declared size "
                f"(a decompression bomb; {_describe(exc)}); refusing to decode it",
            ) from exc
        raise ImageReadError(p, f"the {fmt.upper()} file is truncated or corrupt ({_describe(exc)})") from exc

    grey, conversion = _to_grey(data, mode, p)
    if grey.dtype.byteorder not in ("=", "|"):
        grey = grey.astype(grey.dtype.newbyteorder("="))
    grey = np.ascontiguousarray(grey)
    return RawImage(data=grey, path=str(path), format=fmt, color_conversion=conversion, metadata=metadata)


# --------------------------------------------------------------------------
# helpers


def _is_symlink(path: Path) -> bool:
    try:
        return path.is_symlink()
    except OSError:
        return False


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, "named pipe (FIFO)"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return kind
    return "special file"


def _is_bomb_error(exc: BaseException) -> bool:
    """Pillow's refusals of oversized compressed data (PNG text/ICC chunks, bombs)."""
    from PIL import Image

    if isinstance(exc, Image.DecompressionBombError):
        return True
    return isinstance(exc, ValueError) and "decompressed data too large" in str(exc).lower()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _check_pixels(path: Path, height: int, width: int, max_pixels: int | None) -> None:
    if height <= 0 or width <= 0:
        raise ImageReadError(path, f"the header declares an empty image ({height} x {width} pixels)")
    if max_pixels is not None and height * width > max_pixels:
        raise ImageReadError(
            path,
            f"the image is {height} x {width} = {height * width} pixels, more than the "
            f"limit of {max_pixels} pixels (max_pixels); refusing to decode it",
        )


def _jsonable(obj: Any, depth: int = 0) -> Any:
    """Convert metadata to plain JSON types; drop blobs (returns _DROP)."""
    if depth > 8:
        return _DROP
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, enum.Enum):
        return obj.name
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else None
    if isinstance(obj, str):
        s = obj.replace("\x00", "")
        return s if len(s) <= 4096 else s[:4096] + "...[truncated]"
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return _DROP
    if isinstance(obj, (_dt.datetime, _dt.date, _dt.time)):
        return obj.isoformat()
    if isinstance(obj, np.ndarray):
        if obj.size > 64 or obj.dtype.kind not in "biuf":
            return _DROP
        return _jsonable(obj.tolist(), depth + 1)
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            v2 = _jsonable(v, depth + 1)
            if v2 is not _DROP:
                out[str(k)] = v2
        return out
    if isinstance(obj, (list, tuple)):
        if len(obj) > 256:
            return _DROP
        items = [_jsonable(v, depth + 1) for v in obj]
        return [v for v in items if v is not _DROP]
    if isinstance(obj, np.generic):
        return _jsonable(obj.item(), depth + 1)
    text = str(obj)
    return text if len(text) <= 256 else _DROP


_DROP = object()


def jsonable(obj: Any) -> Any:
    """Public alias of the metadata sanitiser (returns ``{}`` for a dropped root)."""
    out = _jsonable(obj)
    return {} if out is _DROP else out


def _to_grey(data: np.ndarray, mode: str, path: Path) -> tuple[np.ndarray, dict | None]:
    """Reduce (Y, X[, C]) data to (Y, X) grey according to `mode`."""
    if mode == "L":
        if data.ndim != 2:
            raise ImageReadError(path, f"expected a 2-D grey image, got shape {data.shape}")
        if data.dtype.kind == "c":
            raise ImageReadError(path, "complex-valued images are not supported")
        return data, None
    if mode == "1":
        return (data.astype(np.uint8) * np.uint8(255)), {"from": "1", "method": "bilevel_to_0_255"}
    if mode == "LA":
        return np.ascontiguousarray(data[..., 0]), {
            "from": "LA",
            "method": "grey_channel",
            "alpha_dropped": True,
        }
    if mode in ("RGB", "RGBA", "P:RGB", "P:RGBA", "CMYK:RGB"):
        source = {"P:RGB": "P", "P:RGBA": "P", "CMYK:RGB": "CMYK"}.get(mode, mode)
        has_alpha = mode.endswith("RGBA")
        rgb = data[..., :3]
        if data.shape[-1] < 3:
            raise ImageReadError(path, f"colour image has only {data.shape[-1]} channels")
        conversion: dict[str, Any] = {"from": source}
        if source == "P":
            conversion["palette_expanded_to"] = "RGBA" if has_alpha else "RGB"
        eq = {"equal_nan": True} if rgb.dtype.kind == "f" else {}
        if np.array_equal(rgb[..., 0], rgb[..., 1], **eq) and np.array_equal(rgb[..., 0], rgb[..., 2], **eq):
            grey = np.ascontiguousarray(rgb[..., 0])
            conversion["method"] = "equal_channels"
        else:
            weights = np.asarray(LUMA_BT709, dtype=np.float64)
            luma = rgb.astype(np.float64) @ weights
            if rgb.dtype.kind in "iu":
                info = np.iinfo(rgb.dtype)
                grey = np.clip(np.rint(luma), info.min, info.max).astype(rgb.dtype)
            elif rgb.dtype.kind == "b":
                grey = (luma >= 0.5)
            else:
                grey = luma.astype(rgb.dtype)
            conversion["method"] = "luma_bt709"
            conversion["weights"] = list(LUMA_BT709)
        conversion["alpha_dropped"] = has_alpha
        return grey, conversion
    raise ImageReadError(path, f"unsupported colour mode {mode!r}")  # pragma: no cover


# --------------------------------------------------------------------------
# Pillow: PNG, JPEG, BMP


@contextlib.contextmanager
def _pillow_no_bomb_check():
    """Disable Pillow's global pixel limit while we apply our own."""
    from PIL import Image

    with _PILLOW_LOCK:
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = old


def _read_pillow(path: Path, fmt: str, head: bytes, max_pixels: int | None):
    from PIL import Image

    if fmt == "png" and len(head) >= 29 and head[12:16] == b"IHDR":
        width, height, bit_depth, colour_type = struct.unpack_from(">IIBB", head, 16)
        _check_pixels(path, height, width, max_pixels)
        if bit_depth == 16 and colour_type in (2, 4, 6):
            # Pillow reduces 16-bit colour PNG to 8 bit; imagecodecs keeps it.
            return _read_png16_colour(path, colour_type)

    with _pillow_no_bomb_check(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as im:
            width, height = im.size
            _check_pixels(path, height, width, max_pixels)
            im.seek(0)
            im.load()
            meta = _pillow_metadata(im)
            mode = im.mode
            if mode in ("L", "I", "F") or mode.startswith("I;16"):
                return np.asarray(im), "L", meta
            if mode == "1":
                return np.asarray(im), "1", meta
            if mode == "LA":
                return np.asarray(im), "LA", meta
            if mode == "La":  # premultiplied alpha: un-premultiply by converting
                return np.asarray(im.convert("LA")), "LA", meta
            if mode == "PA" or (mode == "P" and "transparency" in im.info):
                return np.asarray(im.convert("RGBA")), "P:RGBA", meta
            if mode == "P":
                return np.asarray(im.convert("RGB")), "P:RGB", meta
            if mode == "RGB":
                return np.asarray(im), "RGB", meta
            if mode in ("RGBA", "RGBa"):
                return np.asarray(im.convert("RGBA")), "RGBA", meta
            if mode == "RGBX":
                return np.asarray(im.convert("RGB")), "RGB", meta
            if mode == "CMYK":
                return np.asarray(im.convert("RGB")), "CMYK:RGB", meta
            # YCbCr, LAB, HSV, ...: let Pillow make RGB, record the source mode
            meta["pillow_mode_converted_from"] = mode
            return np.asarray(im.convert("RGB")), "RGB", meta


def _read_png16_colour(path: Path, colour_type: int):
    import imagecodecs

    data = imagecodecs.png_decode(path.read_bytes())
    mode = {2: "RGB", 4: "LA", 6: "RGBA"}[colour_type]
    meta = {"pillow": {"format": "PNG", "bit_depth": 16}, "decoder": "imagecodecs"}
    return data, mode, meta


def _pillow_metadata(im) -> dict:
    info: dict[str, Any] = {"format": im.format, "mode": im.mode}
    dpi = im.info.get("dpi")
    if dpi is not None:
        info["dpi"] = [float(v) for v in dpi]
    n_frames = getattr(im, "n_frames", 1)
    if n_frames != 1:
        info["n_frames"] = int(n_frames)
    text = {}
    for key, value in (getattr(im, "text", None) or {}).items():
        if isinstance(value, str) and len(text) < 32:
            text[str(key)] = value
    if text:
        info["text"] = text
    return {"pillow": jsonable(info)}


# --------------------------------------------------------------------------
# TIFF


def _read_tiff(path: Path, fmt: str, head: bytes, max_pixels: int | None):
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if len(tif.pages) == 0:
            raise ImageReadError(path, "the TIFF file contains no image")
        page = tif.pages.first
        if not hasattr(page, "imagelength"):
            raise ImageReadError(path, "the first TIFF page cannot be parsed")
        _check_pixels(path, int(page.imagelength), int(page.imagewidth), max_pixels)
        photometric = int(page.photometric)
        if photometric == 5:  # SEPARATED (CMYK)
            raise ImageReadError(path, "CMYK (separated) TIFF images are not supported")
        if page.dtype is not None and np.dtype(page.dtype).kind == "c":
            raise ImageReadError(path, "complex-valued images are not supported")
        data = page.asarray()
        metadata = tiff_metadata(tif)
        colormap = page.colormap if photometric == 3 else None
        extrasamples = tuple(int(v) for v in (page.extrasamples or ()))
        axes = page.axes

    # move a sample axis last, drop other leading axes (first plane)
    if "S" in axes:
        data = np.moveaxis(data, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
    while data.ndim > (3 if axes.endswith("S") else 2):
        data = data[0]
        axes = axes[1:]

    if photometric == 3 and colormap is not None:  # palette
        rgb = np.moveaxis(np.asarray(colormap)[:, data], 0, -1)
        return rgb, "P:RGB", metadata
    if data.dtype == bool:
        return data, "1", metadata
    if data.ndim == 2:
        return data, "L", metadata
    n = data.shape[-1]
    if n == 1:
        return data[..., 0], "L", metadata
    if n == 2:
        return data, "LA", metadata
    if n >= 3 and photometric in (2, 6):  # RGB, YCbCr (decoded to RGB)
        # a 4th sample is alpha when ExtraSamples says so (1 associated,
        # 2 unassociated) or when the tag is absent; 0 means unspecified data
        has_alpha = n >= 4 and (not extrasamples or extrasamples[0] in (1, 2))
        if has_alpha:
            return data[..., :4], "RGBA", metadata
        if n > 3:
            metadata.setdefault("tiff", {})["extra_samples_dropped"] = n - 3
        return data[..., :3], "RGB", metadata
    if n >= 3:
        # several grey samples per pixel without RGB photometric: first sample
        metadata.setdefault("tiff", {})["extra_samples_dropped"] = n - 1
        return data[..., 0], "L", metadata
    raise ImageReadError(path, f"unsupported TIFF layout (axes {axes}, shape {data.shape})")  # pragma: no cover


def tiff_metadata(tif) -> dict:
    """Compact, JSON-serialisable instrument metadata of an open ``TiffFile``.

    Parameters
    ----------
    tif : tifffile.TiffFile
        An open file.

    Returns
    -------
    metadata : dict
        Keys present when found: ``"tiff"`` (basic tags: resolution, unit,
        software, ...), ``"fei"`` (FEI/Thermo tag 34680/34682 sections),
        ``"zeiss_sem"`` (Zeiss CZ_SEM tag 34118, named entries),
        ``"tescan"`` (TESCAN tag 50431 text blocks), ``"imagej"``, ``"ome"``
        (OME-XML ``Pixels`` attributes).
    """
    page = tif.pages.first
    tags = page.tags
    basic: dict[str, Any] = {
        "n_pages": len(tif.pages),
        "shape_first_page": list(page.shape),
        "dtype": str(page.dtype),
        "photometric": _enum_name(page.photometric),
        "compression": _enum_name(page.compression),
    }
    for name in ("Software", "Make", "Model", "DateTime", "Artist"):
        value = tags.valueof(name)
        if isinstance(value, str) and value.strip():
            basic[name] = value.strip()
    xres, yres, unit = tags.valueof("XResolution"), tags.valueof("YResolution"), tags.valueof("ResolutionUnit")
    if xres is not None and yres is not None:
        basic["XResolution"] = tiff_rational(xres)
        basic["YResolution"] = tiff_rational(yres)
        basic["ResolutionUnit"] = _enum_name(unit) if unit is not None else "NONE"
    description = page.description
    if description and not (tif.is_ome or tif.is_imagej):
        basic["ImageDescription"] = description
    out: dict[str, Any] = {"tiff": basic}

    with contextlib.suppress(Exception):
        if tif.is_fei:
            out["fei"] = tif.fei_metadata
    with contextlib.suppress(Exception):
        if tif.is_sem:
            sem = dict(tif.sem_metadata or {})
            sem.pop("", None)  # unnamed positional values
            out["zeiss_sem"] = sem
    with contextlib.suppress(Exception):
        tescan = _tescan_fields(tags.valueof(50431))
        if tescan:
            out["tescan"] = tescan
    with contextlib.suppress(Exception):
        if tif.is_imagej:
            ij = {k: v for k, v in (tif.imagej_metadata or {}).items() if k not in ("LUTs", "Ranges", "Labels", "Overlays", "ROI")}
            out["imagej"] = ij
    with contextlib.suppress(Exception):
        if tif.is_ome and tif.ome_metadata:
            pixels = ome_pixels_attributes(tif.ome_metadata)
            if pixels:
                out["ome"] = {"Pixels": pixels}
    return jsonable(out)


def _enum_name(value: Any) -> Any:
    return value.name if isinstance(value, enum.Enum) else value


def tiff_rational(value: Any) -> float | None:
    """A TIFF RATIONAL tag value (``(num, den)`` or a number) as float; None if undefined."""
    try:
        if isinstance(value, tuple):
            num, den = value
            return float(num) / float(den) if den else None
        return float(value)
    except (TypeError, ValueError):
        return None


def ome_pixels_attributes(ome_xml: str) -> dict[str, str]:
    """Attributes of the first ``Image/Pixels`` element of an OME-XML string."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(ome_xml)
    for elem in root.iter():
        if elem.tag.rsplit("}", 1)[-1] == "Pixels":
            return {k: v for k, v in elem.attrib.items() if not k.startswith("{")}
    return {}


def _tescan_fields(payload: Any) -> dict[str, dict[str, str]]:
    """Parse the TESCAN tag 50431 block structure into {block: {key: value}}.

    The tag holds a sequence of blocks, each ``uint32 size`` (counting the
    type field), ``uint16 type`` and ``size - 2`` bytes of data; types 2, 3,
    4, 5 are ``key=value`` text (MAIN, SEM, GAMA, FIB), 1 a JPEG thumbnail,
    0 the end.  Files not following this layout are scanned for
    ``key=value`` lines as a fallback.
    """
    if payload is None:
        return {}
    raw = payload.tobytes() if isinstance(payload, np.ndarray) else bytes(payload) if not isinstance(payload, str) else payload.encode("latin-1")
    names = {2: "MAIN", 3: "SEM", 4: "GAMA", 5: "FIB"}
    blocks: dict[str, dict[str, str]] = {}
    pos, ok = 0, True
    for byteorder in ("<", ">"):
        blocks, pos, ok = {}, 0, True
        while pos + 6 <= len(raw):
            size, btype = struct.unpack_from(byteorder + "IH", raw, pos)
            pos += 6
            if size < 2 or pos + size - 2 > len(raw):
                ok = False
                break
            data = raw[pos : pos + size - 2]
            pos += size - 2
            if btype == 0:
                break
            if btype in names:
                blocks[names[btype]] = _key_values(data.decode("latin-1", errors="replace"))
        if ok and blocks:
            return blocks
    if b"PixelSizeX=" in raw:
        return {"MAIN": _key_values(raw.decode("latin-1", errors="replace"))}
    return {}


def _key_values(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in re.split(r"[\r\n\x00]+", text):
        if "=" in line:
            key, value = line.split("=", 1)
            key = key.strip()
            if key and key.isprintable() and key not in out:
                out[key] = value.strip()
    return out


# --------------------------------------------------------------------------
# DM3 / DM4 (Gatan Digital Micrograph)


def _read_dm(path: Path, fmt: str, head: bytes, max_pixels: int | None):
    signals = _dm_signals(path, lazy=True)
    chosen = _dm_choose_image(path, signals)
    shape = tuple(int(s) for s in chosen["data"].shape)
    _check_pixels(path, shape[-2] if len(shape) >= 2 else 1, shape[-1], max_pixels)
    data = chosen["data"]
    if not isinstance(data, np.ndarray):
        data = np.asarray(data.compute() if hasattr(data, "compute") else data)
    while data.ndim > 2:
        data = data[0]
    metadata = {"dm": dm_image_metadata(chosen, version=int(fmt[-1]))}
    big_endian = (head[8:12] if fmt == "dm3" else head[12:16]) == b"\x00\x00\x00\x00"
    if big_endian:
        metadata["dm"]["byteorder"] = "big"
        if data.dtype.itemsize > 1 and not data.dtype.names and data.dtype.byteorder in ("=", "<"):
            # rosettasciio 0.15 decodes tag values with the file's byte order
            # but reads ImageData/Data in the machine's order; swap it back.
            data = data.byteswap()
    if data.dtype.names:  # RGBA struct
        rgb = np.stack([data[c] for c in ("R", "G", "B")], axis=-1)
        return rgb, "RGB", metadata
    return data, "L", metadata


def _dm_signals(path: Path, lazy: bool) -> list[dict]:
    from rsciio.digitalmicrograph import file_reader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return file_reader(str(path), lazy=lazy)
        except ValueError as exc:
            if lazy and "RGBA" in str(exc):
                return file_reader(str(path), lazy=False)
            raise


def _dm_choose_image(path: Path, signals: list[dict]) -> dict:
    """First signal with at least two signal axes (an image); thumbnails are
    already excluded by rosettasciio."""
    if not signals:
        raise ImageReadError(path, "the DM file contains no image")
    for sig in signals:
        if len(sig["data"].shape) >= 2:
            return sig
    raise ImageReadError(path, "the DM file contains only 1-D data (a spectrum), not an image")


def dm_image_metadata(signal: dict, version: int | None = None) -> dict:
    """Compact metadata of one rosettasciio DM signal dict."""
    axes = [
        {
            "name": ax.get("name"),
            "size": ax.get("size"),
            "scale": ax.get("scale"),
            "offset": ax.get("offset"),
            "units": ax.get("units"),
        }
        for ax in signal.get("axes", [])
    ]
    out: dict[str, Any] = {"axes": axes}
    if version is not None:
        out["version"] = version
    om = signal.get("original_metadata") or {}
    image = (om.get("ImageList") or {}).get("TagGroup0") or {}
    tags = image.get("ImageTags") or {}
    for key in ("Microscope Info", "Session Info", "DataBar", "Acquisition"):
        if key in tags:
            out[key] = tags[key]
    if image.get("Name"):
        out["title"] = image["Name"]
    return jsonable(out)


# --------------------------------------------------------------------------
# MRC


def _read_mrc(path: Path, fmt: str, head: bytes, max_pixels: int | None):
    import mrcfile

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with mrcfile.mmap(str(path), mode="r", permissive=True) as mrc:
            header = mrc.header
            nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
            _check_pixels(path, ny, nx, max_pixels)
            data = mrc.data
            if data is None:
                reasons = "; ".join(str(w.message) for w in caught) or "no data block"
                raise ImageReadError(path, f"the MRC file is truncated or corrupt ({reasons})")
            if data.dtype.kind == "c":
                raise ImageReadError(path, "complex-valued MRC images are not supported")
            section = data[0] if data.ndim == 3 else data
            if section.ndim != 2:
                raise ImageReadError(path, f"unexpected MRC data shape {data.shape}")
            array = np.array(section, dtype=section.dtype.newbyteorder("="))
            vs = mrc.voxel_size
            labels = []
            for i in range(min(int(header.nlabl), 10)):
                text = bytes(header.label[i]).decode("latin-1", errors="replace").strip()
                if text:
                    labels.append(text)
            meta = {
                "nx": nx,
                "ny": ny,
                "nz": nz,
                "mode": int(header.mode),
                "voxel_size_angstrom": [float(vs.x), float(vs.y), float(vs.z)],
                "exttyp": bytes(header.exttyp).decode("latin-1", errors="replace").strip("\x00 "),
                "labels": labels,
            }
    return array, "L", {"mrc": jsonable(meta)}
