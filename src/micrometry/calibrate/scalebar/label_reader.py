"""Read a scale-bar label crop with the project's own small recognizer (CRNN + CTC).

PP-OCR reads general text; a scale label is a number and a unit, often 9-14 px
tall, blurred by resampling or JPEG, white on a light specimen.  Such labels
defeat PP-OCR ("SONM", "Lum", nothing at all) while the detector has found
their box.  This recognizer knows only the characters of scale labels
(:data:`CHARSET`) and was trained by the project on label crops of the
synthetic generator under the same degradations
(:mod:`micrometry.train.label_reader`); it also learned to read nothing in
crops of other annotations (magnifications, dates, panel markers, bare
numbers) and of the specimen.

A reader directory holds::

    model.safetensors   # float32 state dict of :class:`LabelReaderNet`
    reader.json         # {"charset": ..., "height": 32, "width": 192, "channels": [...], ...}
    MODEL_CARD.md
    stride2/            # optional: a second reader (same files), read alongside

A directory with a second reader loads as a :class:`LabelReaderPair`: every crop is
read by both, and :func:`combine_readings` makes one reading of the two.  The
shipped pair is the reader of one frame per 4 columns and one of one frame per 2
(``time_stride``): the first drops one of two equal digits now and then ("500 nm"
read "50 nm": CTC needs a blank frame between them, and 4 columns may hold none),
the second less often, but it misreads other labels the first reads right.

Crops are grey, any polarity; :func:`prepare_crop` brings one to the network's
input (height :data:`HEIGHT` px, width up to :data:`WIDTH` px, centred and
scaled grey levels).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CHARSET",
    "HEIGHT",
    "WIDTH",
    "LabelReader",
    "LabelReaderNet",
    "LabelReaderPair",
    "combine_readings",
    "decode_greedy",
    "default_reader_dir",
    "encode_text",
    "load_label_reader",
    "prepare_crop",
    "reader_sha256",
    "save_label_reader",
]

#: Characters the recognizer writes (CTC class ``i + 1``; class 0 is the blank).  Both
#: micro signs (U+00B5 and Greek U+03BC) are read as U+00B5; the parser treats them alike.
CHARSET = "0123456789.,nmuµÅNMU "
#: Network input height and largest width, in pixels.
HEIGHT = 32
WIDTH = 192
WEIGHTS_NAME = "model.safetensors"
_META = "reader.json"
#: Subdirectory of a reader directory that holds the second reader of a pair.
SECOND_READER = "stride2"
#: A reading that the other reader of a pair reads as another value keeps this share of
#: its score (:func:`combine_readings`).
DISAGREEMENT_FACTOR = 0.7
_FOLD = {"μ": "µ"}


def default_reader_dir() -> Path:
    """``models/scalebar-label-reader`` of the repository (or ``$MICROMETRY_LABEL_READER``)."""
    env = os.environ.get("MICROMETRY_LABEL_READER")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[4] / "models" / "scalebar-label-reader"


def _pair_sha256(first: str, second: str) -> str:
    """The fingerprint of a pair of readers: SHA-256 of their weights' hex digests joined."""
    import hashlib

    return hashlib.sha256(f"{first}+{second}".encode("ascii")).hexdigest()


def reader_sha256(reader_dir: str | os.PathLike | None = None) -> str | None:
    """SHA-256 (hex) of a reader directory's weights (default :func:`default_reader_dir`),
    None when it has none; for a directory with a second reader (:data:`SECOND_READER`),
    the pair's fingerprint (:class:`LabelReaderPair`).  Reads only the files (no torch):
    the workflow calls it at start-up."""
    from micrometry.io.readers import sha256_file

    d = Path(reader_dir or default_reader_dir())
    weights, second = d / WEIGHTS_NAME, d / SECOND_READER / WEIGHTS_NAME
    if not weights.is_file():
        return None
    if second.is_file():
        return _pair_sha256(sha256_file(weights), sha256_file(second))
    return sha256_file(weights)


def encode_text(text: str) -> list[int]:
    """CTC target of a label: class indices (1-based) of its characters.

    Raises
    ------
    ValueError
        A character outside :data:`CHARSET` (after folding Greek mu to the micro sign).
    """
    out = []
    for ch in text:
        ch = _FOLD.get(ch, ch)
        i = CHARSET.find(ch)
        if i < 0:
            raise ValueError(f"character {ch!r} of {text!r} is not in the label reader's charset")
        out.append(i + 1)
    return out


def decode_greedy(probs: np.ndarray) -> tuple[str, float]:
    """Best-path CTC decoding.

    Parameters
    ----------
    probs : (T, C) float array
        Per-frame class probabilities (class 0 blank).

    Returns
    -------
    text : str
    score : float
        The lowest probability among the frames that wrote a character (1.0 for
        an empty text: the blank's own certainty is not a reading).
    """
    best = probs.argmax(axis=1)
    chars, scores = [], []
    prev = 0
    for t, k in enumerate(best):
        if k != 0 and k != prev:
            chars.append(CHARSET[k - 1])
            scores.append(float(probs[t, k]))
        elif k != 0 and k == prev:
            scores[-1] = max(scores[-1], float(probs[t, k]))
        prev = k
    return "".join(chars).strip(), (min(scores) if scores else 1.0)


