"""GroupNorm that stays exact on channels-last CPU tensors.

torch's CPU GroupNorm kernel for channels-last input takes the variance as
E[x²] − E[x]² in fp32, which cancels catastrophically once the mean is large
against the spread: measured here (torch 2.13, AMD EPYC), 16 channels at
256x352 with std 0.1 and mean 5 are off by 0.024 after normalising, with mean 50
by 140, while the contiguous kernel stays within 4e-5. Thermal frames are
exactly that (a warm, flat background with a little texture), and the package
runs channels-last on CPUs for speed. So on channels-last CPU input this module
computes the statistics with ``torch.var_mean`` (a stable reduction) in fp32, as
autocast would run GroupNorm; everywhere else it is ``nn.GroupNorm`` unchanged.
The parameters and state-dict keys are nn.GroupNorm's.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class GroupNorm(nn.GroupNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.dim() != 4 or x.is_contiguous() \
                or not x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x)
        b, c, h, w = x.shape
        g = self.num_groups
        v = x.float().view(b, g, c // g, h, w)    # channels-last: splitting C (stride 1) is a view
        var, mean = torch.var_mean(v, dim=(2, 3, 4), unbiased=False, keepdim=True)
        y = ((v - mean) * torch.rsqrt(var + self.eps)).view(b, c, h, w)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1).float() + self.bias.view(1, c, 1, 1).float()
        return y.to(x.dtype) if not torch.is_autocast_enabled("cpu") else y
