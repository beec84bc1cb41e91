"""The flow network: a residual U-Net with a four-channel head per pixel.

This module imports :mod:`torch` at import time; it is imported only when the
flow method is used (``pip install micrometry[flow]``).  Everything that does
not need torch (normalisation, model files' metadata, flow tracking) lives in
torch-free modules.

Architecture (:class:`FlowNet`)
-------------------------------
A U-Net-style encoder-decoder:

- a 3 x 3 stem convolution from the single input channel to ``base_channels``;
- ``depth`` encoder levels with ``base_channels * 2**level`` channels, each a
  residual block (norm -> ReLU -> 3 x 3 conv, twice, plus a 1 x 1 projection
  of the input when the channel count changes), separated by 2 x 2 max
  pooling, i.e. ``depth - 1`` down-samplings;
- a mirrored decoder: nearest-neighbour 2x up-sampling, a 1 x 1 convolution
  to the skip's channel count, addition of the skip connection (summation
  rather than concatenation, as in Cellpose, which halves the decoder's cost)
  and a residual block;
- a 1 x 1 head with :data:`N_OUTPUTS` channels, in the order of
  :data:`OUTPUT_CHANNELS`: foreground logit, flow_y, flow_x, distance.

Any input size is accepted: the input is reflect-padded to a multiple of
``2**(depth - 1)`` and the output cropped back, so ``out.shape[-2:] ==
x.shape[-2:]``.

Backbones (:data:`BACKBONES`): ``"light"`` (default, about 0.5 M parameters,
fast on CPU) and ``"large"`` (about 5 M).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BACKBONES",
    "OUTPUT_CHANNELS",
    "N_OUTPUTS",
    "FlowNet",
    "build_network",
    "network_config",
    "count_parameters",
]

#: Output channels of the head, in order.
OUTPUT_CHANNELS = ("foreground_logit", "flow_y", "flow_x", "distance")
N_OUTPUTS = len(OUTPUT_CHANNELS)

#: Named backbones: keyword arguments of :class:`FlowNet`.
BACKBONES: dict[str, dict[str, Any]] = {
    "light": {"base_channels": 16, "depth": 4, "blocks_per_level": 1, "norm": "batch"},
    "large": {"base_channels": 32, "depth": 5, "blocks_per_level": 1, "norm": "batch"},
}

_NORMS = ("batch", "group")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    # GroupNorm: groups of (at most) 8 channels; independent of the batch size.
    return nn.GroupNorm(max(1, channels // 8), channels)


class ResBlock(nn.Module):
    """Pre-activation residual block: ``x + conv(act(norm(conv(act(norm(x))))))``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts; a 1 x 1 convolution projects the shortcut when they
        differ.
    norm : {"batch", "group"}
        Normalisation layer.
    """

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch") -> None:
        super().__init__()
        self.norm1 = _norm(norm, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = _norm(norm, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.skip = (
            nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = self.conv1(F.relu(self.norm1(x)))
        h = self.conv2(F.relu(self.norm2(h)))
        return self.skip(x) + h


class FlowNet(nn.Module):
    """Residual U-Net mapping a 1-channel image to per-pixel flow outputs.

    Parameters
    ----------
    in_channels : int
        Input channels (1: a percentile-normalised grey image).
    base_channels : int
        Channels of the first level; level ``i`` has ``base_channels * 2**i``.
    depth : int
        Number of resolution levels (``depth - 1`` down-samplings), >= 1.
    blocks_per_level : int
        Residual blocks per level in the encoder and in the decoder.
    norm : {"batch", "group"}
        Normalisation layer.
    out_channels : int
        Head channels; :data:`N_OUTPUTS` for the flow model.

    Notes
    -----
    ``forward(x)`` takes ``(B, in_channels, Y, X)`` float32 and returns
    ``(B, out_channels, Y, X)`` float32 (raw head outputs: channel 0 is a
    logit).
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        base_channels: int = 16,
        depth: int = 4,
        blocks_per_level: int = 1,
        norm: str = "batch",
        out_channels: int = N_OUTPUTS,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if base_channels < 1 or blocks_per_level < 1:
            raise ValueError("base_channels and blocks_per_level must be >= 1")
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
        self.depth = int(depth)
        chans = [base_channels * 2**i for i in range(depth)]
        self.stem = nn.Conv2d(in_channels, chans[0], 3, padding=1)
        self.encoder = nn.ModuleList()
        prev = chans[0]
        for c in chans:
            blocks = [ResBlock(prev, c, norm)] + [ResBlock(c, c, norm) for _ in range(blocks_per_level - 1)]
            self.encoder.append(nn.Sequential(*blocks))
            prev = c
        self.reduce = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in range(depth - 2, -1, -1):
            self.reduce.append(nn.Conv2d(chans[i + 1], chans[i], 1, bias=False))
            self.decoder.append(nn.Sequential(*[ResBlock(chans[i], chans[i], norm) for _ in range(blocks_per_level)]))
        self.head_norm = _norm(norm, chans[0])
        self.head = nn.Conv2d(chans[0], out_channels, 1)

    @property
    def size_multiple(self) -> int:
        """Inputs are padded internally to a multiple of this (``2**(depth-1)``)."""
        return 2 ** (self.depth - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if x.ndim != 4:
            raise ValueError(f"FlowNet expects (B, C, Y, X) input, got shape {tuple(x.shape)}")
        ny, nx = x.shape[-2:]
        m = self.size_multiple
        pad_y, pad_x = (-ny) % m, (-nx) % m
        if pad_y or pad_x:
            # reflect needs pad < size; replicate handles tiny inputs
            mode = "reflect" if pad_y < ny and pad_x < nx else "replicate"
            x = F.pad(x, (0, pad_x, 0, pad_y), mode=mode)
        h = self.stem(x)
        skips = []
        for i, level in enumerate(self.encoder):
            if i:
                h = F.max_pool2d(h, 2)
            h = level(h)
            skips.append(h)
        for j, (reduce, level) in enumerate(zip(self.reduce, self.decoder)):
            skip = skips[-2 - j]
            h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = level(reduce(h) + skip)
        out = self.head(F.relu(self.head_norm(h)))
        return out[..., :ny, :nx]


def network_config(backbone: str = "light", **overrides: Any) -> dict[str, Any]:
    """Keyword arguments of :class:`FlowNet` for a named backbone.

    Parameters
    ----------
    backbone : {"light", "large"}
        Named preset from :data:`BACKBONES`.
    **overrides
        Replace any preset value (``base_channels``, ``depth``,
        ``blocks_per_level``, ``norm``).

    Returns
    -------
    dict
        ``{"backbone": name, "in_channels": 1, "out_channels": 4, ...}`` --
        JSON-serialisable; :func:`build_network` accepts it back.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
    cfg = {"backbone": backbone, "in_channels": 1, "out_channels": N_OUTPUTS, **BACKBONES[backbone]}
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise ValueError(f"unknown network option(s) {sorted(unknown)}")
    cfg.update(overrides)
    return cfg


def build_network(backbone: str = "light", **overrides: Any) -> FlowNet:
    """Build a :class:`FlowNet` from a backbone name and optional overrides.

    Parameters
    ----------
    backbone : {"light", "large"}
    **overrides
        See :func:`network_config`.

    Returns
    -------
    FlowNet
        Freshly initialised (random weights, training mode).

    Examples
    --------
    >>> net = build_network("light")
    >>> net.eval()(torch.zeros(1, 1, 37, 50)).shape
    torch.Size([1, 4, 37, 50])
    """
    cfg = network_config(backbone, **overrides)
    cfg.pop("backbone")
    return FlowNet(**cfg)


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters of `net`."""
    return int(sum(p.numel() for p in net.parameters() if p.requires_grad))
