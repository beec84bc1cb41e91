"""Read the text of a scale-bar label with PP-OCR models, offline.

Back-ends
---------
``"rapidocr"`` (default)
    PaddleOCR's PP-OCRv4 text detection and recognition models converted to
    ONNX and shipped inside the ``rapidocr-onnxruntime`` wheel (its
    ``models/`` folder), run by ONNX Runtime on the CPU.  Nothing is
    downloaded, ever: the package has no download code and the model paths
    are files of the installed wheel (:func:`rapidocr_model_paths`).
    onnxruntime's own usage telemetry is switched off
    (``ORT_DISABLE_TELEMETRY=1`` before its first import, then
    ``onnxruntime.disable_telemetry_events()``).  Install with
    ``pip install micrometry[scalebar]``.
``"paddleocr"``
    PaddleOCR itself, when it is installed (not a dependency of micrometry).
    PaddleOCR fetches its models from the internet on first use unless it is
    given local model folders, so this back-end must be given them through
    `engine_options` (``det_model_dir``/``rec_model_dir`` for PaddleOCR 2,
    ``text_detection_model_dir``/``text_recognition_model_dir`` for 3).

How a box is read
-----------------
The box is cropped with a small margin and converted to 8-bit (any dtype is
stretched between its 0.5 and 99.5 percentiles), then shrunk to the glyphs
(long thin objects such as the scale bar itself or the edge of a frame, which
a loose box catches and which PP-OCR then misreads, are left out; see
`trim`).  The crop is turned into
dark text on a light background (the polarity PP-OCR reads best; the
background is taken to be the grey level of the majority of the pixels) and
upscaled so that it is at least `text_height` pixels tall (PP-OCR's recognizer
works on 48 px lines; small burned-in labels are 10-20 px).  Then, until a
read is accepted:

1. the recognizer alone on the whole crop (one text line, fastest and the
   most accurate on a tight label box);
2. the same with the polarity inverted;
3. detection + recognition on the crop padded with background (finds the
   line(s) when the box holds more than the label), both polarities.

A read is accepted when `accept` (default: any non-empty text with score
>= `min_score`) says so for one of its hits; pass
``accept=lambda t: parse_scale_label(t) is not None`` to go on trying until
a scale label is read.  When nothing is accepted, the hits of the attempt
with the best score are returned.

:func:`read_scale_label` runs this until a line parses as a scale label and
then compares the units the label could have (nm, µm, mm, Å) by the
recognizer's CTC likelihood plus a prior (:data:`UNIT_LOG_PRIOR`): PP-OCR
reads a small "nm" as "mm" now and then, while mm scale bars are rare on
electron micrographs.

The engines are loaded once per process and kept in a module-level cache
(loading takes about a second).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from micrometry.calibrate.scalebar._image import grey as _grey
from micrometry.calibrate.scalebar._image import filled_band, longest_row_runs, only_at_ends
from micrometry.calibrate.scalebar._image import to_uint8 as _to_uint8
from micrometry.calibrate.scalebar.parse import (
    _LABEL_RE,
    ScaleLabel,
    _normalise,
    parse_scale_label,
    unit_prefix_lost,
    with_unit,
)

__all__ = [
    "ScaleRead",
    "TextHit",
    "UNIT_LOG_PRIOR",
    "clear_engine_cache",
    "rapidocr_model_paths",
    "read_scale_label",
    "read_text",
]

_INSTALL_HINT = "pip install micrometry[scalebar]"
_ENGINES: dict[tuple, Any] = {}


@dataclass(frozen=True)
class TextHit:
    """One line of text read by OCR.

    Attributes
    ----------
    text : str
        The text as read (not normalised).
    score : float
        Recognition confidence in [0, 1] (mean character probability).
    bbox : tuple of float
        ``(x0, y0, x1, y1)`` in image pixels (``x1``, ``y1`` exclusive), the
        axis-aligned box of the text line; for the recognizer-only attempts
        it is the crop that was read.
    """

    text: str
    score: float
    bbox: tuple[float, float, float, float]


class _CTCScorer:
    """Log-likelihood of a given string under a CTC recognizer's output.

    `probs` (T, C) holds per-frame class probabilities, class 0 the CTC blank,
    `charset[k]` the character of class k.
    """

    def __init__(self, probs: np.ndarray, charset):
        self.logp = np.log(np.maximum(np.asarray(probs, dtype=np.float64), 1e-30))
        self.index = {c: i for i, c in enumerate(charset) if i > 0}

    def __call__(self, text: str) -> float | None:
        """log P(text | image) summed over all CTC alignments; None if a
        character is not in the recognizer's alphabet."""
        try:
            labels = [self.index[c] for c in text]
        except KeyError:
            return None
        if not labels:
            return float(self.logp[:, 0].sum())
        ext = np.zeros(2 * len(labels) + 1, dtype=np.int64)
        ext[1::2] = labels
        n = ext.size
        # a state may be reached by skipping the blank before it unless it repeats the previous label
        skip = np.zeros(n, bool)
        skip[3::2] = ext[3::2] != ext[1:-2:2]
        alpha = np.full(n, -np.inf)
        alpha[0] = self.logp[0, ext[0]]
        alpha[1] = self.logp[0, ext[1]]
        for t in range(1, self.logp.shape[0]):
            prev = alpha.copy()
            prev[1:] = np.logaddexp(prev[1:], alpha[:-1])
            prev[2:] = np.where(skip[2:], np.logaddexp(prev[2:], alpha[:-2]), prev[2:])
            alpha = prev + self.logp[t, ext]
        return float(np.logaddexp(alpha[-1], alpha[-2]))


