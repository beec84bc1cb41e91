"""Parse the label of a scale bar as read by OCR: ``"200 nm"`` → 200 nm.

OCR output of burned-in scale-bar labels is noisy in predictable ways.
:func:`parse_scale_label` accepts

- any spacing: ``"1um"``, ``"200 nm"``, ``" 0. 5 μm "``;
- a comma as decimal separator (``"0,5 µm"``) and a trailing point
  (``"20.nm"``); ``"1,000 nm"`` (a comma followed by exactly three digits
  after a non-zero integer part) is a thousands separator;
- the micro sign U+00B5 and the Greek mu U+03BC (NFKC folds the first into
  the second), ``u`` and ``U`` for either, and a bare ``μ`` (``"5 μ"``);
- OCR confusions, each recorded in :attr:`ScaleLabel.corrections`:
  ``O``/``o`` → ``0`` and ``l``/``I`` → ``1`` inside numbers, ``rn`` → ``m``
  (``"nrn"``), and ``pm`` → ``µm``.  The last one assumes a ``p`` before
  ``m`` is a misread ``µ``: scale bars in picometres (atomic-resolution
  images only) are far rarer than OCR dropping the tail of a ``µ``.  A
  bold ``µ`` is also read as ``pu`` (its descender taken for a ``p``):
  ``"0.2pum"``, and a small one as ``j`` (lower case: ``"2jm"``);
- ångström written ``Å`` (U+00C5 or the Angstrom sign U+212B), ``A``
  (upper case only) or spelled out (``Angstrom``, ``ångström``);
- spelled-out units (``nanometer``, ``micron``, ``micrometre``,
  ``millimeters``);
- junk around the label that OCR picks up from bar ends and box edges:
  ``"200 nm|"``, ``"[1 µm]"``, ``"- 50 nm -"``; and the end tick of a bar
  touching the label read as a letter, ``"500 nmL"``, ``"2 µm I"``,
  ``"100 nmH"``, ``"J50 nm"``, ``"A25nm"`` (recorded as the correction ``"bar tick"``);
  and a speck or a wide gap read as a second point between the number and its unit,
  ``"0.5.um"`` (``"stray point"``).

It rejects (returns ``None``) everything else, in particular

- bare numbers and non-length units (``"200"``, ``"20 kV"``, ``"3 Pa"``,
  ``"30 s"``);
- any text with a keyword of an instrument data bar, even when it also holds
  a length (``"WD 10.2 mm"``, ``"HV 20.0 kV"``, ``"Mag 50k"``, ``"x50,000"``,
  ``"det ETD"``, ``"spot 3.0"``, ``"HFW 12.7 µm"``, a date or a time of
  day): such lengths are working distances or field widths, not the bar;
- text with any other word next to the number and unit.
"""

from __future__ import annotations

import math
import re
import unicodedata
import dataclasses
from dataclasses import dataclass, field

from micrometry.calibrate.units import to_nm

__all__ = [
    "ScaleLabel", "parse_scale_label", "with_unit", "unit_cut_off", "unit_prefix_lost", "nm_per_px", "LABEL_UNITS",
]

#: The normalised units of a :class:`ScaleLabel` and their size in nm.
LABEL_UNITS: dict[str, float] = {"nm": 1.0, "um": 1e3, "mm": 1e6, "A": 0.1}

_UNIT_SYMBOL = {"nm": "nm", "um": "µm", "mm": "mm", "A": "Å"}  # for units.to_nm


@dataclass(frozen=True)
class ScaleLabel:
    """A parsed scale-bar label.

    Attributes
    ----------
    value : float
        The number printed on the label, e.g. ``0.5`` for ``"0.5 µm"``.
    unit : str
        The unit, normalised to one of ``"nm"``, ``"um"``, ``"mm"``, ``"A"``
        (ångström).
    value_nm : float
        ``value`` converted to nanometres.
    text : str
        The text that was parsed, unchanged.
    corrections : tuple of str
        The OCR corrections that were needed, e.g. ``("O->0",)`` or
        ``("pm->um",)``; empty for a clean read.  A caller setting a
        confidence should lower it when this is not empty.
    """

    value: float
    unit: str
    value_nm: float
    text: str
    corrections: tuple[str, ...] = field(default=())


