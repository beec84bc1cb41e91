"""The EMPS data set (real TEM/SEM micrographs with instance masks) and its split.

EMPS (Electron Microscopy Particle Segmentation; Yildirim & Cole, J. Chem. Inf.
Model. 61 (2021) 1136) ships 366 training micrographs cropped from figures of
248 papers.  Images of one paper look alike, so the train/validation split is
made **by DOI**: every image of a paper is on the same side.

The data are never copied into the repository.  They are read from
:data:`DEFAULT_EMPS_DIR` (``<repository>/../shared/data/emps-train``) or from
the directory named by the environment variable ``MICROMETRY_EMPS_DIR``; when
neither exists, :func:`emps_dir` returns ``None`` and tests skip.

The split itself is committed as ``micrometry/train/splits/by_doi.json`` and is
written by :func:`make_split` / :func:`write_split`, so it can be re-derived
from ``metadata.csv`` and checked.

Split rule
----------
Each DOI is hashed with SHA-256 (of its UTF-8 string as written in
``metadata.csv``).  DOIs are taken in increasing hash order and assigned to
validation while the validation image count is below
``val_fraction * n_images`` (default 20 %); the first DOI that reaches the
target is included, all later DOIs go to training.  Deterministic, needs no
random seed, and a DOI is never on both sides.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_EMPS_DIR",
    "EMPS_DIR_ENV",
    "SPLIT_PATH",
    "EmpsDataError",
    "emps_dir",
    "read_metadata",
    "make_split",
    "write_split",
    "load_split",
    "load_emps_item",
    "iter_emps",
]

#: ``<repository root>/../shared/data/emps-train`` (this file is
#: ``<root>/src/micrometry/train/realdata.py``).
DEFAULT_EMPS_DIR: Path = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "emps-train"

#: Environment variable that overrides :data:`DEFAULT_EMPS_DIR`.
EMPS_DIR_ENV: str = "MICROMETRY_EMPS_DIR"

#: The committed split file.
SPLIT_PATH: Path = Path(__file__).resolve().parent / "splits" / "by_doi.json"

_DATASET = "emps-train"


class EmpsDataError(ValueError):
    """The EMPS data or split file is missing or malformed (message names the file)."""


def emps_dir() -> Path | None:
    """Directory holding the EMPS training data, or ``None`` when absent.

    Returns
    -------
    path : pathlib.Path or None
        ``$MICROMETRY_EMPS_DIR`` when set, else :data:`DEFAULT_EMPS_DIR`;
        ``None`` if that directory has no ``metadata.csv``.
    """
    env = os.environ.get(EMPS_DIR_ENV)
    root = Path(env) if env else DEFAULT_EMPS_DIR
    return root if (root / "metadata.csv").is_file() else None


def _require_root(root: str | os.PathLike | None) -> Path:
    if root is not None:
        return Path(root)
    found = emps_dir()
    if found is None:
        env = os.environ.get(EMPS_DIR_ENV)
        where = env if env else str(DEFAULT_EMPS_DIR)
        raise EmpsDataError(
            f"EMPS data not found: '{where}' has no metadata.csv; set {EMPS_DIR_ENV} to the "
            "directory of the EMPS training split"
        )
    return found


def read_metadata(metadata_csv: str | os.PathLike) -> list[dict[str, str]]:
    """Read ``metadata.csv`` (columns ``id,doi,locator``) into a list of rows.

    Raises
    ------
    EmpsDataError
        If the file is missing, lacks the ``id``/``doi`` columns, has an empty
        or duplicated id, or an empty DOI.
    """
    path = Path(metadata_csv)
    if not path.is_file():
        raise EmpsDataError(f"cannot read EMPS metadata '{path}': the file does not exist")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        if "id" not in cols or "doi" not in cols:
            raise EmpsDataError(f"EMPS metadata '{path}' must have columns 'id' and 'doi', found {cols}")
        rows = [dict(r) for r in reader]
    seen: set[str] = set()
    for i, row in enumerate(rows, start=2):
        item, doi = (row.get("id") or "").strip(), (row.get("doi") or "").strip()
        if not item or not doi:
            raise EmpsDataError(f"EMPS metadata '{path}' line {i}: empty id or doi")
        if item in seen:
            raise EmpsDataError(f"EMPS metadata '{path}' line {i}: id {item!r} appears twice")
        seen.add(item)
        row["id"], row["doi"] = item, doi
    if not rows:
        raise EmpsDataError(f"EMPS metadata '{path}' lists no images")
    return rows


def _doi_hash(doi: str) -> str:
    return hashlib.sha256(doi.encode("utf-8")).hexdigest()


def make_split(metadata_csv: str | os.PathLike, *, val_fraction: float = 0.2) -> dict:
    """Split the EMPS images into train and validation by DOI.

    Parameters
    ----------
    metadata_csv : str or path-like
        The data set's ``metadata.csv`` (``id,doi,locator``).
    val_fraction : float, optional
        Target fraction of *images* in validation, in (0, 1).

    Returns
    -------
    split : dict
        ``{"dataset", "rule", "val_fraction_target", "n_images", "n_dois",
        "val_dois", "train_ids", "val_ids"}``; ids and DOIs sorted.

    See the module docstring for the rule.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    rows = read_metadata(metadata_csv)
    by_doi: dict[str, list[str]] = {}
    for row in rows:
        by_doi.setdefault(row["doi"], []).append(row["id"])
    target = val_fraction * len(rows)
    val_dois: list[str] = []
    n_val = 0
    for doi in sorted(by_doi, key=lambda d: (_doi_hash(d), d)):
        if n_val >= target:
            break
        val_dois.append(doi)
        n_val += len(by_doi[doi])
    val_set = set(val_dois)
    val_ids = sorted(i for d in val_set for i in by_doi[d])
    train_ids = sorted(i for d, ids in by_doi.items() if d not in val_set for i in ids)
    rule = (
        "DOIs sorted by sha256(doi as UTF-8).hexdigest(); DOIs taken in that order into "
        f"validation while the validation image count is < {val_fraction:g} * n_images "
        "(the DOI reaching the target included); all other DOIs train. "
        "Made by micrometry.train.realdata.make_split(metadata.csv)."
    )
    return {
        "dataset": _DATASET,
        "rule": rule,
        "val_fraction_target": val_fraction,
        "n_images": len(rows),
        "n_dois": len(by_doi),
        "val_dois": sorted(val_dois),
        "train_ids": train_ids,
        "val_ids": val_ids,
    }


