"""IRMamba: pixel-difference Mamba encoder + layer-restoration decoder.

Written from Zhang et al., "IRMamba: Pixel Difference Mamba with Layer Restoration
for Infrared Small Target Detection" (AAAI 2025), ``../shared/papers/irmamba.txt``.
There is no public code; what the paper leaves open was chosen here, as follows.

Layout (stride 16, 10.36 M parameters, Table 1 says 10.51 M):

* Full and half resolution are convolutional only (a stem and ResNet basic blocks, widths
  16 and 32): a four-route scan over 256x256 pixels (L = 65536) would cost more than the
  rest of the network together, and a VM-UNet-style 4x4 patch embedding throws away the
  1-3 px targets before anything sees them.
* H/4, H/8, H/16 (widths 64, 128, 336): two parallel branches (Fig. 1), ResNet basic
  blocks and VSS blocks with PDMamba (depths 1, 2, 2), exchanging features after each
  level through a gate: ``c' = c + σ(W_c[c, m]) ⊙ m``, ``m' = m + σ(W_m[c, m]) ⊙ c``. The
  decoder's skip is a 1x1 fusion of both. The VSS branch downsamples by patch merging,
  the conv branch by a stride-2 conv.
* VSS blocks: SS2D scans four routes (row-major, column-major, both reversed), state
  size 8, inner width 1x (VMamba v2's ratio; at 2x the VSS branches' training step took
  0.53 s instead of 0.38 s, ``bench/results/irmamba_levels.txt``), then an MLP of ratio 4
  (VMamba's). The paper gives none of these.
* Decoder: per level a patch expanding (1x1 to 4x width, pixel shuffle), a ResNet basic
  block (the high-level feature H), and an LRM against the skip (the low-level L). The
  paper uses "1, 2, 3, or 4 stages of LRM in the decoder" and argues that the later,
  finer levels need more refinement: 1, 2, 3, 4 stages from deep to shallow
  (``lrm_stages``). Reversed (4, 3, 2, 1, widths re-fitted) the training step took 27 %
  and inference 25 % less time here (``bench/profile_irmamba.py levels``, single timings,
  ``bench/results/irmamba_levels.txt``); within the speed bar either way, so we follow the paper.
* Head: 3x3 conv to one logit map, bias at the prior p = 0.01.

PDMamba (eqs. 5-10). At each scan position the state update gains
``f · Σ_{i=1..n} [W_x(i) Δ_x^(i) + W_y(i) Δ_y^(i)]`` with n = 2, computed on the 2-D
map before flattening and passed to the scan op's ``neighbor`` input:

* ``Δ^(o_i+) = Σ_{k<i} (x(t+k) - x(t+k+1)) / (2k+1)`` along a row (x) or column (y), and
  ``Δ^(o_i-) = Σ_{k<i} (x(t-k) - x(t-k-1)) / (2k+1)``: both centre-minus-neighbour. Eq. 7
  as printed starts at ``x(t+1) - x(t)``, which is minus eq. 6's first term, and then
  "all four differences exceed σ" could never hold; we read it as the mirror of eq. 6.
  ``Δ^(i) = Δ^(o_i+) + Δ^(o_i-)`` (a smoothed second difference: a local peak is positive).
* ``W_x(i)``, ``W_y(i)``: one weight per channel, window and scan route (the four routes
  learn their own), initialised at 0.05 so training starts near plain Mamba.
* ``f = γ + 1[all four Δ^(o_n±) > σ_n] · tanh(ΣΔ^(o_n±) / (4 σ_n) - 1)``, γ = 1, where
  σ_n is the standard deviation over the (2n+1)² window. The indicator has no gradient;
  it trains straight-through: the forward pass uses the hard test, the backward pass the
  gradient of ``Π_j sigmoid(β (Δ_j / σ_n - 1))`` with β = 10 (``PixelDifferenceTerm.sharpness``).
* The term is one value per channel, added to all N states of that channel.

LRM (eqs. 18-23), per stage k, with H the decoder feature and L the skip:
``v_h = x_h - ρ_h A^T(A x_h - α_h (L - H) - H)`` and ``v_l = x_l - ρ_l A^T(A x_l - α_l (H - L) - L)``
(eqs. 20-21 regrouped), A a learned 3x3 convolution shared by both paths of a stage and
A^T its exact adjoint (transposed convolution, same weights), scalar α and ρ per path (init 0.5); then IRCPM ``x_l = v_l · CA(SA(v_l) · v_h)``,
``x_h = v_h · SA(CA(v_h) · v_l)`` with CA/SA the CBAM channel/spatial attention maps in
(0, 1). ``x_h(0) = H``, ``x_l(0) = L``; the level's output is a 1x1 fusion of both.

Training loss (the paper gives none): SoftIoU + L1 + BCE, as LRRNet's, without reconstruction.
Training precision: bf16 where the CPU has it. The first 17 epochs of the shipped run were fp32,
because at initialisation the bf16 gradient's cosine to fp32 was low (0.53 on random frames, 0.76
on real ones); the likely reason, not verified: there the loss gradient is nearly uniform over the
background, BatchNorm's backward subtracts its mean, and the small remainder drowns in bf16
rounding. At the run's epoch-14 weights it is 0.9923 (``bench/profile_irmamba.py bf16-grad
--weights``), so the run continued in bf16.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers import (BasicResBlock, ChannelAttention, ConvBNAct, PatchExpand2d, PatchMerging2d, SpatialAttention,
                      VSSBlock)
from ..layers.mamba2d import N_ROUTES
from .registry import ModelCfg, register_model


def replicate_pad(x: torch.Tensor, n: int) -> torch.Tensor:
    """``F.pad(x, (n,) * 4, mode="replicate")`` by index selection: inductor mis-strides the
    backward of replication_pad2d on channels-last inputs (torch 2.13), index_select's is fine."""
    h, w = x.shape[-2:]
    rows = torch.arange(-n, h + n, device=x.device).clamp(0, h - 1)
    cols = torch.arange(-n, w + n, device=x.device).clamp(0, w - 1)
    return x.index_select(-2, rows).index_select(-1, cols)