def _import_rapidocr():
    # onnxruntime (1.2x on Linux) records usage telemetry (Microsoft 1DS: a device id
    # and a "ProcessInfo" event) in ~/.cache/Microsoft/DeveloperTools/.onnxruntime for
    # upload over HTTPS.  Offline by construction: switch it off.  The variable is read
    # when onnxruntime is first imported; the call below covers a late import.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    try:
        import onnxruntime
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "reading scale-bar labels needs the PP-OCR models of rapidocr-onnxruntime; "
            f"install them with `{_INSTALL_HINT}`"
        ) from exc
    disable = getattr(onnxruntime, "disable_telemetry_events", None)
    if disable is not None:
        disable()
    return RapidOCR


def rapidocr_model_paths() -> dict[str, str]:
    """Where the ``rapidocr`` back-end loads its ONNX models from.

    Returns
    -------
    paths : dict
        ``{"det": ..., "cls": ..., "rec": ...}``, absolute paths of files
        inside the installed ``rapidocr_onnxruntime`` package.

    Raises
    ------
    ImportError
        If ``rapidocr-onnxruntime`` is not installed.
    """
    _import_rapidocr()
    from pathlib import Path

    import rapidocr_onnxruntime
    import yaml

    root = Path(rapidocr_onnxruntime.__file__).resolve().parent
    cfg = yaml.safe_load((root / "config.yaml").read_text(encoding="utf-8"))
    return {k.lower(): str(root / cfg[k]["model_path"]) for k in ("Det", "Cls", "Rec")}


def clear_engine_cache() -> None:
    """Forget the loaded OCR engines (they are loaded again on next use)."""
    _ENGINES.clear()


class _RapidEngine:
    def __init__(self, threads: int | None, options: Mapping[str, Any]):
        RapidOCR = _import_rapidocr()
        kwargs: dict[str, Any] = {
            "text_score": 0.0,  # keep every read; callers see the score
            "det_limit_type": "max",  # crops are small: no upscaling to 736 px
            "det_limit_side_len": 2000,
        }
        if threads is not None:
            kwargs["intra_op_num_threads"] = int(threads)
            kwargs["inter_op_num_threads"] = 1
        kwargs.update(options)
        self.engine = RapidOCR(**kwargs)

    def recognize(self, img: np.ndarray) -> tuple[str, float, _CTCScorer | None]:
        rgb = np.stack([img] * 3, axis=-1)
        rec = getattr(self.engine, "text_rec", None)
        try:  # the recognizer's own steps, keeping the per-frame probabilities
            _, rec_h, rec_w = rec.rec_image_shape
            ratio = max(rec_w / rec_h, img.shape[1] / img.shape[0])
            batch = rec.resize_norm_img(rgb, ratio)[np.newaxis].astype(np.float32)
            probs = np.asarray(rec.session(batch)[0])[0]
            (text, score), = rec.postprocess_op(probs[np.newaxis])
            scorer = _CTCScorer(probs, rec.postprocess_op.character)
        except (AttributeError, TypeError, ValueError):  # another rapidocr version
            res, _ = self.engine(rgb, use_det=False, use_cls=False)
            if not res:
                return "", 0.0, None
            text, score, scorer = res[0][0], res[0][1], None
        return str(text), float(score), scorer

    def detect_recognize(self, img: np.ndarray) -> list[tuple[np.ndarray, str, float]]:
        res, _ = self.engine(np.stack([img] * 3, axis=-1), use_det=True, use_cls=False)
        return [(np.asarray(pts, dtype=float), str(t), float(s)) for pts, t, s in (res or [])]