def prepare_crop(crop: np.ndarray, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """A grey label crop as the network sees it.

    The crop is resized to `height` rows keeping its aspect (squeezed to `width`
    when wider), its grey levels centred on the median and divided by the 1-99 %
    spread (at least 8 grey levels), and padded on the right with zeros
    (the median) up to `width`.

    Parameters
    ----------
    crop : (h, w) array, any real dtype
        Text written left to right (turn vertical text first); other than uint8,
        stretched to 0-255 first (:func:`~micrometry.calibrate.scalebar._image.to_uint8`).

    Returns
    -------
    (height, width) float32
    """
    from PIL import Image

    from micrometry.calibrate.scalebar._image import to_uint8

    c = np.asarray(crop)
    if c.ndim != 2 or min(c.shape) < 2:
        raise ValueError(f"label crop must be a 2-D array of at least 2 x 2 px, got shape {c.shape}")
    c = to_uint8(c).astype(np.float32)
    lo, med, hi = np.percentile(c, (1, 50, 99))
    spread = max(float(hi - lo), 8.0)
    w = int(round(c.shape[1] * height / c.shape[0]))
    w = max(1, min(width, w))
    img = Image.fromarray(c).resize((w, height), Image.BILINEAR)
    out = np.zeros((height, width), np.float32)
    out[:, :w] = (np.asarray(img, np.float32) - med) / spread
    return out


def LabelReaderNet(channels: tuple[int, ...] = (16, 32, 48, 64), hidden: int = 48, n_classes: int = len(CHARSET) + 1,
                   time_stride: int = 4):
    """The recognizer network, a ``torch.nn.Module`` (torch is imported here, not with the
    module: the workflow reads :func:`reader_sha256` at start-up).

    Five 3 x 3 convolution blocks (``channels``; the third one twice) pool the input down to
    one row of ``W / time_stride`` columns (`time_stride` 4 or 2); a bidirectional LSTM of
    `hidden` units runs along it and a linear layer gives the CTC classes.  Input
    ``(B, 1, HEIGHT, W)`` float32 (:func:`prepare_crop`, ``W`` a multiple of 4); output
    ``(B, W / time_stride, n_classes)`` log-probabilities, class 0 the CTC blank.  CTC
    needs a blank frame between two equal characters: a stride of 2 leaves room for the
    "00" of a small "500 nm" that a stride of 4 collapses into one "0".
    """
    if time_stride not in (2, 4):
        raise ValueError(f"time_stride must be 2 or 4, got {time_stride!r}")
    import torch
    from torch import nn

    c1, c2, c3, c4 = (int(c) for c in channels)

    def block(cin, cout, pool):
        layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        return layers + [nn.MaxPool2d(pool)] if pool else layers

    class _Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                *block(1, c1, (2, 2)),   # 16 x W/2
                *block(c1, c2, (2, 2) if time_stride == 4 else (2, 1)),  # 8 x W/4 (W/2)
                *block(c2, c3, None),
                *block(c3, c3, (2, 1)),  # 4 x W/4
                *block(c3, c4, (4, 1)),  # 1 x W/4
            )
            self.rnn = nn.LSTM(c4, int(hidden), batch_first=True, bidirectional=True)
            self.head = nn.Linear(2 * int(hidden), int(n_classes))

        def forward(self, x):  # (B, 1, H, W) -> (B, T, C) log-probabilities
            f, _ = self.rnn(self.features(x).squeeze(2).transpose(1, 2))
            return torch.log_softmax(self.head(f), dim=-1)

    return _Net()


