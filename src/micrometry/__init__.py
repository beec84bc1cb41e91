"""micrometry: calibrated morphology tables from micrographs.

The package is function-first: array-in/array-out functions grouped in one
module per concept (``io``, ``calibrate``, ``segment``, ``measure``,
``aggregate``, ``train``).  Importing :mod:`micrometry` is cheap: it loads no
heavy dependency (torch, cupy, dask, zarr); sub-packages import them when used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