class _PaddleEngine:  # pragma: no cover - paddleocr is not installed in the test environment
    _DIR_KEYS = ("det_model_dir", "rec_model_dir", "text_detection_model_dir", "text_recognition_model_dir")

    def __init__(self, threads: int | None, options: Mapping[str, Any]):
        try:
            from paddleocr import PaddleOCR
        except ImportError as exc:
            raise ImportError(
                "backend='paddleocr' needs PaddleOCR, which micrometry does not install "
                "(`pip install paddleocr`); the default backend='rapidocr' needs "
                f"`{_INSTALL_HINT}`"
            ) from exc
        if not any(k in options for k in self._DIR_KEYS):
            raise ValueError(
                "backend='paddleocr' downloads its models on first use unless it is given local "
                "model folders; pass engine_options with det_model_dir/rec_model_dir (PaddleOCR 2) "
                "or text_detection_model_dir/text_recognition_model_dir (PaddleOCR 3)"
            )
        self.engine = PaddleOCR(**dict(options))
        self.v3 = hasattr(self.engine, "predict")

    def _run(self, img: np.ndarray, det: bool) -> list[tuple[np.ndarray | None, str, float]]:
        rgb = np.stack([img] * 3, axis=-1)
        if self.v3:
            out = []
            for page in self.engine.predict(rgb):
                polys = page.get("rec_polys", page.get("dt_polys", []))
                for pts, t, s in zip(polys, page.get("rec_texts", []), page.get("rec_scores", [])):
                    out.append((np.asarray(pts, dtype=float), str(t), float(s)))
            return out
        res = self.engine.ocr(rgb, det=det, cls=False)
        lines = res[0] if res and isinstance(res[0], list) else res
        out = []
        for item in lines or []:
            if det:
                pts, (t, s) = item
                out.append((np.asarray(pts, dtype=float), str(t), float(s)))
            else:
                t, s = item
                out.append((None, str(t), float(s)))
        return out

    def recognize(self, img: np.ndarray) -> tuple[str, float, None]:
        hits = self._run(img, det=self.v3)
        if not hits:
            return "", 0.0, None
        return " ".join(h[1] for h in hits), float(np.mean([h[2] for h in hits])), None

    def detect_recognize(self, img: np.ndarray) -> list[tuple[np.ndarray, str, float]]:
        return [h for h in self._run(img, det=True) if h[0] is not None]


_BACKENDS = {"rapidocr": _RapidEngine, "paddleocr": _PaddleEngine}


def _engine(backend: str, threads: int | None, options: Mapping[str, Any] | None):
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {sorted(_BACKENDS)}, got {backend!r}")
    opts = dict(options or {})
    key = (backend, threads, tuple(sorted((k, repr(v)) for k, v in opts.items())))
    if key not in _ENGINES:
        _ENGINES[key] = _BACKENDS[backend](threads, opts)
    return _ENGINES[key]


def _resize(img: np.ndarray, scale: float) -> np.ndarray:
    from PIL import Image

    if abs(scale - 1.0) < 1e-6:
        return img
    h, w = img.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(img).resize(size, Image.BICUBIC))


def _dark_on_light(img: np.ndarray) -> bool:
    """True when the crop already shows dark text on a light background."""
    lo, hi = np.percentile(img, [2, 98])
    return float(np.median(img)) >= (float(lo) + float(hi)) / 2


