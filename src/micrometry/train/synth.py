"""Synthetic TEM/SEM micrographs with exact ground truth.

:func:`render_micrograph` draws one image: particles of several shapes on a
TEM-like (dark particles, mass-thickness contrast on grainy carbon) or SEM-like
(bright particles, edge glow and shading on a dark substrate) background, with
blur, illumination, Poisson/Gaussian noise and a random display mapping, then
burns in a scale bar with its label, optionally an SEM instrument data bar and a
figure panel letter.  ``scalebar_variety=True`` widens the scale-bar styles
(double lines, vertical bars, edge-centred positions, grey and outline boxes,
decimal and comma labels) and adds distractor texts and marks, for training a
scale-bar detector; the default keeps the original images bit for bit.  It returns the image together with the instance labels
(occlusion order: each pixel belongs to the particle on top), the true pixel
size and the exact geometry of every overlay.

:func:`write_synthetic_dataset` writes a folder of such images (PNG, and a
fraction as FEI/Thermo TIFF carrying the pixel size in their metadata) with
the ground truth next to them.

Coordinates: arrays are indexed ``[y, x]`` (row, column); a bounding box
``[y0, x0, y1, x1]`` is half-open, i.e. ``image[y0:y1, x0:x1]`` is the box.
Pixel centres sit at integer coordinates.
"""

from __future__ import annotations

import importlib.util
import io
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from micrometry._atomic import atomic_path, write_json

__all__ = [
    "SHAPES",
    "MODALITIES",
    "SynthMicrograph",
    "render_micrograph",
    "write_synthetic_dataset",
    "fei_metadata_text",
]

#: Particle shapes :func:`render_micrograph` can draw.
SHAPES = ("disc", "blob", "ellipse", "rod", "triangle", "hexagon", "square", "core_shell")
#: Imaging modalities.
MODALITIES = ("tem", "sem")

_DENSITY_AREA_FRACTION = {"sparse": (0.02, 0.08), "medium": (0.10, 0.25), "crowded": (0.30, 0.55)}
_ARRANGEMENTS = ("random", "clustered", "lattice")
_OVERLAP_MODES = ("separate", "touching", "overlap")
_MAX_PARTICLES = 600
_MAX_CONSECUTIVE_FAILURES = 250

# Fonts shipped with matplotlib.  ``unicode`` says whether µ/μ/Å have proper glyphs:
# the BaKoMa Computer Modern fonts use a TeX encoding where they do not.
_FONTS = {
    "DejaVuSans": ("DejaVuSans.ttf", True),
    "DejaVuSans-Bold": ("DejaVuSans-Bold.ttf", True),
    "DejaVuSerif": ("DejaVuSerif.ttf", True),
    "DejaVuSerif-Bold": ("DejaVuSerif-Bold.ttf", True),
    "DejaVuSansMono": ("DejaVuSansMono.ttf", True),
    "DejaVuSansMono-Bold": ("DejaVuSansMono-Bold.ttf", True),
    "STIXGeneral": ("STIXGeneral.ttf", True),
    "STIXGeneral-Bold": ("STIXGeneralBol.ttf", True),
    "cmr10": ("cmr10.ttf", False),
    "cmss10": ("cmss10.ttf", False),
    "cmb10": ("cmb10.ttf", False),
    "cmtt10": ("cmtt10.ttf", False),
}
_MICRO_SPELLINGS = ("µm", "μm", "um")  # U+00B5 micro sign, U+03BC Greek mu, ASCII

# Scale-bar variety (``render_micrograph(..., scalebar_variety=True)``) only.
_SB_CORNERS = ("bottom-right", "bottom-left", "top-right", "top-left")
_SB_POSITIONS = {
    "horizontal": _SB_CORNERS + ("bottom-centre", "top-centre"),
    "vertical": _SB_CORNERS + ("left-middle", "right-middle"),
}
_SB_STYLES_VARIETY = ("solid", "ticks", "line", "double")
_SB_BOX_STYLES = ("fill", "grey", "outline")
_SB_VARIETY_KEYS = frozenset({"orientation", "box_style", "text_rotation", "decimal_sep", "space"})
#: nm per unit for every unit spelling a variety label may use (upper case only for ASCII units).
_UNIT_NM_VARIETY = {"nm": 1.0, "µm": 1e3, "μm": 1e3, "um": 1e3, "mm": 1e6, "Å": 0.1, "NM": 1.0, "UM": 1e3, "MM": 1e6}


# --------------------------------------------------------------------------- result


@dataclass
class SynthMicrograph:
    """One synthetic micrograph and its ground truth.

    Attributes
    ----------
    image : (Y, X) ndarray of uint8 or uint16
        The rendered micrograph, overlays (scale bar, data bar, panel letter)
        burned in.
    labels : (Y, X) ndarray of uint32
        Instance labels, 0 = background, 1..N consecutive.  A pixel belongs to
        the particle drawn on top.  Zero everywhere under the overlays.
    nm_per_px : float
        True pixel size in nanometres per pixel (square pixels).
    modality : {"tem", "sem"}
        Contrast model used.
    scalebar : dict or None
        ``value`` (float, in ``unit``), ``unit`` (str as rendered), ``text``
        (the label), ``value_nm``, ``bar_px`` (float: rendered bar length end
        to end, in pixels), ``bar_bbox``, ``text_bbox``, ``box_bbox`` (the
        whole region kept free of particles, background box included) as
        half-open ``[y0, x0, y1, x1]``, plus style fields (``color``,
        ``box``, ``style``, ``label_pos``, ``corner``, ``font``, ``font_px``,
        ``in_data_bar``).  With ``scalebar_variety`` also ``orientation``
        ("horizontal"/"vertical"; ``bar_px`` is the extent along y for a
        vertical bar), ``text_rotation`` (0, 90 or 270 degrees
        counter-clockwise), ``box_style`` ("fill", "grey", "outline" or None),
        ``box_level`` (box fill or outline grey level as a fraction of the
        dtype's maximum, None without a box) and ``box_outline_px``.  None
        when no scale bar was drawn.
    data_bar_rows : int
        Height in pixels of the instrument data bar at the bottom (0 = none).
    params : dict
        Everything drawn at random (JSON-serialisable), including a
        ``particles`` list with each particle's shape, centre and size and its
        final ``label`` (None when it was removed as hidden or too small).
        With ``scalebar_variety`` also ``scalebar_variety: True`` and
        ``distractors``: a list of annotations that are *not* a scale bar,
        each with ``kind`` ("text", "line", "rect", "arrow"), ``category``,
        ``text`` (None for marks), ``bbox`` (the region, background box
        included), ``ink_bbox``, ``color``, ``box``, ``font``, ``font_px``.
    """

    image: np.ndarray
    labels: np.ndarray
    nm_per_px: float
    modality: str
    scalebar: dict | None
    data_bar_rows: int
    params: dict = field(default_factory=dict)

    @property
    def n_objects(self) -> int:
        """Number of labelled particles."""
        return int(self.labels.max(initial=0))

    def ignore_mask(self) -> np.ndarray:
        """Pixels that are not specimen: scale-bar region, panel letter, distractors, data bar.

        Returns
        -------
        mask : (Y, X) ndarray of bool
        """
        mask = np.zeros(self.image.shape, dtype=bool)
        if self.scalebar is not None:
            y0, x0, y1, x1 = self.scalebar["box_bbox"]
            mask[y0:y1, x0:x1] = True
        panel = self.params.get("panel_label")
        if panel:
            y0, x0, y1, x1 = panel["box_bbox"]
            mask[y0:y1, x0:x1] = True
        for d in self.params.get("distractors", ()):
            y0, x0, y1, x1 = d["bbox"]
            mask[y0:y1, x0:x1] = True
        if self.data_bar_rows:
            mask[-self.data_bar_rows :] = True
        return mask


# --------------------------------------------------------------------------- helpers


def _rng(seed_or_rng: Any) -> np.random.Generator:
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    return np.random.default_rng(seed_or_rng)


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _log_u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _choice(rng: np.random.Generator, options, p=None):
    if p is None:
        return options[int(rng.integers(len(options)))]
    cum = np.cumsum(p, dtype=float)
    idx = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
    return options[min(idx, len(options) - 1)]


def _round_sig(x: float, sig: int) -> float:
    if x == 0:
        return 0.0
    return float(round(x, sig - 1 - int(math.floor(math.log10(abs(x))))))


@lru_cache(maxsize=1)
def _font_dir() -> Path:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("matplotlib is not installed: its TTF fonts are needed to render scale-bar labels")
    return Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"


@lru_cache(maxsize=256)
def _font(name: str, size_px: int):
    from PIL import ImageFont

    path = _font_dir() / _FONTS[name][0]
    if not path.is_file():
        raise FileNotFoundError(f"font file {path} not found (expected in matplotlib's mpl-data)")
    return ImageFont.truetype(str(path), int(size_px))


def _fonts_for(text: str) -> list[str]:
    ascii_only = all(ord(c) < 128 for c in text)
    return [n for n, (_, uni) in _FONTS.items() if ascii_only or uni]


def _text_patch(text: str, font_name: str, size_px: int) -> np.ndarray:
    """Anti-aliased ink of `text` as a tightly cropped (h, w) float32 alpha in [0, 1]."""
    from PIL import Image, ImageDraw

    font = _font(font_name, size_px)
    left, top, right, bottom = font.getbbox(text)
    im = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(im).text((2 - left, 2 - top), text, font=font, fill=255)
    a = np.asarray(im, dtype=np.float32) / 255.0
    rows = np.flatnonzero(a.max(axis=1) > 0)
    cols = np.flatnonzero(a.max(axis=0) > 0)
    if rows.size == 0:
        raise ValueError(f"text {text!r} renders no ink with font {font_name}")
    return np.ascontiguousarray(a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Gaussian-correlated noise with correlation length `sigma_px`, zero mean, unit std.

    Long correlation lengths are generated on a coarse grid and interpolated, so
    the cost does not grow with `sigma_px`.
    """
    h, w = shape
    f = max(1, int(sigma_px // 3))
    hs, ws = -(-h // f) + 2, -(-w // f) + 2
    n = rng.standard_normal((hs, ws), dtype=np.float32)
    n = ndi.gaussian_filter(n, sigma_px / f, mode="wrap")
    if f > 1:
        n = ndi.zoom(n, f, order=1, prefilter=False)
    n = n[:h, :w]
    s = float(n.std())
    return (n - float(n.mean())) / (s if s > 0 else 1.0)


# --------------------------------------------------------------------------- shapes
# Signed distance functions in the particle's own frame (u along its long axis):
# negative inside, in pixels.


def _sd_convex_polygon(u: np.ndarray, v: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Exact signed distance to a convex polygon with counter-clockwise `verts` (n, 2) as (u, v)."""
    a = np.asarray(verts, dtype=np.float32)
    e = np.roll(a, -1, axis=0) - a
    au, av = a[:, 0, None, None], a[:, 1, None, None]
    eu, ev = e[:, 0, None, None], e[:, 1, None, None]
    pu, pv = u[None] - au, v[None] - av  # (n, h, w)
    t = np.minimum(np.maximum((pu * eu + pv * ev) / (eu * eu + ev * ev), 0.0), 1.0)
    du, dv = pu - t * eu, pv - t * ev
    d = np.sqrt((du * du + dv * dv).min(axis=0))
    inside = ((eu * pv - ev * pu) >= 0).all(axis=0)
    return np.where(inside, -d, d)


def _inset_polygon(verts: np.ndarray, r: float) -> np.ndarray:
    """Move every edge of a convex CCW polygon inwards by `r` and return the new vertices."""
    pts = [(float(a), float(b)) for a, b in verts]
    n = len(pts)
    lines = []  # (nx, ny, offset) with outward normal for CCW order
    for i in range(n):
        (ax, ay), (bx, by) = pts[i], pts[(i + 1) % n]
        ln = math.hypot(bx - ax, by - ay)
        nx, ny = (by - ay) / ln, -(bx - ax) / ln
        lines.append((nx, ny, nx * ax + ny * ay - r))
    out = np.empty((n, 2))
    for i in range(n):
        (n1x, n1y, h1), (n2x, n2y, h2) = lines[i - 1], lines[i]
        det = n1x * n2y - n1y * n2x
        out[i] = ((h1 * n2y - n1y * h2) / det, (n1x * h2 - h1 * n2x) / det)
    return out


def _polygon_area(verts: np.ndarray) -> float:
    pts = [(float(a), float(b)) for a, b in verts]
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]))


