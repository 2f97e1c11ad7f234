"""IRSTD metrics: IoU, nIoU, Pd, Fa and the ROC curve with its AUC.

Conventions (``../shared/datasets/README.md``):

* IoU is dataset-level: total intersection over total union of binary masks.
* nIoU is the mean of per-image IoUs. An image whose ground truth and prediction
  are both empty scores 1 (nothing to find, nothing found).
* Targets and predictions are 8-connected components. A target is detected when
  an unmatched predicted component's centroid lies strictly within 3 px of the
  target's centroid. Targets are visited in label order (raster order of their
  first pixel) and each takes the nearest such component (ties: lower label);
  a predicted component matches at most one target. Matching is by position,
  never by area value.
* Fa is the number of pixels in predicted components that match no target,
  divided by the number of evaluated pixels: a plain fraction, not 1e-6 units.
* ``auc`` is the area under the pixel-level ROC (TPR vs FPR) over all thresholds,
  from 1000-bin score histograms. ``pd_fa_curve`` gives Pd and Fa at a set of
  thresholds (the object-level "ROC" plotted in the papers).
* ``bootstrap_ci`` resamples images with replacement to give a confidence
  interval for IoU, nIoU, Pd and Fa: a test split of ~100 frames is small, and
  one large target can move IoU by a few hundredths.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

CENTROID_DISTANCE = 3.0
HIST_BINS = 1000
CURVE_THRESHOLDS = tuple(np.round(np.linspace(0.05, 0.95, 19), 2))


def components(mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8-connected components of a binary mask: (label image, areas, centroids (x, y)); background dropped."""
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(
        np.ascontiguousarray(mask, dtype=np.uint8), connectivity=8, ltype=cv2.CV_32S)
    return labels, stats[1:, cv2.CC_STAT_AREA].astype(np.int64), centroids[1:]


def match_targets(pred: np.ndarray, gt: np.ndarray) -> Tuple[int, int, int]:
    """Object-level matching of one image: (targets, detected targets, false-alarm pixels)."""
    _, gt_areas, gt_cent = components(gt)
    _, pr_areas, pr_cent = components(pred)
    matched = np.zeros(len(pr_areas), dtype=bool)
    detected = 0
    for c in gt_cent:
        if len(pr_cent) == 0:
            break
        d = np.hypot(pr_cent[:, 0] - c[0], pr_cent[:, 1] - c[1])
        d[matched] = np.inf
        j = int(np.argmin(d))
        if d[j] < CENTROID_DISTANCE:
            matched[j] = True
            detected += 1
    return len(gt_areas), detected, int(pr_areas[~matched].sum())


