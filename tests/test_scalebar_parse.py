"""Known answers for micrometry.calibrate.scalebar.parse."""

from __future__ import annotations

import math

import pytest

from micrometry.calibrate.scalebar.parse import (
    LABEL_UNITS,
    ScaleLabel,
    nm_per_px,
    parse_scale_label,
    unit_cut_off,
    unit_prefix_lost,
)

MICRO = "\u00b5"  # micro sign
MU = "\u03bc"  # Greek small letter mu

# (text, value, unit, corrections) ; value None = rejected
CASES: list[tuple[str, float | None, str | None, tuple[str, ...]]] = [
    # clean reads, every spacing
    ("200 nm", 200, "nm", ()),
    ("200nm", 200, "nm", ()),
    ("500nm", 500, "nm", ()),
    ("  50   nm ", 50, "nm", ()),
    ("1um", 1, "um", ()),
    (f"1 {MU}m", 1, "um", ()),
    (f"1 {MICRO}m", 1, "um", ()),
    (f"0.5 {MU}m", 0.5, "um", ()),
    (f"10.0{MICRO}m", 10, "um", ()),
    ("50.0um", 50, "um", ()),
    ("2 UM", 2, "um", ()),
    ("20.nm", 20, "nm", ()),
    (".5 um", 0.5, "um", ()),
    ("1 mm", 1, "mm", ()),
    ("0.1 MM", 0.1, "mm", ()),
    ("5 \u00c5", 5, "A", ()),  # Latin capital A with ring
    ("5 \u212b", 5, "A", ()),  # Angstrom sign
    ("20 A", 20, "A", ()),
    ("20 Angstrom", 20, "A", ()),
    ("2 nanometers", 2, "nm", ()),
    ("3 microns", 3, "um", ()),
    ("1 micrometre", 1, "um", ()),
    ("1,000 nm", 1000, "nm", ()),
    # OCR noise
    (f"0,5 {MICRO}m", 0.5, "um", ()),
    ("0, 5 um", 0.5, "um", ()),
    (f"0. 5 {MU}m", 0.5, "um", ()),
    ("200 nm|", 200, "nm", ()),
    ("|200 nm]", 200, "nm", ()),
    (f"[1 {MU}m]", 1, "um", ()),
    ("- 50 nm -", 50, "nm", ()),
    ("100 nm.", 100, "nm", ()),
    ("2OO nm", 200, "nm", ("O->0",)),
    ("1o nm", 10, "nm", ("O->0",)),
    ("l0 nm", 10, "nm", ("l->1",)),
    (f"I {MU}m", 1, "um", ("l->1",)),
    ("lOO nm", 100, "nm", ("O->0", "l->1")),
    ("5 pm", 5, "um", ("pm->um",)),
    ("0.5pm", 0.5, "um", ("pm->um",)),
    ("0.2pum", 0.2, "um", ("pum->um",)),
    ("2jm", 2, "um", ("jm->um",)),  # a small "µ" read as "j" (synthetic 40,000,172)
    ("2 pum", 2, "um", ("pum->um",)),
    ("100 nrn", 100, "nm", ("rn->m",)),
    (f"5 {MU}", 5, "um", ("bare mu",)),
    ("02um", 0.2, "um", ("0x->0.x",)),  # "0,2 µm" with its comma not read (synthetic 50,000,149)
    ("005 mm", 0.05, "mm", ("0x->0.x",)),
    ("0O5 nm", 0.05, "nm", ("O->0", "0x->0.x")),
    ("Scale bar: 2 um", 2, "um", ()),
    # a bar's end tick touching the label, read as a letter
    ("500 nmL", 500, "nm", ("bar tick",)),
    ("100 nmH", 100, "nm", ("bar tick",)),
    (f"2 {MU}m I", 2, "um", ("bar tick",)),
    ("J50 nm", 50, "nm", ("bar tick",)),
    ("L 0.2 um", 0.2, "um", ("bar tick",)),
    ("A25nm", 25, "nm", ("bar tick",)),  # "├25 nm" (synthetic 40,000,127)
    ("H20 nm", 20, "nm", ("bar tick",)),  # (synthetic 40,000,157)
    # a speck or a wide gap read as a second point before the unit (synthetic 490,000,143)
    ("0.5.um", 0.5, "um", ("stray point",)),
    (f"0,25. {MU}m", 0.25, "um", ("stray point",)),
    # rejects: instrument data bars
    ("HV 20.0 kV", None, None, ()),
    ("WD 10.2 mm", None, None, ()),
    ("WD:10.2mm", None, None, ()),
    ("20.0 kV", None, None, ()),
    ("Mag = 3.00 K X", None, None, ()),
    ("x50,000", None, None, ()),
    ("50000x", None, None, ()),
    (f"HFW 12.7 {MU}m", None, None, ()),
    ("det ETD", None, None, ()),
    ("spot 3.0", None, None, ()),
    ("12/05/2020", None, None, ()),
    ("10:32:05", None, None, ()),
    ("EHT = 20.00 kV", None, None, ()),
    (f"50x 200 {MU}m", None, None, ()),
    ("5 nm SE", None, None, ()),
    # rejects: not a label
    ("200", None, None, ()),
    ("0.5", None, None, ()),
    ("nm", None, None, ()),
    ("um", None, None, ()),
    ("3 Pa", None, None, ()),
    ("30 s", None, None, ()),
    ("122 mrad", None, None, ()),
    ("5 m", None, None, ()),
    ("20 mL", None, None, ()),  # millilitres: a trailing L is a tick only after a unit
    (f"10 {MU}L", None, None, ()),  # microlitres, not a bare mu with a tick
    ("5 ml", None, None, ()),
    ("2 a", None, None, ()),
    ("0 nm", None, None, ()),
    ("1.2.3 nm", None, None, ()),
    ("0.5..um", None, None, ()),
    ("0.5.", None, None, ()),
    ("10 nm 20", None, None, ()),
    ("a", None, None, ()),
    ("", None, None, ()),
    ("   ", None, None, ()),
]


