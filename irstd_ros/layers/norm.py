"""GroupNorm that stays accurate on channels-last fp32 CPU tensors, at the fast kernel's speed.

torch's CPU GroupNorm kernel for channels-last input takes the variance as
E[x²] − E[x]² in fp32, which cancels catastrophically once the mean is large
against the spread: measured here (torch 2.13, AMD EPYC), 16 channels at
256x352 with std 0.1 and mean 5 are off by 0.024 after normalising, with mean 50
by 140, while the contiguous kernel stays within 4e-5. Thermal frames are like
that (a warm, flat background with a little texture), and the package runs
channels-last on CPUs for speed; shipped LRRNet's logits moved by 0.04 on a real
frame.

GroupNorm does not change when a constant is subtracted from a group, so this
module subtracts each group's mean over a 1-in-64 pixel subsample first (one
elementwise pass) and lets the fast kernel see a spread-sized mean. Measured on
LRRNet 256x256 fp32: 112 ms against 107 ms with torch's kernel alone; an exact
``var_mean`` version cost 230 ms, the contiguous round trip 164 ms.

Under bf16 autocast the shift is skipped: bf16 input already rounds away what the
shift would save (a mean 256x the spread is one bf16 step), and it would cost
16 % of LRRNet's bf16 time. Elsewhere (CUDA, contiguous) this is nn.GroupNorm;
parameters and state-dict keys are nn.GroupNorm's.

Exported for OpenVINO and ONNX Runtime (inside :func:`reductions_for_export`), it
is written as per-channel means over H, W, averaged over each group on the tiny
(B, C, 1, 1) tensor, then a centred second pass for the variance. The usual
export (reshape to groups, MVN, reshape back) makes OpenVINO's CPU plugin leave
its blocked channel layout twice per norm: those layout changes were a quarter of
LRRNet's OpenVINO bf16 time, and reductions over H, W keep the layout
(``bench/bench_backends.py`` has the before and after).
"""
from __future__ import annotations

import contextlib
import contextvars

import torch
import torch.nn as nn
import torch.nn.functional as F

SUBSAMPLE = 8  # every 8th row and column
_AS_REDUCTIONS = contextvars.ContextVar("irstd_group_norm_as_reductions", default=False)


@contextlib.contextmanager
def reductions_for_export():
    """Trace GroupNorm as reductions over H, W (see the module docstring), for ONNX export."""
    token = _AS_REDUCTIONS.set(True)
    try:
        yield
    finally:
        _AS_REDUCTIONS.reset(token)


def group_norm_by_reductions(x: torch.Tensor, groups: int, weight: torch.Tensor, bias: torch.Tensor,
                             eps: float) -> torch.Tensor:
    """``F.group_norm`` for 4-D input with no reshape of ``x``: only reductions over H, W and broadcasts."""
    b, c = x.shape[:2]

    def over_groups(per_channel: torch.Tensor) -> torch.Tensor:  # (B, C, 1, 1) -> its group's mean, per channel
        g = per_channel.reshape(b, groups, c // groups).mean(-1, keepdim=True)
        return g.expand(b, groups, c // groups).reshape(b, c, 1, 1)

    centred = x - over_groups(x.mean((2, 3), keepdim=True))
    var = over_groups((centred * centred).mean((2, 3), keepdim=True))
    return centred * (torch.rsqrt(var + eps) * weight.view(1, c, 1, 1)) + bias.view(1, c, 1, 1)


def _export_form() -> bool:
    """Whether :func:`reductions_for_export` is on. torch.compile cannot trace ``ContextVar.get``: read there, it
    broke the graph at every norm, and as LRRNet calls its norms in a loop, dynamo ran LRRNet's whole forward
    eagerly (LRRNet-small's ``compile: true`` training ran uncompiled). Under torch.compile, outside an
    export, the export form is never wanted, so it is never read there."""
    if torch.compiler.is_compiling() and not torch.compiler.is_exporting():
        return False
    return _AS_REDUCTIONS.get()


class GroupNorm(nn.GroupNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _export_form() and x.dim() == 4 and self.affine:
            return group_norm_by_reductions(x, self.num_groups, self.weight, self.bias, self.eps)
        if x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() != 4 or x.is_contiguous() \
                or not x.is_contiguous(memory_format=torch.channels_last) or torch.is_autocast_enabled("cpu"):
            return super().forward(x)
        b, c = x.shape[:2]
        g = self.num_groups
        with torch.no_grad():  # GroupNorm is shift-invariant: no gradient flows through the shift
            shift = x[:, :, ::SUBSAMPLE, ::SUBSAMPLE].reshape(b, g, -1).mean(-1)
            shift = shift.repeat_interleave(c // g, dim=1).view(b, c, 1, 1)
        return F.group_norm(x - shift, g, self.weight, self.bias, self.eps)
