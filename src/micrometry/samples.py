"""Sample discovery: which files under ``input_dir`` are micrographs.

A sample's name is its path relative to ``input_dir`` without the extension
(``plate1/img_001.tif`` → ``plate1/img_001``), so outputs mirror the input tree
and never collide.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

__all__ = ["SampleDiscoveryError", "discover_inputs", "discover_samples", "check_sample_name", "safe_result_path"]

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
    no backslashes or control characters (NUL, newline, DEL, ...).

    Parameters
    ----------
    sample : str
        Candidate sample name, e.g. ``"plate1/img_001"``.

    Returns
    -------
    str
        `sample`, unchanged.

    Raises
    ------
    ValueError
        If the name is unsafe; the message quotes it and says why.
    """
    if not isinstance(sample, str):
        raise ValueError(f"unsafe sample name {sample!r}: it must be a string")
    p = PurePosixPath(sample)
    bad = (
        not sample
        or p.is_absolute()
        or any(part in ("", ".", "..") for part in sample.split("/"))
        or "\\" in sample
        or any(ord(c) < 32 or ord(c) == 127 for c in sample)
    )
    if bad:
        raise ValueError(f"unsafe sample name {sample!r}: it must be a plain relative path")
    return sample


def safe_result_path(results_dir: str | os.PathLike, *parts: str) -> Path:
    """Join `parts` below `results_dir`, refusing any path that would leave it.

    Every path the stages write or read for a sample (``errors/{sample}.json``,
    ``objects/{sample}.parquet``, ...) is built with this function, so a
    crafted sample name cannot reach a file outside ``results_dir``.

    Parameters
    ----------
    results_dir : path
        The workflow's results folder.
    *parts : str
        Path components below it, e.g. ``"errors", f"{sample}.json"``; a part
        may itself contain ``/`` (nested sample names).

    Returns
    -------
    pathlib.Path
        ``Path(results_dir, *parts)``, not resolved.

    Raises
    ------
    ValueError
        If a part is absolute, contains a NUL or a backslash, or the joined
        path, normalised lexically (``a/../..`` collapsed), is not strictly
        inside `results_dir`.  The message names the offending part.

    Notes
    -----
    The check is lexical: symbolic links that the operator placed inside
    ``results_dir`` (e.g. ``images`` pointing to a scratch disk) are honoured;
    only the sample-derived part of the path is constrained.
    """
    if not parts:
        raise ValueError("safe_result_path needs at least one path component below results_dir")
    for part in parts:
        text = os.fspath(part)
        if not text or "\x00" in text or "\\" in text or PurePosixPath(text).is_absolute() or os.path.isabs(text):
            raise ValueError(
                f"refusing to build a result path from {text!r}: it must be a non-empty relative path "
                f"without NUL or backslash (below results_dir {os.fspath(results_dir)!r})"
            )
    rel = os.path.normpath(os.path.join(*(os.fspath(p) for p in parts)))
    if rel in (".", "..") or rel.startswith("../") or os.path.isabs(rel):
        raise ValueError(
            f"refusing to write outside results_dir {os.fspath(results_dir)!r}: "
            f"{'/'.join(map(os.fspath, parts))!r} resolves to {rel!r}, which is not below it"
        )
    return Path(results_dir).joinpath(*parts)


def discover_inputs(
    input_dir: str | os.PathLike,
    *,
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
    exclude_dirs: tuple[str, ...] = (),
) -> tuple[dict[str, str], dict[str, str]]:
    """Find micrographs below `input_dir`, recursively, setting aside the files that
    cannot become a sample instead of failing on them.

    A nightly run over a shared folder must not stop because one file is odd: a file
    whose name is not a safe sample name (a backslash or a control character in it) and
    files that would share one sample name (``a.png`` and ``a.tif`` in one folder: both,
    since neither has the better claim) are returned as refused, with the reason.

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
    samples : dict of str to str
        ``{sample: relative_path}`` sorted by sample, relative paths in POSIX form.
    refused : dict of str to str
        ``{relative_path: reason}`` of the files set aside, sorted by path.

    Raises
    ------
    SampleDiscoveryError
        If `input_dir` does not exist or is not a folder.
    """
    root = Path(input_dir)
    if not root.is_dir():
        raise SampleDiscoveryError(f"input_dir {str(root)!r} does not exist or is not a folder")
    exts = {e.lower() for e in extensions}
    excluded = {(root / d).resolve() for d in exclude_dirs}
    by_sample: dict[str, list[str]] = {}
    refused: dict[str, str] = {}
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
            try:
                check_sample_name(sample)
            except ValueError as exc:
                refused[rel] = f"file {rel!r} not processed: {exc}; rename it"
                continue
            by_sample.setdefault(sample, []).append(rel)
    samples: dict[str, str] = {}
    for sample, rels in by_sample.items():
        if len(rels) == 1:
            samples[sample] = rels[0]
            continue
        for rel in rels:
            refused[rel] = (
                f"files {', '.join(repr(r) for r in rels)} in {str(root)!r} would all become sample "
                f"{sample!r}; none of them is processed until all but one are renamed"
            )
    return dict(sorted(samples.items())), dict(sorted(refused.items()))


def discover_samples(
    input_dir: str | os.PathLike,
    *,
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
    exclude_dirs: tuple[str, ...] = (),
) -> dict[str, str]:
    """Find micrographs below `input_dir`, recursively; parameters as for
    :func:`discover_inputs`, but any file that cannot become a sample is an error.

    Returns
    -------
    dict of str to str
        ``{sample: relative_path}`` sorted by sample, relative paths in POSIX
        form.

    Raises
    ------
    SampleDiscoveryError
        If `input_dir` does not exist, or a file cannot become a sample: two
        files map to the same sample (``a.png`` and ``a.tif`` in one folder),
        or a name is unsafe.  :func:`discover_inputs` sets those aside instead.
    """
    samples, refused = discover_inputs(input_dir, extensions=extensions, exclude_dirs=exclude_dirs)
    if refused:
        raise SampleDiscoveryError(next(iter(refused.values())))
    return samples
