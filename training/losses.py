"""Training losses. LRRNet: SoftIoU + L1 on the mask, plus λ·MSE between reconstruction and input (eq. 10)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_iou_loss(probs: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft IoU per image, averaged over the batch (smoothed so empty masks stay finite)."""
    dims = tuple(range(1, probs.ndim))
    inter = (probs * target).sum(dims)
    union = probs.sum(dims) + target.sum(dims) - inter
    return (1.0 - (inter + eps) / (union + eps)).mean()


class LRRNetLoss(torch.nn.Module):
    def __init__(self, recon_weight: float = 0.1):
        super().__init__()
        self.recon_weight = recon_weight

    def forward(self, logits, recon, image, target):
        probs = torch.sigmoid(logits.float())
        seg = soft_iou_loss(probs, target) + F.l1_loss(probs, target)
        rec = F.mse_loss(recon.float(), image)
        total = seg + self.recon_weight * rec
        return total, {"seg": seg.detach(), "rec": rec.detach()}
