"""Per-sample pixel-size overrides: a small CSV table kept with the config.

Format (UTF-8, comma-separated, header required)::

    sample,nm_per_px,note
    plate1/img_001,2.481,measured on a grating 2024-05-02
    plate1/img_002,2.481,

``sample`` is the workflow's sample id (input path relative to
``input_dir`` without extension); ``nm_per_px`` a positive number of
nanometres per pixel.  Extra columns (``note``, ...) are allowed and
ignored.  Blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

__all__ = ["OverridesError", "load_overrides"]

_REQUIRED = ("sample", "nm_per_px")


class OverridesError(ValueError):
    """The overrides table is malformed; the message names file and line."""


def load_overrides(csv_path: str | os.PathLike) -> dict[str, float]:
    """Read the per-sample pixel-size override table.

    Parameters
    ----------
    csv_path : str or path-like
        CSV file with at least the columns ``sample`` and ``nm_per_px``.

    Returns
    -------
    overrides : dict of str to float
        ``{sample: nm_per_px}``.

    Raises
    ------
    OverridesError
        (a ValueError) naming the file and line when the file is missing or
        empty, a required column is absent, a row has an empty sample, a
        missing, non-numeric, non-finite or non-positive ``nm_per_px``, or a
        sample appears twice.
    """
    path = Path(csv_path)
    if not path.is_file():
        raise OverridesError(f"overrides table '{path}' does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise OverridesError(f"overrides table '{path}' cannot be read: {exc}") from exc

    lines = [(i, line) for i, line in enumerate(text.splitlines(), start=1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise OverridesError(f"overrides table '{path}' is empty; expected a header 'sample,nm_per_px'")
    reader = csv.reader([line for _, line in lines])
    header = [h.strip() for h in next(reader)]
    missing = [c for c in _REQUIRED if c not in header]
    if missing:
        raise OverridesError(
            f"overrides table '{path}' line {lines[0][0]}: missing column(s) {', '.join(missing)}; "
            f"header is {','.join(header)!r}, expected at least 'sample,nm_per_px'"
        )
    i_sample, i_value = header.index("sample"), header.index("nm_per_px")

    out: dict[str, float] = {}
    first_line: dict[str, int] = {}
    for (line_no, _), row in zip(lines[1:], reader):
        where = f"overrides table '{path}' line {line_no}"
        sample = row[i_sample].strip() if i_sample < len(row) else ""
        raw = row[i_value].strip() if i_value < len(row) else ""
        if not sample:
            raise OverridesError(f"{where}: empty sample name")
        if not raw:
            raise OverridesError(f"{where}: sample {sample!r} has no nm_per_px value")
        try:
            value = float(raw)
        except ValueError:
            raise OverridesError(f"{where}: nm_per_px {raw!r} of sample {sample!r} is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise OverridesError(f"{where}: nm_per_px of sample {sample!r} must be a positive number, got {raw}")
        if sample in out:
            raise OverridesError(
                f"{where}: sample {sample!r} is listed twice (first on line {first_line[sample]})"
            )
        out[sample] = value
        first_line[sample] = line_no
    return out
