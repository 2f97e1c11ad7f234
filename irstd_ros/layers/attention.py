"""Channel and spatial attention maps (CBAM's forms), returned as gates in (0, 1), not applied.

Returning the map rather than the gated feature lets a caller gate one tensor
with a map computed from another, as IRMamba's cross-proximal mapping does.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class ChannelAttention(nn.Module):
    """``sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))``: one weight per channel, shape (B, C, 1, 1)."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean(dim=(2, 3), keepdim=True)
        mx = x.amax(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.mlp(avg) + self.mlp(mx))


class SpatialAttention(nn.Module):
    """``sigmoid(Conv7x7([mean_c(x), max_c(x)]))``: one weight per pixel, shape (B, 1, H, W)."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], 1)))