def smoothed_differences(xp: torch.Tensor, n: int) -> dict:
    """Eqs. 6-7 from a map replicate-padded by n: ``{"x+", "x-", "y+", "y-"} -> [Δ^(o_i)]`` for i = 1..n."""
    h, w = xp.shape[-2] - 2 * n, xp.shape[-1] - 2 * n

    def at(dx: int, dy: int) -> torch.Tensor:   # x(row + dy, col + dx)
        return xp[..., n + dy: n + dy + h, n + dx: n + dx + w]

    out = {}
    for key, (sx, sy) in {"x+": (1, 0), "x-": (-1, 0), "y+": (0, 1), "y-": (0, -1)}.items():
        acc, out[key] = 0, []
        for k in range(n):
            acc = acc + (at(k * sx, k * sy) - at((k + 1) * sx, (k + 1) * sy)) / (2 * k + 1)
            out[key].append(acc)
    return out


def local_std(xp: torch.Tensor, n: int, eps: float = 1e-6) -> torch.Tensor:
    """σ_n of eq. 10: the standard deviation over the (2n+1)² window, from a map padded by n."""
    c, size = xp.shape[1], 2 * n + 1
    box = xp.new_full((2 * c, 1, size, size), 1.0 / size ** 2)   # a depthwise box filter: far faster than avg_pool2d
    moments = F.conv2d(torch.cat([xp, xp * xp], 1), box, groups=2 * c)
    mean, mean_sq = moments.chunk(2, dim=1)
    return torch.sqrt((mean_sq - mean * mean).clamp_min(0) + eps)


