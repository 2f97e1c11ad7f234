"""Evaluation plots: pixel ROC, object-level Pd-Fa curve, and overlays of predictions on images."""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np

from .metrics import MetricAccumulator


def overlay(image: np.ndarray, gt: np.ndarray | None, pred: np.ndarray) -> np.ndarray:
    """RGB uint8 view: grey image, ground-truth outlines in green, predicted outlines in red."""
    rgb = cv2.cvtColor((np.clip(image, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    if gt is not None:
        cs, _ = cv2.findContours(gt.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(rgb, cs, -1, (0, 255, 0), 1)
    cs, _ = cv2.findContours(pred.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(rgb, cs, -1, (255, 0, 0), 1)
    return rgb


def write_plots(out_dir: str | Path, acc: MetricAccumulator, title: str,
                overlays: List[Tuple[str, np.ndarray]]) -> List[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    _, fpr, tpr = acc.roc()
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot(fpr, tpr)
    ax[0].set_xscale("symlog", linthresh=1e-6)
    ax[0].set_xlabel("pixel false positive rate")
    ax[0].set_ylabel("pixel true positive rate")
    ax[0].set_title(f"ROC, AUC = {acc.auc():.4f}")
    curve = acc.pd_fa_curve()
    ax[1].plot([c["fa"] for c in curve], [c["pd"] for c in curve], marker="o", ms=3)
    ax[1].set_xlabel("Fa (fraction of pixels)")
    ax[1].set_ylabel("Pd")
    ax[1].set_title("Pd vs Fa over thresholds 0.05-0.95")
    fig.suptitle(title)
    fig.tight_layout()
    path = out / "roc.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    for name, rgb in overlays:
        path = out / f"overlay_{name}.png"
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        written.append(path)
    return written
