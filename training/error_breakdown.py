"""Where a checkpoint's IoU goes: missed target pixels vs false pixels near targets vs far from them.

    python -m training.error_breakdown irstd_ros/weights/lrrnet_sirst-v1.pt --data ../shared/datasets/sirst-v1 \
        --split val --threshold 0.95 [--worst 10]

Paper protocol (the frame resized to the dataset's paper size). "Near" is within
3 px of a ground-truth pixel (a 7x7 dilation): boundary errors; "far" pixels are
false alarms proper. Prints the totals and the images that lose the most pixels.
"""
from __future__ import annotations

import sys

import cv2
import numpy as np

from irstd_ros.eval.datasets import IRSTDDataset, paper_size
from irstd_ros.cli import parse_knobs

from .calibrate import checkpoint_detector, checkpoint_split_parser, run_tool


def main(argv=None) -> int:
    return run_tool("error_breakdown", _main, argv)


def _main(argv=None) -> int:
    ap = checkpoint_split_parser(__doc__)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--worst", type=int, default=10)
    args = ap.parse_args(argv)
    detector = checkpoint_detector(args.model, args.weights, parse_knobs(args.knob))
    dataset = IRSTDDataset(args.data, args.split, protocol="paper", size=paper_size(args.data))
    near_kernel = np.ones((7, 7), np.uint8)
    totals = dict(inter=0, union=0, missed=0, false_near=0, false_far=0)
    rows = []
    for sample in dataset:
        pred = detector.probabilities(sample.image) > args.threshold
        gt = sample.mask > 0
        near = cv2.dilate(gt.astype(np.uint8), near_kernel) > 0
        row = dict(name=sample.name, gt=int(gt.sum()), pred=int(pred.sum()), inter=int((pred & gt).sum()),
                   union=int((pred | gt).sum()), missed=int((gt & ~pred).sum()),
                   false_near=int((pred & ~gt & near).sum()), false_far=int((pred & ~near).sum()))
        for k in totals:
            totals[k] += row[k]
        rows.append(row)
    print(f"{args.split} ({len(rows)} images), threshold {args.threshold}: IoU {totals['inter'] / max(totals['union'], 1):.4f}"
          f" = {totals['inter']} / {totals['union']} px; lost: missed {totals['missed']}, "
          f"false near targets {totals['false_near']}, false far from targets {totals['false_far']}")
    print(f"{'image':>12} {'gt':>5} {'pred':>5} {'missed':>7} {'near':>5} {'far':>5}")
    for r in sorted(rows, key=lambda r: r["union"] - r["inter"], reverse=True)[: args.worst]:
        print(f"{r['name']:>12} {r['gt']:5d} {r['pred']:5d} {r['missed']:7d} {r['false_near']:5d} {r['false_far']:5d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