def _make_shape(rng: np.random.Generator, kind: str, diam_px: float, profile_flat_prob: float) -> dict:
    """Draw the geometry of one particle whose equivalent-circle diameter is `diam_px`."""
    area = math.pi * diam_px**2 / 4.0
    g: dict[str, Any] = {"shape": kind}
    if kind in ("disc", "core_shell"):
        r = diam_px / 2.0
        g.update(radius=r, extent=r, inradius=r)
        if kind == "core_shell":
            g["core_fraction"] = _u(rng, 0.35, 0.8)
            g["core_offset"] = [_u(rng, -0.1, 0.1) * r, _u(rng, -0.1, 0.1) * r]
    elif kind == "blob":
        r = diam_px / 2.0
        ks = [2, 3, 4, 5]
        amps = [_u(rng, 0.0, 0.08) / (k - 1) for k in ks]
        phases = [_u(rng, 0, 2 * math.pi) for _ in ks]
        s = sum(amps)
        g.update(radius=r, harmonics=[[k, a, ph] for k, a, ph in zip(ks, amps, phases)], extent=r * (1 + s), inradius=r * (1 - s))
    elif kind == "ellipse":
        asp = _u(rng, 1.2, 2.2)
        a = diam_px / 2.0 * math.sqrt(asp)
        b = diam_px / 2.0 / math.sqrt(asp)
        g.update(a=a, b=b, extent=a, inradius=b)
    elif kind == "rod":
        asp = _u(rng, 2.0, 7.0)
        r = math.sqrt(area / (math.pi + 4 * (asp - 1)))
        half = r * (asp - 1)
        g.update(radius=r, half_length=half, extent=half + r, inradius=r)
    elif kind in ("triangle", "hexagon", "square"):
        if kind == "square":
            asp = 1.0 if rng.random() < 0.6 else _u(rng, 1.0, 1.35)
            verts = np.array([[-asp, -1.0], [asp, -1.0], [asp, 1.0], [-asp, 1.0]])
        else:
            n = 3 if kind == "triangle" else 6
            ang = np.pi / 2 + 2 * np.pi * np.arange(n) / n
            verts = np.stack([np.cos(ang), np.sin(ang)], axis=1)
            if kind == "triangle" and rng.random() < 0.5:  # truncated triangular plate
                t = _u(rng, 0.08, 0.3)
                pts = []
                for i in range(3):
                    p, q = verts[i], verts[(i + 1) % 3]
                    pts += [p + t * (q - p), q - t * (q - p)]
                verts = np.array(pts)
                g["truncation"] = t
        verts = verts * math.sqrt(area / _polygon_area(verts))
        pts = [(float(a), float(b)) for a, b in verts]
        apothem = min(
            abs((x1 - x0) * y0 - (y1 - y0) * x0) / math.hypot(x1 - x0, y1 - y0)
            for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1])
        )
        rounding = _u(rng, 0.0, 0.3) * apothem if rng.random() < 0.7 else 0.0
        g.update(
            vertices=verts.tolist(),
            rounding=rounding,
            extent=max(math.hypot(x, y) for x, y in pts),
            inradius=apothem,
        )
    else:
        raise ValueError(f"unknown particle shape {kind!r}; expected one of {', '.join(SHAPES)}")
    flat = kind in ("triangle", "hexagon", "square") and rng.random() < profile_flat_prob
    g["profile"] = "flat" if flat else "dome"
    return g


