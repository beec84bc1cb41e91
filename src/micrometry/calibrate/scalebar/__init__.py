"""Scale bars burned into micrographs: read the label and measure the bar.

Array in / array out building blocks of the scale-bar calibration (issue 4);
finding the bar and label boxes (a detector) is a separate step.

- :func:`parse_scale_label` turns OCR text such as ``"0,5 µm"`` into a
  :class:`ScaleLabel` (value, unit, value in nm) or rejects it;
  :func:`nm_per_px` divides by a bar length.
- :func:`measure_bar` measures a bar inside an approximate box: length in
  pixels end to end (sub-pixel), orientation, tight box, polarity.
- :func:`find_bar_lines` lists bar-like lines anywhere in an image, for when
  the detector found no bar.
- :func:`read_text` reads text with PP-OCR models (``rapidocr-onnxruntime``,
  offline; the ``scalebar`` extra, imported on first use);
  :func:`read_scale_label` reads and parses a label box, choosing between
  units by the recognizer's likelihood and a prior.
"""

from micrometry.calibrate.scalebar.lines import BarLine, find_bar_lines
from micrometry.calibrate.scalebar.measure import BarMeasurement, BarNotFoundError, measure_bar
from micrometry.calibrate.scalebar.ocr import (
    UNIT_LOG_PRIOR,
    ScaleRead,
    TextHit,
    clear_engine_cache,
    rapidocr_model_paths,
    read_scale_label,
    read_text,
)
from micrometry.calibrate.scalebar.parse import LABEL_UNITS, ScaleLabel, nm_per_px, parse_scale_label

__all__ = [
    "LABEL_UNITS",
    "UNIT_LOG_PRIOR",
    "BarLine",
    "BarMeasurement",
    "BarNotFoundError",
    "ScaleLabel",
    "ScaleRead",
    "TextHit",
    "clear_engine_cache",
    "find_bar_lines",
    "measure_bar",
    "nm_per_px",
    "parse_scale_label",
    "rapidocr_model_paths",
    "read_scale_label",
    "read_text",
]