class PixelDifferenceTerm(nn.Module):
    """PDMamba's neighbour information, gated by the spatial distribution function (eqs. 5-10).

    Maps the pre-scan feature map (B, D, H, W) to the per-route state input (B, 4, D, H, W).
    """

    def __init__(self, channels: int, n: int = 2, gamma: float = 1.0, sharpness: float = 10.0,
                 weight_init: float = 0.05, routes: int = N_ROUTES):
        super().__init__()
        self.n, self.gamma, self.sharpness = n, gamma, sharpness
        self.w_x = nn.Parameter(torch.full((routes, channels, n), weight_init))
        self.w_y = nn.Parameter(torch.full((routes, channels, n), weight_init))

    def gate(self, diffs: dict, sigma: torch.Tensor) -> torch.Tensor:
        """f of eq. 9: γ + 1[all four Δ^(o_n±) > σ_n] · tanh(ΣΔ / (4σ_n) - 1), the indicator straight-through."""
        four = [diffs[key][-1] for key in ("x+", "x-", "y+", "y-")]
        case1 = ((four[0] > sigma) & (four[1] > sigma) & (four[2] > sigma) & (four[3] > sigma)).to(sigma.dtype)
        if torch.is_grad_enabled():
            soft = 1.0
            for d in four:
                soft = soft * torch.sigmoid(self.sharpness * (d / sigma - 1))
            case1 = case1 + (soft - soft.detach())
        return self.gamma + case1 * torch.tanh(sum(four) / (4 * sigma) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xp = replicate_pad(x if x.dtype == torch.float64 else x.float(), self.n)
        diffs = smoothed_differences(xp, self.n)
        term = 0
        for i in range(self.n):   # Σ_i W_x(i) Δx(i) + W_y(i) Δy(i), per route: (B, 4, D, H, W)
            dx = (diffs["x+"][i] + diffs["x-"][i]).unsqueeze(1)
            dy = (diffs["y+"][i] + diffs["y-"][i]).unsqueeze(1)
            term = term + self.w_x[None, :, :, i, None, None] * dx + self.w_y[None, :, :, i, None, None] * dy
        return self.gate(diffs, local_std(xp, self.n)).unsqueeze(1) * term


class BranchGate(nn.Module):
    """The encoder branches' exchange (Fig. 1): each adds the other, gated per pixel and channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.to_conv = nn.Conv2d(2 * channels, channels, 1)
        self.to_mamba = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, c: torch.Tensor, m: torch.Tensor):
        both = torch.cat([c, m], 1)
        return c + torch.sigmoid(self.to_conv(both)) * m, m + torch.sigmoid(self.to_mamba(both)) * c


class DualLevel(nn.Module):
    """One encoder level: a conv branch and a PDMamba branch side by side, then the gate."""

    def __init__(self, cin: int, cout: int, depth: int, d_state: int, ssm_ratio: float, mlp_ratio: float,
                 pixel_difference: bool):
        super().__init__()
        self.conv_down = ConvBNAct(cin, cout, stride=2)
        self.conv_blocks = nn.Sequential(*(BasicResBlock(cout) for _ in range(depth)))
        self.mamba_down = PatchMerging2d(cin, cout)
        inner = int(ssm_ratio * cout)
        self.mamba_blocks = nn.Sequential(*(
            VSSBlock(cout, d_state, ssm_ratio, mlp_ratio,
                     neighbor=PixelDifferenceTerm(inner) if pixel_difference else None)
            for _ in range(depth)))
        self.gate = BranchGate(cout)
        self.fuse = ConvBNAct(2 * cout, cout, 1)

    def forward(self, c: torch.Tensor, m: torch.Tensor):
        c = self.conv_blocks(self.conv_down(c))
        m = self.mamba_blocks(self.mamba_down(m))
        c, m = self.gate(c, m)
        return c, m, self.fuse(torch.cat([c, m], 1))


class LRMStage(nn.Module):
    """One BITGD step (eqs. 20-21) and one IRCPM (eqs. 22-23).

    ``A`` is a learned 3x3 convolution and ``A^T`` its exact adjoint (the transposed
    convolution with the same weights), as the paper defines it. That makes ``A^T A``
    symmetric positive semi-definite, so a step ``x - ρ A^T (A x - b)`` contracts for
    small ρ; with an independent second convolution for ``A^T`` the stages amplified
    rounding so much that bf16 gradients pointed elsewhere (cosine 0.58 to fp32's).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.A = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.rho = nn.Parameter(torch.tensor([0.5, 0.5]))     # step sizes (high, low)
        self.alpha = nn.Parameter(torch.tensor([0.5, 0.5]))   # layer weights (high, low)
        self.ca_l, self.sa_l = ChannelAttention(channels), SpatialAttention()
        self.ca_h, self.sa_h = ChannelAttention(channels), SpatialAttention()

    def adjoint(self, v: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(v, self.A.weight, padding=1)

    def descend(self, x, target, rho):
        return x - rho * self.adjoint(self.A(x) - target)

    def forward(self, x_h, x_l, high, low):
        v_h = self.descend(x_h, self.alpha[0] * (low - high) + high, self.rho[0])
        v_l = self.descend(x_l, self.alpha[1] * (high - low) + low, self.rho[1])
        new_l = v_l * self.ca_l(self.sa_l(v_l) * v_h)
        new_h = v_h * self.sa_h(self.ca_h(v_h) * v_l)
        return new_h, new_l


class LayerRestoration(nn.Module):
    """LRM: ``stages`` alternations of BITGD and IRCPM from (H, L), fused to one map."""

    def __init__(self, channels: int, stages: int):
        super().__init__()
        self.stages = nn.ModuleList(LRMStage(channels) for _ in range(stages))
        self.fuse = ConvBNAct(2 * channels, channels, 1)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        x_h, x_l = high, low
        for stage in self.stages:
            x_h, x_l = stage(x_h, x_l, high, low)
        return self.fuse(torch.cat([x_h, x_l], 1))


class DecoderLevel(nn.Module):
    """Patch expanding, a ResNet block (the high-level layer H), then the LRM against the skip (L)."""

    def __init__(self, cin: int, cout: int, lrm_stages: int):
        super().__init__()
        self.expand = PatchExpand2d(cin, cout)
        self.block = BasicResBlock(cout)
        self.lrm = LayerRestoration(cout, lrm_stages)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.lrm(self.block(self.expand(x)), skip)


class IRMamba(nn.Module):
    """IRMamba. ``forward`` returns mask logits (B, 1, H, W); H and W multiples of :attr:`stride`."""

    def __init__(self, in_chans: int = 1, widths: Sequence[int] = (16, 32, 64, 128, 336),
                 depths: Sequence[int] = (1, 2, 2), lrm_stages: Sequence[int] = (1, 2, 3, 4), d_state: int = 8,
                 ssm_ratio: float = 1.0, mlp_ratio: float = 4.0, pixel_difference: bool = True):
        super().__init__()
        widths, depths, lrm_stages = list(widths), list(depths), list(lrm_stages)
        if len(widths) != 2 + len(depths) or len(lrm_stages) != len(widths) - 1:
            raise ValueError("IRMamba needs len(widths) == 2 + len(depths) == 1 + len(lrm_stages)")
        self.stride = 2 ** (len(widths) - 1)
        self.stem = nn.Sequential(ConvBNAct(in_chans, widths[0]), BasicResBlock(widths[0]))
        self.down = nn.Sequential(ConvBNAct(widths[0], widths[1], stride=2), BasicResBlock(widths[1]))
        self.levels = nn.ModuleList(
            DualLevel(widths[i + 1], widths[i + 2], depths[i], d_state, ssm_ratio, mlp_ratio, pixel_difference)
            for i in range(len(depths)))
        self.decoder = nn.ModuleList(
            DecoderLevel(widths[i + 1], widths[i], lrm_stages[len(widths) - 2 - i])
            for i in reversed(range(len(widths) - 1)))
        self.head = nn.Conv2d(widths[0], 1, 3, padding=1)
        nn.init.constant_(self.head.bias, -4.6)  # prior p = 0.01: targets are rare pixels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        skips.append(self.down(skips[-1]))
        c = m = skips[-1]
        for level in self.levels:
            c, m, fused = level(c, m)
            skips.append(fused)
        y = skips.pop()
        for level in self.decoder:
            y = level(y, skips.pop())
        return self.head(y)


@register_model(ModelCfg(
    stride=16, weights="irmamba_sirst-v1.pt", loss="seg", paper_params=(10.51e6, 0.05),
    tiny_args={"widths": (8, 8, 8, 16, 16), "depths": (1, 1, 1), "lrm_stages": (1, 1, 1, 1), "d_state": 2},
    description="IRMamba (Zhang et al., AAAI 2025): pixel-difference Mamba encoder, layer-restoration decoder"))
def irmamba(**cfg) -> IRMamba:
    """IRMamba at the configuration chosen here (10.36 M parameters; the paper's is 10.51 M)."""
    return IRMamba(**cfg)
