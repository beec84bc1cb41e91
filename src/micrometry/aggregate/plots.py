"""Dataset plots: size distributions and per-image summaries.

Figures are built with :class:`matplotlib.figure.Figure` on an explicit Agg
canvas, never through :mod:`matplotlib.pyplot`, so no global figure state or
backend switch leaks into the caller.  Matplotlib is imported inside the
functions.  PNGs are written atomically.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from micrometry._atomic import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_size_distribution", "plot_dataset_summary"]

PathLike = str | os.PathLike

_MAX_BINS = 100
_MAX_SAMPLES_SHOWN = 10
_DPI = 100


def _new_figure(width_in: float, height_in: float, nrows: int = 1) -> tuple[Figure, list]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, 1, squeeze=False, sharex=True)[:, 0]
    return fig, list(axes)


def _save(fig: Figure, out_png: PathLike) -> None:
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)


def _message(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=16, transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _floats(table: pa.Table, name: str) -> np.ndarray:
    return pc.fill_null(table.column(name).cast(pa.float64()), np.nan).to_numpy()


def _pick_column(objects: pa.Table, column: str, keep: np.ndarray) -> tuple[str, str]:
    """Return (column name, unit) to plot: nm when any kept value is finite, else px."""
    names = objects.column_names
    if column.endswith(("_nm", "_px")) and column in names:
        return column, column[-2:]
    nm, px = f"{column}_nm", f"{column}_px"
    if nm in names and np.isfinite(_floats(objects, nm)[keep]).any():
        return nm, "nm"
    if px in names:
        return px, "px"
    if nm in names:
        return nm, "nm"
    raise ValueError(f"objects table has neither {nm!r} nor {px!r} (columns: {names})")


def _bin_edges(values: np.ndarray) -> np.ndarray:
    edges = np.histogram_bin_edges(values, bins="auto")
    if edges.size - 1 > _MAX_BINS:
        edges = np.histogram_bin_edges(values, bins=_MAX_BINS)
    return edges


def plot_size_distribution(
    objects: pa.Table,
    out_png: PathLike,
    *,
    column: str = "equivalent_diameter",
    by_sample: bool = False,
    title: str | None = None,
    exclude_border: bool = True,
) -> None:
    """Histogram of an object size column, written as a PNG.

    Parameters
    ----------
    objects : pyarrow.Table
        Objects table (per image or dataset-wide) with ``{column}_nm`` and/or
        ``{column}_px`` columns, ``touches_border`` and, for ``by_sample``,
        ``sample``.
    out_png : path
        PNG written atomically.
    column : str
        Base name of the size column (``"equivalent_diameter"``,
        ``"feret_max"``, ...) or a full name ending in ``_nm``/``_px``.  The
        nm column is used for the objects that have a finite value in it
        (calibrated); when no object is calibrated the px column is used and
        the axis says "px".
    by_sample : bool
        Draw one step histogram per sample on shared bins (the
        ``_MAX_SAMPLES_SHOWN - 1`` largest samples individually, the rest
        pooled as "other").  Otherwise one histogram with a log-normal fit
        (:func:`scipy.stats.lognorm.fit`, location fixed at 0), scaled to
        counts.
    title : str, optional
        Figure title.
    exclude_border : bool
        Leave out objects with ``touches_border`` true (their size is cut off),
        as the dataset statistics do.

    Notes
    -----
    An empty table, or one where no object has a finite size, still gives a
    valid PNG saying "no objects".
    """
    if not isinstance(objects, pa.Table):
        raise TypeError(f"objects must be a pyarrow.Table, got {type(objects).__name__}")
    fig, (ax,) = _new_figure(7.0, 4.5)
    if title:
        fig.suptitle(title)

    n_rows = objects.num_rows
    keep = np.ones(n_rows, dtype=bool)
    if exclude_border and n_rows and "touches_border" in objects.column_names:
        touches = pc.fill_null(objects.column("touches_border").cast(pa.bool_()), True)
        keep = ~touches.to_numpy(zero_copy_only=False).astype(bool)

    if n_rows == 0:
        _message(ax, "no objects")
        _save(fig, out_png)
        return

    name, unit = _pick_column(objects, column, keep)
    values_all = _floats(objects, name)
    n_uncal = int((keep & ~np.isfinite(values_all)).sum()) if unit == "nm" else 0
    keep &= np.isfinite(values_all)
    values = values_all[keep]
    if values.size == 0:
        _message(ax, "no objects" + (" (all touch the border)" if exclude_border else ""))
        _save(fig, out_png)
        return

    label = column[:-3] if column.endswith(("_nm", "_px")) else column
    ax.set_xlabel(f"{label.replace('_', ' ')} [{unit}]" + ("  (uncalibrated: pixels)" if unit == "px" else ""))
    ax.set_ylabel("objects")
    edges = _bin_edges(values)
    notes = [f"n = {values.size}"]
    if exclude_border:
        notes.append("border-touching excluded")
    if n_uncal:
        notes.append(f"{n_uncal} uncalibrated omitted")

    if by_sample and "sample" in objects.column_names:
        samples = np.asarray(objects.column("sample").to_pylist(), dtype=object)[keep]
        names, counts = np.unique(samples.astype(str), return_counts=True)
        order = np.argsort(-counts, kind="stable")
        if names.size > _MAX_SAMPLES_SHOWN:
            shown = names[order[: _MAX_SAMPLES_SHOWN - 1]]
        else:
            shown = names[order]
        for s in shown:
            ax.hist(values[samples == s], bins=edges, histtype="step", linewidth=1.5, label=str(s))
        rest = ~np.isin(samples.astype(str), shown)
        if rest.any():
            ax.hist(values[rest], bins=edges, histtype="step", linewidth=1.5, color="0.4",
                    label=f"other ({names.size - shown.size} samples)")
        ax.legend(fontsize="small", title=", ".join(notes), title_fontsize="small")
    else:
        ax.hist(values, bins=edges, color="tab:blue", alpha=0.7, label=", ".join(notes))
        positive = values[values > 0]
        if positive.size >= 3 and np.ptp(positive) > 0:
            from scipy import stats

            sigma, _, scale = stats.lognorm.fit(positive, floc=0)
            x = np.linspace(edges[0], edges[-1], 400)
            x = x[x > 0]
            width = float(np.mean(np.diff(edges)))
            ax.plot(x, positive.size * width * stats.lognorm.pdf(x, sigma, loc=0, scale=scale),
                    color="tab:red", label=f"log-normal: median {scale:.3g} {unit}, σg {np.exp(sigma):.3g}")
        ax.legend(fontsize="small")
    _save(fig, out_png)


def _tick_labels(images: pa.Table, unit: str) -> list[str]:
    """Sample names, marked "(error)", "(no objects)" or "(uncal.)" when they have no D50 point."""
    d50 = _floats(images, f"eqd_d50_{unit}")
    n_inner = np.nan_to_num(_floats(images, "n_objects_not_touching_border"), nan=0.0) \
        if "n_objects_not_touching_border" in images.column_names else np.ones(images.num_rows)
    labels = []
    for s, st, d, k in zip(images.column("sample").to_pylist(), images.column("status").to_pylist(), d50, n_inner):
        if st != "ok":
            labels.append(f"{s} (error)")
        elif np.isfinite(d):
            labels.append(str(s))
        elif k == 0:
            labels.append(f"{s} (no objects)")
        else:
            labels.append(f"{s} (uncal.)")
    return labels


def plot_dataset_summary(images: pa.Table, out_png: PathLike) -> None:
    """Per-image D50 with D10–D90 bars (top) and object counts (bottom), as a PNG.

    Parameters
    ----------
    images : pyarrow.Table
        Images table from :func:`micrometry.aggregate.aggregate_dataset`
        (columns ``sample``, ``status``, ``n_objects``, ``eqd_d10_nm`` ...
        ``eqd_d90_px``).
    out_png : path
        PNG written atomically.

    Notes
    -----
    Diameters are in nm when at least one image is calibrated; uncalibrated
    images then have no point and their tick label says "(uncal.)"; images
    without objects away from the border say "(no objects)".  When none
    is calibrated, pixels are plotted.  Failed images have a red tick label
    "(error)".  Tick labels are left out beyond 80 images.
    """
    if not isinstance(images, pa.Table):
        raise TypeError(f"images must be a pyarrow.Table, got {type(images).__name__}")
    required = ["sample", "status", "n_objects"] + [f"eqd_d{p}_{u}" for p in (10, 50, 90) for u in ("nm", "px")]
    missing = [c for c in required if c not in images.column_names]
    if missing:
        raise ValueError(f"images table lacks columns {missing}")

    n = images.num_rows
    if n == 0:
        fig, (ax,) = _new_figure(7.0, 4.5)
        _message(ax, "no images")
        _save(fig, out_png)
        return

    unit = "nm" if np.isfinite(_floats(images, "eqd_d50_nm")).any() else "px"
    d10, d50, d90 = (_floats(images, f"eqd_d{p}_{unit}") for p in (10, 50, 90))
    counts = np.nan_to_num(_floats(images, "n_objects"), nan=0.0)
    status = [str(s) for s in images.column("status").to_pylist()]

    fig, (ax_d, ax_n) = _new_figure(min(max(7.0, 0.3 * n + 2.0), 40.0), 7.0, nrows=2)
    x = np.arange(n)
    ok = np.isfinite(d50)
    lo = np.where(np.isfinite(d10), d50 - d10, 0.0)[ok]
    hi = np.where(np.isfinite(d90), d90 - d50, 0.0)[ok]
    ax_d.errorbar(x[ok], d50[ok], yerr=np.vstack([lo, hi]), fmt="o", color="tab:blue", ecolor="0.3", capsize=3,
                  label="D50 (bars: D10–D90)")
    ax_d.set_ylabel(f"equivalent diameter [{unit}]" + ("\n(uncalibrated: pixels)" if unit == "px" else ""))
    ax_d.set_title("per-image size (objects not touching the border)")
    if ok.any():
        ax_d.legend(fontsize="small")
    else:
        ax_d.text(0.5, 0.5, "no size statistics", ha="center", va="center", transform=ax_d.transAxes)

    colors = ["tab:red" if s != "ok" else "tab:gray" for s in status]
    ax_n.bar(x, counts, color=colors)
    ax_n.set_ylabel("objects")
    ax_n.set_xlim(-0.6, n - 0.4)
    if n <= 80:
        ax_n.set_xticks(x, _tick_labels(images, unit), rotation=90, fontsize="small")
        for tick, st in zip(ax_n.get_xticklabels(), status):
            if st != "ok":
                tick.set_color("tab:red")
    else:
        ax_n.set_xlabel(f"{n} images")
    _save(fig, out_png)