# --- rejection: instrument data-bar vocabulary ---------------------------------------
_KEYWORDS = (
    "hv", "wd", "kv", "mag", "mag.", "det", "spot", "hfw", "vfw", "fov", "eht", "signal",
    "date", "time", "tilt", "dwell", "curr", "current", "scan", "mode", "etd", "tld",
    "bse", "se", "se2", "inlens", "in-lens", "vac", "pressure", "pa", "mbar", "torr",
    "aperture", "probe", "pixel", "width", "frame", "photo", "cam", "camera", "vacc",
    "emission", "detector", "kx", "tem", "sem", "stem", "mrad", "eds", "edx",
)
_KEYWORD_RE = re.compile(
    r"(?<![A-Za-z])(?:" + "|".join(re.escape(k) for k in sorted(_KEYWORDS, key=len, reverse=True))
    + r")(?![A-Za-z])",
    re.IGNORECASE,
)
# magnification: "x50,000", "x 3.00k", "50000x", "50 000 ×", "3.00 K X"
_MAGNIFICATION_RE = re.compile(
    r"(?:(?<![A-Za-z])[xX×]\s*\d)|(?:\d\s*[kK]?\s*[xX×](?![A-Za-z]))|×"
)
_DATE_RE = re.compile(r"\d{1,4}\s*[/.\-]\s*\d{1,2}\s*[/.\-]\s*\d{2,4}")
_TIME_RE = re.compile(r"\d{1,2}\s*:\s*\d{2}")

# --- acceptance ----------------------------------------------------------------------
_JUNK = " \t\r\n|[](){}<>\"'`_-=~*#:;!^°¦‖—–"
_DIGITISH = "0-9OoIl"
_NUMBER = (
    rf"(?:[{_DIGITISH}](?:\s?[{_DIGITISH}])*(?:\s?[.,](?:\s?[{_DIGITISH}])*)?"
    rf"|[.,]\s?[{_DIGITISH}](?:\s?[{_DIGITISH}])*)"
)
# (pattern, unit, correction or None); tried in order, matched case-sensitively
_UNITS: tuple[tuple[str, str, str | None], ...] = (
    (r"(?i:nano\s?met(?:er|re)s?)", "nm", None),
    (r"(?i:micro\s?met(?:er|re)s?|microns?)", "um", None),
    (r"(?i:milli\s?met(?:er|re)s?)", "mm", None),
    (r"(?i:[aå]ngstr[oö]ms?)", "A", None),
    (r"[nN]\s?[mM]", "nm", None),
    (r"[nN]\s?rn", "nm", "rn->m"),
    (r"[uUμ]\s?[mM]", "um", None),
    (r"[uUμ]\s?rn", "um", "rn->m"),
    (r"[pP]\s?[uμ]\s?[mM]", "um", "pum->um"),
    (r"[pP]\s?[mM]", "um", "pm->um"),
    (r"j\s?[mM]", "um", "jm->um"),
    (r"μ", "um", "bare mu"),
    (r"[mM]\s?[mM]", "mm", None),
    (r"[ÅA]", "A", None),
)
_LABEL_RE = re.compile(
    rf"^(?P<num>{_NUMBER})(?P<stray>[.,](?=\s*[^\d\s.,]))?\s*(?P<unit>" + "|".join(f"(?:{p})" for p, _, _ in _UNITS) + r")$"
)
_UNIT_RES = [(re.compile(rf"^(?:{p})$"), u, c) for p, u, c in _UNITS]
_PREFIX_RE = re.compile(r"^(?:scale\s*(?:bar)?|bar)\s*[:=]?\s*", re.IGNORECASE)
# the end of a ticked bar touching its label reads as L, J, I, l or H (a tick and the line's
# start, "├"): after a unit (no unit ends with these letters), or before the number (L, J, H
# and A, "A25nm": a leading I or l may be a 1)
_TICK_AFTER_RE = re.compile(r"(?<=[A-Za-zÅμ])\s*[LJIlH]$")
_TICK_BEFORE_RE = re.compile(r"^[LJHA]\s*(?=[0-9.,])")


