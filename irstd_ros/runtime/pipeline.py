"""The pure inference core: preprocess -> model -> postprocess, with no ROS in it.

The node, ``irstd-eval`` and the bag tools all call these functions, so a frame
is treated the same way wherever it comes from.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .precision import autocast


@dataclass(frozen=True)
class Geometry:
    """How a native frame maps to the network input, to map the prediction back."""

    height: int
    width: int
    net_height: int
    net_width: int
    resized: bool  # paper protocol: resized; native: padded (bottom/right)


def preprocess(image: np.ndarray, stride: int, size: Optional[int] = None) -> Tuple[torch.Tensor, Geometry]:
    """Grey float image in [0, 1] -> ``(1, 1, H', W')`` tensor.

    ``size`` given: resize to ``size x size`` (paper protocol). Otherwise pad the
    bottom and right edges by replication up to a multiple of ``stride`` (native
    protocol: no resampling, so small targets keep their pixels).
    """
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {image.shape}")
    h, w = image.shape
    if size is not None:
        if size % stride:
            raise ValueError(f"input size {size} is not a multiple of the network stride {stride}")
        net = cv2.resize(image.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
        x = torch.from_numpy(net)[None, None]
        return x, Geometry(h, w, size, size, True)
    ph, pw = -h % stride, -w % stride
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, Geometry(h, w, h + ph, w + pw, False)


def restore(probs: np.ndarray, geom: Geometry) -> np.ndarray:
    """Map a network-sized probability map back to the native frame (crop or resize)."""
    if geom.resized:
        return cv2.resize(probs, (geom.width, geom.height), interpolation=cv2.INTER_LINEAR)
    return probs[: geom.height, : geom.width]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Probabilities from a compiling backend's logits, in numpy: one torch op between two engine calls wakes
    torch's OpenMP workers, which then spin beside the engine's threads (8 ms on a 31 ms LRRNet int8 frame
    on two cores: ``bench/profile_engine_overhead.py``)."""
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf for x < -88: the probability is 0, as it should be
        return (1 / (1 + np.exp(-logits))).astype(np.float32, copy=False)


@torch.inference_mode()
def run_model(model: torch.nn.Module, x: torch.Tensor, precision: str = "fp32") -> np.ndarray:
    """Forward a ``(B, 1, H, W)`` batch and return float32 probabilities ``(B, H, W)``."""
    device = next(model.parameters()).device
    with autocast(precision, device):
        logits = model(x.to(device))
    return torch.sigmoid(logits.float())[:, 0].cpu().numpy()


@dataclass(frozen=True)
class Detection:
    """One target: its box in native pixels (x0, y0 inclusive, width, height), centroid, area, peak score."""

    x: int
    y: int
    width: int
    height: int
    cx: float
    cy: float
    area: int
    score: float


def postprocess(probs: np.ndarray, threshold: float = 0.5, min_area: int = 1, max_area: int = 0,
                max_detections: int = 0) -> Tuple[np.ndarray, List[Detection]]:
    """Threshold, label 8-connected components and filter them by area.

    Returns the filtered binary mask (uint8 0/255) and detections sorted by score,
    strongest first. ``max_area`` and ``max_detections`` of 0 mean unlimited; a
    detection's score is the peak probability inside its component.
    """
    binary = (probs > threshold).astype(np.uint8)
    n, labels, stats, cents = cv2.connectedComponentsWithStats(binary, connectivity=8, ltype=cv2.CV_32S)
    if n <= 1:
        return np.zeros_like(binary), []
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = areas >= max(min_area, 1)
    if max_area > 0:
        keep &= areas <= max_area
    ids = np.flatnonzero(keep) + 1
    peaks = np.zeros(n, np.float32)
    for i in ids:  # few components per frame: a box-local max beats a full-frame scatter
        x, y, w, h = stats[i, :4]
        roi = labels[y:y + h, x:x + w] == i
        peaks[i] = probs[y:y + h, x:x + w][roi].max()
    ids = ids[np.argsort(-peaks[ids], kind="stable")]
    if max_detections > 0:
        ids = ids[:max_detections]
    lut = np.zeros(n, np.uint8)
    lut[ids] = 255
    dets = [
        Detection(int(stats[i, 0]), int(stats[i, 1]), int(stats[i, 2]), int(stats[i, 3]),
                  float(cents[i, 0]), float(cents[i, 1]), int(stats[i, 4]), float(peaks[i]))
        for i in ids
    ]
    return lut[labels], dets
