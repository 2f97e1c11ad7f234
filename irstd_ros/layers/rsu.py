"""Residual U-blocks (Qin et al., U²-Net, 2020): a small U-Net inside each block, with a residual.

``RSU(L, cin, mid, cout)``: a conv to ``cout`` (the residual's input), then an L-level U-Net of width ``mid``
(max-pool down, bilinear up to the skip's size, so any H, W work), a dilated conv at the bottom, back to
``cout``, plus the residual. ``dilated=True`` is U²-Net's RSU-4F: no pooling, dilations 1, 2, 4, 8 instead,
for the low-resolution stages.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, dilation: int = 1):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def up_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class RSU(nn.Module):
    def __init__(self, levels: int, cin: int, mid: int, cout: int, dilated: bool = False):
        super().__init__()
        self.dilated = dilated
        self.conv_in = ConvBNReLU(cin, cout)
        dil = [2 ** i for i in range(levels - 1)] if dilated else [1] * (levels - 1)
        self.down = nn.ModuleList(ConvBNReLU(cout if i == 0 else mid, mid, dil[i]) for i in range(levels - 1))
        self.bottom = ConvBNReLU(mid, mid, 2 * dil[-1])
        self.up = nn.ModuleList(ConvBNReLU(2 * mid, cout if i == 0 else mid, dil[i]) for i in range(levels - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hin = self.conv_in(x)
        skips, h = [], hin
        for i, conv in enumerate(self.down):
            if i and not self.dilated:
                h = F.max_pool2d(h, 2, 2, ceil_mode=True)
            h = conv(h)
            skips.append(h)
        h = self.bottom(h)
        for i in reversed(range(len(self.up))):
            skip = skips[i]
            if not self.dilated:
                h = up_to(h, skip)
            h = self.up[i](torch.cat([h, skip], 1))
        return h + hin
