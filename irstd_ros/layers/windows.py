"""Non-overlapping window partition of (B, H, W, C) maps, for window attention (TinyViT, Swin)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_to_windows(t: torch.Tensor, window: int) -> torch.Tensor:
    """Zero-pad the bottom and right of a (B, H, W, C) map to whole windows."""
    ph, pw = (-t.shape[1]) % window, (-t.shape[2]) % window
    return F.pad(t, (0, 0, 0, pw, 0, ph)) if ph or pw else t


def to_windows(t: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C), H and W multiples of ``window`` -> (B * windows, window², C), windows in raster order."""
    b, h, w, c = t.shape
    t = t.reshape(b, h // window, window, w // window, window, c).transpose(2, 3)
    return t.reshape(-1, window * window, c)


def from_windows(windows: torch.Tensor, batch: int, height: int, width: int, window: int) -> torch.Tensor:
    """The inverse of :func:`to_windows`: back to (B, H, W, C)."""
    c = windows.shape[-1]
    t = windows.reshape(batch, height // window, width // window, window, window, c).transpose(2, 3)
    return t.reshape(batch, height, width, c)
