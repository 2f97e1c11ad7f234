"""Training losses, one per model family, picked by the model's registered ``ModelCfg.loss``.

Every loss has ``predict(net, image, target)`` (the forward pass the loss needs, run under
autocast by the training loop) and ``forward(outputs, image, target) -> (total, parts)``.

:class:`SegLoss`: SoftIoU + L1 on the mask probabilities, plus an optional
BCE-with-logits term. LRRNet's paper loss is SoftIoU + L1 and ``λ·MSE`` on its
reconstruction (eq. 10, :class:`LRRNetLoss`); IRMamba's paper gives no loss and uses
:class:`SegLoss`; IRSAM's is Dice + 10·BCE on its edge map (:class:`IRSAMLoss`). Any of them can
learn from a teacher network as well (:class:`Distillation`, the config's ``distill``).

Deviation from the LRRNet paper, on purpose: the BCE term (``bce_weight``, default
0 = the paper's loss). SoftIoU and L1 act on sigmoid probabilities; with them
alone the first steps push every logit down (the union term dominates), the
sigmoid saturates and target gradients vanish. On our CPU budget (hundreds, not
400 epochs x GPU) a single SIRST batch never recovered in 60 steps, while
``bce_weight=1`` (pos_weight 10) reached IoU 0.8 on it in 40. BCE's gradient (p - y)
does not saturate.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from irstd_ros.models import model_cfg


def soft_iou_loss(probs: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft IoU over the whole batch (smoothed so an all-empty batch stays finite).

    Batch-level, not per image: with per-image IoU, crops without a target reward
    an all-zero prediction as strongly as a found target is rewarded, and the
    net settles on predicting nothing.
    """
    inter = (probs * target).sum()
    union = probs.sum() + target.sum() - inter
    return 1.0 - (inter + eps) / (union + eps)


class SegLoss(torch.nn.Module):
    """SoftIoU + L1 on the probabilities, + ``bce_weight`` · BCE(logits, pos_weight)."""

    def __init__(self, bce_weight: float = 0.0, bce_pos_weight: float = 1.0):
        super().__init__()
        self.bce_weight = bce_weight
        self.register_buffer("pos_weight", torch.tensor(float(bce_pos_weight)))

    def predict(self, net, image: torch.Tensor, target: torch.Tensor | None = None) -> dict:
        return {"logits": net(image)}

    def mask_bce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """BCE on mask logits, positives weighted by ``bce_pos_weight``."""
        return F.binary_cross_entropy_with_logits(logits.float(), target, pos_weight=self.pos_weight)

    def segmentation(self, logits: torch.Tensor, target: torch.Tensor):
        probs = torch.sigmoid(logits.float())
        seg = soft_iou_loss(probs, target) + F.l1_loss(probs, target)
        total = seg
        if self.bce_weight:
            total = total + self.bce_weight * self.mask_bce(logits, target)
        return total, seg

    def forward(self, outputs: dict, image: torch.Tensor, target: torch.Tensor):
        total, seg = self.segmentation(outputs["logits"], target)
        return total, {"seg": seg.detach()}


class LRRNetLoss(SegLoss):
    """LRRNet's eq. 10: the segmentation loss + ``recon_weight`` · MSE(reconstruction, image)."""

    def __init__(self, recon_weight: float = 0.1, bce_weight: float = 0.0, bce_pos_weight: float = 1.0):
        super().__init__(bce_weight, bce_pos_weight)
        self.recon_weight = recon_weight

    def predict(self, net, image: torch.Tensor, target: torch.Tensor | None = None) -> dict:
        logits, recon = net(image, return_reconstruction=True)
        return {"logits": logits, "recon": recon}

    def forward(self, outputs: dict, image: torch.Tensor, target: torch.Tensor):
        total, seg = self.segmentation(outputs["logits"], target)
        rec = F.mse_loss(outputs["recon"].float(), image)
        return total + self.recon_weight * rec, {"seg": seg.detach(), "rec": rec.detach()}