@dataclass
class MetricAccumulator:
    """Accumulates metrics image by image at one decision threshold, plus score histograms for the ROC."""

    threshold: float = 0.5
    curve_thresholds: Sequence[float] = CURVE_THRESHOLDS
    inter: int = 0
    union: int = 0
    pixels: int = 0
    targets: int = 0
    detected: int = 0
    fa_pixels: int = 0
    # one row per image: inter, union, pixels, targets, detected, fa_pixels (nIoU and the bootstrap)
    per_image_counts: List[Tuple[int, int, int, int, int, int]] = field(default_factory=list)
    pos_hist: np.ndarray = field(default_factory=lambda: np.zeros(HIST_BINS, np.int64))
    neg_hist: np.ndarray = field(default_factory=lambda: np.zeros(HIST_BINS, np.int64))
    curve_counts: np.ndarray = None  # (len(curve_thresholds), 2): detected, fa_pixels

    def __post_init__(self):
        if self.curve_counts is None:
            self.curve_counts = np.zeros((len(self.curve_thresholds), 2), np.int64)

    def update(self, scores: np.ndarray, gt: np.ndarray) -> None:
        """Add one image: ``scores`` are probabilities in [0, 1] (or a binary mask), ``gt`` a binary mask."""
        scores = np.asarray(scores, dtype=np.float32)
        gt = np.asarray(gt).astype(bool)
        if scores.shape != gt.shape:
            raise ValueError(f"prediction {scores.shape} and ground truth {gt.shape} differ in shape")
        pred = scores > self.threshold
        inter = int(np.logical_and(pred, gt).sum())
        union = int(np.logical_or(pred, gt).sum())
        self.inter += inter
        self.union += union
        self.pixels += gt.size
        n, det, fa = match_targets(pred, gt)
        self.targets += n
        self.detected += det
        self.fa_pixels += fa
        self.per_image_counts.append((inter, union, gt.size, n, det, fa))
        bins = np.clip((scores * HIST_BINS).astype(np.int64), 0, HIST_BINS - 1)
        self.pos_hist += np.bincount(bins[gt], minlength=HIST_BINS)
        self.neg_hist += np.bincount(bins[~gt], minlength=HIST_BINS)
        for k, t in enumerate(self.curve_thresholds):
            _, det_k, fa_k = match_targets(scores > t, gt)
            self.curve_counts[k] += (det_k, fa_k)

    @property
    def per_image_iou(self) -> List[float]:
        """Each image's IoU; 1 where ground truth and prediction are both empty."""
        return [1.0 if union == 0 else inter / union for inter, union, *_ in self.per_image_counts]

    def roc(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pixel ROC: (thresholds, fpr, tpr), thresholds descending from 1 to 0."""
        tp = np.concatenate([[0], np.cumsum(self.pos_hist[::-1])])
        fp = np.concatenate([[0], np.cumsum(self.neg_hist[::-1])])
        tpr = tp / max(int(self.pos_hist.sum()), 1)
        fpr = fp / max(int(self.neg_hist.sum()), 1)
        thresholds = np.linspace(1.0, 0.0, HIST_BINS + 1)
        return thresholds, fpr, tpr

    def auc(self) -> float:
        _, fpr, tpr = self.roc()
        return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))

    def pd_fa_curve(self) -> List[Dict[str, float]]:
        return [
            {"threshold": float(t),
             "pd": float(det / self.targets) if self.targets else float("nan"),
             "fa": float(fa / self.pixels) if self.pixels else float("nan")}
            for t, (det, fa) in zip(self.curve_thresholds, self.curve_counts)
        ]

    def summary(self) -> Dict[str, float]:
        """The headline numbers: iou, niou, pd, fa, auc, n_images, n_targets."""
        return {
            "iou": self.inter / self.union if self.union else 1.0,
            "niou": float(np.mean(self.per_image_iou)) if self.per_image_counts else float("nan"),
            "pd": self.detected / self.targets if self.targets else float("nan"),
            "fa": self.fa_pixels / self.pixels if self.pixels else float("nan"),
            "auc": self.auc(),
            "n_images": len(self.per_image_counts),
            "n_targets": self.targets,
            "threshold": self.threshold,
        }


def resampled_metrics(acc: MetricAccumulator, indices: np.ndarray) -> Dict[str, np.ndarray]:
    """IoU, nIoU, Pd and Fa of each row of ``indices`` (B, n), a multiset of the accumulator's images."""
    counts = np.asarray(acc.per_image_counts, np.float64).reshape(-1, 6)
    per_iou = np.asarray(acc.per_image_iou, np.float64)
    idx = np.atleast_2d(np.asarray(indices, np.int64))
    inter, union, pixels, targets, detected, fa = np.moveaxis(counts[idx].sum(axis=1), -1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "iou": np.where(union > 0, inter / np.maximum(union, 1), 1.0),
            "niou": per_iou[idx].mean(axis=1),
            "pd": np.where(targets > 0, detected / np.maximum(targets, 1), np.nan),
            "fa": fa / pixels,
        }


def bootstrap_ci(acc: MetricAccumulator, resamples: int = 1000, level: float = 0.95,
                 seed: int = 0) -> Dict[str, List[float]]:
    """Percentile bootstrap over images: ``{metric: [low, high]}`` at ``level`` for iou, niou, pd, fa."""
    n = len(acc.per_image_counts)
    if n == 0:
        raise ValueError("bootstrap_ci: no images were scored")
    if resamples < 1 or not 0.0 < level < 1.0:
        raise ValueError("bootstrap_ci: resamples must be >= 1 and level in (0, 1)")
    indices = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    tail = (1.0 - level) / 2.0 * 100.0
    return {k: [float(np.nanpercentile(v, tail)), float(np.nanpercentile(v, 100.0 - tail))]
            for k, v in resampled_metrics(acc, indices).items()}
