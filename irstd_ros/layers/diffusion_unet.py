"""The noise-estimation U-Net of DDPM/ADM (Ho et al. 2020; Dhariwal & Nichol 2021), split so that a
condition can be added to its encoder features, and its schedules and samplers (DDPM ancestral, DDIM).

Written from the two papers' descriptions: sinusoidal time embedding through an MLP, residual blocks
with GroupNorm and the embedding as a per-channel scale and shift (ADM's "adaptive group norm"),
self-attention at chosen downsampling factors, stride-2 conv down, nearest + conv up, zero-initialised
output convolutions. Any H, W that are multiples of 2^(levels - 1).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .norm import GroupNorm


def group_norm(ch: int) -> GroupNorm:
    """GroupNorm with 32 groups where the width allows (narrow test/CPU variants use fewer)."""
    return GroupNorm(math.gcd(32, ch), ch)


def zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) integer or float steps -> (B, dim) sin/cos features at geometric frequencies."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], -1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int):
        super().__init__()
        self.in_layers = nn.Sequential(group_norm(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * cout))
        self.out_norm = group_norm(cout)
        self.out_layers = nn.Sequential(nn.SiLU(), zero(nn.Conv2d(cout, cout, 3, padding=1)))
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        scale, shift = self.emb_layers(emb)[..., None, None].chunk(2, 1)
        h = self.out_layers(self.out_norm(h) * (1 + scale) + shift)
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over all pixels, pre-norm, residual, zero-initialised output."""

    def __init__(self, ch: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = group_norm(ch)
        self.qkv = nn.Conv1d(ch, 3 * ch, 1)
        self.proj = zero(nn.Conv1d(ch, ch, 1))

    def forward(self, x: torch.Tensor, emb: Optional[torch.Tensor] = None) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x).flatten(2)).view(b, self.heads, 3, c // self.heads, h * w).unbind(2)
        attn = (q.transpose(-2, -1) @ k) / math.sqrt(c // self.heads)          # (b, heads, hw, hw)
        out = (v @ attn.softmax(-1).transpose(-2, -1)).reshape(b, c, h * w)
        return x + self.proj(out).view(b, c, h, w)


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.op = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x, emb=None):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x, emb=None):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class InputConv(nn.Conv2d):
    """The U-Net's first conv, taking (and ignoring) the time embedding like every other block."""

    def forward(self, x, emb=None):
        return super().forward(x)


class Step(nn.ModuleList):
    """A sequence of blocks that take (x, emb)."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb)
        return x


class NoiseUNet(nn.Module):
    """ADM's U-Net for ε-prediction. :meth:`encode` returns the encoder's features (the skips, last one the
    deepest) so that a condition can be added to them (IRSTD-Diff's eq. 15); :meth:`decode` finishes."""

    def __init__(self, in_ch: int = 1, out_ch: int = 1, channels: int = 64, mult: Sequence[int] = (1, 1, 2, 2, 4, 4),
                 num_res_blocks: int = 2, attention_ds: Sequence[int] = (16,), heads: int = 4):
        super().__init__()
        self.channels = channels
        emb_dim = 4 * channels
        self.time_embed = nn.Sequential(nn.Linear(channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.input_blocks = nn.ModuleList([Step([InputConv(in_ch, channels, 3, padding=1)])])
        skip_ch, ch, ds = [channels], channels, 1
        for level, m in enumerate(mult):
            for _ in range(num_res_blocks):
                blocks = [ResBlock(ch, m * channels, emb_dim)]
                ch = m * channels
                if ds in attention_ds:
                    blocks.append(SelfAttention(ch, heads))
                self.input_blocks.append(Step(blocks))
                skip_ch.append(ch)
            if level < len(mult) - 1:
                self.input_blocks.append(Step([Downsample(ch)]))
                skip_ch.append(ch)
                ds *= 2
        self.middle = Step([ResBlock(ch, ch, emb_dim), SelfAttention(ch, heads), ResBlock(ch, ch, emb_dim)])
        self.output_blocks = nn.ModuleList()
        for level, m in reversed(list(enumerate(mult))):
            for i in range(num_res_blocks + 1):
                blocks = [ResBlock(ch + skip_ch.pop(), m * channels, emb_dim)]
                ch = m * channels
                if ds in attention_ds:
                    blocks.append(SelfAttention(ch, heads))
                if level and i == num_res_blocks:
                    blocks.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(Step(blocks))
        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), zero(nn.Conv2d(ch, out_ch, 3, padding=1)))
        self.stride = 2 ** (len(mult) - 1)

    def embed(self, t: torch.Tensor) -> torch.Tensor:
        """The step's features in the weights' dtype (a float64 copy of the network, as gradient checks use, too)."""
        return self.time_embed(timestep_embedding(t, self.channels).to(self.time_embed[0].weight.dtype))

    def encode(self, x: torch.Tensor, emb: torch.Tensor, first_condition: Optional[torch.Tensor] = None
               ) -> List[torch.Tensor]:
        """Encoder features; ``first_condition`` is added to the first one (the input conv's output) before the
        rest of the encoder sees it."""
        feats = []
        h = x
        for i, block in enumerate(self.input_blocks):
            h = block(h, emb)
            if i == 0 and first_condition is not None:
                h = h + first_condition
            feats.append(h)
        return feats

    def decode(self, feats: List[torch.Tensor], emb: torch.Tensor) -> torch.Tensor:
        feats = list(feats)
        h = self.middle(feats[-1], emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, feats.pop()], 1), emb)
        return self.out(h)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.embed(t)
        return self.decode(self.encode(x, emb), emb)


