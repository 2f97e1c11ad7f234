"""IRSTD-Diff: conditional diffusion over target masks, a nested-U conditional encoder (CE) and
low-frequency isolation in the wavelet domain (LIW).

Written from Li et al., "Mitigate Target-Level Insensitivity of Infrared Small Target Detection via
Posterior Distribution Modeling" (IEEE TGRS), ``../shared/papers/irstd-diff.txt``. The authors' code
(built on MedSegDiff) departs from the paper; we follow the paper, and build the sampler for serving.

* ε-network (Table I): ADM's U-Net (``irstd_ros.layers.diffusion_unet``), 64 channels, multipliers
  1, 1, 2, 2, 4, 4, 2 res-blocks a level, attention at 1/16 with 4 heads, ε-prediction, T = 100.
  Its input is the noisy mask alone (Table I's 3 input channels are the authors' RGB image stacked
  in, MedSegDiff-style; here the image enters only through the CE, as eq. 15 writes).
* Eq. 15, ``ε = U_de(U_en(x_t, t) + f(I), t)``: f(I) is the CE's latent I' after LIW, a full-resolution
  feature ("the appropriate low-level latent space"), projected by a 1x1 conv to the U-Net's width and
  added to the encoder's first feature map, so every later encoder level and every skip carries the
  condition. (The authors' code adds the CE feature once, detached, in a decoder block, and with one
  res-block per level never.)
* CE (Table II): U²-Net's residual U-blocks, six encoders (RSU-7, 6, 5, 4, 4F, 4F; max-pool between
  them) and five decoders, widths as Table II with one input channel; its own mask P is a 3x3 conv on
  the last decoder's 64 channels (BCE-trained, eq. 16) and I' is that decoder's feature.
* LIW (eqs. 17-20), k = 2: ``L1, H1 = DWT(I')``, ``f1 = S1(L1)``, ``L2, H2 = DWT(f1)``, ``L̃2 = S2(L2)``,
  ``L̃1 = Conv(IDWT(L̃2, H2))``, ``R = RO(L̃1)`` with RO = Conv(IDWT(·, H1)) (back to full resolution with
  the original high bands, which eq. 19 stops short of), and ``f(I) = I' + R``. S_k is a Swin block
  (window 8; the second one shifted), DWT/IDWT are ``torch.ops.irstd.haar_dwt2d``/``haar_idwt2d``.
* Serving: the CE and LIW run once per frame (:meth:`IRSTDDiff.condition`), reused at every step.
  ``mode``: ``ce`` (P alone, no diffusion), ``diffusion`` (the sample alone), ``fused`` (the authors'
  released blend: ``(P + s)/2`` where the binarised P and sample agree, ``P + s/4`` where they do not;
  the paper never mentions it, it is here to be measured). ``sampler``: ``ddim`` with
  ``sampling_steps`` steps (η = 0) or ``ddpm`` over all T. Seeded: the starting noise (and DDPM's) come
  from a generator seeded with ``seed``, so a frame and a seed give one mask.
* Output: the sample x0 ∈ [-1, 1] is read as a probability p = (x0 + 1)/2; ``forward`` returns
  logit(p) (clamped at p ∈ [1e-4, 1 - 1e-4]) so the pipeline's sigmoid gives p back.

Loss (eq. 16): ``||ε - ε_θ||² + λ·BCE(P, mask)``, λ = 10 (``training.losses.DiffusionLoss``).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers.diffusion_unet import GaussianDiffusion, NoiseUNet
from ..layers.rsu import RSU, up_to
from ..layers.swin import SwinBlock
from ..ops.haar import haar_dwt2d, haar_idwt2d
from .registry import Knob, ModelCfg, register_model

MODES = ("ce", "diffusion", "fused")
SAMPLERS = ("ddim", "ddpm")

# Table II: (levels, in, mid, out, dilated) for encoders 1-6 and decoders 5-1
CE_ENCODERS = ((7, 3, 16, 64, False), (6, 64, 16, 64, False), (5, 64, 32, 128, False), (4, 128, 32, 256, False),
               (4, 256, 32, 256, True), (4, 256, 64, 256, True))
CE_DECODERS = ((4, 512, 64, 256, True), (4, 512, 32, 128, False), (5, 256, 32, 64, False), (6, 128, 16, 64, False),
               (7, 128, 16, 64, False))


def scaled(table, width: float, in_chans: int):
    """Table II at ``width`` times its channels (1.0: the paper), with ``in_chans`` image channels."""
    out = []
    for i, (lv, cin, mid, cout, dil) in enumerate(table):
        out.append((lv, in_chans if (table is CE_ENCODERS and i == 0) else max(1, round(cin * width)),
                    max(1, round(mid * width)), max(1, round(cout * width)), dil))
    return tuple(out)


class ConditionalEncoder(nn.Module):
    """The CE: a nested-U network giving its own mask logits P and the latent I' (its last decoder's feature)."""

    def __init__(self, in_chans: int = 1, width: float = 1.0):
        super().__init__()
        enc, dec = scaled(CE_ENCODERS, width, in_chans), scaled(CE_DECODERS, width, in_chans)
        self.encoders = nn.ModuleList(RSU(lv, cin, mid, cout, dil) for lv, cin, mid, cout, dil in enc)
        self.decoders = nn.ModuleList(RSU(lv, cin, mid, cout, dil) for lv, cin, mid, cout, dil in dec)
        self.latent_dim = dec[-1][3]
        self.side = nn.Conv2d(self.latent_dim, 1, 3, padding=1)

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        skips, h = [], image
        for i, block in enumerate(self.encoders):
            if i:
                h = F.max_pool2d(h, 2, 2, ceil_mode=True)
            h = block(h)
            skips.append(h)
        h = skips.pop()
        for block in self.decoders:
            skip = skips.pop()
            h = block(torch.cat([up_to(h, skip), skip], 1))
        return self.side(h), h


class LowFrequencyIsolation(nn.Module):
    """LIW (eqs. 17-20): Swin blocks on the Haar low band at each of ``levels`` levels, back up through the
    inverse transform with the original high bands and a conv per level, added as a residual."""

    def __init__(self, dim: int, levels: int = 2, heads: int = 4, window: int = 8):
        super().__init__()
        self.levels = levels
        self.swin = nn.ModuleList(SwinBlock(dim, heads, window, shift=bool(k % 2)) for k in range(levels))
        self.convs = nn.ModuleList(nn.Conv2d(dim, dim, 3, padding=1) for _ in range(levels))  # convs[0] is RO

    def residual(self, f: torch.Tensor) -> torch.Tensor:
        c = f.shape[1]
        highs, sizes, h = [], [], f
        for k in range(self.levels):                                    # eqs. 17, 18
            sizes.append(h.shape[-2:])
            bands = haar_dwt2d(h)
            highs.append(bands[:, c:])
            h = self.swin[k](bands[:, :c])
        for k in reversed(range(self.levels)):                          # eq. 19 (k >= 1), eq. 20 (k = 0: RO)
            h = self.convs[k](haar_idwt2d(torch.cat([h, highs[k]], 1), sizes[k]))
        return h

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f + self.residual(f)


class IRSTDDiff(nn.Module):
    """IRSTD-Diff. ``forward(image)`` returns mask logits (B, 1, H, W) in the current :attr:`mode`."""

    def __init__(self, in_chans: int = 1, channels: int = 64, mult: Sequence[int] = (1, 1, 2, 2, 4, 4),
                 num_res_blocks: int = 2, attention_ds: Sequence[int] = (16,), heads: int = 4, ce_width: float = 1.0,
                 liw_levels: int = 2, liw_heads: int = 4, liw_window: int = 8, diffusion_steps: int = 100,
                 mode: str = "diffusion", sampler: str = "ddim", sampling_steps: int = 10, seed: int = 0):
        super().__init__()
        self.ce = ConditionalEncoder(in_chans, ce_width)
        self.liw = LowFrequencyIsolation(self.ce.latent_dim, liw_levels, liw_heads, liw_window) if liw_levels else None
        self.inject = nn.Conv2d(self.ce.latent_dim, channels, 1)
        self.unet = NoiseUNet(1, 1, channels, mult, num_res_blocks, attention_ds, heads)
        self.diffusion = GaussianDiffusion(diffusion_steps)
        # the CE pools five times (1/32): frames padded to 32 keep its levels aligned, as the U-Net's need
        self.stride = max(self.unet.stride, 2 ** (len(self.ce.encoders) - 1))
        self.configure(mode=mode, sampler=sampler, sampling_steps=sampling_steps, seed=seed)

    # ---- serving knobs -------------------------------------------------------------------------------------------
    def knob_problem(self, mode: Optional[str] = None, sampler: Optional[str] = None,
                     sampling_steps: Optional[int] = None, seed: Optional[int] = None) -> Optional[str]:
        """Why these knob values cannot be used with this network, else None (nothing is changed)."""
        if mode is not None and mode not in MODES:
            return f"mode must be one of {', '.join(MODES)}, got {mode!r}"
        if sampler is not None and sampler not in SAMPLERS:
            return f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}"
        if sampling_steps is not None and not 1 <= int(sampling_steps) <= self.diffusion.T:
            return f"sampling_steps must be in [1, {self.diffusion.T}] (the diffusion's T), got {sampling_steps}"
        return None

    def configure(self, mode: Optional[str] = None, sampler: Optional[str] = None,
                  sampling_steps: Optional[int] = None, seed: Optional[int] = None) -> None:
        """Set the sampling knobs (checked first, ValueError with the reason); they apply from the next frame."""
        problem = self.knob_problem(mode, sampler, sampling_steps, seed)
        if problem:
            raise ValueError(problem)
        self.mode = mode if mode is not None else self.mode
        self.sampler = sampler if sampler is not None else self.sampler
        self.sampling_steps = int(sampling_steps) if sampling_steps is not None else self.sampling_steps
        self.seed = int(seed) if seed is not None else self.seed

    # ---- the network ---------------------------------------------------------------------------------------------
    def condition(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """CE + LIW, once per frame: (P logits (B, 1, H, W), f(I) at the U-Net's width (B, C, H, W))."""
        p_logits, latent = self.ce(image)
        if self.liw is not None:
            latent = self.liw(latent)
        return p_logits, self.inject(latent)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """ε_θ(x_t, I, I', t) = U_de(U_en(x_t, t) + f(I), t) (eq. 15)."""
        emb = self.unet.embed(t)
        return self.unet.decode(self.unet.encode(x_t, emb, cond), emb)

    def sample(self, cond: torch.Tensor, generator: torch.Generator, denoise: Optional[Callable] = None) -> torch.Tensor:
        """x0 ∈ [-1, 1] by DDIM (``sampling_steps``) or DDPM (all T steps), from seeded noise; ``denoise``
        replaces :meth:`denoise` (a compiled step from a deployment backend)."""
        denoise = denoise or self.denoise
        shape = (cond.shape[0], 1, *cond.shape[-2:])
        x = torch.randn(shape, generator=generator, dtype=torch.float32).to(cond.device, cond.dtype)
        d = self.diffusion
        if self.sampler == "ddpm":
            for t in reversed(range(d.T)):
                eps = denoise(x, torch.full((shape[0],), t, device=x.device), cond)
                noise = torch.randn(shape, generator=generator, dtype=torch.float32).to(x.device, x.dtype) if t else None
                x = d.ddpm_step(x, t, eps, noise)
            return x
        steps = d.ddim_timesteps(self.sampling_steps)
        for i, t in enumerate(steps):
            eps = denoise(x, torch.full((shape[0],), t, device=x.device), cond)
            x = d.ddim_step(x, t, steps[i + 1] if i + 1 < len(steps) else -1, eps)
        return x

    def forward(self, image: torch.Tensor, target: Optional[torch.Tensor] = None):
        """Mask logits in the current mode; with ``target``, the training draw (:meth:`training_outputs`), so
        that training goes through ``__call__`` (DDP's hooks)."""
        if target is not None:
            return self.training_outputs(image, target)
        return self.infer(image)

    def infer(self, image: torch.Tensor, condition: Optional[Callable] = None,
              denoise: Optional[Callable] = None) -> torch.Tensor:
        """Mask logits in the current mode, with :meth:`condition` and :meth:`denoise` replaceable by a
        backend's compiled parts (see :func:`export_parts`): the sampling loop is the same either way."""
        p_logits, cond = (condition or self.condition)(image)
        if self.mode == "ce":
            return p_logits
        gen = torch.Generator().manual_seed(self.seed)
        prob = (self.sample(cond, gen, denoise).float() + 1) / 2
        if self.mode == "fused":
            p = torch.sigmoid(p_logits.float())
            agree = (p > 0.5) == (prob > 0.5)
            prob = torch.where(agree, (p + prob) / 2, p + prob / 4)
        return torch.logit(prob.clamp(1e-4, 1 - 1e-4)).to(p_logits.dtype)

    def training_outputs(self, image: torch.Tensor, target: torch.Tensor, t: Optional[torch.Tensor] = None,
                         noise: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """One training draw: t ~ U{0..T-1}, ε ~ N(0, I) from torch's global generator (saved with the run),
        x_t from the mask (eq. 4), and the network's ε prediction and CE logits. ``t`` and ``noise`` given: that
        draw instead (the same one on every device, for gradient checks)."""
        p_logits, cond = self.condition(image)
        b = image.shape[0]
        t = torch.randint(0, self.diffusion.T, (b,), device=image.device) if t is None else t
        noise = torch.randn_like(target) if noise is None else noise
        x_t = self.diffusion.q_sample(target * 2 - 1, t, noise)
        return {"logits": p_logits, "eps": self.denoise(x_t.to(cond.dtype), t, cond), "noise": noise}


class _Condition(nn.Module):
    def __init__(self, net: IRSTDDiff):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor):
        return self.net.condition(image)


class _DenoiseStep(nn.Module):
    def __init__(self, net: IRSTDDiff):
        super().__init__()
        self.net = net

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net.denoise(x_t, t, cond)


def export_parts(net: IRSTDDiff, image: torch.Tensor) -> Dict[str, Tuple[nn.Module, tuple]]:
    """What a deployment runtime compiles: the per-frame condition (CE + LIW: P logits and f(I)) and one
    denoising step (x_t, t, f(I)) -> ε; the sampling loop around them stays in Python (seeded noise). The
    example f(I) is zeros of its shape (the 1x1 injection's width at the frame's size): the engines need its
    shape only, and a frame size served from the cache then costs no CE forward."""
    cond = torch.zeros(image.shape[0], net.inject.out_channels, *image.shape[-2:], dtype=image.dtype)
    x_t = torch.randn(image.shape[0], 1, *image.shape[-2:], generator=torch.Generator().manual_seed(0))
    t = torch.full((image.shape[0],), net.diffusion.T // 2, dtype=torch.long)
    return {"condition": (_Condition(net).eval(), (image,)), "denoise_step": (_DenoiseStep(net).eval(), (x_t, t, cond))}


@register_model(ModelCfg(
    stride=32, weights="irstd_diff_sirst-v1.pt", loss="diffusion", paper_params=(39.6e6, 0.10),
    export_parts=export_parts,
    run_parts=lambda net, parts, image: net.infer(image, parts["condition"], parts["denoise_step"]),
    knobs=(Knob("mode", "auto", "ce: the conditional encoder's mask alone; diffusion: the sample; fused: the authors' "
                "blend of both; auto: as the weights were shipped.", choices=("auto",) + MODES),
           Knob("sampler", "auto", "ddim (sampling_steps deterministic steps) or ddpm (all T ancestral steps); auto: "
                "as shipped.", choices=("auto",) + SAMPLERS),
           Knob("sampling_steps", 0, "DDIM steps per frame (1 to T); 0: as shipped. More steps cost one U-Net pass "
                "each.", range=(0, 1000)),
           Knob("seed", 0, "Seed of the sampling noise: a frame and a seed always give the same mask.",
                range=(0, 2 ** 31 - 1))),
    tiny_args={"channels": 8, "mult": (1, 2, 2, 2), "num_res_blocks": 1, "attention_ds": (8,), "heads": 2,
               "ce_width": 0.125, "liw_heads": 2, "liw_window": 4, "diffusion_steps": 20, "sampling_steps": 2},
    description="IRSTD-Diff (Li et al., TGRS): conditional mask diffusion with a nested-U encoder and wavelet LIW"))
def irstd_diff(**cfg) -> IRSTDDiff:
    """IRSTD-Diff at the paper's Table I / Table II configuration."""
    return IRSTDDiff(**cfg)
