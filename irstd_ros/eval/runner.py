"""Evaluate a Detector over a dataset split: metrics, timing, and optional masks and plots."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional

import cv2
import numpy as np

from ..progress import progress
from ..runtime.detector import Detector
from .datasets import IRSTDDataset, Sample
from .metrics import MetricAccumulator


def evaluate(detector: Detector, samples: Iterable[Sample], threshold: float = 0.5,
             on_prediction: Optional[Callable[[Sample, np.ndarray], None]] = None, total: Optional[int] = None) -> Dict:
    """Score every sample; ``on_prediction(sample, probs)`` sees each probability map (for saving); ``total``:
    how many there are, for the progress bar."""
    acc = MetricAccumulator(threshold=threshold)
    latencies = []
    for sample in progress(samples, total=total, desc=f"eval {detector.name}"):
        t0 = time.perf_counter()
        probs = detector.probabilities(sample.image)
        latencies.append(time.perf_counter() - t0)
        acc.update(probs, sample.mask)
        if on_prediction is not None:
            on_prediction(sample, probs)
    out = acc.summary()
    out.update(latency_summary(np.asarray(latencies) * 1e3))
    out["pd_fa_curve"] = acc.pd_fa_curve()
    out["_accumulator"] = acc
    return out


def latency_summary(lat_ms) -> Dict[str, float]:
    """Median (also as p50), p95 and max of per-frame latencies in ms, and FPS = 1000 / median."""
    lat = np.asarray(lat_ms, dtype=float)
    if not len(lat):
        return {k: float("nan") for k in ("latency_ms_median", "latency_ms_p50", "latency_ms_p95",
                                          "latency_ms_max", "fps")}
    med = float(np.median(lat))
    return {"latency_ms_median": med, "latency_ms_p50": med, "latency_ms_p95": float(np.percentile(lat, 95)),
            "latency_ms_max": float(lat.max()), "fps": 1e3 / med}


class MaskWriter:
    """Writes one binary 0/255 PNG per image at the image's native size, named like the image."""

    def __init__(self, out_dir: str | Path, dataset: IRSTDDataset, threshold: float):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dataset = dataset
        self.threshold = threshold

    def __call__(self, sample: Sample, probs: np.ndarray) -> None:
        if self.dataset.protocol == "paper":  # evaluated resized: bring the map back to native size
            h, w = self.dataset_native_shape(sample.name)
            probs = cv2.resize(probs, (w, h), interpolation=cv2.INTER_LINEAR)
        mask = (probs > self.threshold).astype(np.uint8) * 255
        cv2.imwrite(str(self.dir / f"{sample.name}.png"), mask)

    def dataset_native_shape(self, name: str):
        from PIL import Image
        with Image.open(self.dataset.root / "images" / f"{name}.png") as im:
            return im.height, im.width
