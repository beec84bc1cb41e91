"""A minimal Gatan Digital Micrograph (DM3/DM4) writer, for tests only.

It writes real DM files following the published layout of the format, so
the readers can be tested on files that carry known calibrations:

* header: version (int32, big-endian: 3 or 4), root length (int32 in DM3,
  int64 in DM4, big-endian), byte order of the tag data (int32 big-endian,
  1 = little-endian);
* root tag group: ``sorted`` byte, ``open`` byte, number of tags (int32 /
  int64 big-endian);
* each tag: type byte (20 = group, 21 = data), label length (int16
  big-endian), label; DM4 then the byte size of the rest of the tag (int64);
  a group continues with ``sorted``, ``open`` and its tag count, a data tag
  with the delimiter ``%%%%``, the length of its info array and the info
  array (int32 / int64 big-endian), then the value in the file's byte order;
* info arrays: ``[type]`` for a simple value, ``[20, type, n]`` for an array
  of simple values (strings are arrays of uint16 characters).

The tree written holds ``ImageList`` with, optionally, a thumbnail first
(listed in ``Thumbnails`` as DM does), then the image with ``ImageData``
(``Calibrations/Dimension`` scale, origin and units per axis, ``Data``,
``DataType``, ``Dimensions``, ``PixelDepth``) and ``ImageTags``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

__all__ = ["write_dm", "DM_IMAGE_DATATYPE"]

# numpy dtype -> (tag element type code, struct char)
_SIMPLE = {
    np.dtype(np.int16): (2, "h"),
    np.dtype(np.int32): (3, "i"),
    np.dtype(np.uint16): (4, "H"),
    np.dtype(np.uint32): (5, "I"),
    np.dtype(np.float32): (6, "f"),
    np.dtype(np.float64): (7, "d"),
    np.dtype(np.bool_): (8, "?"),
    np.dtype(np.int8): (9, "b"),
    np.dtype(np.uint8): (10, "B"),
    np.dtype(np.int64): (11, "q"),
    np.dtype(np.uint64): (12, "Q"),
}

#: numpy dtype -> ImageData/DataType code of DM.
DM_IMAGE_DATATYPE = {
    np.dtype(np.int16): 1,
    np.dtype(np.float32): 2,
    np.dtype(np.uint8): 6,
    np.dtype(np.int32): 7,
    np.dtype(np.int8): 9,
    np.dtype(np.uint16): 10,
    np.dtype(np.uint32): 11,
    np.dtype(np.float64): 12,
}


class Typed:
    """A scalar with an explicit DM type, e.g. ``Typed(2.5, np.float32)``."""

    def __init__(self, value, dtype):
        self.value = value
        self.dtype = np.dtype(dtype)


class _Writer:
    def __init__(self, version: int, byteorder: str):
        if version not in (3, 4):
            raise ValueError("version must be 3 or 4")
        self.version = version
        self.bo = byteorder
        self.len_fmt = ">i" if version == 3 else ">q"

    def n(self, value: int) -> bytes:  # a length/count/info entry
        return struct.pack(self.len_fmt, value)

    def info(self, values: list[int]) -> bytes:
        return b"%%%%" + self.n(len(values)) + b"".join(self.n(v) for v in values)

    def data_tag(self, value) -> bytes:
        if isinstance(value, Typed):
            code, ch = _SIMPLE[value.dtype]
            return self.info([code]) + struct.pack(self.bo + ch, value.value)
        if isinstance(value, bool):
            return self.info([8]) + struct.pack(self.bo + "?", value)
        if isinstance(value, int):
            return self.info([3]) + struct.pack(self.bo + "i", value)
        if isinstance(value, float):
            return self.info([7]) + struct.pack(self.bo + "d", value)
        if isinstance(value, str):
            chars = np.frombuffer(value.encode("utf-16-le"), dtype="<u2")
            return self.info([20, 4, chars.size]) + chars.astype(self.bo + "u2").tobytes()
        if isinstance(value, np.ndarray):
            flat = np.ascontiguousarray(value).ravel()
            code, _ = _SIMPLE[flat.dtype.newbyteorder("=")]
            return self.info([20, code, flat.size]) + flat.astype(flat.dtype.newbyteorder(self.bo)).tobytes()
        raise TypeError(f"cannot encode {type(value).__name__} as a DM tag")

    def group_body(self, items: list[tuple[str, object]]) -> bytes:
        out = [b"\x00\x01", self.n(len(items))]  # sorted=0, open=1
        for label, value in items:
            out.append(self.tag(label, value))
        return b"".join(out)

    def tag(self, label: str, value) -> bytes:
        name = label.encode("latin-1")
        if isinstance(value, (dict, list)):
            items = list(value.items()) if isinstance(value, dict) else [("", v) for v in value]
            kind, body = 20, self.group_body(items)
        else:
            kind, body = 21, self.data_tag(value)
        head = struct.pack(">bh", kind, len(name)) + name
        if self.version == 4:
            head += struct.pack(">q", len(body))
        return head + body


def _image_group(data: np.ndarray, scale_xy, units_xy, origin_xy, name: str, image_tags: dict) -> dict:
    dt = np.dtype(data.dtype).newbyteorder("=")
    if dt not in DM_IMAGE_DATATYPE:
        raise ValueError(f"dtype {data.dtype} not supported by this DM writer")
    height, width = data.shape
    dimension = [
        {"Origin": Typed(origin_xy[i], np.float32), "Scale": Typed(scale_xy[i], np.float32), "Units": units_xy[i]}
        for i in range(2)
    ]
    return {
        "ImageData": {
            "Calibrations": {
                "Brightness": {"Origin": Typed(0.0, np.float32), "Scale": Typed(1.0, np.float32), "Units": ""},
                "Dimension": dimension,
                "DisplayCalibratedUnits": True,
            },
            "Data": np.ascontiguousarray(data, dtype=dt),
            "DataType": Typed(DM_IMAGE_DATATYPE[dt], np.int32),
            "Dimensions": [Typed(width, np.uint32), Typed(height, np.uint32)],
            "PixelDepth": Typed(dt.itemsize, np.uint32),
        },
        "ImageTags": image_tags,
        "Name": name,
        "UniqueID": {"0": Typed(1, np.uint32), "1": Typed(2, np.uint32)},
    }


def write_dm(
    path: str | Path,
    data: np.ndarray,
    *,
    version: int = 3,
    scale_xy: tuple[float, float] = (1.0, 1.0),
    units_xy: tuple[str, str] = ("", ""),
    origin_xy: tuple[float, float] = (0.0, 0.0),
    thumbnail: bool = True,
    byteorder: str = "<",
    image_tags: dict | None = None,
    name: str = "test image",
) -> Path:
    """Write a 2-D array as a DM3 or DM4 file with a spatial calibration.

    Parameters
    ----------
    path : str or Path
        Output file.
    data : (Y, X) ndarray
        Image; int8/16/32, uint8/16/32, float32/64.
    version : {3, 4}
        DM3 or DM4 layout.
    scale_xy, units_xy, origin_xy : pairs
        Calibration of the x (columns) and y (rows) axes: size of one pixel
        in `units_xy` (e.g. ``(0.25, 0.25)`` and ``("nm", "nm")``).
        Stored as float32, as DM does.
    thumbnail : bool
        Also store an 8-bit thumbnail as image 0 (listed in ``Thumbnails``),
        as Digital Micrograph does.
    byteorder : {"<", ">"}
        Byte order of the tag data.
    image_tags : dict, optional
        Extra ``ImageTags`` (nested dicts, str, int, float, :class:`Typed`).

    Returns
    -------
    path : Path
    """
    data = np.asarray(data)
    if data.ndim != 2:
        raise ValueError("data must be 2-D")
    w = _Writer(version, byteorder)
    images = []
    if thumbnail:
        step = max(1, max(data.shape) // 32)
        thumb = data[::step, ::step].astype(np.float64)
        span = float(thumb.max() - thumb.min()) or 1.0
        thumb = np.round((thumb - thumb.min()) / span * 255).astype(np.uint8)
        images.append(_image_group(thumb, (1.0, 1.0), ("", ""), (0.0, 0.0), "", {}))
    images.append(_image_group(data, scale_xy, units_xy, origin_xy, name, image_tags or {}))
    root: dict = {"ApplicationBounds": np.array([0, 0, 800, 1200], dtype=np.int32), "ImageList": images}
    if thumbnail:
        root["Thumbnails"] = [{"ImageIndex": Typed(0, np.uint32), "SourceSize_Pixels": np.array(data.shape[::-1], dtype=np.int32)}]
    body = w.group_body(list(root.items())) + b"\x00" * 8
    header_len = 16 if version == 4 else 12
    total = header_len + len(body)
    header = struct.pack(">i", version)
    header += struct.pack(">i", total - 16) if version == 3 else struct.pack(">q", total - 24)
    header += struct.pack(">i", 1 if byteorder == "<" else 0)
    path = Path(path)
    path.write_bytes(header + body)
    return path
