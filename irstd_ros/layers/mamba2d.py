"""2-D selective-scan blocks (the VMamba family) on ``torch.ops.irstd.selective_scan``.

:class:`SS2D` scans a feature map along four routes and sums them back (VMamba's
cross-scan): row-major, column-major, and both reversed, so every position sees
context from all four sides. The four routes run as one op call, stacked on the
channel axis, with per-route projections (B and C come as 4 groups).

An optional ``neighbor`` module adds a per-step term to the state update (the
op's ``neighbor`` input): given the pre-scan map ``(B, D, H, W)`` it returns a
``(B, 4, D, H, W)`` term, one per route, which SS2D flattens in each route's
order. IRMamba's pixel-difference term is one such module; without it this is
plain SS2D.

Feature maps stay channels-first (B, C, H, W) throughout, so the blocks mix with
convolutions without permutes; 1x1 convolutions play the role of linear layers.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import ops  # noqa: F401  (registers torch.ops.irstd.*)

N_ROUTES = 4
selective_scan_fn = torch.ops.irstd.selective_scan  # swappable for benchmarks (bench/bench_models.py)


def route_order(x: torch.Tensor, route: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H*W) in one route's order: 0 row-major, 1 column-major, 2 and 3 reversed."""
    seq = x.flatten(2) if route % 2 == 0 else x.transpose(2, 3).flatten(2)
    return seq.flip(-1) if route >= 2 else seq


def scan_orders(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4, C, H*W), the four routes of :func:`route_order` stacked."""
    return torch.stack([route_order(x, r) for r in range(N_ROUTES)], dim=1)


def merge_orders(y: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`scan_orders`, summing the four routes: (B, 4, C, H*W) -> (B, C, H, W)."""
    b, _, c, _ = y.shape
    rows = y[:, 0] + y[:, 2].flip(-1)
    cols = y[:, 1] + y[:, 3].flip(-1)
    return rows.view(b, c, h, w) + cols.view(b, c, w, h).transpose(2, 3)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of each pixel of a (B, C, H, W) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SS2D(nn.Module):
    """Four-route 2-D selective scan: in-proj, depthwise conv, scan, norm, SiLU gate, out-proj."""

    def __init__(self, dim: int, d_state: int = 8, ssm_ratio: float = 2.0, dt_rank: Optional[int] = None,
                 neighbor: Optional[nn.Module] = None):
        super().__init__()
        inner = int(ssm_ratio * dim)
        self.inner, self.d_state = inner, d_state
        self.dt_rank = dt_rank or math.ceil(dim / 16)
        k = N_ROUTES
        self.in_proj = nn.Conv2d(dim, 2 * inner, 1, bias=False)
        self.dwconv = nn.Conv2d(inner, inner, 3, padding=1, groups=inner)
        self.x_proj = nn.Parameter(torch.randn(k, self.dt_rank + 2 * d_state, inner) * inner ** -0.5)
        self.dt_proj = nn.Parameter(torch.empty(k, inner, self.dt_rank).uniform_(-1, 1) * self.dt_rank ** -0.5)
        # Mamba's initialisation: step sizes log-uniform in [1e-3, 1e-1] through the softplus bias,
        # A = -(1..N) per channel (S4D-real), D = 1
        dt = torch.exp(torch.rand(k * inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(k * inner, 1))
        self.D = nn.Parameter(torch.ones(k * inner))
        self.neighbor = neighbor
        self.out_norm = LayerNorm2d(inner)
        self.out_proj = nn.Conv2d(inner, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        length, k, d, n = h * w, N_ROUTES, self.inner, self.d_state
        u, z = self.in_proj(x).chunk(2, dim=1)
        ct = torch.float64 if x.dtype == torch.float64 else torch.float32  # the scan computes in fp32 (or fp64)
        u = F.silu(self.dwconv(u)).to(ct)
        us = scan_orders(u)                                                  # (b, k, d, L)
        proj = torch.einsum("bkdl,kcd->bkcl", us, self.x_proj.to(ct))
        dts, bs, cs = proj.split([self.dt_rank, n, n], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_proj.to(ct))
        nb = None
        if self.neighbor is not None:
            nb = self.neighbor(u)                                            # (b, k, d, h, w)
            nb = torch.stack([route_order(nb[:, r], r) for r in range(k)], 1).reshape(b, k * d, length)
        # the softplus runs here, vectorised, rather than per step inside the scan (measured 2-3x faster)
        dts = F.softplus(dts.reshape(b, k * d, length) + self.dt_bias.to(ct)[:, None])
        y = selective_scan_fn(us.reshape(b, k * d, length), dts, -torch.exp(self.A_log.to(ct)),
                              bs.contiguous(), cs.contiguous(), self.D.to(ct), None, None, False, nb)
        y = merge_orders(y.view(b, k, d, length), h, w)
        return self.out_proj(self.out_norm(y) * F.silu(z))


class VSSBlock(nn.Module):
    """VMamba's block: ``x + SS2D(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, dim: int, d_state: int = 8, ssm_ratio: float = 2.0, mlp_ratio: float = 2.0,
                 neighbor: Optional[nn.Module] = None):
        super().__init__()
        self.norm1 = LayerNorm2d(dim)
        self.ssm = SS2D(dim, d_state, ssm_ratio, neighbor=neighbor)
        hidden = int(mlp_ratio * dim)
        self.norm2 = LayerNorm2d(dim) if hidden else None
        self.mlp = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.GELU(), nn.Conv2d(hidden, dim, 1)) if hidden else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ssm(self.norm1(x))
        if self.mlp is not None:
            x = x + self.mlp(self.norm2(x))
        return x


class PatchMerging2d(nn.Module):
    """Halve H and W: the 2x2 neighbourhood stacked on channels, LayerNorm, linear (Swin/VMamba)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm = LayerNorm2d(4 * cin)
        self.reduce = nn.Conv2d(4 * cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduce(self.norm(F.pixel_unshuffle(x, 2)))


class PatchExpand2d(nn.Module):
    """Double H and W: a linear layer to 4x the output width, rearranged to 2x2 pixels, LayerNorm (VM-UNet)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.expand = nn.Conv2d(cin, 4 * cout, 1, bias=False)
        self.norm = LayerNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.pixel_shuffle(self.expand(x), 2))
