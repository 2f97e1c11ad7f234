"""Export parity of the *shipped* weights: each compiling CPU engine against eager torch on the bundled sample.

The tests check parity on each model's test-sized variant (a full IRMamba or IRSAM takes a minute or more to
compile per frame size, too slow for CI); this runs the real networks with their shipped weights through the
same :class:`Detector` the node uses, fp32, under the paper protocol (every frame resized to one size, so one
engine per backend), on the ten bundled sample frames. Reported per model and engine: the largest probability
difference (MODELS.md: within 1e-3), the pixel IoU of the masks at the card's threshold (>= 0.99) and whether
every frame has the same number of targets.

    python bench/check_export_parity.py --model irmamba [--backend openvino] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from irstd_ros.runtime.backends import unavailable
from irstd_ros.runtime.checkpoints import card_threshold, ships_weights
from irstd_ros.cli.demo import SAMPLE
from irstd_ros.eval.datasets import read_image
from irstd_ros.runtime.detector import Detector, DetectorConfig
from irstd_ros.machine import machine_description
from irstd_ros.eval.metrics import components
from irstd_ros.models import list_models, model_cfg
from irstd_ros.progress import progress


def compare(ref: Detector, det: Detector, frames, threshold: float, desc: str = "") -> dict:
    """``det`` against ``ref`` over ``frames``: the largest probability difference, the masks' pixel IoU at
    ``threshold`` (over all frames together) and on how many frames the two find as many targets."""
    worst, inter, union, same_count = 0.0, 0, 0, 0
    for image in progress(frames, desc=desc):
        want, got = ref.probabilities(image), det.probabilities(image)
        worst = max(worst, float(np.abs(got - want).max()))
        a, b = want > threshold, got > threshold
        inter += int(np.logical_and(a, b).sum())
        union += int(np.logical_or(a, b).sum())
        same_count += len(components(a)[2]) == len(components(b)[2])
    return {"max_abs_diff": worst, "mask_iou": 1.0 if union == 0 else inter / union, "same_target_count": same_count}


def parity(model: str, backend: str, frames, size: int) -> dict:
    threshold = card_threshold(model)
    ref = Detector(DetectorConfig(model=model, precision="fp32", input_size=size))
    t0 = time.perf_counter()
    det = Detector(DetectorConfig(model=model, backend=backend, precision="fp32", input_size=size))
    r = compare(ref, det, frames, threshold, f"{model}/{backend}")
    return {"model": model, "backend": backend, "precision": "fp32", "size": size, "threshold": threshold,
            "frames": len(frames), **r, "seconds_incl_compile": round(time.perf_counter() - t0, 1),
            "pass": r["max_abs_diff"] < 1e-3 and r["mask_iou"] >= 0.99 and r["same_target_count"] == len(frames)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", default=[], help="default: every model that ships weights")
    ap.add_argument("--backend", action="append", default=[], help="default: openvino and onnxruntime")
    ap.add_argument("--size", type=int, default=256, help="paper-protocol input size")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    models = args.model or [m for m in list_models() if ships_weights(m)]
    backends = args.backend or ["openvino", "onnxruntime"]
    names = (SAMPLE / "splits" / "demo.txt").read_text().split()
    frames = [read_image(SAMPLE / "images" / f"{n}.png") for n in names]
    print(f"machine: {machine_description()}; {len(frames)} bundled sample frames at {args.size}x{args.size}")
    rows = []
    for model in models:
        for backend in backends:
            why = unavailable(backend) or (None if backend in model_cfg(model).backends else "not supported")
            if why:
                print(f"  {model:10s} {backend:12s} skipped: {why}")
                continue
            r = parity(model, backend, frames, args.size)
            rows.append(r)
            print(f"  {model:10s} {backend:12s} max |p - p_torch| {r['max_abs_diff']:.2e}  mask IoU {r['mask_iou']:.4f}"
                  f" at {r['threshold']:.2f}  same target count {r['same_target_count']}/{r['frames']}"
                  f"  {'pass' if r['pass'] else 'FAIL'} ({r['seconds_incl_compile']} s incl. compile)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine_description(), "rows": rows}, f, indent=1)
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