def _normalise(text: str) -> str:
    s = unicodedata.normalize("NFKC", text)  # µ (U+00B5) -> μ (U+03BC), Å sign -> Å, full width
    s = s.replace("\u00b5", "\u03bc")
    s = " ".join(s.split())
    s = _PREFIX_RE.sub("", s)
    s = s.strip(_JUNK)
    s = s.rstrip(".,")  # "200 nm." ; a number's own trailing point is kept by "20.nm"
    return s.strip(_JUNK)


def _number(raw: str) -> tuple[float | None, list[str]]:
    fixes: list[str] = []
    s = raw.replace(" ", "")
    if any(c in s for c in "Oo"):
        fixes.append("O->0")
        s = s.replace("O", "0").replace("o", "0")
    if any(c in s for c in "lI"):
        fixes.append("l->1")
        s = s.replace("l", "1").replace("I", "1")
    if s.count(",") + s.count(".") > 1:
        return None, fixes
    if "," in s:
        head, tail = s.split(",")
        if len(tail) == 3 and head not in ("", "0") and len(head) <= 3:
            s = head + tail  # "1,000 nm": thousands separator
        else:
            s = head + "." + tail  # decimal comma: a convention, not an OCR error
    if s in ("", "."):
        return None, fixes
    if len(s) >= 2 and s[0] == "0" and s[1].isdigit():
        # no label is printed with a leading zero ("02 µm"): the decimal point or comma
        # after it was not read ("0,2 µm")
        fixes.append("0x->0.x")
        s = "0." + s[1:]
    if s.endswith("."):
        s = s[:-1]
    if s.startswith("."):
        s = "0" + s
    try:
        value = float(s)
    except ValueError:
        return None, fixes
    return value, fixes


def parse_scale_label(text: str) -> ScaleLabel | None:
    """Parse a scale-bar label such as ``"200 nm"`` or ``"0,5 µm"``.

    Parameters
    ----------
    text : str
        The label as read by OCR (one line).

    Returns
    -------
    label : ScaleLabel or None
        The value and normalised unit, or ``None`` when `text` is not a
        scale-bar label (see the module docstring for what is accepted and
        what is rejected).  A value of zero is rejected too.

    Examples
    --------
    >>> parse_scale_label("500nm").value_nm
    500.0
    >>> lab = parse_scale_label("0,5 µm")
    >>> (lab.value, lab.unit, lab.value_nm)
    (0.5, 'um', 500.0)
    >>> parse_scale_label("20 Å").value_nm
    2.0
    >>> parse_scale_label("WD 10.2 mm") is None
    True
    >>> parse_scale_label("2O0 nm").corrections
    ('O->0',)
    """
    if not isinstance(text, str):
        return None
    s = _normalise(text)
    if not s or len(s) > 40:
        return None
    if _KEYWORD_RE.search(s) or _MAGNIFICATION_RE.search(s) or _DATE_RE.search(s) or _TIME_RE.search(s):
        return None
    m = _LABEL_RE.match(s)
    tick = False
    if m is None:  # a bar's end tick read as a letter next to the label ("500 nmL", "J2 µm")
        t = _TICK_AFTER_RE.sub("", _TICK_BEFORE_RE.sub("", s)).strip(_JUNK)
        m = _LABEL_RE.match(t) if t != s and not t.endswith("\u03bc") else None
        tick = m is not None
    if m is None:
        return None
    value, fixes = _number(m["num"])
    if tick:
        fixes.append("bar tick")
    if m["stray"]:  # a speck or gap read as a second point before the unit ("0.5.um")
        fixes.append("stray point")
    if value is None or not math.isfinite(value) or value <= 0:
        return None
    unit_text = m["unit"]
    for rx, unit, fix in _UNIT_RES:
        if rx.match(unit_text):
            break
    else:  # pragma: no cover - the alternation above and this list are the same
        return None
    if fix:
        fixes.append(fix)
    value_nm = to_nm(value, _UNIT_SYMBOL[unit])
    return ScaleLabel(value=value, unit=unit, value_nm=value_nm, text=text, corrections=tuple(fixes))