def _shape_sd(g: dict, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    kind = g["shape"]
    if kind in ("disc", "core_shell"):
        return np.hypot(u, v) - g["radius"]
    if kind == "blob":
        th = np.arctan2(v, u)
        r = np.full(u.shape, 1.0, dtype=np.float32)
        for k, a, ph in g["harmonics"]:
            r += a * np.cos(k * th + ph)
        return np.hypot(u, v) - g["radius"] * r
    if kind == "ellipse":
        a, b = g["a"], g["b"]
        k0 = np.hypot(u / a, v / b)
        k1 = np.hypot(u / (a * a), v / (b * b))
        return np.where(k1 > 1e-6, k0 * (k0 - 1.0) / np.maximum(k1, 1e-6), -b)
    if kind == "rod":
        uu = np.maximum(np.abs(u) - g["half_length"], 0.0)
        return np.hypot(uu, v) - g["radius"]
    verts = np.asarray(g["vertices"])
    rc = g["rounding"]
    if rc > 0:
        return _sd_convex_polygon(u, v, _inset_polygon(verts, rc)) - rc
    return _sd_convex_polygon(u, v, verts)


def _coverage(sd: np.ndarray) -> np.ndarray:
    """Anti-aliased area coverage of a pixel from the signed distance of its centre (> 0.5 inside)."""
    return np.minimum(np.maximum(0.5 - sd, 0.0), 1.0)


def _profile(g: dict, sd: np.ndarray) -> np.ndarray:
    """Normalised thickness (0 at the rim, 1 at full thickness) from the signed distance."""
    rin = max(g["inradius"], 0.5)
    depth = np.minimum(np.maximum(-sd, 0.0), rin)
    if g["profile"] == "flat":
        ramp = max(1.0, g.get("ramp_fraction", 0.25) * rin)
        t = np.minimum(depth / ramp, 1.0)
    else:
        t = np.sqrt(depth * (2 * rin - depth)) / rin
    return (t * _coverage(sd)).astype(np.float32)


# --------------------------------------------------------------------------- layout of overlays


def _nice_bar(rng: np.random.Generator, width_px: int, nm_per_px: float, fraction=(0.1, 0.3)) -> float:
    """A 1/2/5 x 10^k value in nm whose bar is within `fraction` of the width."""
    lo, hi = fraction[0] * width_px * nm_per_px, fraction[1] * width_px * nm_per_px
    cands = []
    for k in range(-2, 9):
        for m in (1, 2, 5):
            v = m * 10.0**k
            if lo <= v <= hi:
                cands.append(v)
    if not cands:  # cannot happen for hi/lo >= 2.5, kept for tiny custom fractions
        cands = [min((m * 10.0**k for k in range(-2, 9) for m in (1, 2, 5)), key=lambda v: abs(v - (lo + hi) / 2))]
    return float(_choice(rng, cands))


def _format_value(x: float) -> str:
    if abs(x - round(x)) < 1e-9:
        return str(int(round(x)))
    return f"{x:.3g}"


def _bar_label(rng: np.random.Generator, value_nm: float, unit_override: str | None) -> tuple[float, str, str]:
    """Pick the unit and spelling for a bar of `value_nm`; returns (value, unit, text)."""
    if unit_override is not None:
        unit = unit_override
    elif value_nm >= 1e6:
        unit = "mm"
    elif value_nm >= 1000:
        unit = "nm" if (value_nm <= 5000 and rng.random() < 0.08) else _choice(rng, _MICRO_SPELLINGS, p=[0.45, 0.25, 0.3])
    elif value_nm < 10 and rng.random() < 0.3:
        unit = "Å"
    elif value_nm >= 100 and rng.random() < 0.1:
        unit = _choice(rng, _MICRO_SPELLINGS)
    else:
        unit = "nm"
    factor = {"nm": 1.0, "µm": 1e3, "μm": 1e3, "um": 1e3, "mm": 1e6, "Å": 0.1, "pm": 1e-3}
    if unit not in factor:
        raise ValueError(f"unsupported scale-bar unit {unit!r}; expected one of {', '.join(factor)}")
    value = value_nm / factor[unit]
    sep = " " if rng.random() < 0.8 else ""
    return float(value), unit, f"{_format_value(value)}{sep}{unit}"


def _nice_bar_variety(rng: np.random.Generator, length_px: int, nm_per_px: float, fraction=(0.1, 0.3)) -> float:
    """Like :func:`_nice_bar` along `length_px`, with 2.5 x 10^k values too (less often)."""
    lo, hi = fraction[0] * length_px * nm_per_px, fraction[1] * length_px * nm_per_px
    cands, weights = [], []
    for k in range(-2, 9):
        for m, wt in ((1, 1.0), (2, 1.0), (2.5, 0.4), (5, 1.0)):
            v = m * 10.0**k
            if lo <= v <= hi:
                cands.append(v)
                weights.append(wt)
    if not cands:
        return _nice_bar(rng, length_px, nm_per_px, fraction)
    return float(_choice(rng, cands, p=weights))


def _format_value_plain(x: float) -> str:
    """:func:`_format_value` without exponent notation (``0.0005``, never ``5e-04``)."""
    s = _format_value(x)
    if "e" in s:
        s = f"{x:.12f}".rstrip("0").rstrip(".")
    return s


def _bar_label_variety(rng: np.random.Generator, value_nm: float, overrides: dict) -> tuple[float, str, str]:
    """:func:`_bar_label` with more spellings: upper-case ``NM``/``UM``/``MM``, decimals
    (``0.5 µm``, ``2.5 nm``), comma decimals (``0,5 µm``), with or without a space.

    Returns (value, unit, text) with ``value * nm_per_unit(unit) == value_nm`` and
    ``text`` exactly as drawn.
    """
    unit = overrides.get("unit")
    if unit is None:
        if value_nm >= 1e6:
            unit = "mm"
        elif value_nm >= 1000:
            unit = "nm" if (value_nm <= 5000 and rng.random() < 0.08) else _choice(rng, _MICRO_SPELLINGS, p=[0.45, 0.25, 0.3])
        elif value_nm < 10 and rng.random() < 0.3:
            unit = "Å"
        elif value_nm >= 100 and rng.random() < 0.3:  # 0.5 µm, 0.25 µm, ...
            unit = _choice(rng, _MICRO_SPELLINGS)
        else:
            unit = "nm"
        if unit in ("nm", "um", "mm") and rng.random() < 0.12:
            unit = unit.upper()
    if unit not in _UNIT_NM_VARIETY:
        raise ValueError(f"unsupported scale-bar unit {unit!r}; expected one of {', '.join(_UNIT_NM_VARIETY)}")
    value = value_nm / _UNIT_NM_VARIETY[unit]
    number = _format_value_plain(value)
    if "decimal_sep" in overrides:
        dec = overrides["decimal_sep"]
        if dec not in (".", ","):
            raise ValueError(f"scalebar decimal_sep must be '.' or ',', got {dec!r}")
    else:
        dec = "," if ("." in number and rng.random() < 0.3) else "."
    number = number.replace(".", dec)
    space = bool(overrides["space"]) if "space" in overrides else bool(rng.random() < 0.75)
    return float(value), unit, f"{number}{' ' if space else ''}{unit}"


def _bar_geometry(rng, style: str, font_px: int, bar_px: int) -> dict:
    """Pixel geometry of the bar itself in a local frame; ``rects`` are (y0, x0, y1, x1)."""
    if style == "solid":
        th = max(2, int(round(font_px * _u(rng, 0.18, 0.5))))
        return {"h": th, "rects": [(0, 0, th, bar_px)]}
    if style == "double":  # two parallel thin lines of the same length
        lt = int(_choice(rng, [1, 2, 2, 3])) if font_px >= 12 else int(_choice(rng, [1, 2]))
        gap = int(rng.integers(1, 5))
        return {"h": 2 * lt + gap, "rects": [(0, 0, lt, bar_px), (lt + gap, 0, 2 * lt + gap, bar_px)]}
    lt = int(_choice(rng, [1, 2, 2, 3])) if font_px >= 14 else 1
    if style == "line":
        return {"h": lt, "rects": [(0, 0, lt, bar_px)]}
    # line with end ticks
    tk = max(3 * lt, int(round(font_px * _u(rng, 0.35, 0.9))))
    tw = lt if rng.random() < 0.7 else lt + 1
    if rng.random() < 0.6:  # ticks centred on the line
        ly = (tk - lt) // 2
    else:  # ticks rising from the line
        ly = tk - lt
    rects = [(ly, 0, ly + lt, bar_px), (0, 0, tk, tw), (0, bar_px - tw, tk, bar_px)]
    return {"h": tk, "rects": rects}


def _layout_block(rng, bar: dict, bar_px: int, text_hw: tuple[int, int], label_pos: str, font_px: int) -> dict:
    """Relative placement of bar and text; returns offsets and block size."""
    th, tw = text_hw
    bh = bar["h"]
    gap = max(1, int(round(font_px * _u(rng, 0.12, 0.45))))
    if label_pos in ("above", "below"):
        w = max(bar_px, tw)
        bx = (w - bar_px) // 2
        align = _choice(rng, ["centre", "centre", "left", "right"])
        tx = {"centre": (w - tw) // 2, "left": bx, "right": bx + bar_px - tw}[align]
        tx = min(max(tx, 0), w - tw)
        if label_pos == "above":
            ty, by = 0, th + gap
        else:
            by, ty = 0, bh + gap
        h = th + gap + bh
    else:
        h = max(bh, th)
        by, ty = (h - bh) // 2, (h - th) // 2
        if label_pos == "left":
            tx, bx = 0, tw + gap
        else:
            bx, tx = 0, bar_px + gap
        w = tw + gap + bar_px
    return {"h": h, "w": w, "bar_yx": (by, bx), "text_yx": (ty, tx)}


def _layout_block_vertical(rng, bar_w: int, bar_px: int, text_hw: tuple[int, int], label_pos: str, font_px: int) -> dict:
    """:func:`_layout_block` for a vertical bar (`bar_px` tall, `bar_w` wide); `text_hw` is
    the (possibly rotated) text patch's shape.

    The horizontal layout of the transposed block, transposed back: a label left/right of a
    vertical bar is a label above/below a horizontal one (same random draws).
    """
    transposed_pos = {"left": "above", "right": "below", "above": "left", "below": "right"}[label_pos]
    t = _layout_block(rng, {"h": bar_w}, bar_px, (text_hw[1], text_hw[0]), transposed_pos, font_px)
    return {"h": t["w"], "w": t["h"], "bar_yx": t["bar_yx"][::-1], "text_yx": t["text_yx"][::-1]}


def _place_scalebar(
    rng: np.random.Generator,
    shape: tuple[int, int],
    spec_rows: int,
    nm_per_px: float,
    modality: str,
    overrides: dict,
    data_band: tuple[int, int] | None,
    variety: bool = False,
) -> dict:
    """Decide every property and absolute position of the scale bar (nothing drawn yet).

    `data_band` is (y0, rows) of the data bar when the bar is to be drawn inside it.
    With `variety` False the random draws (and so the result) are exactly those of
    the original generator; `variety` True adds double bars, vertical bars, edge
    positions, grey/outline boxes and more label spellings.
    """
    h_img, w_img = shape
    known = {"corner", "color", "box", "style", "label_pos", "unit", "font", "value_nm", "font_px"}
    if variety:
        known |= _SB_VARIETY_KEYS
    bad = set(overrides) - known
    if bad:
        needs = sorted(bad & _SB_VARIETY_KEYS)
        if needs and not (bad - _SB_VARIETY_KEYS):
            raise ValueError(f"scalebar option(s) {needs} need scalebar_variety=True")
        raise ValueError(f"unknown scalebar option(s) {sorted(bad)}; expected a subset of {sorted(known)}")
    in_band = data_band is not None
    orientation = "horizontal"
    if variety:
        orientation = overrides.get("orientation") or (
            "horizontal" if in_band else _choice(rng, ["horizontal", "vertical"], p=[0.85, 0.15])
        )
        if orientation not in ("horizontal", "vertical"):
            raise ValueError(f"scalebar orientation must be 'horizontal' or 'vertical', got {orientation!r}")
        if in_band and orientation != "horizontal":
            raise ValueError("a scale bar inside the data bar must be horizontal")
    vertical = orientation == "vertical"
    if variety:
        along = spec_rows if vertical else w_img
        value_nm = float(overrides.get("value_nm") or _nice_bar_variety(rng, along, nm_per_px))
    else:
        along = w_img
        value_nm = float(overrides.get("value_nm") or _nice_bar(rng, w_img, nm_per_px))
    bar_px = int(round(value_nm / nm_per_px))
    if bar_px < 2 or bar_px > along - 4:
        if vertical:
            raise ValueError(
                f"vertical scale bar of {value_nm} nm is {bar_px} px long at {nm_per_px} nm/px: "
                f"does not fit a {along} px tall specimen area"
            )
        raise ValueError(f"scale bar of {value_nm} nm is {bar_px} px long at {nm_per_px} nm/px: does not fit a {w_img} px wide image")
    if variety:
        value, unit, text = _bar_label_variety(rng, value_nm, overrides)
    else:
        value, unit, text = _bar_label(rng, value_nm, overrides.get("unit"))
    fonts = _fonts_for(text)
    font_name = overrides.get("font") or _choice(rng, fonts)
    if font_name not in _FONTS:
        raise ValueError(f"unknown font {font_name!r}; expected one of {', '.join(_FONTS)}")
    box_style = None
    text_rotation = 0
    if in_band:
        band_y0, band_rows = data_band
        font_px = int(overrides.get("font_px") or max(8, round(band_rows * _u(rng, 0.28, 0.4))))
        if variety:
            style = overrides.get("style") or _choice(rng, list(_SB_STYLES_VARIETY), p=[0.45, 0.3, 0.1, 0.15])
        else:
            style = overrides.get("style") or _choice(rng, ["solid", "ticks", "line"], p=[0.5, 0.35, 0.15])
        label_pos = overrides.get("label_pos") or _choice(rng, ["above", "left", "right"], p=[0.6, 0.2, 0.2])
        color, box = "white", False
        corner = "data_bar"
        if variety and (overrides.get("box") or overrides.get("box_style") or overrides.get("text_rotation")):
            raise ValueError("a scale bar inside the data bar has no box and no rotated text")
    elif not variety:
        font_px = int(overrides.get("font_px") or max(9, round(min(h_img, w_img) * _u(rng, 0.025, 0.055))))
        style = overrides.get("style") or _choice(rng, ["solid", "ticks", "line"], p=[0.55, 0.3, 0.15])
        label_pos = overrides.get("label_pos") or _choice(rng, ["above", "below", "left", "right"], p=[0.45, 0.35, 0.1, 0.1])
        box = bool(overrides["box"]) if "box" in overrides else bool(rng.random() < 0.45)
        if "color" in overrides:
            color = overrides["color"]
        else:
            contrast = "black" if modality == "tem" else "white"
            other = "white" if contrast == "black" else "black"
            color = contrast if (box or rng.random() < 0.92) else other
            if box and rng.random() < 0.5:
                color = other  # boxes make either colour readable
        corner = overrides.get("corner") or _choice(
            rng, ["bottom-right", "bottom-left", "top-right", "top-left"], p=[0.5, 0.3, 0.1, 0.1]
        )
    else:
        font_px = int(overrides.get("font_px") or max(9, round(min(h_img, w_img) * _u(rng, 0.025, 0.055))))
        style = overrides.get("style") or _choice(rng, list(_SB_STYLES_VARIETY), p=[0.45, 0.25, 0.15, 0.15])
        if vertical:
            text_rotation = overrides["text_rotation"] if "text_rotation" in overrides else int(_choice(rng, [0, 90, 270], p=[0.5, 0.4, 0.1]))
            if text_rotation not in (0, 90, 270):
                raise ValueError(f"scalebar text_rotation must be 0, 90 or 270 (degrees, counter-clockwise), got {text_rotation!r}")
            if text_rotation:
                label_pos = overrides.get("label_pos") or _choice(rng, ["left", "right"])
                if label_pos not in ("left", "right"):
                    raise ValueError(f"rotated text sits left or right of a vertical scale bar, got label_pos={label_pos!r}")
            else:
                label_pos = overrides.get("label_pos") or _choice(rng, ["left", "right", "above", "below"], p=[0.35, 0.35, 0.15, 0.15])
        else:
            if overrides.get("text_rotation"):
                raise ValueError("scalebar text_rotation needs orientation='vertical'")
            label_pos = overrides.get("label_pos") or _choice(rng, ["above", "below", "left", "right"], p=[0.45, 0.35, 0.1, 0.1])
        if "box_style" in overrides:
            box_style = overrides["box_style"]
            if box_style not in _SB_BOX_STYLES:
                raise ValueError(f"scalebar box_style must be one of {', '.join(_SB_BOX_STYLES)}, got {box_style!r}")
            if "box" in overrides and not overrides["box"]:
                raise ValueError("scalebar box_style given together with box=False")
            box = True
        else:
            box = bool(overrides["box"]) if "box" in overrides else bool(rng.random() < 0.5)
            if box:
                box_style = _choice(rng, list(_SB_BOX_STYLES), p=[0.6, 0.2, 0.2])
        contrast = "black" if modality == "tem" else "white"
        other = "white" if contrast == "black" else "black"
        if "color" in overrides:
            color = overrides["color"]
        elif box_style in ("fill", "grey"):
            color = contrast if rng.random() < 0.5 else other  # a filled box makes either colour readable
        else:
            color = contrast if rng.random() < 0.92 else other
        corner = overrides.get("corner") or _choice(
            rng,
            list(_SB_POSITIONS[orientation]),
            p=[0.38, 0.22, 0.1, 0.1, 0.13, 0.07] if not vertical else [0.22, 0.14, 0.12, 0.12, 0.2, 0.2],
        )
        if corner not in _SB_POSITIONS[orientation]:
            raise ValueError(
                f"scalebar corner (position) of a {orientation} bar must be one of "
                f"{', '.join(_SB_POSITIONS[orientation])}, got {corner!r}"
            )
    if color not in ("white", "black"):
        raise ValueError(f"scalebar color must be 'white' or 'black', got {color!r}")
    if variety:
        if style not in _SB_STYLES_VARIETY:
            raise ValueError(f"scalebar style must be one of {', '.join(_SB_STYLES_VARIETY)}, got {style!r}")
    elif style not in ("solid", "line", "ticks"):
        raise ValueError(f"scalebar style must be 'solid', 'line' or 'ticks', got {style!r}")
    if label_pos not in ("above", "below", "left", "right"):
        raise ValueError(f"scalebar label_pos must be above/below/left/right, got {label_pos!r}")

    patch = _text_patch(text, font_name, font_px)
    if text_rotation:
        patch = np.ascontiguousarray(np.rot90(patch, k=1 if text_rotation == 90 else 3))
    bar = _bar_geometry(rng, style, font_px, bar_px)
    if vertical:  # the horizontal geometry transposed: length along y
        bar_rects = [(b, a, d, c) for a, b, c, d in bar["rects"]]
        block = _layout_block_vertical(rng, bar["h"], bar_px, patch.shape, label_pos, font_px)
    else:
        bar_rects = bar["rects"]
        block = _layout_block(rng, bar, bar_px, patch.shape, label_pos, font_px)
    outline_px = 0
    if not variety:
        pad = max(2, int(round(font_px * _u(rng, 0.25, 0.7)))) if box else 0
    else:
        if box_style == "outline":
            outline_px = int(_choice(rng, [1, 1, 2]))
        pad = max(2 + outline_px, int(round(font_px * _u(rng, 0.25, 0.7)))) if box else 0
    bw, bh = block["w"] + 2 * pad, block["h"] + 2 * pad

    if in_band:
        band_y0, band_rows = data_band
        margin = max(2, int(round(w_img * 0.01)))
        x0 = w_img - margin - bw
        y0 = band_y0 + max(0, (band_rows - bh) // 2)
    else:
        margin = 0 if (box and rng.random() < 0.25) else max(2, int(round(min(h_img, w_img) * _u(rng, 0.01, 0.04))))
        if bw > w_img - 2 * margin or bh > spec_rows - 2 * margin:
            raise ValueError(f"scale bar block {bh}x{bw} px does not fit a {spec_rows}x{w_img} px image")
        if not variety:
            y0 = margin if corner.startswith("top") else spec_rows - margin - bh
            x0 = margin if corner.endswith("left") else w_img - margin - bw
        else:
            if corner.startswith("top"):
                y0 = margin
            elif corner.startswith("bottom"):
                y0 = spec_rows - margin - bh
            else:  # left-middle / right-middle
                y0 = (spec_rows - bh) // 2
            if corner.endswith("centre"):
                x0 = (w_img - bw) // 2
            elif "left" in corner:
                x0 = margin
            else:
                x0 = w_img - margin - bw
    by, bx = y0 + pad + block["bar_yx"][0], x0 + pad + block["bar_yx"][1]
    ty, tx = y0 + pad + block["text_yx"][0], x0 + pad + block["text_yx"][1]
    th, tw = patch.shape
    rects = [(by + a, bx + b, by + c, bx + d) for a, b, c, d in bar_rects]
    bar_bbox = [min(r[0] for r in rects), min(r[1] for r in rects), max(r[2] for r in rects), max(r[3] for r in rects)]
    out = {
        "value": value,
        "unit": unit,
        "text": text,
        "value_nm": value_nm,
        "bar_px": float(bar_bbox[2] - bar_bbox[0]) if vertical else float(bar_bbox[3] - bar_bbox[1]),
        "bar_bbox": [int(c) for c in bar_bbox],
        "text_bbox": [int(ty), int(tx), int(ty + th), int(tx + tw)],
        "box_bbox": [int(y0), int(x0), int(y0 + bh), int(x0 + bw)],
        "color": color,
        "box": box,
        "style": style,
        "label_pos": label_pos,
        "corner": corner,
        "font": font_name,
        "font_px": font_px,
        "in_data_bar": in_band,
    }
    if variety:
        fg = 1.0 if color == "white" else 0.0
        if box_style == "grey":
            box_level = _u(rng, 0.5, 0.7) if color == "black" else _u(rng, 0.2, 0.35)
        elif box_style == "fill":
            box_level = 1.0 - fg
        elif box_style == "outline":
            box_level = fg
        else:
            box_level = None
        out.update(
            {
                "orientation": orientation,
                "text_rotation": int(text_rotation),
                "box_style": box_style,
                "box_level": box_level,
                "box_outline_px": outline_px,
            }
        )
    out["_rects"] = rects
    out["_patch"] = patch
    return out


def _data_bar_text(rng: np.random.Generator, width_px: int, nm_per_px: float) -> tuple[str, list[str]]:
    """Vendor style and fields of an SEM data bar consistent with the pixel size."""
    hfw_nm = width_px * nm_per_px
    kv = float(_choice(rng, [1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 20.0, 30.0]))
    wd = round(_u(rng, 2.0, 15.0), 1)
    micro = _choice(rng, ["µm", "μm", "um"], p=[0.6, 0.2, 0.2])
    hfw = f"{hfw_nm / 1000:.3g} {micro}" if hfw_nm >= 1000 else f"{hfw_nm:.3g} nm"
    style = _choice(rng, ["fei", "zeiss", "hitachi"], p=[0.5, 0.3, 0.2])
    if style == "fei":
        mag = _round_sig(0.127 / (hfw_nm * 1e-9), 3)
        mag_s = f"{int(mag):,}".replace(",", " ")
        fields = [f"HV {kv:.2f} kV", f"WD {wd} mm", f"mag {mag_s} x", f"HFW {hfw}", f"det {_choice(rng, ['ETD', 'TLD', 'CBS'])}"]
        if rng.random() < 0.5:
            fields.append(f"mode {_choice(rng, ['SE', 'BSE'])}")
    elif style == "zeiss":
        mag = 0.1143 / (hfw_nm * 1e-9)
        mag_s = f"{mag / 1000:.2f} K X" if mag >= 1000 else f"{mag:.0f} X"
        fields = [f"EHT = {kv:.2f} kV", f"WD = {wd} mm", f"Mag = {mag_s}", f"Signal A = {_choice(rng, ['InLens', 'SE2'])}"]
    else:
        mag = 0.127 / (hfw_nm * 1e-9)
        mag_s = f"x{mag / 1000:.0f}k" if mag >= 10000 else f"x{mag:.0f}"
        fields = [_choice(rng, ["SU8010", "S-4800", "SU8230"]), f"{kv:.1f}kV", f"{wd}mm", mag_s, "SE(UL)"]
    return style, fields


# --------------------------------------------------------------------------- particles


def _place_particles(
    rng: np.random.Generator,
    shape: tuple[int, int],
    spec_rows: int,
    exclusions: list[list[int]],
    cfg: dict,
    min_visible_px: int,
) -> tuple[np.ndarray, list[dict]]:
    """Place particles one by one (later ones on top) under the overlap rules of `cfg`.

    Returns the occlusion label map (int32, ids in placement order) and the
    particle records with their crop slices, signed distances and geometry.
    """
    h_img, w_img = shape
    occ = np.zeros(shape, dtype=np.int32)
    visible = [0]  # visible pixel count per id, index 0 unused
    parts: list[dict] = []
    area_target = cfg["area_fraction"] * spec_rows * w_img
    n_target = cfg["n_particles"]
    max_attempts = 40 * (n_target if n_target else _MAX_PARTICLES // 3) + 200
    area_done = 0.0
    mode = cfg["overlap_mode"]
    pad_excl = 4
    lattice = None
    if cfg["arrangement"] == "lattice":
        sp = cfg["size_px"] * (1.0 + cfg["lattice_gap"])
        ang = cfg["lattice_angle"]
        ca, sa = math.cos(ang), math.sin(ang)
        reach = int(math.hypot(h_img, w_img) / sp) + 2
        ii, jj = np.meshgrid(np.arange(-reach, reach + 1), np.arange(-reach, reach + 1), indexing="ij")
        if cfg["lattice_kind"] == "hex":
            lu, lv = (jj + 0.5 * (ii % 2)) * sp, ii * sp * math.sqrt(3) / 2
        else:
            lu, lv = jj * sp, ii * sp
        cx = w_img / 2 + ca * lu - sa * lv
        cy = h_img / 2 + sa * lu + ca * lv
        keep = (cx > -sp) & (cx < w_img + sp) & (cy > -sp) & (cy < spec_rows + sp)
        pts = np.stack([cy[keep], cx[keep]], axis=1)
        # grow one self-assembled domain outwards from a random point, with a ragged rim
        oy, ox = _u(rng, 0, spec_rows), _u(rng, 0, w_img)
        dist = np.hypot(pts[:, 0] - oy, pts[:, 1] - ox) * rng.uniform(0.85, 1.15, len(pts))
        lattice = list(pts[np.argsort(-dist)])  # pop() takes the nearest first

    attempts = 0
    failures = 0
    while attempts < max_attempts and len(parts) < _MAX_PARTICLES and failures < _MAX_CONSECUTIVE_FAILURES:
        if n_target is not None:
            if len(parts) >= n_target:
                break
        elif area_done >= area_target:
            break
        attempts += 1
        failures += 1
        kind = _choice(rng, cfg["shapes"], p=cfg["shape_p"])
        diam = float(cfg["size_px"] * math.exp(rng.normal(0.0, cfg["size_sigma"])))
        diam = max(diam, 3.0)
        g = _make_shape(rng, kind, diam, cfg["flat_prob"])
        g["ramp_fraction"] = cfg["ramp_fraction"]
        angle = _u(rng, 0, 2 * math.pi)
        if lattice is not None:
            if not lattice:
                break
            cy, cx = lattice.pop()
            jit = cfg["lattice_jitter"] * cfg["size_px"]
            cy, cx = float(cy + rng.normal(0, jit)), float(cx + rng.normal(0, jit))
            if rng.random() < cfg["lattice_vacancy"]:
                continue
            angle = cfg["lattice_angle"] + float(rng.normal(0, 0.05))
        elif parts and rng.random() < cfg["cluster_prob"]:
            other = parts[int(rng.integers(len(parts)))]
            d = (other["g"]["extent"] + other["g"]["inradius"]) / 2 + (g["extent"] + g["inradius"]) / 2
            if mode == "separate":
                d = d * _u(rng, 1.0, 1.25) + cfg["gap_px"]
            else:
                d *= _u(rng, 0.85, 1.1)
            phi = _u(rng, 0, 2 * math.pi)
            cy, cx = other["center"][0] + d * math.sin(phi), other["center"][1] + d * math.cos(phi)
        else:
            ext = g["extent"] * 0.5
            cy, cx = _u(rng, -ext, spec_rows - 1 + ext), _u(rng, -ext, w_img - 1 + ext)
        r = g["extent"] + 2.0
        y0, y1 = max(0, int(math.floor(cy - r))), min(h_img, int(math.ceil(cy + r)) + 1)
        x0, x1 = max(0, int(math.floor(cx - r))), min(w_img, int(math.ceil(cx + r)) + 1)
        if y1 - y0 < 2 or x1 - x0 < 2:
            continue
        # cheap rejections before rasterising: centre already covered, or overlay hit
        if mode != "overlap":
            ri = 0.7 * g["inradius"]
            probe = [(cy, cx), (cy + ri, cx), (cy - ri, cx), (cy, cx + ri), (cy, cx - ri)]
            if any(
                0 <= py < spec_rows and 0 <= px < w_img and occ[int(py), int(px)] > 0
                for py, px in ((round(a), round(b)) for a, b in probe)
            ):
                continue
        near = [
            e for e in exclusions
            if y0 < e[2] + pad_excl and y1 > e[0] - pad_excl and x0 < e[3] + pad_excl and x1 > e[1] - pad_excl
        ]
        yy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
        xx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
        c, s = np.float32(math.cos(angle)), np.float32(math.sin(angle))
        u = c * xx + s * yy
        v = -s * xx + c * yy
        sd = _shape_sd(g, u, v).astype(np.float32)
        mask = sd < 0
        # pixels in the data bar are not specimen
        if y1 > spec_rows:
            mask[spec_rows - y0 :] = False
        area = int(mask.sum())
        if area < min_visible_px:
            continue
        # keep the overlays' regions free of particles (including their blurred rim)
        clash = False
        for ey0, ex0, ey1, ex1 in near:
            oy0, oy1 = max(y0, ey0 - pad_excl), min(y1, ey1 + pad_excl)
            ox0, ox1 = max(x0, ex0 - pad_excl), min(x1, ex1 + pad_excl)
            if oy0 < oy1 and ox0 < ox1 and (sd[oy0 - y0 : oy1 - y0, ox0 - x0 : ox1 - x0] < 1.5).any():
                clash = True
                break
        if clash:
            continue
        occ_crop = occ[y0:y1, x0:x1]
        if mode == "separate":
            if (occ_crop[sd < cfg["gap_px"]] > 0).any():
                continue
        else:
            under = occ_crop[mask]
            covered = np.bincount(under, minlength=len(visible))
            n_over = int(area - covered[0])
            limit = 0.1 if mode == "touching" else cfg["max_overlap"]
            if n_over > limit * area:
                continue
            if n_over:
                ids = np.flatnonzero(covered[1:]) + 1
                after = np.asarray(visible)[ids] - covered[ids]
                needed = np.maximum(min_visible_px, 0.5 * np.asarray([parts[i - 1]["area"] for i in ids]))
                if (after < needed).any():
                    continue
                for i in ids:
                    visible[i] -= int(covered[i])
        new_id = len(parts) + 1
        failures = 0
        occ_crop[mask] = new_id
        visible.append(area)
        area_done += area
        parts.append(
            {
                "g": g,
                "center": (float(cy), float(cx)),
                "angle": float(angle),
                "diam": diam,
                "slices": (slice(y0, y1), slice(x0, x1)),
                "sd": sd,
                "area": area,
                "uv": (u, v),
            }
        )
    return occ, parts


# --------------------------------------------------------------------------- rendering


def _illumination(rng: np.random.Generator, shape: tuple[int, int], p: dict) -> np.ndarray:
    h, w = shape
    yy = (np.arange(h, dtype=np.float32)[:, None] - h / 2) / (max(h, w) / 2)
    xx = (np.arange(w, dtype=np.float32)[None, :] - w / 2) / (max(h, w) / 2)
    g = p["gradient"]
    phi = p["gradient_angle"]
    field = 1.0 + g * (math.cos(phi) * xx + math.sin(phi) * yy)
    cy, cx = p["vignette_centre"]
    field = field * (1.0 - p["vignette"] * ((xx - cx) ** 2 + (yy - cy) ** 2) / 2.0)
    return field.astype(np.float32)


def _render_tem(rng, shape, parts, p) -> np.ndarray:
    h, w = shape
    bg = 1.0 + p["bg_grain"] * _smooth_noise(rng, shape, p["bg_grain_sigma"])
    bg += p["bg_mottle"] * _smooth_noise(rng, shape, p["bg_mottle_sigma"])
    tex = _smooth_noise(rng, shape, p["particle_texture_sigma"])
    absorb = np.zeros(shape, dtype=np.float32)
    for q in parts:
        g, sd, sl = q["g"], q["sd"], q["slices"]
        t = _profile(g, sd)
        mu = q["mu"]
        if g["shape"] == "core_shell":
            u, v = q["uv"]
            rc = g["radius"] * g["core_fraction"]
            sdc = np.hypot(u - g["core_offset"][0], v - g["core_offset"][1]) - rc
            tc = _profile({"inradius": rc, "profile": "dome"}, sdc)
            a = q["mu_shell"] * t + (mu - q["mu_shell"]) * tc
        else:
            a = mu * t
        absorb[sl] += a * (1.0 + p["particle_texture"] * tex[sl])
    img = bg * np.exp(-absorb)
    return img.astype(np.float32)


def _render_sem(rng, shape, parts, occ, p) -> np.ndarray:
    sub = p["substrate"] * (1.0 + p["bg_grain"] * _smooth_noise(rng, shape, p["bg_grain_sigma"]))
    sub += p["substrate"] * p["bg_mottle"] * _smooth_noise(rng, shape, p["bg_mottle_sigma"])
    if p["shadow"] > 0 and parts:
        cover = (occ > 0).astype(np.float32)
        sh = ndi.gaussian_filter(cover, p["shadow_sigma"])
        sub *= 1.0 - p["shadow"] * sh
    img = sub.astype(np.float32)
    tex = _smooth_noise(rng, shape, p["particle_texture_sigma"])
    lx, ly, lz = p["light"]
    for q in parts:
        g, sd, sl = q["g"], q["sd"], q["slices"]
        t = _profile(g, sd)
        rin = max(g["inradius"], 0.5)
        height = t * rin * (0.35 if g["profile"] == "flat" else 1.0)
        height = height + p["roughness"] * rin * 0.15 * tex[sl] * t
        gy, gx = np.gradient(height)
        nz = 1.0 / np.sqrt(1.0 + gx * gx + gy * gy)
        lam = np.minimum(np.maximum((-gx * lx - gy * ly + lz) * nz, 0.0), 1.0)
        sec = np.minimum(1.0 / nz, 4.0)  # secondary-electron yield grows with surface tilt
        depth = np.maximum(-sd, 0.0)
        val = q["brightness"] * ((1 - p["lambert"]) + p["lambert"] * lam) * (1.0 + p["tilt_gain"] * (sec - 1.0))
        val = val + p["edge_glow"] * np.exp(-depth / p["edge_width"])
        if g["shape"] == "core_shell":
            u, v = q["uv"]
            rc = g["radius"] * g["core_fraction"]
            sdc = np.hypot(u - g["core_offset"][0], v - g["core_offset"][1]) - rc
            val = val * (1.0 + q["core_gain"] * _coverage(sdc / 2.0))
        alpha = _coverage(sd)
        crop = img[sl]
        crop += alpha * (val - crop)
    return img


def _finish(rng, img: np.ndarray, spec_rows: int, p: dict, dtype: np.dtype) -> np.ndarray:
    """Illumination, PSF, Fresnel fringe, noise, scan lines, display mapping, quantisation."""
    img = img * _illumination(rng, img.shape, p)
    sig = p["psf_sigma"]
    img = ndi.gaussian_filter(img, (sig * p["psf_aspect"], sig))
    if p["fringe"] > 0:
        img = img + p["fringe"] * (img - ndi.gaussian_filter(img, p["fringe_sigma"]))
    img = np.clip(img, 0.0, None)
    dose = p["dose"]
    img = rng.poisson(img * dose).astype(np.float32) / np.float32(dose)
    img += np.float32(p["read_noise"]) * rng.standard_normal(img.shape, dtype=np.float32)
    if p["scan_lines"] > 0:
        img += np.float32(p["scan_lines"]) * rng.standard_normal((img.shape[0], 1), dtype=np.float32)
    sample = img[:spec_rows:3, ::3]
    lo, hi = np.percentile(sample, [p["clip_low_pct"], p["clip_high_pct"]])
    out = np.clip((img - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)
    out = out ** np.float32(p["gamma"])
    out = p["out_low"] + (p["out_high"] - p["out_low"]) * out
    maxval = np.iinfo(dtype).max
    q = np.round(out * maxval).astype(dtype)
    if dtype == np.uint8 and p["jpeg_quality"]:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(q).save(buf, format="JPEG", quality=int(p["jpeg_quality"]))
        buf.seek(0)
        q = np.asarray(Image.open(buf).convert("L"), dtype=np.uint8).copy()
    return q


def _draw_scalebar(img: np.ndarray, sb: dict) -> None:
    maxval = np.iinfo(img.dtype).max
    fg = maxval if sb["color"] == "white" else 0
    if sb["box"]:
        y0, x0, y1, x1 = sb["box_bbox"]
        box_style = sb.get("box_style", "fill")  # only variety bars have other styles
        if box_style == "outline":
            t = int(sb["box_outline_px"])
            img[y0 : y0 + t, x0:x1] = fg
            img[y1 - t : y1, x0:x1] = fg
            img[y0:y1, x0 : x0 + t] = fg
            img[y0:y1, x1 - t : x1] = fg
        elif box_style == "grey":
            img[y0:y1, x0:x1] = int(round(sb["box_level"] * maxval))
        else:
            img[y0:y1, x0:x1] = maxval - fg
    for y0, x0, y1, x1 in sb["_rects"]:
        img[y0:y1, x0:x1] = fg
    _blend_patch(img, sb["_patch"], sb["text_bbox"][:2], fg)


def _blend_patch(img: np.ndarray, patch: np.ndarray, yx, value: float) -> None:
    y, x = int(yx[0]), int(yx[1])
    h, w = patch.shape
    reg = img[y : y + h, x : x + w]
    a = patch[: reg.shape[0], : reg.shape[1]]
    reg[...] = np.round(reg * (1.0 - a) + value * a).astype(img.dtype)


def _draw_data_bar(rng, img: np.ndarray, rows: int, fields: list[str], avail_w: int, font_name: str) -> list[int]:
    """Dark band at the bottom with white instrument text; returns the text's ink bbox."""
    h, w = img.shape
    maxval = np.iinfo(img.dtype).max
    y0 = h - rows
    img[y0:] = int(round(_u(rng, 0.0, 0.1) * maxval))
    if rng.random() < 0.5:  # thin separator line on top of the band
        img[y0 : y0 + 1] = maxval
    sep = " " * int(_choice(rng, [2, 3, 4]))
    text = sep.join(fields)
    font_px = max(7, int(round(rows * _u(rng, 0.32, 0.5))))
    margin = max(2, int(round(w * 0.01)))
    while True:
        patch = _text_patch(text, font_name, font_px)
        if patch.shape[1] <= avail_w - 2 * margin and patch.shape[0] <= rows - 2 or font_px <= 6:
            break
        font_px -= 1
    patch = patch[: rows - 2, : max(1, avail_w - 2 * margin)]
    ty = y0 + (rows - patch.shape[0]) // 2
    _blend_patch(img, patch, (ty, margin), maxval)
    return [int(ty), int(margin), int(ty + patch.shape[0]), int(margin + patch.shape[1])]


_PANEL_TEXTS = ["(a)", "(b)", "(c)", "(d)", "(e)", "(f)", "a", "b", "c", "d", "A", "B", "C", "D", "b2", "c'", "(d)"]


def _place_panel(rng, shape, spec_rows, modality, corner: str) -> dict:
    h, w = shape
    text = _choice(rng, _PANEL_TEXTS)
    font_name = _choice(rng, ["DejaVuSans-Bold", "DejaVuSerif-Bold", "DejaVuSans", "STIXGeneral-Bold", "cmb10", "DejaVuSerif"])
    font_px = max(10, int(round(min(h, w) * _u(rng, 0.04, 0.08))))
    patch = _text_patch(text, font_name, font_px)
    box = rng.random() < 0.3
    color = ("black" if modality == "tem" else "white") if (box or rng.random() < 0.85) else ("white" if modality == "tem" else "black")
    pad = max(2, font_px // 5) if box else 0
    margin = max(2, int(round(min(h, w) * _u(rng, 0.01, 0.03))))
    bh, bw = patch.shape[0] + 2 * pad, patch.shape[1] + 2 * pad
    y0 = margin
    x0 = margin if corner == "top-left" else w - margin - bw
    if bh + 2 * margin > spec_rows or bw + 2 * margin > w:
        raise ValueError(f"panel label does not fit a {spec_rows}x{w} px image")
    return {
        "text": text,
        "font": font_name,
        "font_px": font_px,
        "color": color,
        "box": box,
        "text_bbox": [y0 + pad, x0 + pad, y0 + pad + patch.shape[0], x0 + pad + patch.shape[1]],
        "box_bbox": [y0, x0, y0 + bh, x0 + bw],
        "_patch": patch,
    }


def _draw_boxed_patch(img: np.ndarray, color: str, box_bbox, patch: np.ndarray, yx) -> None:
    """Ink `patch` at `yx` in `color` ("white"/"black"), on a box of the other colour when `box_bbox` is given."""
    maxval = np.iinfo(img.dtype).max
    fg = maxval if color == "white" else 0
    if box_bbox is not None:
        y0, x0, y1, x1 = box_bbox
        img[y0:y1, x0:x1] = maxval - fg
    _blend_patch(img, patch, yx, fg)


def _boxes_clash(a, b, pad: int = 0) -> bool:
    """Whether half-open boxes `a` and `b` come closer than `pad` pixels."""
    return a[0] < b[2] + pad and b[0] < a[2] + pad and a[1] < b[3] + pad and b[1] < a[3] + pad


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _distractor_text(rng: np.random.Generator) -> tuple[str, str]:
    """A free-floating annotation that is not a scale label; returns (category, text)."""
    cat = _choice(
        rng,
        ["number", "marker", "mag", "figure", "date", "hv", "wd", "spot", "time"],
        p=[0.22, 0.16, 0.16, 0.08, 0.1, 0.08, 0.08, 0.06, 0.06],
    )
    n = int(rng.integers(1, 20))
    if cat == "number":
        text = _choice(rng, [str(n), str(int(rng.integers(1, 100))), f"{_u(rng, 0.1, 9.9):.1f}", "1", "2", "3"])
    elif cat == "marker":
        text = _choice(rng, [f"#{n}", f"P{n}", f"S{n}", f"A{n}", f"({_choice(rng, ['i', 'ii', 'iii', 'iv'])})", f"{n}a"])
    elif cat == "mag":
        k = int(_choice(rng, [5, 10, 20, 25, 50, 100, 150, 200, 300]))
        text = _choice(
            rng,
            [f"x{k}k", f"×{k * 1000:,}", f"{k}kX", f"{k}.0 kX", f"x{k * 1000}", f"{k} kx", f"Mag = {k}.00 K X", f"×{k}k"],
        )
    elif cat == "figure":
        text = _choice(rng, [f"Fig. {n}", f"Fig. {n}{_choice(rng, ['a', 'b', 'c'])}", f"FIG {n}", f"Figure {n}"])
    elif cat == "date":
        d, m, y = int(rng.integers(1, 29)), int(rng.integers(1, 13)), int(rng.integers(2005, 2026))
        text = _choice(rng, [f"{d:02d}/{m:02d}/{y}", f"{y}-{m:02d}-{d:02d}", f"{d} {_MONTHS[m - 1]} {y}", f"{m}/{d}/{y % 100:02d}"])
    elif cat == "hv":
        kv = _choice(rng, [1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 80.0, 200.0])
        text = _choice(rng, [f"HV {kv:g} kV", f"{kv:.1f} kV", f"EHT = {kv:.2f} kV", f"{kv:g}kV"])
    elif cat == "wd":
        text = _choice(rng, [f"WD {_u(rng, 2, 15):.1f} mm", f"WD={_u(rng, 2, 15):.1f}mm", f"WD {int(rng.integers(3, 15))} mm"])
    elif cat == "spot":
        text = _choice(rng, [f"Spot {int(rng.integers(1, 7))}", f"spot {_u(rng, 1, 6):.1f}", f"Det: {_choice(rng, ['SE', 'BSE', 'ETD'])}"])
    else:
        text = f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}:{int(rng.integers(0, 60)):02d}"
    return cat, text


def _segment_alpha(h: int, w: int, segs, width: float) -> np.ndarray:
    """Anti-aliased ink of line segments ((y0, x0), (y1, x1)) of `width` px in an (h, w) patch."""
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    a = np.zeros((h, w), dtype=np.float32)
    for (ya, xa), (yb, xb) in segs:
        dy, dx = yb - ya, xb - xa
        ln2 = max(dy * dy + dx * dx, 1e-6)
        t = np.clip(((yy - ya) * dy + (xx - xa) * dx) / ln2, 0.0, 1.0)
        d = np.hypot(yy - (ya + t * dy), xx - (xa + t * dx))
        a = np.maximum(a, np.clip(width / 2 + 0.5 - d, 0.0, 1.0))
    return a


def _crop_ink(a: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(a.max(axis=1) > 0)
    cols = np.flatnonzero(a.max(axis=0) > 0)
    return np.ascontiguousarray(a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])


def _distractor_shape(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[str, np.ndarray]:
    """A lone line, hollow rectangle or arrow (no number next to it): (kind, alpha patch)."""
    h, w = shape
    s = min(h, w)
    kind = _choice(rng, ["line", "rect", "arrow"], p=[0.45, 0.25, 0.3])
    t = int(_choice(rng, [1, 1, 2, 3]))
    if kind == "line":  # looks like a bar, but has no label
        length = max(8, int(round(_u(rng, 0.06, 0.25) * (w if rng.random() < 0.75 else h))))
        patch = np.ones((t, length), dtype=np.float32)
        if rng.random() < 0.25:
            patch = patch.T.copy()
        return kind, patch
    if kind == "rect":  # region-of-interest frame
        ph, pw = max(6, int(round(_u(rng, 0.04, 0.18) * s))), max(6, int(round(_u(rng, 0.04, 0.25) * s)))
        patch = np.zeros((ph, pw), dtype=np.float32)
        patch[:t], patch[-t:], patch[:, :t], patch[:, -t:] = 1, 1, 1, 1
        return kind, patch
    # arrow: a shaft with a V head at its tip, any direction
    length = _u(rng, 0.05, 0.15) * s
    ang = _u(rng, 0, 2 * math.pi)
    head = max(3.0, length * _u(rng, 0.2, 0.35))
    m = head + t + 2
    size = int(math.ceil(length + 2 * m))
    c = size / 2
    ty, tx = c + math.sin(ang) * length / 2, c + math.cos(ang) * length / 2  # tip
    sy, sx = c - math.sin(ang) * length / 2, c - math.cos(ang) * length / 2
    segs = [((sy, sx), (ty, tx))]
    for da in (math.radians(150), -math.radians(150)):
        segs.append(((ty, tx), (ty + head * math.sin(ang + da), tx + head * math.cos(ang + da))))
    patch = _crop_ink(_segment_alpha(size, size, segs, float(t)))
    return kind, patch


def _place_distractors(
    rng: np.random.Generator,
    shape: tuple[int, int],
    spec_rows: int,
    modality: str,
    sb: dict | None,
    taken: list[list[int]],
) -> list[dict]:
    """Texts and marks that are not a scale bar, kept clear of the scale-bar block and each other."""
    h, w = shape
    if rng.random() >= 0.65:
        return []
    n = int(_choice(rng, [1, 2, 3, 4], p=[0.35, 0.3, 0.2, 0.15]))
    sb_font = sb["font_px"] if sb is not None else max(9, round(min(h, w) * 0.04))
    sb_box = sb["box_bbox"] if (sb is not None and not sb["in_data_bar"]) else None
    sb_pad = max(8, 2 * int(sb_font))
    out: list[dict] = []
    contrast = "black" if modality == "tem" else "white"
    other = "white" if contrast == "black" else "black"
    for _ in range(n):
        if rng.random() < 0.7:
            cat, text = _distractor_text(rng)
            font_name = _choice(rng, _fonts_for(text))
            font_px = max(9, int(round(min(h, w) * _u(rng, 0.025, 0.06))))
            patch = _text_patch(text, font_name, font_px)
            kind = "text"
            box = bool(rng.random() < 0.15)
        else:
            kind, patch = _distractor_shape(rng, (spec_rows, w))
            cat, text, font_name, font_px, box = kind, None, None, None, False
        color = contrast if rng.random() < 0.75 else other
        pad = max(2, patch.shape[0] // 5) if box else 0
        bh, bw = patch.shape[0] + 2 * pad, patch.shape[1] + 2 * pad
        margin = max(2, int(round(min(h, w) * 0.01)))
        if bh > spec_rows - 2 * margin or bw > w - 2 * margin:
            continue
        gap = max(8, int(round(1.5 * max(font_px or 0, sb_font))))
        placed = None
        for _try in range(30):
            if rng.random() < 0.35:  # annotations like to sit in corners
                y0 = margin if rng.random() < 0.5 else spec_rows - margin - bh
                x0 = margin if rng.random() < 0.5 else w - margin - bw
            else:
                y0 = int(rng.integers(margin, spec_rows - margin - bh + 1))
                x0 = int(rng.integers(margin, w - margin - bw + 1))
            bb = [int(y0), int(x0), int(y0 + bh), int(x0 + bw)]
            if sb_box is not None and _boxes_clash(bb, sb_box, sb_pad):
                continue
            if any(_boxes_clash(bb, t, 4) for t in taken):
                continue
            if any(_boxes_clash(bb, d["bbox"], gap) for d in out):
                continue
            placed = bb
            break
        if placed is None:
            continue
        y0, x0 = placed[0], placed[1]
        out.append(
            {
                "kind": kind,
                "category": cat,
                "text": text,
                "bbox": placed,
                "ink_bbox": [y0 + pad, x0 + pad, y0 + pad + patch.shape[0], x0 + pad + patch.shape[1]],
                "color": color,
                "box": box,
                "font": font_name,
                "font_px": font_px,
                "_patch": patch,
            }
        )
    return out


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items() if not str(k).startswith("_")}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, (np.floating, float)):
        return float(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.bool_,)):
        return bool(o)
    return o


# --------------------------------------------------------------------------- public API


def render_micrograph(
    seed_or_rng: Any = None,
    *,
    shape: tuple[int, int] = (768, 1024),
    modality: str | None = None,
    n_particles: int | None = None,
    nm_per_px: float | None = None,
    shapes: str | list[str] | None = None,
    size_px: float | None = None,
    density: str | float | None = None,
    scalebar: bool | dict = True,
    data_bar_prob: float = 0.3,
    panel_label_prob: float = 0.2,
    jpeg_prob: float = 0.2,
    dtype: str = "uint8",
    min_visible_px: int = 12,
    scalebar_variety: bool = False,
) -> SynthMicrograph:
    """Render one synthetic TEM- or SEM-like micrograph with exact ground truth.

    Parameters
    ----------
    seed_or_rng : int, sequence of int, numpy.random.SeedSequence or Generator, optional
        Source of randomness.  The same seed gives the same image, bit for bit.
    shape : (int, int)
        Image size ``(Y, X)`` in pixels, each at least 64.
    modality : {"tem", "sem"}, optional
        TEM: dark particles on a bright grainy carbon film, absorption
        ``exp(-mu * thickness)`` summed over overlapping particles, optional
        Fresnel fringe.  SEM: bright particles with edge glow, tilt-dependent
        secondary-electron yield, directional shading and contact shadows on a
        darker substrate.  Random (50/50) when None.
    n_particles : int, optional
        Number of particles to place (fewer when the image cannot hold them).
        By default the count follows from `density`.
    nm_per_px : float, optional
        True pixel size in nm/px.  Default: log-uniform in [0.1, 50], rounded
        to 4 significant digits.
    shapes : str or list of str, optional
        Particle shapes to draw, from :data:`SHAPES`.  By default one dominant
        shape (70 %) or a mixture of two or three.
    size_px : float, optional
        Median equivalent-circle diameter of the particles in pixels (the
        diameters are log-normal around it).  Default: log-uniform in
        [12, 0.22 * min(shape)].
    density : {"sparse", "medium", "crowded"} or float, optional
        Target fraction of the specimen area covered by particles (a float
        sets it directly).  Ignored when `n_particles` is given.
    scalebar : bool or dict
        Burn in a scale bar with its label.  A dict forces style choices:
        any of ``corner`` ("bottom-right", ...), ``color`` ("white"/"black"),
        ``box`` (bool), ``style`` ("solid"/"line"/"ticks"), ``label_pos``
        ("above"/"below"/"left"/"right"), ``unit`` ("nm", "µm", "μm", "um",
        "mm", "Å"), ``font`` (a key of the font table), ``font_px``,
        ``value_nm``.  With `scalebar_variety` also:

        - ``style`` "double" (two parallel 1-3 px lines 1-4 px apart);
        - ``orientation`` "horizontal" or "vertical" (the bar's length along
          y; never inside the data bar);
        - ``corner`` (the position): the four corners, "bottom-centre" and
          "top-centre" for a horizontal bar, "left-middle" and
          "right-middle" for a vertical one;
        - ``text_rotation`` 0, 90 or 270 (vertical bars only; rotated text
          sits left or right of the bar);
        - ``box_style`` "fill" (the colour opposite the bar's), "grey"
          (0.5-0.7 of the maximum under black ink, 0.2-0.35 under white) or
          "outline" (a 1-2 px frame in the bar colour); implies ``box``;
        - ``unit`` also "NM", "UM", "MM";
        - ``decimal_sep`` "." or "," (``0,5 µm``) and ``space`` (bool,
          between number and unit).

        Options that need `scalebar_variety` raise ValueError without it.
    data_bar_prob : float
        Probability of an instrument data bar (dark band, 6-10 % of the height,
        white text) at the bottom of an SEM image; half of those also hold the
        scale bar.  TEM images never get one.
    panel_label_prob : float
        Probability of a figure panel letter ("(a)", "b", ...) in a top corner.
    jpeg_prob : float
        Probability of a JPEG round trip (quality 55-95) before the overlays
        are drawn, as in figures taken from papers.  uint8 only.
    dtype : {"uint8", "uint16"}
        Output image dtype.
    min_visible_px : int
        Particles with fewer visible pixels (hidden under others, or cut by
        the image edge) are dropped from the ground truth.
    scalebar_variety : bool
        Scale-bar variety for training a scale-bar detector.  False (the
        default) renders exactly the images of the original generator, bit
        for bit, with the same metadata.  True draws styles solid 0.45 /
        ticks 0.25 / line 0.15 / double 0.15; vertical bars 15 % of the time
        (text beside them horizontal or rotated 90 degrees); positions at the
        corners (most often), edge centres (horizontal) or edge middles
        (vertical); no box, a filled box, a grey box or an outline; labels
        with 1/2/2.5/5 values, decimals (``0.5 µm``, ``2.5 µm``), comma
        decimals (``0,25 µm``), upper-case ``NM``/``UM``/``MM`` and with or
        without a space.  In 65 % of the images it adds 1-4 distractors
        kept clear of the scale-bar block: free-floating texts (plain numbers,
        markers such as "#3" or "P1", magnifications such as "x50k",
        "×20,000" or "50kX", "Fig. 2", dates, times, "HV 20 kV", "WD 5.1 mm",
        "Spot 3") and marks without a number (a lone line, a hollow
        rectangle, an arrow), listed in ``params["distractors"]``; particles
        avoid them and :meth:`SynthMicrograph.ignore_mask` covers them.

    Returns
    -------
    SynthMicrograph
        ``image`` (Y, X) `dtype`; ``labels`` (Y, X) uint32 with consecutive
        ids 1..N in drawing order; the pixel size, modality, scale-bar
        geometry, data-bar height and every random parameter.

    Raises
    ------
    ValueError
        On an unknown modality, shape name, density, dtype or scale-bar option,
        a variety option without `scalebar_variety`, or an image too small for
        its overlays.

    Examples
    --------
    >>> m = render_micrograph(0, shape=(256, 320), modality="tem", scalebar=False)
    >>> m.image.shape, m.image.dtype.name, m.labels.dtype.name
    ((256, 320), 'uint8', 'uint32')
    >>> sorted(set(range(m.n_objects + 1)) - set(map(int, set(m.labels.ravel().tolist()))))
    []
    """
    rng = _rng(seed_or_rng)
    h_img, w_img = (int(shape[0]), int(shape[1]))
    if h_img < 64 or w_img < 64:
        raise ValueError(f"shape must be at least 64 x 64 pixels, got {shape}")
    if dtype not in ("uint8", "uint16"):
        raise ValueError(f"dtype must be 'uint8' or 'uint16', got {dtype!r}")
    out_dtype = np.dtype(dtype)
    if modality is None:
        modality = "tem" if rng.random() < 0.5 else "sem"
    modality = modality.lower()
    if modality not in MODALITIES:
        raise ValueError(f"modality must be 'tem' or 'sem', got {modality!r}")
    if nm_per_px is None:
        nm_per_px = _round_sig(_log_u(rng, 0.1, 50.0), 4)
    nm_per_px = float(nm_per_px)
    if not (math.isfinite(nm_per_px) and nm_per_px > 0):
        raise ValueError(f"nm_per_px must be a positive finite number, got {nm_per_px}")

    params: dict[str, Any] = {"shape": [h_img, w_img], "modality": modality, "nm_per_px": nm_per_px, "dtype": dtype}

    # ---- overlays layout (before particles, so particles avoid them)
    data_bar_rows = 0
    band_sb = False
    if modality == "sem" and rng.random() < data_bar_prob:
        data_bar_rows = max(12, int(round(h_img * _u(rng, 0.06, 0.10))))
        band_sb = bool(scalebar) and rng.random() < 0.5 and not (isinstance(scalebar, dict) and "corner" in scalebar)
        if scalebar_variety and isinstance(scalebar, dict) and (
            scalebar.get("orientation") == "vertical" or scalebar.get("box") or "box_style" in scalebar or scalebar.get("text_rotation")
        ):
            band_sb = False  # options a bar inside the data bar cannot have
    spec_rows = h_img - data_bar_rows
    if scalebar_variety:
        params["scalebar_variety"] = True
    sb = None
    if scalebar:
        overrides = dict(scalebar) if isinstance(scalebar, dict) else {}
        band = (spec_rows, data_bar_rows) if band_sb else None
        sb = _place_scalebar(rng, (h_img, w_img), spec_rows, nm_per_px, modality, overrides, band, variety=bool(scalebar_variety))
    exclusions = []
    if sb is not None and not sb["in_data_bar"]:
        exclusions.append(sb["box_bbox"])
    panel = None
    if rng.random() < panel_label_prob:
        corner = "top-right" if (sb is not None and sb["corner"] == "top-left") else "top-left"
        panel = _place_panel(rng, (h_img, w_img), spec_rows, modality, corner)
        if scalebar_variety and sb is not None and not sb["in_data_bar"] and _boxes_clash(panel["box_bbox"], sb["box_bbox"], 4):
            # edge-centred and vertical bars can reach a top corner: try the other one, else no letter
            other = "top-right" if corner == "top-left" else "top-left"
            panel = _place_panel(rng, (h_img, w_img), spec_rows, modality, other)
            if _boxes_clash(panel["box_bbox"], sb["box_bbox"], 4):
                panel = None
        if panel is not None:
            exclusions.append(panel["box_bbox"])
    distractors: list[dict] = []
    if scalebar_variety:
        distractors = _place_distractors(rng, (h_img, w_img), spec_rows, modality, sb, list(exclusions))
        exclusions.extend(d["bbox"] for d in distractors)

    # ---- particle population
    if shapes is None:
        if rng.random() < 0.7:
            shape_list = [_choice(rng, list(SHAPES), p=[0.22, 0.14, 0.1, 0.12, 0.1, 0.08, 0.14, 0.1])]
        else:
            k = int(rng.integers(2, 4))
            shape_list = [str(s) for s in rng.choice(SHAPES, size=k, replace=False)]
    else:
        shape_list = [shapes] if isinstance(shapes, str) else list(shapes)
        bad = [s for s in shape_list if s not in SHAPES]
        if bad or not shape_list:
            raise ValueError(f"unknown particle shape(s) {bad or shape_list}; expected from {', '.join(SHAPES)}")
    shape_p = rng.dirichlet(np.full(len(shape_list), 2.0)) if len(shape_list) > 1 else np.ones(1)
    if size_px is None:
        size_px = _log_u(rng, 12.0, max(14.0, 0.22 * min(h_img, w_img)))
    if not (size_px > 0):
        raise ValueError(f"size_px must be positive, got {size_px}")
    if density is None:
        density = _choice(rng, ["sparse", "medium", "crowded"], p=[0.3, 0.4, 0.3])
    if isinstance(density, str):
        if density not in _DENSITY_AREA_FRACTION:
            raise ValueError(f"density must be one of {', '.join(_DENSITY_AREA_FRACTION)} or a fraction, got {density!r}")
        area_fraction = _u(rng, *_DENSITY_AREA_FRACTION[density])
    else:
        area_fraction = float(density)
        if not 0 < area_fraction < 1:
            raise ValueError(f"density as a float is an area fraction in (0, 1), got {density}")
    if n_particles is not None and n_particles < 0:
        raise ValueError(f"n_particles must be >= 0, got {n_particles}")
    arrangement = _choice(rng, list(_ARRANGEMENTS), p=[0.5, 0.3, 0.2])
    if arrangement == "lattice" and (area_fraction < 0.2 or not set(shape_list) <= {"disc", "square", "hexagon", "core_shell", "blob"}):
        arrangement = "clustered"
    overlap_mode = _choice(rng, list(_OVERLAP_MODES), p=[0.35, 0.4, 0.25])
    if arrangement == "lattice":
        overlap_mode = "touching" if rng.random() < 0.5 else "separate"
    cfg = {
        "shapes": shape_list,
        "shape_p": [float(x) for x in shape_p],
        "size_px": float(size_px),
        "size_sigma": _u(rng, 0.03, 0.08) if arrangement == "lattice" else _u(rng, 0.05, 0.35),
        "area_fraction": area_fraction,
        "n_particles": None if n_particles is None else int(n_particles),
        "arrangement": arrangement,
        "cluster_prob": _u(rng, 0.5, 0.9) if arrangement == "clustered" else _u(rng, 0.0, 0.15),
        "overlap_mode": overlap_mode,
        "max_overlap": _u(rng, 0.1, 0.45),
        "gap_px": _u(rng, 1.0, 4.0),
        "flat_prob": 0.7,
        "ramp_fraction": _u(rng, 0.1, 0.35),
        "lattice_kind": _choice(rng, ["hex", "square"]),
        "lattice_gap": _u(rng, 0.03, 0.3),
        "lattice_angle": _u(rng, 0, math.pi),
        "lattice_jitter": _u(rng, 0.01, 0.06),
        "lattice_vacancy": _u(rng, 0.0, 0.08),
    }
    if cfg["lattice_kind"] == "hex" and "square" in shape_list:
        cfg["lattice_kind"] = "square"
    params["particles_config"] = {k: v for k, v in cfg.items()}
    params["density"] = density if isinstance(density, str) else float(density)

    occ, parts = _place_particles(rng, (h_img, w_img), spec_rows, exclusions, cfg, min_visible_px)

    # ---- contrast model
    if modality == "tem":
        rp = {
            "bg_grain": _u(rng, 0.015, 0.07),
            "bg_grain_sigma": _u(rng, 0.6, 1.6),
            "bg_mottle": _u(rng, 0.0, 0.05),
            "bg_mottle_sigma": _u(rng, 15.0, 80.0),
            "particle_texture": _u(rng, 0.0, 0.15),
            "particle_texture_sigma": _u(rng, 0.8, 3.0),
            "mu": _u(rng, 0.7, 3.0),
            "mu_jitter": _u(rng, 0.0, 0.2),
            "mu_size_exponent": _u(rng, 0.0, 0.6),
            "fringe": _u(rng, 0.1, 0.6) if rng.random() < 0.6 else 0.0,
            "fringe_sigma": _u(rng, 1.0, 3.0),
            "scan_lines": 0.0,
        }
        for q in parts:
            m = rp["mu"] * (q["diam"] / cfg["size_px"]) ** rp["mu_size_exponent"] * (1 + rng.normal(0, rp["mu_jitter"]))
            q["mu"] = float(max(0.15, m))
            if q["g"]["shape"] == "core_shell":
                q["mu_shell"] = q["mu"] * _u(rng, 0.15, 0.45)
    else:
        elev = _u(rng, 0.5, 1.3)
        az = _u(rng, 0, 2 * math.pi)
        rp = {
            "substrate": _u(rng, 0.08, 0.35),
            "bg_grain": _u(rng, 0.03, 0.15),
            "bg_grain_sigma": _u(rng, 0.6, 2.0),
            "bg_mottle": _u(rng, 0.0, 0.25),
            "bg_mottle_sigma": _u(rng, 20.0, 120.0),
            "shadow": _u(rng, 0.0, 0.5),
            "shadow_sigma": _u(rng, 2.0, 10.0),
            "particle_texture_sigma": _u(rng, 0.8, 3.0),
            "roughness": _u(rng, 0.0, 1.0) if rng.random() < 0.5 else 0.0,
            "brightness": _u(rng, 0.45, 0.8),
            "brightness_jitter": _u(rng, 0.0, 0.12),
            "lambert": _u(rng, 0.1, 0.5),
            "light": [math.cos(az) * math.cos(elev), math.sin(az) * math.cos(elev), math.sin(elev)],
            "tilt_gain": _u(rng, 0.1, 0.5),
            "edge_glow": _u(rng, 0.05, 0.4),
            "edge_width": _u(rng, 1.0, 4.0),
            "core_gain": _u(rng, 0.1, 0.4),
            "fringe": 0.0,
            "fringe_sigma": 1.0,
            "scan_lines": _u(rng, 0.0, 0.02) if rng.random() < 0.5 else 0.0,
        }
        for q in parts:
            q["brightness"] = float(max(0.1, rp["brightness"] * (1 + rng.normal(0, rp["brightness_jitter"]))))
            q["core_gain"] = rp["core_gain"]
    rp.update(
        {
            "gradient": _u(rng, 0.0, 0.15),
            "gradient_angle": _u(rng, 0, 2 * math.pi),
            "vignette": _u(rng, 0.0, 0.25) if rng.random() < 0.5 else 0.0,
            "vignette_centre": [_u(rng, -0.2, 0.2), _u(rng, -0.2, 0.2)],
            "psf_sigma": _u(rng, 0.4, 1.8),
            "psf_aspect": _u(rng, 0.85, 1.2),
            "dose": _log_u(rng, 20.0, 2000.0),
            "read_noise": _u(rng, 0.002, 0.03),
            "clip_low_pct": _u(rng, 0.05, 1.0),
            "clip_high_pct": _u(rng, 99.0, 99.95),
            "gamma": _log_u(rng, 0.7, 1.4),
            "out_low": _u(rng, 0.0, 0.12),
            "out_high": _u(rng, 0.85, 1.0),
            "jpeg_quality": int(rng.integers(55, 96)) if (dtype == "uint8" and rng.random() < jpeg_prob) else 0,
        }
    )
    if modality == "tem":
        img = _render_tem(rng, (h_img, w_img), parts, rp)
    else:
        img = _render_sem(rng, (h_img, w_img), parts, occ, rp)
    image = _finish(rng, img, spec_rows, rp, out_dtype)
    params["render"] = rp

    # ---- overlays
    if data_bar_rows:
        avail = w_img if not (sb is not None and sb["in_data_bar"]) else sb["box_bbox"][1] - max(2, int(round(w_img * 0.01)))
        style, fields = _data_bar_text(rng, w_img, nm_per_px)
        font_name = _choice(rng, ["DejaVuSans", "DejaVuSans-Bold", "DejaVuSansMono", "STIXGeneral"])
        tb = _draw_data_bar(rng, image, data_bar_rows, fields, avail, font_name)
        params["data_bar"] = {"style": style, "fields": fields, "font": font_name, "text_bbox": tb, "rows": data_bar_rows}
        occ[spec_rows:] = 0
    for d in distractors:
        _draw_boxed_patch(image, d["color"], d["bbox"] if d["box"] else None, d["_patch"], d["ink_bbox"][:2])
        y0, x0, y1, x1 = d["bbox"]
        occ[y0:y1, x0:x1] = 0
    if scalebar_variety:
        params["distractors"] = _jsonable(distractors)
    if sb is not None:
        _draw_scalebar(image, sb)
        y0, x0, y1, x1 = sb["box_bbox"]
        occ[y0:y1, x0:x1] = 0  # no-op unless a particle rim touched it; keeps the contract exact
    if panel is not None:
        _draw_boxed_patch(image, panel["color"], panel["box_bbox"] if panel["box"] else None, panel["_patch"],
                          panel["text_bbox"][:2])
        y0, x0, y1, x1 = panel["box_bbox"]
        occ[y0:y1, x0:x1] = 0
        params["panel_label"] = _jsonable(panel)

    # ---- ground truth: drop hidden / tiny particles, consecutive ids
    counts = np.bincount(occ.ravel(), minlength=len(parts) + 1)
    keep = np.flatnonzero(counts[1:] >= max(1, min_visible_px)) + 1
    lut = np.zeros(len(parts) + 1, dtype=np.uint32)
    lut[keep] = np.arange(1, len(keep) + 1, dtype=np.uint32)
    labels = lut[occ]
    plist = []
    for i, q in enumerate(parts, start=1):
        g = {k: v for k, v in q["g"].items()}
        rec = {
            "label": int(lut[i]) if lut[i] else None,
            "center_yx": list(q["center"]),
            "angle_deg": math.degrees(q["angle"]),
            "diameter_px": q["diam"],
            "visible_px": int(counts[i]),
            **g,
        }
        for k in ("mu", "mu_shell", "brightness"):
            if k in q:
                rec[k] = q[k]
        plist.append(rec)
    params = _jsonable(params)  # particle records below are built from Python scalars already
    params["particles"] = plist
    params["n_placed"] = len(parts)
    sb_out = _jsonable(sb) if sb is not None else None
    return SynthMicrograph(
        image=image,
        labels=labels,
        nm_per_px=nm_per_px,
        modality=modality,
        scalebar=sb_out,
        data_bar_rows=int(data_bar_rows),
        params=params,
    )


def fei_metadata_text(nm_per_px: float, shape: tuple[int, int], *, modality: str = "sem", rng: Any = 0) -> str:
    """FEI/Thermo Fisher INI-style metadata (TIFF tag 34682) for a pixel size.

    Parameters
    ----------
    nm_per_px : float
        Pixel size in nm; written as ``PixelWidth``/``PixelHeight`` in metres.
    shape : (int, int)
        Image size ``(Y, X)``; sets ``ResolutionX/Y`` and the field sizes.
    modality : {"tem", "sem"}
        Written as the system type.
    rng : seed or numpy.random.Generator
        Draws the date, time, high voltage and working distance.

    Returns
    -------
    str
        Text such as ``"[User]\\nDate=03/14/2024\\n...[Scan]\\nPixelWidth=2.5e-09\\n..."``.
    """
    rng = _rng(rng)
    h, w = shape
    m = nm_per_px * 1e-9
    month, day, year = int(rng.integers(1, 13)), int(rng.integers(1, 29)), int(rng.integers(2012, 2026))
    hh, mm, ss = int(rng.integers(1, 13)), int(rng.integers(0, 60)), int(rng.integers(0, 60))
    hv = float(_choice(rng, [2000.0, 5000.0, 10000.0, 15000.0, 30000.0])) if modality == "sem" else 200000.0
    wd = round(_u(rng, 0.002, 0.015), 4)
    return (
        "[User]\n"
        f"Date={month:02d}/{day:02d}/{year}\n"
        f"Time={hh:02d}:{mm:02d}:{ss:02d} {'AM' if rng.random() < 0.5 else 'PM'}\n"
        "User=supervisor\n"
        "[System]\n"
        f"Type={'SEM' if modality == 'sem' else 'TEM'}\n"
        "Software=synthetic (micrometry)\n"
        "[Beam]\n"
        f"HV={hv:g}\n"
        "[Stage]\n"
        f"WorkingDistance={wd!r}\n"
        "[Scan]\n"
        f"PixelWidth={m!r}\n"
        f"PixelHeight={m!r}\n"
        f"HorFieldsize={w * m!r}\n"
        f"VerFieldsize={h * m!r}\n"
        "[Image]\n"
        f"ResolutionX={w}\n"
        f"ResolutionY={h}\n"
    )


def _is_tiff(i: int, fraction: float) -> bool:
    """Evenly spread TIFFs: image i is a TIFF when floor((i+1)f) > floor(i f)."""
    return math.floor((i + 1) * fraction + 1e-9) > math.floor(i * fraction + 1e-9)


def write_synthetic_dataset(
    out_dir: str | os.PathLike,
    n: int = 8,
    seed: int = 0,
    *,
    shape: tuple[int, int] = (768, 1024),
    tiff_fraction: float = 0.25,
    **render_kwargs: Any,
) -> list[Path]:
    """Write `n` synthetic micrographs with their ground truth.

    Layout::

        out_dir/images/synth_000.png   (or .tif: FEI/Thermo TIFF with PixelWidth metadata)
        out_dir/truth/synth_000.labels.tif   uint32 instance labels (zlib TIFF)
        out_dir/truth/synth_000.json         nm_per_px, modality, scalebar, data_bar_rows,
                                             n_objects, seed, index, format, params

    Image ``i`` is rendered from ``numpy.random.default_rng([seed, i])``, so
    the same seed gives byte-identical files and adding images leaves the
    earlier ones unchanged.  Image ``i`` is a TIFF when
    ``floor((i + 1) * tiff_fraction) > floor(i * tiff_fraction)`` (evenly
    spread, about ``tiff_fraction`` of them).  Every file is written atomically.

    Parameters
    ----------
    out_dir : path-like
        Output folder (created).
    n : int
        Number of images.
    seed : int
        Dataset seed (non-negative).
    shape : (int, int)
        Image size ``(Y, X)``.
    tiff_fraction : float
        Fraction in [0, 1] of images written as FEI TIFF instead of PNG.
    **render_kwargs
        Passed on to :func:`render_micrograph`.

    Returns
    -------
    list of pathlib.Path
        The image paths, in index order.
    """
    import tifffile
    from PIL import Image

    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= tiff_fraction <= 1.0:
        raise ValueError(f"tiff_fraction must be within [0, 1], got {tiff_fraction}")
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    out = Path(out_dir)
    img_dir, truth_dir = out / "images", out / "truth"
    img_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        m = render_micrograph(np.random.default_rng([int(seed), i]), shape=shape, **render_kwargs)
        stem = f"synth_{i:03d}"
        tiff = _is_tiff(i, tiff_fraction)
        if tiff:
            path = img_dir / f"{stem}.tif"
            text = fei_metadata_text(m.nm_per_px, m.image.shape, modality=m.modality, rng=[int(seed), i, 1])
            with atomic_path(path) as tmp:
                tifffile.imwrite(tmp, m.image, photometric="minisblack", extratags=[(34682, "s", 0, text, True)])
        else:
            path = img_dir / f"{stem}.png"
            with atomic_path(path) as tmp:
                Image.fromarray(m.image).save(tmp, format="PNG")
        with atomic_path(truth_dir / f"{stem}.labels.tif") as tmp:
            tifffile.imwrite(tmp, m.labels, photometric="minisblack", compression="zlib")
        write_json(
            truth_dir / f"{stem}.json",
            {
                "image": f"images/{path.name}",
                "labels": f"truth/{stem}.labels.tif",
                "format": "tiff-fei" if tiff else "png",
                "nm_per_px": m.nm_per_px,
                "modality": m.modality,
                "scalebar": m.scalebar,
                "data_bar_rows": m.data_bar_rows,
                "n_objects": m.n_objects,
                "seed": int(seed),
                "index": i,
                "params": m.params,
            },
        )
        paths.append(path)
    return paths
