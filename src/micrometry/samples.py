"""Sample discovery: which files under ``input_dir`` are micrographs.

A sample's name is its path relative to ``input_dir`` without the extension
(``plate1/img_001.tif`` → ``plate1/img_001``), so outputs mirror the input tree
and never collide.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

__all__ = ["SampleDiscoveryError", "discover_samples", "check_sample_name"]

#: Extensions read by :func:`micrometry.io.readers.read_image` (lower case).
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dm3", ".dm4", ".mrc",
)


class SampleDiscoveryError(ValueError):
    """The input folder cannot be turned into a unique set of sample names."""


def check_sample_name(sample: str) -> str:
    """Return `sample` if it is a safe relative POSIX path, else raise ValueError.

    A sample name becomes part of output paths, so it must never point outside
    ``results_dir``: no absolute paths, no ``..`` components, no empty parts,
    no backslashes or control characters.
    """
    p = PurePosixPath(sample)
    bad = (
        not sample
        or p.is_absolute()
        or any(part in ("", ".", "..") for part in sample.split("/"))
        or "\\" in sample
        or any(ord(c) < 32 for c in sample)
    )
    if bad:
        raise ValueError(f"unsafe sample name {sample!r}: it must be a plain relative path")
    return sample


def discover_samples(
    input_dir: str | os.PathLike,
    *,
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
    exclude_dirs: tuple[str, ...] = (),
) -> dict[str, str]:
    """Find micrographs below `input_dir`, recursively.

    Parameters
    ----------
    input_dir : path
        Folder to scan.  Hidden files and folders (name starting with ``.``)
        are skipped, as are folders whose name ends in ``.zarr``.
    extensions : tuple of str
        Lower-case file extensions to accept (matched case-insensitively).
    exclude_dirs : tuple of str
        Absolute or `input_dir`-relative folders not to descend into (e.g. a
        results folder placed inside the input folder).

    Returns
    -------
    dict of str to str
        ``{sample: relative_path}`` sorted by sample, relative paths in POSIX
        form.

    Raises
    ------
    SampleDiscoveryError
        If `input_dir` does not exist, or two files map to the same sample
        (``a.png`` and ``a.tif`` in one folder).
    """
    root = Path(input_dir)
    if not root.is_dir():
        raise SampleDiscoveryError(f"input_dir {str(root)!r} does not exist or is not a folder")
    exts = {e.lower() for e in extensions}
    excluded = {(root / d).resolve() for d in exclude_dirs}
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".") and not d.endswith(".zarr") and (here / d).resolve() not in excluded
        )
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            stem, ext = os.path.splitext(name)
            if ext.lower() not in exts or not stem:
                continue
            rel = (here / name).relative_to(root).as_posix()
            sample = rel[: -len(ext)]
            check_sample_name(sample)
            if sample in found:
                raise SampleDiscoveryError(
                    f"files {found[sample]!r} and {rel!r} in {str(root)!r} would both become sample "
                    f"{sample!r}; rename one of them"
                )
            found[sample] = rel
    return dict(sorted(found.items()))