@pytest.mark.parametrize(("text", "value", "unit", "corrections"), CASES)
def test_parse_table(text, value, unit, corrections):
    got = parse_scale_label(text)
    if value is None:
        assert got is None, f"{text!r} should be rejected, got {got}"
        return
    assert got is not None, f"{text!r} should parse"
    assert got.value == pytest.approx(value)
    assert got.unit == unit
    assert got.unit in LABEL_UNITS
    assert got.value_nm == pytest.approx(value * LABEL_UNITS[unit])
    assert got.text == text
    assert set(got.corrections) == set(corrections)


def test_table_is_large_enough():
    assert len(CASES) >= 40
    assert sum(v is None for _, v, _, _ in CASES) >= 15


def test_value_nm_is_exact_decimal():
    assert parse_scale_label("0.3 um").value_nm == 300.0
    assert parse_scale_label("2 A").value_nm == 0.2


def test_non_string_is_rejected():
    assert parse_scale_label(None) is None  # type: ignore[arg-type]
    assert parse_scale_label(200) is None  # type: ignore[arg-type]


def test_nm_per_px():
    label = parse_scale_label("200 nm")
    assert nm_per_px(label, 80) == 2.5
    assert nm_per_px(parse_scale_label("1 um"), 125.0) == 8.0
    for bad in (0, -3, math.nan, math.inf):
        with pytest.raises(ValueError):
            nm_per_px(label, bad)


def test_scale_label_is_frozen():
    label = parse_scale_label("1 um")
    assert isinstance(label, ScaleLabel)
    with pytest.raises(AttributeError):
        label.value = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "cut"),
    [("200n", True), ("200 n", True), ("0.5u", True), ("1,5 U", True), ("200 nm", False),
     ("200", False), ("5 μ", False), ("WD 10 n", False), ("n", False), ("200 nmn", False)],
)
def test_unit_cut_off(text, cut):
    """A number followed by only the first letter of nm/µm is a label whose unit the text
    detector's box left out: worth a second read, never a label itself."""
    assert unit_cut_off(text) is cut
    if cut:
        assert parse_scale_label(text) is None


@pytest.mark.parametrize(
    ("text", "number"),
    [("5m", "5"), ("5 m", "5"), ("0.5m", "0.5"), ("20 m.", "20"), ("5 mm", None), ("5 nm", None),
     ("m", None), ("WD 10 m", None), ("5 km", None), ("5", None),
     ("0.25.m", "0.25"), ("0,5,m", "0,5")],  # the lost "u" left a point behind (synthetic 40,000,139)
)
def test_unit_prefix_lost(text, number):
    """A number and a lone "m" is a label whose unit prefix OCR read as nothing (no scale
    bar is metres long): its number is given back, and it is never a label by itself."""
    assert unit_prefix_lost(text) == number
    if number is not None:
        assert parse_scale_label(text) is None
