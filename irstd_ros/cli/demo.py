"""irstd-demo: the main job on its built-in default.

Runs the shipped LRRNet over the bundled sample of real SIRST-v1 test frames at
their native sizes (as the ROS node sees them) and prints, per frame, what was
found, then IoU / nIoU / Pd / Fa against the sample's masks and the speed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..datasets import IRSTDDataset
from ..detector import Detector, DetectorConfig
from ..errors import IRSTDError
from ..evaluation import evaluate
from ..pipeline import postprocess
from .eval import format_table

SAMPLE = Path(__file__).resolve().parents[1] / "sample" / "sirst-v1"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="irstd-demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="lrrnet")
    ap.add_argument("--weights")
    ap.add_argument("--data", default=str(SAMPLE), help="dataset directory (default: the bundled sample)")
    ap.add_argument("--split", default="demo")
    ap.add_argument("--threshold", type=float, default=0.5)
    args = ap.parse_args(argv)
    try:
        ds = IRSTDDataset(args.data, args.split, protocol="native")
        det = Detector(DetectorConfig(model=args.model, weights=args.weights))
        det.warmup()
        print(f"irstd_ros demo: {det.name}, weights {det.meta['path']}")
        print(f"{len(ds)} frames from {args.data} (split {args.split}), native size, threshold {args.threshold}\n")

        def show(sample, probs):
            _, dets = postprocess(probs, args.threshold)
            boxes = ", ".join(f"({d.x},{d.y} {d.width}x{d.height} p={d.score:.2f})" for d in dets[:4])
            more = f" +{len(dets) - 4}" if len(dets) > 4 else ""
            h, w = sample.image.shape
            print(f"  {sample.name:<10} {w:>3}x{h:<3} targets {_count(sample.mask)}  detections {len(dets)}: {boxes}{more}")

        res = evaluate(det, ds, args.threshold, show)
        res.pop("_accumulator")
        print()
        print(format_table(res))
    except (IRSTDError, ValueError, OSError) as exc:
        print(f"irstd-demo: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _count(mask) -> int:
    from ..metrics import components
    return len(components(mask)[1])


if __name__ == "__main__":
    sys.exit(main())