# ---- schedules and samplers ------------------------------------------------------------------------------------------
class GaussianDiffusion:
    """DDPM's forward process and two reverse samplers over a linear β schedule of T steps.

    The schedule is ADM's "linear", rescaled to T so that its ends match DDPM's 1e-4..0.02 at T = 1000
    (β capped at 0.999: below T = 50 the rescaled end passes 1, which is why the paper finds T < 20 unusable).
    Masks live in [-1, 1] (x0 = 2·mask - 1).
    """

    def __init__(self, steps: int = 100):
        self.T = steps
        scale = 1000.0 / steps
        betas = torch.linspace(scale * 1e-4, scale * 0.02, steps, dtype=torch.float64).clamp(max=0.999)
        self.betas = betas
        self.alphas_bar = torch.cumprod(1 - betas, 0)

    def _at(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values.to(like.device)[t].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Eq. 4: x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) ε."""
        ab = self._at(self.alphas_bar, t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        ab = self._at(self.alphas_bar, t, x_t)
        return ((x_t - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1, 1)

    def ddpm_step(self, x_t: torch.Tensor, t: int, eps: torch.Tensor, noise: Optional[torch.Tensor]) -> torch.Tensor:
        """One ancestral step (eqs. 13-14): mean from the clipped x0 prediction (DDPM's eq. 7 posterior, the same
        mean as eq. 13 before clipping), variance β_t; no noise at t = 0."""
        tt = torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device)
        x0 = self.predict_x0(x_t, tt, eps)
        b = float(self.betas[t])
        ab = float(self.alphas_bar[t])
        ab_prev = float(self.alphas_bar[t - 1]) if t > 0 else 1.0
        mean = (math.sqrt(ab_prev) * b / (1 - ab)) * x0 + (math.sqrt(1 - b) * (1 - ab_prev) / (1 - ab)) * x_t
        if t == 0 or noise is None:
            return mean
        return mean + math.sqrt(b) * noise

    def ddim_step(self, x_t: torch.Tensor, t: int, t_prev: int, eps: torch.Tensor) -> torch.Tensor:
        """One deterministic DDIM step (η = 0) from t to t_prev (-1: to x0)."""
        tt = torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device)
        x0 = self.predict_x0(x_t, tt, eps)
        if t_prev < 0:
            return x0
        ab = float(self.alphas_bar[t])
        ab_prev = float(self.alphas_bar[t_prev])
        eps = (x_t - math.sqrt(ab) * x0) / math.sqrt(1 - ab)          # ε consistent with the clipped x0
        return math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * eps

    def ddim_timesteps(self, n: int) -> List[int]:
        """n steps evenly over [T - 1, 0], starting at T - 1."""
        n = max(1, min(int(n), self.T))
        return sorted({int(round(v)) for v in torch.linspace(self.T - 1, 0, n).tolist()}, reverse=True)