def write_split(metadata_csv: str | os.PathLike, out_path: str | os.PathLike = SPLIT_PATH) -> dict:
    """Compute :func:`make_split` and write it atomically as JSON to `out_path`."""
    from micrometry._atomic import write_json

    split = make_split(metadata_csv)
    write_json(out_path, split)
    return split


def load_split() -> dict:
    """The committed EMPS split (``micrometry/train/splits/by_doi.json``).

    Returns
    -------
    split : dict
        As returned by :func:`make_split`.
    """
    try:
        text = resources.files("micrometry.train").joinpath("splits/by_doi.json").read_text("utf-8")
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise EmpsDataError(f"the EMPS split file '{SPLIT_PATH}' is missing from the package") from exc
    split = json.loads(text)
    for key in ("train_ids", "val_ids", "val_dois"):
        if not isinstance(split.get(key), list):
            raise EmpsDataError(f"EMPS split file '{SPLIT_PATH}' has no list {key!r}")
    return split


def load_emps_item(item_id: str, root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read one EMPS micrograph and its instance mask.

    Parameters
    ----------
    item_id : str
        Image id (file stem in ``images/`` and ``segmaps/``).
    root : str or path-like, optional
        Data directory; default :func:`emps_dir`.

    Returns
    -------
    image : (Y, X) ndarray of uint8
        Grey intensities.  The RGB channels are identical in EMPS, so this is
        channel 0 exactly; otherwise BT.709 luma (see
        :func:`micrometry.io.readers.read_image`).
    labels : (Y, X) ndarray of uint32
        Instance labels relabelled to 1..N (0 = background).

    Raises
    ------
    EmpsDataError
        If a file is missing or unreadable, the image is not 8-bit, or the
        two shapes differ.
    """
    from skimage.segmentation import relabel_sequential

    from micrometry.io.readers import ImageReadError, read_image

    base = _require_root(root)
    img_path = base / "images" / f"{item_id}.png"
    seg_path = base / "segmaps" / f"{item_id}.png"
    try:
        image = read_image(img_path).data
        seg = read_image(seg_path).data
    except ImageReadError as exc:
        raise EmpsDataError(f"EMPS item {item_id!r}: {exc}") from exc
    if image.dtype != np.uint8:
        raise EmpsDataError(f"EMPS image '{img_path}' is {image.dtype}, expected 8-bit")
    if seg.shape != image.shape:
        raise EmpsDataError(
            f"EMPS mask '{seg_path}' has shape {seg.shape}, image '{img_path}' has {image.shape}"
        )
    if seg.dtype.kind not in "ui":
        raise EmpsDataError(f"EMPS mask '{seg_path}' has non-integer dtype {seg.dtype}")
    if seg.dtype.kind == "i" and seg.min() < 0:
        raise EmpsDataError(f"EMPS mask '{seg_path}' has negative labels")
    labels, _, _ = relabel_sequential(seg.astype(np.uint32, copy=False))
    return np.ascontiguousarray(image), labels.astype(np.uint32, copy=False)


def iter_emps(
    split: str = "train", root: str | os.PathLike | None = None
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Iterate over the images of one side of the committed split.

    Parameters
    ----------
    split : {"train", "val"}
    root : str or path-like, optional
        Data directory; default :func:`emps_dir`.

    Yields
    ------
    item_id : str
    image : (Y, X) ndarray of uint8
    labels : (Y, X) ndarray of uint32
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    base = _require_root(root)
    for item_id in load_split()[f"{split}_ids"]:
        image, labels = load_emps_item(item_id, base)
        yield item_id, image, labels
