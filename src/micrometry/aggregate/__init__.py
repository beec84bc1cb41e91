"""Dataset aggregation: dataset tables, size-distribution plots, QC overlays.

Public API
----------
aggregate_dataset
    Join per-image objects, calibration, segment and error files into a
    dataset objects table and a one-row-per-image summary table.
write_dataset
    Write both tables as Parquet (zstd, provenance metadata), atomically.
diameter_statistics
    Mean, median, std and D10/D50/D90 of a set of diameters.
plot_size_distribution, plot_dataset_summary
    PNG plots (matplotlib, Agg canvas, imported on use).
qc_overlay
    PNG of a micrograph with its objects outlined (Pillow).
"""

from micrometry.aggregate.plots import plot_dataset_summary, plot_size_distribution
from micrometry.aggregate.qc import label_colors, qc_overlay
from micrometry.aggregate.tables import (
    IMAGES_SCHEMA,
    aggregate_dataset,
    diameter_statistics,
    write_dataset,
)

__all__ = [
    "IMAGES_SCHEMA",
    "aggregate_dataset",
    "diameter_statistics",
    "label_colors",
    "plot_dataset_summary",
    "plot_size_distribution",
    "qc_overlay",
    "write_dataset",
]