def _is_bracket(mask: np.ndarray, glyph_h: float) -> bool:
    """A short scale bar drawn as a bracket ("⊔" or "⊓"): at least 0.8 glyph heights wide,
    its rows filled across (over 90 %) in one band at the bottom or top at most half its
    height, the rest of it in the outer quarters (the ticks)."""
    bh, bw = mask.shape
    if bw < 0.8 * glyph_h or bh < 3:
        return False
    band = filled_band(mask)
    if band is None or band[1] - band[0] > 0.5 * bh:
        return False
    if band[0] > 1 and band[1] < bh - 1:  # the band is not at the bottom or top
        return False
    ticks = np.delete(mask, np.s_[band[0] : band[1]], axis=0).any(axis=0)
    return bool(ticks[0 : int(np.ceil(0.25 * bw))].any() and ticks[bw - int(np.ceil(0.25 * bw)) :].any()
                and only_at_ends(ticks))


#: Share of its bounding box a component at a label crop's side fills at most to be glyphs
#: cut by the side (:func:`_cut_glyphs`).
_SOLID_END = 0.75


def _cut_glyphs(component: np.ndarray, area: int) -> bool:
    """Whether a component at a label crop's side is glyphs the side cut ("nm"), not a bar's
    end: it fills less of its box than a bar's end (:data:`_SOLID_END`), and a row crosses
    three strokes or more (the stems of "n", "m", "u", "µ"; a bar's end tick crosses the
    line's rows once, and its own rows once, the line beside it at most)."""
    if area >= _SOLID_END * component.size:
        return False
    starts = component[:, :1].sum(axis=1) + (component[:, 1:] & ~component[:, :-1]).sum(axis=1)
    return int(starts.max()) >= 3


