"""Image input/output: readers for micrograph formats and OME-Zarr stores.

``micrometry.io.readers`` decodes PNG/JPEG/BMP/TIFF/DM3/DM4/MRC into grey
arrays; ``micrometry.io.omezarr`` writes and reads the NGFF stores of the
workflow.  Importing this package is cheap: the heavy libraries (tifffile,
rosettasciio, mrcfile, dask, zarr, ome-zarr) load when a function needs them.
"""

from micrometry.io.readers import (
    DEFAULT_MAX_PIXELS,
    SUPPORTED_EXTENSIONS,
    ImageReadError,
    RawImage,
    read_image,
    sha256_file,
    sniff_format,
)

_OMEZARR_NAMES = (
    "write_image_store",
    "open_image",
    "load_image",
    "read_attrs",
    "write_labels",
    "load_labels",
    "write_prediction",
    "load_prediction",
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SUPPORTED_EXTENSIONS",
    "ImageReadError",
    "RawImage",
    "read_image",
    "sha256_file",
    "sniff_format",
    *_OMEZARR_NAMES,
]


def __getattr__(name: str):
    # OME-Zarr helpers pull in dask/zarr; load them on first use only.
    if name in _OMEZARR_NAMES:
        from micrometry.io import omezarr

        return getattr(omezarr, name)
    raise AttributeError(f"module 'micrometry.io' has no attribute {name!r}")
