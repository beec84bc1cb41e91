"""Pixel-size calibration: overrides, instrument metadata, units.

The stage order is override → instrument metadata → scale bar → none
(:func:`micrometry.calibrate.stage.calibrate_image`); every result records
its source and confidence and no number is ever invented.
"""

from micrometry.calibrate.metadata import MetadataCalibration, calibration_from_metadata
from micrometry.calibrate.overrides import OverridesError, load_overrides
from micrometry.calibrate.stage import calibrate_image
from micrometry.calibrate.units import to_nm

__all__ = [
    "MetadataCalibration",
    "OverridesError",
    "calibrate_image",
    "calibration_from_metadata",
    "load_overrides",
    "to_nm",
]