def _trim(crop: np.ndarray, xa: int, ya: int, xb: int, yb: int) -> tuple[int, int, int, int]:
    """Shrink a label crop to its glyphs: drop a scale bar or a frame edge caught
    in a loose box (long thin components), keep a margin around the rest."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    h, w = crop.shape
    if crop.max() == crop.min() or h < 8:
        return xa, ya, xb, yb
    light = _dark_on_light(crop)
    ink = crop < threshold_otsu(crop) if light else crop > threshold_otsu(crop)
    if not 0.005 < ink.mean() < 0.6:
        return xa, ya, xb, yb
    # a bar that touches a glyph (the descender of a µ) would join the glyphs' component:
    # rows crossed by one run over most of the crop hold a line, not text
    ink = ink & (longest_row_runs(ink) < 0.6 * w)[:, None]
    lab, n = ndi.label(ink, structure=np.ones((3, 3), bool))
    keep = np.zeros(n + 1, bool)
    slices = ndi.find_objects(lab)
    # glyph height: the median height of the components that are not specks
    tall = [sl[0].stop - sl[0].start for sl in slices if sl[0].stop - sl[0].start >= 0.25 * h]
    glyph_h = float(np.median(tall)) if tall else float(h)
    area = np.bincount(lab.ravel(), minlength=n + 1)
    for i, sl in enumerate(slices, start=1):
        rows, cols = sl
        bh, bw = rows.stop - rows.start, cols.stop - cols.start
        line = (
            (bw >= 0.5 * w and bh <= 0.2 * h)  # a bar or frame edge across the box
            or (bw >= 4 * bh and bw >= 1.5 * glyph_h and bh <= 0.35 * glyph_h)  # a short bar next to the glyphs
            # a bar's end beside, or only its tip, blurred thicker than long (a 4 x 5 px end of a
            # 2-px line beside "1 µm" caught by a box widened past the glyphs, synthetic 80,000,176),
            # unlike the "nm" of "500 nm" ending at the box's side (synthetic 600,000,033)
            or ((cols.start == 0 or cols.stop == w) and not _cut_glyphs(lab[sl] == i, area[i])
                and ((bw >= 2 * bh and bh <= 0.8 * glyph_h) or (bw >= bh and bh <= 0.5 * glyph_h)))
            or (bh >= 0.8 * h and bw <= 0.1 * w and (cols.start == 0 or cols.stop == w))  # a vertical edge
        )
        border_speck = (rows.start == 0 or rows.stop == h or cols.start == 0 or cols.stop == w) and bh * bw < 0.01 * h * w
        keep[i] = not line and not border_speck
    # a short bracket ("⊔") joined into the line by the text detector: the first or last
    # component, a glyph height or more from the next one
    order = sorted((slices[i - 1][1].start, i) for i in np.flatnonzero(keep))
    for pos, nb in ((0, 1), (-1, -2)):
        if len(order) < 2:
            break
        i, j = order[pos][1], order[nb][1]
        sl, sl_nb = slices[i - 1], slices[j - 1]
        gap = sl_nb[1].start - sl[1].stop if pos == 0 else sl[1].start - sl_nb[1].stop
        if gap >= 0.4 * glyph_h and _is_bracket(lab[sl] == i, glyph_h):
            keep[i] = False
    rows = np.flatnonzero(keep[lab].any(axis=1))
    cols = np.flatnonzero(keep[lab].any(axis=0))
    if rows.size == 0:
        return xa, ya, xb, yb
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    m = max(2, round(0.15 * (r1 - r0)))
    return (xa + max(c0 - m, 0), ya + max(r0 - m, 0), xa + min(c1 + m, w), ya + min(r1 + m, h))


def read_text(
    image,
    box=None,
    *,
    backend: str = "rapidocr",
    accept: Callable[[str], bool] | None = None,
    min_score: float = 0.5,
    text_height: int = 32,
    margin_px: float | None = None,
    threads: int | None = 1,
    engine_options: Mapping[str, Any] | None = None,
    trim: bool = True,
    single_line: bool = True,
    upscale: float | None = None,
    detect: bool = True,
) -> list[TextHit]:
    """Read the text in an image or in a box of it.

    Parameters
    ----------
    image : (M, N) or (M, N, 3|4) array_like, any real dtype
        The micrograph (colour is averaged to grey).
    box : sequence of 4 numbers, optional
        ``(x0, y0, x1, y1)`` in image pixels (``x1``/``y1`` exclusive) around
        the text, e.g. a detector's label box.  ``None``: the whole image.
    backend : {'rapidocr', 'paddleocr'}, optional
        OCR engine; see the module docstring.
    accept : callable, optional
        ``accept(text) -> bool`` for one hit's text; the attempts (module
        docstring) go on until a hit is accepted.  Default: any non-empty
        text with ``score >= min_score``.
    min_score : float, optional
        Score a hit needs for the default `accept`.  Default 0.5.
    text_height : int, optional
        A crop lower than this (pixels) is upscaled to it.  Default 32.
    margin_px : float, optional
        Margin added around `box` (within the image).  Default
        ``max(2, 0.1 * box height)``.
    threads : int, optional
        ONNX Runtime intra-op threads.  Default 1: a label crop is small, and
        a workflow job should stay within its ``threads:``; ``None`` lets
        ONNX Runtime use every core.
    engine_options : mapping, optional
        Extra keyword arguments for the engine (``RapidOCR(**options)`` or
        ``PaddleOCR(**options)``).
    trim : bool, optional
        Shrink the crop to the glyphs first, dropping long thin objects (a
        scale bar, the edge of a frame) that a loose box caught.  Default
        True.
    single_line : bool, optional
        Try the recognizer alone on the whole crop first (attempts 1-2 of the
        module docstring), as for a box around one line of text.  False: go
        straight to text detection, for a window that may hold a label
        somewhere in it.  Default True.
    upscale : float, optional
        Enlarge the crop by this factor before reading (>= 1).  Default: so
        that a box is at least `text_height` pixels tall; a whole image is
        not enlarged.
    detect : bool, optional
        Let PP-OCR's text detector look for lines when the recognizer alone
        reads nothing acceptable in a box (attempts 3-4).  False: the
        recognizer only, for a box already known to hold one line (with
        `single_line`).  Default True.

    Returns
    -------
    hits : list of TextHit
        Lines of text, top to bottom; empty when nothing was read.

    Raises
    ------
    ImportError
        If the back-end is not installed (the message names the install).
    ValueError
        If `image` has the wrong shape or `box` does not overlap it.
    """
    return [hit for hit, _ in _read(
        image, box, backend=backend, accept=accept, min_score=min_score, text_height=text_height,
        margin_px=margin_px, threads=threads, engine_options=engine_options, trim=trim,
        single_line=single_line, upscale=upscale, detect=detect,
    )]


def _read(
    image,
    box=None,
    *,
    backend: str = "rapidocr",
    accept: Callable[[str], bool] | None = None,
    min_score: float = 0.5,
    text_height: int = 32,
    margin_px: float | None = None,
    threads: int | None = 1,
    engine_options: Mapping[str, Any] | None = None,
    trim: bool = True,
    single_line: bool = True,
    upscale: float | None = None,
    detect: bool = True,
) -> list[tuple[TextHit, "_CTCScorer | None"]]:
    """:func:`read_text`, with the CTC scorer of each recognizer-only read."""
    arr = _grey(image)
    h_img, w_img = arr.shape
    if box is None:
        xa, ya, xb, yb = 0, 0, w_img, h_img
    else:
        try:
            x0, y0, x1, y1 = (float(v) for v in box)
        except (TypeError, ValueError):
            raise ValueError(f"box must be (x0, y0, x1, y1), got {box!r}") from None
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 <= x0 or y1 <= y0:
            raise ValueError(f"box must be finite with x1 > x0 and y1 > y0, got {box!r}")
        m = max(2.0, 0.1 * (y1 - y0)) if margin_px is None else float(margin_px)
        xa, ya = max(int(math.floor(x0 - m)), 0), max(int(math.floor(y0 - m)), 0)
        xb, yb = min(int(math.ceil(x1 + m)), w_img), min(int(math.ceil(y1 + m)), h_img)
        if xb - xa < 2 or yb - ya < 2:
            raise ValueError(f"box {box!r} does not overlap the {w_img}x{h_img} image")
    crop = _to_uint8(arr[ya:yb, xa:xb])
    if box is not None and trim:
        xa, ya, xb, yb = _trim(crop, xa, ya, xb, yb)
        crop = _to_uint8(arr[ya:yb, xa:xb])
    engine = _engine(backend, threads, engine_options)

    # a label box is one line of text: make it tall enough; a whole image is left as it is
    if upscale is not None:
        if not (math.isfinite(float(upscale)) and float(upscale) >= 1.0):
            raise ValueError(f"upscale must be a finite number >= 1, got {upscale!r}")
        scale = float(upscale)
    else:
        scale = max(1.0, text_height / crop.shape[0]) if box is not None else 1.0
    up = _resize(crop, scale)
    first = up if _dark_on_light(up) else 255 - up
    polarities = (first, 255 - first)

    def ok(hit: TextHit) -> bool:
        if accept is None:
            return bool(hit.text.strip()) and hit.score >= min_score
        return bool(accept(hit.text))

    def whole_crop(img: np.ndarray) -> list[tuple[TextHit, _CTCScorer | None]]:
        text, score, scorer = engine.recognize(img)
        return [(TextHit(text, score, (float(xa), float(ya), float(xb), float(yb))), scorer)] if text else []

    def detected(img: np.ndarray) -> list[tuple[TextHit, None]]:
        # a margin of background gives DB's detector room around a tight label crop; over a
        # wide band a wide flat margin makes it join textured (noisy) background into one
        # large "line" around the label: at most 16 px
        pad = max(8, min(img.shape[0] // 2, 16))
        bgv = int(np.median(img))
        padded = np.pad(img, pad, mode="constant", constant_values=bgv)
        hits = []
        for pts, text, score in engine.detect_recognize(padded):
            if not text:
                continue
            px = (pts[:, 0] - pad) / scale + xa
            py = (pts[:, 1] - pad) / scale + ya
            bbox = (
                float(np.clip(px.min(), xa, xb)), float(np.clip(py.min(), ya, yb)),
                float(np.clip(px.max(), xa, xb)), float(np.clip(py.max(), ya, yb)),
            )
            hits.append((TextHit(text, score, bbox), None))
        hits.sort(key=lambda t: (round(t[0].bbox[1] / max(1.0, (yb - ya) / 4)), t[0].bbox[0]))
        return _join_split_labels(hits, accept) if accept is not None else hits

    attempts: list[Callable[[], list[tuple[TextHit, _CTCScorer | None]]]] = []
    if box is not None and single_line:
        attempts += [lambda img=img: whole_crop(img) for img in polarities]
    if detect or not attempts:
        attempts += [lambda img=img: detected(img) for img in polarities]

    best: list[tuple[TextHit, _CTCScorer | None]] = []
    best_score = -1.0
    for attempt in attempts:
        hits = attempt()
        if any(ok(hit) for hit, _ in hits):
            return hits
        score = max((hit.score for hit, _ in hits), default=-1.0)
        if score > best_score:
            best, best_score = hits, score
    return best


def _join_split_labels(hits: list, accept: Callable[[str], bool]) -> list:
    """Join a number and its unit that the text detector found as two lines.

    A large label with a wide space ("2  µm", 50 px tall) is split into two boxes
    now and then.  Two hits on the same text line (overlapping rows over half the
    shorter height), the gap between them under one line height, neither accepted
    alone but accepted joined (``"2" + " " + "µm"``), become one hit with their
    union box and the lower score.  Everything else is left as it is.
    """
    out = list(hits)
    i = 0
    while i < len(out):
        (a, _), j = out[i], None
        if not accept(a.text):
            for k, (b, _) in enumerate(out):
                if k == i or accept(b.text) or b.bbox[0] < a.bbox[2] - 0.5 * (a.bbox[3] - a.bbox[1]):
                    continue
                h = min(a.bbox[3] - a.bbox[1], b.bbox[3] - b.bbox[1])
                overlap = min(a.bbox[3], b.bbox[3]) - max(a.bbox[1], b.bbox[1])
                if overlap >= 0.5 * h and b.bbox[0] - a.bbox[2] <= max(a.bbox[3] - a.bbox[1], b.bbox[3] - b.bbox[1]) \
                        and accept(f"{a.text} {b.text}"):
                    j = k
                    break
        if j is None:
            i += 1
            continue
        b = out[j][0]
        box = (min(a.bbox[0], b.bbox[0]), min(a.bbox[1], b.bbox[1]), max(a.bbox[2], b.bbox[2]), max(a.bbox[3], b.bbox[3]))
        out[i] = (TextHit(f"{a.text} {b.text}", min(a.score, b.score), box), None)
        del out[j]
        if j < i:
            i -= 1
    return out


#: Log prior of each label unit, added to the recognizer's log-likelihood when
#: :func:`read_scale_label` compares the units a label could have.  Electron
#: micrographs are labelled in nm and µm; mm (low-magnification SEM, light
#: microscopy) and Å (atomic resolution) are rare (a few in a thousand: about
#: e^-4 of nm), and PP-OCR reads a small ``nm`` as ``mm`` now and then.
UNIT_LOG_PRIOR: dict[str, float] = {"nm": 0.0, "um": 0.0, "mm": -4.0, "A": -3.0}
# "pm" and "pum" count as µm, as in parse_scale_label
# and in capitals ("100 NM", "2 UM"): scored in lower case only, a capital "NM" was more
# likely an "A" than an "nm" (EMPS-synthetic 710,000,148 and 740,000,044, read in Å)
_UNIT_SPELLINGS: dict[str, tuple[str, ...]] = {
    "nm": ("nm", "NM"), "um": ("\u03bcm", "um", "\u00b5m", "pm", "pum", "UM"), "mm": ("mm", "MM"),
    "A": ("\u00c5", "A"),
}


def _unit_scores(scorer: _CTCScorer, number: str, prior: Mapping[str, float]) -> dict[str, float]:
    """Log-likelihood of `number` followed by each unit (its best spelling, with or
    without a space), plus the unit's log prior; units the recognizer cannot spell are
    left out."""
    scores: dict[str, float] = {}
    for unit, spellings in _UNIT_SPELLINGS.items():
        lls = [scorer(number + sep + sp) for sp in spellings for sep in ("", " ")]
        lls = [ll for ll in lls if ll is not None]
        if lls:
            scores[unit] = max(lls) + prior.get(unit, 0.0)
    return scores


@dataclass(frozen=True)
class ScaleRead:
    """A scale-bar label read from pixels.

    Attributes
    ----------
    label : ScaleLabel
        The parsed label (value, unit, value in nm).
    hit : TextHit
        The OCR line it was parsed from.
    rescored : bool
        True when the unit differs from the recognizer's most likely
        character string: another unit's spelling was more likely once the
        unit prior was added.  ``label.corrections`` then says which.
    log_margin : float or None
        Log-odds (natural log) of the chosen unit over the best other unit,
        prior included: small values (< 2) mean the unit is uncertain.
        ``None`` when the back-end gives no per-frame probabilities (a line
        found by the detector, or ``backend="paddleocr"``).
    runner_up : ScaleLabel or None
        The label with the next most likely unit (same number), when the units
        were compared, or, read without likelihoods, with the unit PP-OCR
        confuses its own with (nm and mm); a reader may prefer it when the
        chosen unit gives an implausible pixel size and `log_margin` is small
        or None.
    """

    label: ScaleLabel
    hit: TextHit
    rescored: bool
    log_margin: float | None
    runner_up: ScaleLabel | None = None


#: Units PP-OCR confuses with each other ("nm" read "mm" and back): the runner-up of a label
#: read without likelihoods.
_CONFUSED_UNIT = {"nm": "mm", "mm": "nm"}


def _unscored_read(label: ScaleLabel, hit: TextHit) -> ScaleRead:
    """A label read without the recognizer's likelihoods (a line of PP-OCR's text detector,
    the paddleocr back-end): no unit margin, and as runner-up the unit PP-OCR confuses its
    own with (nm and mm), for a reader that finds the unit read gives a pixel size no
    microscope has (synthetic 30,000,081: "500mm" over an 84-px bar)."""
    other = _CONFUSED_UNIT.get(label.unit)
    return ScaleRead(label, hit, False, None, None if other is None else with_unit(label, other, "runner-up unit"))


def _is_label(text: str) -> bool:
    return parse_scale_label(text) is not None


def read_scale_label(
    image,
    box,
    *,
    unit_log_prior: Mapping[str, float] | None = None,
    **read_options: Any,
) -> ScaleRead | None:
    """Read and parse the label of a scale bar in a box.

    :func:`read_text` is run until a line parses as a scale label
    (:func:`~micrometry.calibrate.scalebar.parse.parse_scale_label`).  When
    the line came from the recognizer alone, the units a label can have
    (nm, µm, mm, Å; each spelling, with or without a space) are compared by
    their CTC log-likelihood given the recognizer's output, plus
    `unit_log_prior`; the number is kept as read.  Such a line that is a number
    and a lone ``m`` (:func:`~micrometry.calibrate.scalebar.parse.unit_prefix_lost`)
    gets its unit the same way, recorded as a correction.

    Parameters
    ----------
    image : (M, N) or (M, N, 3|4) array_like
        The micrograph.
    box : sequence of 4 numbers
        ``(x0, y0, x1, y1)`` around the label, image pixels, exclusive ends.
    unit_log_prior : mapping, optional
        Log prior per unit (``"nm"``, ``"um"``, ``"mm"``, ``"A"``); default
        :data:`UNIT_LOG_PRIOR`.  All zeros: the recognizer alone decides.
    **read_options
        Passed to :func:`read_text` (``backend``, ``threads``,
        ``text_height``, ...), except ``accept``.

    Returns
    -------
    ScaleRead or None
        ``None`` when no line parses as a scale label.
    """
    prior = dict(UNIT_LOG_PRIOR if unit_log_prior is None else unit_log_prior)
    read_options.pop("accept", None)
    for hit, scorer in _read(image, box, accept=_is_label, **read_options):
        label = parse_scale_label(hit.text)
        if label is not None:
            match = _LABEL_RE.match(_normalise(hit.text))
            if scorer is None or match is None:
                return _unscored_read(label, hit)
            number = match["num"]
        else:
            # "5m": a prefix read as nothing, which only the recognizer's likelihoods can give back
            number = unit_prefix_lost(hit.text) if scorer is not None else None
            if number is None:
                continue
        scores = _unit_scores(scorer, number, prior)
        ranked = sorted(scores, key=scores.__getitem__, reverse=True)
        if label is None:
            guessed = parse_scale_label(f"{number} {_UNIT_SPELLINGS[ranked[0]][0]}") if len(ranked) > 1 else None
            if guessed is None:
                continue
            label = dataclasses.replace(guessed, text=hit.text, corrections=guessed.corrections + (
                f"m->{ranked[0]} (unit prefix not read)",))
            rescored = True
        elif label.unit not in scores:
            return ScaleRead(label, hit, False, None)
        else:
            rescored = ranked[0] != label.unit
        margin = scores[ranked[0]] - scores[ranked[1]] if len(ranked) > 1 else None
        runner_up = with_unit(label, ranked[1], "runner-up unit") if len(ranked) > 1 else None
        return ScaleRead(with_unit(label, ranked[0], "OCR likelihood"), hit, rescored, margin, runner_up)
    return None