@dataclass
class LabelReader:
    """A loaded recognizer; :meth:`read` reads one crop."""

    net: Any
    meta: dict
    sha256: str = ""

    def read_batch(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """Read several crops at once; each as :meth:`read`."""
        import torch

        if not crops:
            return []
        x = np.stack([prepare_crop(c, self.meta["height"], self.meta["width"]) for c in crops])[:, None]
        with torch.inference_mode():
            probs = self.net(torch.from_numpy(x)).exp().numpy()
        return [decode_greedy(p) for p in probs]

    def read(self, crop: np.ndarray) -> tuple[str, float]:
        """Read one label crop.

        Parameters
        ----------
        crop : (h, w) array
            Grey crop around one line of text, written left to right.

        Returns
        -------
        text : str
            Characters of :data:`CHARSET`, empty when the crop holds no scale label.
        score : float
            Lowest per-character probability of the best path (see :func:`decode_greedy`).
        """
        return self.read_batch([crop])[0]


def _collapsed_repeat(longer: str, shorter: str) -> bool:
    """Whether `shorter` is `longer` with one or more of its repeated characters written
    once (spaces ignored): how CTC drops a digit ("500 nm" -> "50 nm")."""
    a, b = longer.replace(" ", ""), shorter.replace(" ", "")
    if len(a) <= len(b):
        return False
    j = 0
    for i, ch in enumerate(a):
        if j < len(b) and ch == b[j]:
            j += 1
        elif not (i > 0 and ch == a[i - 1]):
            return False
    return j == len(b)


def combine_readings(first: tuple[str, float], second: tuple[str, float]) -> tuple[str, float]:
    """One reading of a crop from the readings of two readers (:class:`LabelReaderPair`).

    - Both read the same length (value and unit), or neither reads a scale label: the first
      reading, its score (the two readers learned from the same crops: their agreeing
      is no independent evidence).
    - One reads a scale label, the other none: that reading.
    - One reading is the other with a repeated digit written once ("50 nm" against
      "500 nm"): the longer.  CTC drops one of two equal characters when no blank
      frame separates them; it does not invent one.
    - Otherwise the reading with the higher score, its score times
      :data:`DISAGREEMENT_FACTOR`: one of the two is wrong.

    Parameters
    ----------
    first, second : (text, score)
        Readings as :meth:`LabelReader.read` gives them.

    Returns
    -------
    (text, score)
    """
    from micrometry.calibrate.scalebar.parse import parse_scale_label

    (t1, s1), (t2, s2) = first, second
    l1 = parse_scale_label(t1) if t1 else None
    l2 = parse_scale_label(t2) if t2 else None
    if l2 is None:
        return t1, s1
    if l1 is None:
        return t2, s2
    if abs(l1.value_nm - l2.value_nm) <= 1e-6 * l1.value_nm:
        return t1, s1
    if _collapsed_repeat(t1, t2):
        return t1, s1
    if _collapsed_repeat(t2, t1):
        return t2, s2
    text, score = (t1, s1) if s1 >= s2 else (t2, s2)
    return text, score * DISAGREEMENT_FACTOR


@dataclass
class LabelReaderPair:
    """Two readers that read every crop, their readings made one by
    :func:`combine_readings` (`first`'s reading first).  Reads as a :class:`LabelReader`."""

    first: LabelReader
    second: LabelReader

    @property
    def sha256(self) -> str:
        """The pair's fingerprint (as :func:`reader_sha256` of its directory)."""
        return _pair_sha256(self.first.sha256, self.second.sha256)

    @property
    def meta(self) -> dict:
        """The first reader's metadata."""
        return self.first.meta

    def read_batch(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """Read several crops with both readers; one (text, score) per crop."""
        return [combine_readings(a, b) for a, b in zip(self.first.read_batch(crops), self.second.read_batch(crops))]

    def read(self, crop: np.ndarray) -> tuple[str, float]:
        """Read one label crop (as :meth:`LabelReader.read`)."""
        return self.read_batch([crop])[0]


def save_label_reader(net, out_dir: str | os.PathLike, meta: dict) -> Path:
    """Write ``model.safetensors`` and ``reader.json`` into `out_dir`; returns the weights path."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_NAME
    save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(weights))
    from micrometry.io.readers import sha256_file

    meta = dict(meta, weights_sha256=sha256_file(weights))
    (out / _META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return weights


@functools.lru_cache(maxsize=4)
def _load_cached(path: str) -> LabelReader:
    from safetensors.torch import load_file

    from micrometry.calibrate.scalebar.detect import check_state_dict
    from micrometry.io.readers import sha256_file

    d = Path(path)
    meta_path, weights = d / _META, d / WEIGHTS_NAME
    if not meta_path.is_file() or not weights.is_file():
        raise FileNotFoundError(f"label reader {d}: needs {_META} and {WEIGHTS_NAME}")
    meta = json.loads(meta_path.read_text())
    if meta.get("charset") != CHARSET:
        raise ValueError(f"label reader {d}: its charset {meta.get('charset')!r} is not this code's {CHARSET!r}")
    net = LabelReaderNet(meta["channels"], meta["hidden"], len(CHARSET) + 1, int(meta.get("time_stride", 4)))
    state = load_file(str(weights))
    check_state_dict(net.state_dict(), state, where=str(weights))
    net.load_state_dict(state)
    net.eval()
    return LabelReader(net, meta, sha256_file(weights))


def load_label_reader(path: str | os.PathLike | None = None) -> LabelReader | LabelReaderPair:
    """Load a reader directory (default :func:`default_reader_dir`), cached per path; a
    directory with a second reader in :data:`SECOND_READER` loads as a
    :class:`LabelReaderPair`.

    Raises
    ------
    FileNotFoundError
        The directory lacks ``reader.json`` or ``model.safetensors``.
    ValueError
        The weights do not fit the network the metadata describes, or the
        charset differs from :data:`CHARSET`.
    """
    d = Path(path) if path is not None else default_reader_dir()
    first = _load_cached(str(d))
    if (d / SECOND_READER / _META).is_file():
        return LabelReaderPair(first, _load_cached(str(d / SECOND_READER)))
    return first
