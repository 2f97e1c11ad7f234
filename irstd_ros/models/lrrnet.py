"""LRRNet: compression–reconstruction–subtraction (CRS) low-rank background network.

Written from Yang et al., "LRRNet" (IEEE TGRS), ``../shared/papers/lrrnet.txt``:

* ``F_I = Conv3x3(I)``                                       (eq. 4)
* a densely connected 4-stage U-Net compresses ``F_I`` and reconstructs the
  low-rank background features ``F_B`` (same shape as ``F_I``); one single-head
  self-attention block sits at H/16 (eq. 7);
* pre-activation ResBlocks with LayerScale weights (eqs. 5-6);
* subtraction: ``F_T = ResBlock(F_I - F_B)``, ``F̂_I = F_T + F_B``    (eqs. 8-9);
* 3x3 conv heads turn ``F_T`` into mask logits and ``F̂_I`` into the
  reconstructed image, supervised by SoftIoU + L1 and ``λ·MSE`` (eq. 10).

Dense long skips, as we read the paper: an encoder stage keeps three features
(its input and the output of each of its two ResBlocks); the matching decoder
stage has three ResBlocks, and block ``k`` first fuses (1x1 conv over a concat)
the encoder feature ``k`` counted from the deepest. That is why a decoder stage
has one ResBlock more than its encoder stage.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers.norm import GroupNorm
from .registry import ModelCfg, register_model


def _groups(channels: int) -> int:
    return 8 if channels % 8 == 0 else 1


class PreActUnit(nn.Module):
    """``x + λ · Conv3x3(ReLU(GroupNorm(x)))`` with a learnable per-channel LayerScale λ."""

    def __init__(self, channels: int, layer_scale: float):
        super().__init__()
        self.norm = GroupNorm(_groups(channels), channels)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.gamma = nn.Parameter(torch.full((channels, 1, 1), float(layer_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gamma * self.conv(F.relu(self.norm(x)))


class ResBlock(nn.Sequential):
    """Two pre-activation residual units (eqs. 5 and 6)."""

    def __init__(self, channels: int, layer_scale: float = 0.1):
        super().__init__(PreActUnit(channels, layer_scale), PreActUnit(channels, layer_scale))


class SelfAttention2d(nn.Module):
    """Single-head qkv self-attention over all positions of a feature map, pre-norm, residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=-1)  # (b, hw, c) each
        y = F.scaled_dot_product_attention(q, k, v)  # softmax(qk^T / sqrt(c)) v
        return x + self.proj(y.transpose(1, 2).reshape(b, c, h, w))


class EncoderStage(nn.Module):
    """ResBlocks at one resolution; returns its dense features and the downsampled output."""

    def __init__(self, channels: int, out_channels: int, depth: int, layer_scale: float):
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(channels, layer_scale) for _ in range(depth))
        self.down = nn.Conv2d(channels, out_channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor):
        feats = [x]
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats, self.down(x)


class DecoderStage(nn.Module):
    """Upsampling conv, then ``depth + 1`` ResBlocks, each fed one dense skip from the encoder."""

    def __init__(self, in_channels: int, channels: int, depth: int, layer_scale: float):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, channels, 2, stride=2)
        self.fuse = nn.ModuleList(nn.Conv2d(2 * channels, channels, 1) for _ in range(depth + 1))
        self.blocks = nn.ModuleList(ResBlock(channels, layer_scale) for _ in range(depth + 1))

    def forward(self, x: torch.Tensor, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self.up(x)
        for fuse, block, skip in zip(self.fuse, self.blocks, reversed(skips)):
            x = block(fuse(torch.cat([x, skip], dim=1)))
        return x


class LRRNet(nn.Module):
    """Low-rank representation network. ``forward`` returns mask logits ``(B, 1, H, W)``.

    H and W must be multiples of :attr:`stride`; the inference pipeline pads for that.
    """

    def __init__(
        self,
        in_chans: int = 1,
        channels: Sequence[int] = (16, 32, 64, 128),
        depth: int = 2,
        layer_scale: float = 0.1,
    ):
        super().__init__()
        channels = list(channels)
        self.in_chans = in_chans
        self.stride = 2 ** len(channels)
        self.stem = nn.Conv2d(in_chans, channels[0], 3, padding=1)
        outs = channels[1:] + [channels[-1]]
        self.encoder = nn.ModuleList(
            EncoderStage(c, o, depth, layer_scale) for c, o in zip(channels, outs)
        )
        self.attention = SelfAttention2d(channels[-1])
        self.decoder = nn.ModuleList(
            DecoderStage(o, c, depth, layer_scale) for c, o in zip(reversed(channels), reversed(outs))
        )
        self.subtract = ResBlock(channels[0], layer_scale)
        self.mask_head = nn.Conv2d(channels[0], 1, 3, padding=1)
        self.recon_head = nn.Conv2d(channels[0], in_chans, 3, padding=1)
        nn.init.constant_(self.mask_head.bias, -4.6)  # prior p = 0.01: targets are rare pixels

    def forward(self, x: torch.Tensor, return_reconstruction: bool = False):
        f_i = self.stem(x)
        skips = []
        y = f_i
        for stage in self.encoder:
            feats, y = stage(y)
            skips.append(feats)
        y = self.attention(y)
        for stage, feats in zip(self.decoder, reversed(skips)):
            y = stage(y, feats)
        f_b = y                                   # reconstructed low-rank background features
        f_t = self.subtract(f_i - f_b)            # eq. 8: target features
        logits = self.mask_head(f_t)
        if not return_reconstruction:
            return logits
        return logits, self.recon_head(f_t + f_b)  # eq. 9: F̂_I = F_T + F_B


@register_model(ModelCfg(
    stride=16, weights="lrrnet_sirst-v1.pt", loss="lrrnet", tiny_args={"channels": (8, 16, 16, 16)},
    description="LRRNet (Yang et al., TGRS): low-rank background reconstruction and subtraction U-Net"))
def lrrnet(**cfg) -> LRRNet:
    """LRRNet as in the paper: channels [16, 32, 64, 128], 2 ResBlocks per encoder stage."""
    return LRRNet(**cfg)


@register_model(ModelCfg(
    stride=16, weights="lrrnet_small_sirst-v1.pt", loss="lrrnet",
    tiny_args={"channels": (8, 8, 16, 16)}, variant_of="lrrnet",
    description="LRRNet-small: LRRNet narrowed for 640x512 cameras at 10 FPS on two CPU cores "
                "(16/16/32/64 wide, 1 ResBlock per encoder stage; 3.3x fewer FLOPs)"))
def lrrnet_small(**cfg) -> LRRNet:
    """LRRNet with the paper's full-resolution width (16) but narrower, shallower deep stages: 16/16/32/64,
    one ResBlock per encoder stage (two per decoder stage). 21.9 GFLOPs at 640x512 against 72.5; the widths
    were chosen by ``bench/bench_lrrnet_widths.py``: 78.6 ms under OpenVINO bf16 at 640x512 on two EPYC cores
    (the paper's widths 204.6 ms); widths that are not multiples of 16 run at fewer GFLOP/s there (12/24/48/96 is
    slower than 16/32/32/64 with fewer FLOPs), and a 16-wide full-resolution level keeps what 1-3 px targets need."""
    return LRRNet(**{"channels": (16, 16, 32, 64), "depth": 1, **cfg})
