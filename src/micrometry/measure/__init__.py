"""Morphology measurements and the objects table.

Public API (loaded lazily, so ``import micrometry.measure`` is cheap):

- :func:`measure_objects` (``morphology``): label image -> one array per column.
- :func:`feret_diameters` (``morphology``): caliper diameters of a pixel set.
- :func:`objects_table`, :func:`write_parquet`, :func:`read_metadata` (``table``).
- :data:`OBJECT_COLUMNS`, :class:`Column`, :data:`SCHEMA_VERSION`,
  :func:`objects_schema` (``schema``): the column registry.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "measure_objects": "morphology",
    "feret_diameters": "morphology",
    "objects_table": "table",
    "write_parquet": "table",
    "read_metadata": "table",
    "Column": "schema",
    "OBJECT_COLUMNS": "schema",
    "SCHEMA_VERSION": "schema",
    "objects_schema": "schema",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