def with_unit(label: ScaleLabel, unit: str, why: str) -> ScaleLabel:
    """`label` in another unit (one of :data:`LABEL_UNITS`), same number, the change
    recorded as the correction ``"<old>-><new> (<why>)"``; `label` itself when the unit
    is its own.

    >>> lab = with_unit(parse_scale_label("25mm"), "nm", "runner-up unit")
    >>> lab.value_nm, lab.corrections
    (25.0, ('mm->nm (runner-up unit)',))
    """
    if unit == label.unit:
        return label
    return dataclasses.replace(
        label, unit=unit, value_nm=to_nm(label.value, _UNIT_SYMBOL[unit]),
        corrections=label.corrections + (f"{label.unit}->{unit} ({why})",),
    )


_CUT_UNIT_RE = re.compile(rf"^(?:{_NUMBER})\s*[nuU]$")


def unit_cut_off(text: str) -> bool:
    """Whether OCR text is a number with only the first letter of nm/µm after it.

    A text detector may end a faint label's box inside its unit (``"200 n"``
    for ``"200 nm"``): such a line is worth reading again, with the box
    widened past its end.  The text is never parsed as a label itself.

    >>> unit_cut_off("200n"), unit_cut_off("0.5 u"), unit_cut_off("200 nm"), unit_cut_off("200")
    (True, True, False, False)
    >>> unit_cut_off("WD 10 n")
    False
    """
    return bool(_CUT_UNIT_RE.match(_normalise(text)))


# the prefix may also leave a point or comma behind ("0.25.m")
_PREFIX_LOST_RE = re.compile(rf"^(?P<num>{_NUMBER})\s*[.,]?\s*m$")


def unit_prefix_lost(text: str) -> str | None:
    """The number of OCR text that is a number and a lone ``m``, else None.

    A blurred or thin unit prefix (the µ of ``"5 µm"``, the n of a faint
    ``"20 nm"``) may be read as nothing, leaving ``"5m"``.  No micrograph's
    scale bar is metres long, so such a line is a label whose prefix was lost;
    which prefix it had is for the recognizer's likelihoods to say (see
    :func:`micrometry.calibrate.scalebar.ocr.read_scale_label`).  The text is
    never parsed as a label itself.

    >>> unit_prefix_lost("5m"), unit_prefix_lost("0.5 m"), unit_prefix_lost("5 mm"), unit_prefix_lost("5 nm")
    ('5', '0.5', None, None)
    >>> unit_prefix_lost("0.25.m"), unit_prefix_lost("20.m")
    ('0.25', '20.')
    >>> unit_prefix_lost("WD 10 m") is None
    True
    """
    match = _PREFIX_LOST_RE.match(_normalise(text))
    return None if match is None else match["num"]


def nm_per_px(label: ScaleLabel, bar_px: float) -> float:
    """Pixel size from a label and the measured bar length.

    Parameters
    ----------
    label : ScaleLabel
        The parsed label.
    bar_px : float
        Length of the bar in pixels (outer edge to outer edge), > 0.

    Returns
    -------
    nm_per_px : float
        ``label.value_nm / bar_px``, nanometres per pixel.

    Raises
    ------
    ValueError
        If `bar_px` is not a positive finite number.

    Examples
    --------
    >>> nm_per_px(parse_scale_label("200 nm"), 80.0)
    2.5
    """
    length = float(bar_px)
    if not math.isfinite(length) or length <= 0:
        raise ValueError(f"bar length must be a positive finite number of pixels, got {bar_px!r}")
    return label.value_nm / length
