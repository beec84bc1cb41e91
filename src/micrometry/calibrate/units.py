"""Length units: parse a unit string and convert a length to nanometres.

Micrograph metadata spells units in many ways: ``"nm"``, ``"µm"`` with the
micro sign (U+00B5) or the Greek mu (U+03BC), ``"um"``, ``"micron"``,
``"Å"`` (U+00C5 or the Angstrom sign U+212B), ``"A"``, NGFF names such as
``"nanometer"``, and SI metres.  :func:`to_nm` accepts all of them.

Case rules
----------
Symbols are case-sensitive where case carries meaning: ``"m"`` is metre but
``"M"`` is rejected (it would be a mega- prefix), and ``"A"`` is accepted as
Ångström but ``"a"`` is not.  Two-letter prefixed symbols are matched
case-insensitively (``"NM"``, ``"Nm"``, ``"UM"``, ``"MM"``, ``"PM"``,
``"CM"`` — instrument software is known to upper-case them, and no other
length unit collides with them).  Spelled-out names (``"Nanometers"``,
``"micrometre"``, ``"Angstrom"``) are matched case-insensitively, singular
or plural, American or British spelling.
"""

from __future__ import annotations

import math
from decimal import Decimal

__all__ = ["NM_PER_UNIT", "to_nm", "canonical_unit"]

#: nanometres per one unit, keyed by canonical symbol.
NM_PER_UNIT: dict[str, float] = {
    "pm": 1e-3,
    "Å": 0.1,
    "nm": 1.0,
    "µm": 1e3,
    "mm": 1e6,
    "cm": 1e7,
    "m": 1e9,
}

_DECIMAL_FACTOR: dict[str, Decimal] = {
    "pm": Decimal("0.001"),
    "Å": Decimal("0.1"),
    "nm": Decimal(1),
    "µm": Decimal(1000),
    "mm": Decimal(10) ** 6,
    "cm": Decimal(10) ** 7,
    "m": Decimal(10) ** 9,
}

# Exact (case-sensitive) spellings.
_EXACT: dict[str, str] = {
    "m": "m",
    "A": "Å",
    "Å": "Å",  # U+00C5 Latin capital A with ring above
    "\u212b": "Å",  # U+212B Angstrom sign
    "µm": "µm",  # U+00B5 micro sign
    "\u03bcm": "µm",  # U+03BC Greek small letter mu
}

# Case-insensitive spellings (keys are lower case).
_FOLDED: dict[str, str] = {
    "pm": "pm",
    "nm": "nm",
    "um": "µm",
    "µm": "µm",
    "\u03bcm": "µm",
    "mm": "mm",
    "cm": "cm",
    "å": "Å",
    "ang": "Å",
    "micron": "µm",
    "microns": "µm",
}
for _stem, _sym in (
    ("picomet", "pm"),
    ("nanomet", "nm"),
    ("micromet", "µm"),
    ("millimet", "mm"),
    ("centimet", "cm"),
    ("met", "m"),
):
    for _ending in ("er", "re", "ers", "res"):
        _FOLDED[_stem + _ending] = _sym
for _name in ("angstrom", "angstroms", "ångström", "ångströms", "angström", "angströms"):
    _FOLDED[_name] = "Å"


def canonical_unit(unit: str) -> str:
    """Return the canonical symbol (a key of :data:`NM_PER_UNIT`) for `unit`.

    Parameters
    ----------
    unit : str
        A length unit as written by an instrument or a user, e.g. ``"um"``,
        ``"μm"``, ``"Angstrom"``, ``"nanometer"``.

    Returns
    -------
    symbol : str
        One of ``"pm", "Å", "nm", "µm", "mm", "cm", "m"``.

    Raises
    ------
    ValueError
        If `unit` is not a recognised length unit (e.g. ``"px"``, ``""``).
    """
    if not isinstance(unit, str):
        raise ValueError(f"length unit must be a string, got {type(unit).__name__} {unit!r}")
    text = unit.strip()
    if text in _EXACT:
        return _EXACT[text]
    folded = text.casefold()
    if folded in _FOLDED:
        return _FOLDED[folded]
    raise ValueError(
        f"unknown length unit {unit!r}; expected one of pm, Å/A/Angstrom, nm, "
        "µm/μm/um/micron, mm, cm, m (or their names, e.g. 'nanometer')"
    )


def to_nm(value: float, unit: str) -> float:
    """Convert a length `value` given in `unit` to nanometres.

    Parameters
    ----------
    value : float
        The length, in `unit`.  Must be finite.
    unit : str
        Its unit; see the module docstring for accepted spellings.

    Returns
    -------
    length_nm : float
        The same length in nanometres.

    Raises
    ------
    ValueError
        If `unit` is unknown or `value` is not a finite number.

    Examples
    --------
    >>> to_nm(2.5, "nm")
    2.5
    >>> to_nm(1.5, "µm")
    1500.0
    >>> to_nm(3.0, "Å")
    0.3
    >>> to_nm(2.481e-9, "m")
    2.481

    Notes
    -----
    The product is formed in decimal arithmetic on the shortest repr of
    `value`, so a number written as ``2.5e-09`` metres in a file reads back
    as exactly ``2.5`` nm rather than ``2.5000000000000004``.
    """
    canonical_unit(unit)  # raises on an unknown unit before looking at value
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"length value must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"length value must be finite, got {value!r}")
    return float(Decimal(repr(number)) * _DECIMAL_FACTOR[canonical_unit(unit)])
