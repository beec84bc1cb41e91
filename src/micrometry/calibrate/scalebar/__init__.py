"""Scale bars burned into micrographs: read the label and measure the bar.

Array in / array out building blocks of the scale-bar calibration (issue 4);
finding the bar and label boxes (a detector) is a separate step.

- :func:`parse_scale_label` turns OCR text such as ``"0,5 µm"`` into a
  :class:`ScaleLabel` (value, unit, value in nm) or rejects it;
  :func:`nm_per_px` divides by a bar length.
- :func:`measure_bar` measures a bar inside an approximate box: length in
  pixels end to end (sub-pixel), orientation, tight box, polarity.
"""

from micrometry.calibrate.scalebar.measure import BarMeasurement, BarNotFoundError, measure_bar
from micrometry.calibrate.scalebar.parse import LABEL_UNITS, ScaleLabel, nm_per_px, parse_scale_label

__all__ = [
    "LABEL_UNITS",
    "BarMeasurement",
    "BarNotFoundError",
    "ScaleLabel",
    "measure_bar",
    "nm_per_px",
    "parse_scale_label",
]
