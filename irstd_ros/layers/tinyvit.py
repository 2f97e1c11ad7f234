"""TinyViT (Wu et al., ECCV 2022) as MobileSAM's image encoder uses it, on (B, C, H, W) maps.

Written here from the TinyViT paper's description and MobileSAM's checkpoint layout: the
module and parameter names are MobileSAM's ``image_encoder.*`` names, so its weights map
one to one (``irstd_ros.models.irsam.load_mobilesam``). Differences from that code:

* Every stage works on (B, C, H, W) maps and any H, W: the window attention pads each
  map to whole windows (zeros, as TinyViT does) and crops back, so cost follows the
  frame's pixels. MobileSAM runs at a fixed 1024x1024.
* :meth:`TinyViT.forward_stages` also returns what the stages saw and made, so a
  network can tap them (IRSAM's WPMD and its decoder's shallow/deep features).
* No drop-path and no classification head (MobileSAM's ``head``/``norm_head`` are unused).

Stages (MobileSAM's TinyViT-5M): a stride-4 conv stem; stage 0 MBConv blocks; stages 1-3
window-attention blocks; patch merging between stages, stride 2 after stages 0 and 1 and
stride 1 after stage 2 (so the encoder's stride is 16); a neck to 256 channels.
"""
from __future__ import annotations

from typing import List, Mapping, Sequence, Tuple

import torch
import torch.nn as nn

from .mamba2d import LayerNorm2d
from .windows import from_windows, pad_to_windows, to_windows


class ConvBN(nn.Sequential):
    """Bias-free conv + BatchNorm (``c``, ``bn``: TinyViT's Conv2d_BN names)."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
                 bn_weight_init: float = 1.0):
        super().__init__()
        self.add_module("c", nn.Conv2d(cin, cout, kernel_size, stride, kernel_size // 2, groups=groups, bias=False))
        bn = nn.BatchNorm2d(cout)
        nn.init.constant_(bn.weight, bn_weight_init)
        nn.init.zeros_(bn.bias)
        self.add_module("bn", bn)


class PatchEmbed(nn.Module):
    """Two stride-2 3x3 convs: the stride-4 stem."""

    def __init__(self, in_chans: int, dim: int):
        super().__init__()
        self.seq = nn.Sequential(ConvBN(in_chans, dim // 2, 3, 2), nn.GELU(), ConvBN(dim // 2, dim, 3, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project (BN zero-initialised), GELU after the sum."""

    def __init__(self, dim: int, expand_ratio: float = 4.0):
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1, self.act1 = ConvBN(dim, hidden), nn.GELU()
        self.conv2, self.act2 = ConvBN(hidden, hidden, 3, groups=hidden), nn.GELU()
        self.conv3, self.act3 = ConvBN(hidden, dim, bn_weight_init=0.0), nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act3(x + self.conv3(self.act2(self.conv2(self.act1(self.conv1(x))))))


class PatchMerging(nn.Module):
    """1x1 to the next width, 3x3 depthwise at ``stride``, 1x1."""

    def __init__(self, dim: int, out_dim: int, stride: int):
        super().__init__()
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))


class WindowAttention(nn.Module):
    """Multi-head attention inside a ``window x window`` window, pre-norm, with a learned bias per head
    and per (|dy|, |dx|) offset, as TinyViT/LeViT."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads, self.key_dim = heads, dim // heads
        self.scale = self.key_dim ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * heads * self.key_dim)
        self.proj = nn.Linear(heads * self.key_dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(heads, window * window))
        rows = torch.arange(window).repeat_interleave(window)
        cols = torch.arange(window).repeat(window)
        # offset (|dy|, |dx|) -> dy * window + dx: TinyViT's first-seen enumeration of the offsets gives the same index
        idx = (rows[:, None] - rows[None]).abs() * window + (cols[:, None] - cols[None]).abs()
        self.register_buffer("attention_bias_idxs", idx, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B', N, C) tokens of one window each
        b, n, _ = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, n, self.heads, 3, self.key_dim).permute(3, 0, 2, 1, 4)
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.attention_biases[:, self.attention_bias_idxs]
        out = attn.softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm, self.fc1, self.act, self.fc2 = nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Window attention (residual), a 3x3 depthwise conv (no residual, as TinyViT), an MLP (residual)."""

    def __init__(self, dim: int, heads: int, window: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.window = window
        self.attn = WindowAttention(dim, heads, window)
        self.local_conv = ConvBN(dim, dim, 3, groups=dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        t = x.permute(0, 2, 3, 1)
        padded = pad_to_windows(t, self.window)
        y = from_windows(self.attn(to_windows(padded, self.window)), b, padded.shape[1], padded.shape[2], self.window)
        t = t + y[:, :h, :w]
        t = self.local_conv(t.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return (t + self.mlp(t)).permute(0, 3, 1, 2)


class TinyViTStage(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, window: int, out_dim: int | None, merge_stride: int,
                 conv: bool, mlp_ratio: float = 4.0):
        super().__init__()
        if conv:
            self.blocks = nn.ModuleList(MBConv(dim) for _ in range(depth))
        else:
            self.blocks = nn.ModuleList(TinyViTBlock(dim, heads, window, mlp_ratio) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim, merge_stride) if out_dim else None

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(the blocks' output at this stage's resolution, the merged output for the next stage)."""
        for blk in self.blocks:
            x = blk(x)
        return x, (self.downsample(x) if self.downsample is not None else x)


class TinyViT(nn.Module):
    """TinyViT encoder with a SAM neck; defaults are MobileSAM's TinyViT-5M (5.7 M parameters with the neck)."""

    def __init__(self, in_chans: int = 1, embed_dims: Sequence[int] = (64, 128, 160, 320),
                 depths: Sequence[int] = (2, 2, 6, 2), heads: Sequence[int] = (2, 4, 5, 10),
                 windows: Sequence[int] = (7, 7, 14, 7), merge_strides: Sequence[int] = (2, 2, 1),
                 neck_dim: int = 256, mlp_ratio: float = 4.0):
        super().__init__()
        self.embed_dims = list(embed_dims)
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        n = len(embed_dims)
        self.layers = nn.ModuleList(
            TinyViTStage(embed_dims[i], depths[i], heads[i], windows[i], embed_dims[i + 1] if i + 1 < n else None,
                         merge_strides[i] if i + 1 < n else 1, conv=(i == 0), mlp_ratio=mlp_ratio)
            for i in range(n))
        self.neck = nn.Sequential(nn.Conv2d(embed_dims[-1], neck_dim, 1, bias=False), LayerNorm2d(neck_dim),
                                  nn.Conv2d(neck_dim, neck_dim, 3, padding=1, bias=False), LayerNorm2d(neck_dim))
        self.stride = 4 * int(torch.tensor(list(merge_strides)).prod())

    def forward_stages(self, x: torch.Tensor, taps: Mapping[str, nn.Module] | None = None
                       ) -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
        """Run the encoder. ``taps[str(i)]`` (an ``nn.ModuleDict``'s keys), where present, maps stage i's input to
        a term added to its merged output (IRSAM's WPMD). Returns (neck embedding, each stage's pre-merge
        output, each stage's merged output)."""
        x = self.patch_embed(x)
        inner, outer = [], []
        for i, stage in enumerate(self.layers):
            pre, merged = stage(x)
            if taps is not None and str(i) in taps:
                merged = merged + taps[str(i)](x)
            inner.append(pre)
            outer.append(merged)
            x = merged
        return self.neck(x), inner, outer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x)[0]