def dice_loss(probs: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """IRSAM's eq. 10, 1 - 2|Y∩P| / (|Y| + |P|), soft and over the whole batch (see :func:`soft_iou_loss`)."""
    inter = (probs * target).sum()
    return 1.0 - (2 * inter + eps) / (probs.sum() + target.sum() + eps)


def inner_boundary(mask: torch.Tensor) -> torch.Tensor:
    """Target pixels with a background 8-neighbour: the mask's edge (IRSAM's edge label; the authors run Canny
    on the mask, which marks the same transitions). A 1-2 px target is all edge."""
    eroded = -F.max_pool2d(-mask, 3, stride=1, padding=1)
    return (mask - eroded).clamp_(0, 1)


class IRSAMLoss(SegLoss):
    """IRSAM's eq. 12: Dice(mask) + ``edge_weight`` · BCE(edge logits, edge of the mask), λ = 10.

    ``bce_weight`` adds BCE on the mask logits (0 = the paper's loss), for the reason given for
    :class:`SegLoss`: Dice alone also drives every background logit down until the sigmoid saturates.
    """

    def __init__(self, edge_weight: float = 10.0, bce_weight: float = 0.0, bce_pos_weight: float = 1.0):
        super().__init__(bce_weight, bce_pos_weight)
        self.edge_weight = edge_weight

    def predict(self, net, image: torch.Tensor, target: torch.Tensor | None = None) -> dict:
        logits, edge = net(image, return_edge=True)
        return {"logits": logits, "edge": edge}

    def forward(self, outputs: dict, image: torch.Tensor, target: torch.Tensor):
        logits = outputs["logits"].float()
        seg = dice_loss(torch.sigmoid(logits), target)
        total = seg
        if self.bce_weight:
            total = total + self.bce_weight * self.mask_bce(logits, target)
        edge = F.binary_cross_entropy_with_logits(outputs["edge"].float(), inner_boundary(target))
        return total + self.edge_weight * edge, {"seg": seg.detach(), "edge": edge.detach()}


class DiffusionLoss(SegLoss):
    """IRSTD-Diff's eq. 16: ``||ε - ε_θ(x_t, t)||² + ce_weight · BCE(P, mask)``, λ = 10.

    ``predict`` needs the mask (it noises it); ``bce_weight`` is accepted for the registry-wide checks and
    means the same as ``ce_weight`` when given.
    """

    def __init__(self, ce_weight: float = 10.0, bce_weight: float | None = None, bce_pos_weight: float = 1.0):
        super().__init__(0.0, bce_pos_weight)
        self.ce_weight = float(ce_weight if bce_weight is None else bce_weight)

    def predict(self, net, image: torch.Tensor, target: torch.Tensor | None = None) -> dict:
        if target is None:
            raise ValueError("the diffusion loss noises the target mask: predict(net, image, target)")
        return net(image, target=target)

    def forward(self, outputs: dict, image: torch.Tensor, target: torch.Tensor):
        mse = F.mse_loss(outputs["eps"].float(), outputs["noise"].float())
        ce = self.mask_bce(outputs["logits"], target)
        return mse + self.ce_weight * ce, {"seg": ce.detach(), "diffusion": mse.detach()}


class Distillation(torch.nn.Module):
    """A student's own loss + ``weight`` · T² · BCE(student logits / T, sigmoid(teacher logits / T)).

    Knowledge distillation (Hinton et al., 2015) for a per-pixel binary mask: the teacher's probabilities
    are soft targets beside the hard mask. Why: a narrow network (LRRNet-small) trained on 256 frames
    learns where targets are but not where clutter is not; the teacher's probabilities on every pixel of
    every crop say both, including on the background the hard labels only call "0". The teacher runs
    without gradients, under the same autocast as the student, and is not part of what is saved.
    """

    def __init__(self, base: torch.nn.Module, teacher: torch.nn.Module, weight: float = 1.0,
                 temperature: float = 1.0):
        super().__init__()
        self.base = base
        self.teacher = teacher.eval().requires_grad_(False)
        self.weight, self.temperature = float(weight), float(temperature)

    def predict(self, net, image: torch.Tensor, target: torch.Tensor | None = None) -> dict:
        outputs = self.base.predict(net, image, target)
        with torch.no_grad():
            outputs["teacher"] = self.teacher(image)
        return outputs

    def forward(self, outputs: dict, image: torch.Tensor, target: torch.Tensor):
        total, parts = self.base(outputs, image, target)
        t = self.temperature
        soft = torch.sigmoid(outputs["teacher"].float() / t)
        kd = F.binary_cross_entropy_with_logits(outputs["logits"].float() / t, soft) * t * t
        return total + self.weight * kd, {**parts, "kd": kd.detach()}


LOSSES = {"seg": SegLoss, "lrrnet": LRRNetLoss, "irsam": IRSAMLoss, "diffusion": DiffusionLoss}


def build_loss(model: str, args: dict, distill: dict | None = None) -> torch.nn.Module:
    """The loss registered for ``model``, with the config's ``loss`` arguments (ValueError if they do not fit),
    wrapped in :class:`Distillation` when the config names a teacher (``distill: {model, weights, weight,
    temperature}``; ``weights`` empty: the teacher's shipped weights)."""
    cls = LOSSES[model_cfg(model).loss]
    try:
        loss = cls(**args)
    except TypeError as exc:
        raise ValueError(f"loss arguments {args} do not fit {cls.__name__} (model {model}): {exc}") from None
    if not distill:
        return loss
    from irstd_ros.runtime.checkpoints import load_model
    teacher, _ = load_model(distill["model"], distill.get("weights") or None)
    return Distillation(loss, teacher, **{k: distill[k] for k in ("weight", "temperature") if k in distill})
