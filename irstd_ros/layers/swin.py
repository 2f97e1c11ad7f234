"""A Swin Transformer block (Liu et al., ICCV 2021) on (B, C, H, W) maps of any size.

Pre-norm window attention with a learned bias per head and signed (dy, dx) offset, optionally on windows
shifted by half a window (cyclic roll, with the wrapped-around regions masked from each other), then a
pre-norm MLP; both residual. Maps are zero-padded to whole windows and cropped back.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .windows import from_windows, pad_to_windows, to_windows


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int = 8, shift: bool = False, mlp_ratio: float = 4.0):
        super().__init__()
        self.dim, self.heads, self.window = dim, heads, window
        self.shift = window // 2 if shift else 0
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        idx = (ys[:, None] - ys[None] + window - 1) * (2 * window - 1) + (xs[:, None] - xs[None] + window - 1)
        self.register_buffer("bias_index", idx, persistent=False)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def _shift_mask(self, hp: int, wp: int, device) -> torch.Tensor:
        """(windows, N, N) additive mask: tokens that came from different regions of the rolled map do not mix."""
        ws, s = self.window, self.shift

        def band(n: int) -> torch.Tensor:  # 0 before the last window, 1 in its first part, 2 in the wrapped part
            i = torch.arange(n, device=device)
            return (i >= n - ws).long() + (i >= n - s).long()
        region = band(hp)[:, None] * 3 + band(wp)[None, :]   # arithmetic, not slice assignment: exports cleanly
        region = to_windows(region[None, :, :, None], ws)[..., 0]
        diff = region[:, :, None] != region[:, None, :]
        return diff.float() * -100.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        ws = self.window
        t = x.permute(0, 2, 3, 1)
        y = pad_to_windows(self.norm1(t), ws)
        hp, wp = y.shape[1], y.shape[2]
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
        nh, nw = hp // ws, wp // ws
        y = to_windows(y, ws)
        q, k, v = self.qkv(y).view(y.shape[0], ws * ws, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5
        attn = attn + self.bias_table[self.bias_index].permute(2, 0, 1)
        if self.shift:
            mask = self._shift_mask(hp, wp, x.device).to(attn.dtype)               # (nh*nw, N, N)
            attn = attn.view(b, nh * nw, self.heads, ws * ws, ws * ws) + mask[None, :, None]
            attn = attn.view(-1, self.heads, ws * ws, ws * ws)
        y = (attn.softmax(-1) @ v).transpose(1, 2).reshape(-1, ws * ws, c)
        y = from_windows(self.proj(y), b, hp, wp, ws)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), (1, 2))
        t = t + y[:, :h, :w]
        t = t + self.mlp(self.norm2(t))
        return t.permute(0, 3, 1, 2)
