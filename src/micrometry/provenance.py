"""Provenance: versions and parameters recorded with every output.

Per-sample outputs carry only deterministic provenance (no timestamps), so an
interrupted-and-resumed run writes byte-identical results to an uninterrupted
one.  Run-level records with times live in ``{results}/provenance/``.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import subprocess
from pathlib import Path
from typing import Any

import micrometry
from micrometry._versions import STAGE_VERSIONS

__all__ = ["git_sha", "package_versions", "stage_provenance"]

#: Distributions whose versions are recorded in run provenance.
TRACKED_PACKAGES: tuple[str, ...] = (
    "micrometry", "numpy", "scipy", "scikit-image", "dask", "distributed", "zarr", "ome-zarr",
    "tifffile", "pillow", "rosettasciio", "mrcfile", "pyarrow", "pandas", "matplotlib",
    "snakemake", "torch", "numba", "cupy", "ultralytics", "rapidocr-onnxruntime",
)


@functools.cache
def git_sha() -> str | None:
    """Commit of the micrometry source checkout, or None outside a git checkout."""
    src = Path(micrometry.__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha or None


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of `names` (missing distributions are left out)."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def stage_provenance(stage: str, params: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """Deterministic provenance block for one stage's output.

    Parameters
    ----------
    stage : str
        Stage name, a key of :data:`micrometry._versions.STAGE_VERSIONS`.
    params : dict, optional
        The stage's settings (what its Snakemake ``params`` carry).
    **extra
        Further keys (``input_sha256``, ``model_sha256``, ``calibration_source`` …).
    """
    block = {
        "stage": stage,
        "stage_version": STAGE_VERSIONS[stage],
        "micrometry_version": micrometry.__version__,
        "git_sha": git_sha(),
        "params": params or {},
    }
    block.update(extra)
    return block


def write_run_provenance(results_dir: str | os.PathLike, *, config: dict[str, Any]) -> Path:
    """Write ``{results}/provenance/<UTC timestamp>.json`` for one workflow run.

    It holds the resolved config, micrometry version and git SHA, the versions
    of the tracked packages and the Python/platform description.
    """
    import datetime
    import platform
    import sys

    from micrometry._atomic import write_json

    now = datetime.datetime.now(datetime.timezone.utc)
    path = Path(results_dir) / "provenance" / f"{now.strftime('%Y%m%dT%H%M%S.%fZ')}.json"
    write_json(path, {
        "started_utc": now.isoformat(),
        "micrometry_version": micrometry.__version__,
        "git_sha": git_sha(),
        "stage_versions": STAGE_VERSIONS,
        "python": sys.version,
        "platform": platform.platform(),
        "packages": package_versions(),
        "config": config,
    })
    return path
