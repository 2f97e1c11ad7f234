"""Plain convolutional blocks: conv-BN-activation and the ResNet basic block."""
from __future__ import annotations

import torch
import torch.nn as nn


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, act: bool = True):
        layers = [nn.Conv2d(cin, cout, kernel_size, stride, kernel_size // 2, bias=False), nn.BatchNorm2d(cout)]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class BasicResBlock(nn.Module):
    """ResNet's basic block: ``relu(x + BN(conv(relu(BN(conv(x))))))``, a 1x1 projection when widths differ."""

    def __init__(self, cin: int, cout: int | None = None):
        super().__init__()
        cout = cout or cin
        self.body = nn.Sequential(ConvBNAct(cin, cout), ConvBNAct(cout, cout, act=False))
        self.skip = nn.Identity() if cin == cout else ConvBNAct(cin, cout, 1, act=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.skip(x) + self.body(x))
