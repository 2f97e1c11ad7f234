"""Pick a checkpoint's operating threshold on the validation split (never on test).

    python -m training.calibrate runs/lrrnet_sirst-v1/best.pt --data ../shared/datasets/sirst-v1 --split val

For each threshold in 0.05..0.95 it scores the split (paper protocol) and picks
the one with the best IoU among those whose Fa is at most ``--fa-max`` and Pd
at least ``--pd-min``; if none qualifies, the one with the lowest Fa among those
with Pd >= ``--pd-min``, else the best IoU. Prints the table; ``--json`` saves it.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from irstd_ros.cli import parse_knobs
from irstd_ros.eval.datasets import IRSTDDataset
from irstd_ros.runtime.detector import Detector, DetectorConfig
from irstd_ros.errors import CheckpointError, IRSTDError, one_line
from irstd_ros.eval.metrics import MetricAccumulator

from . import checkpoint

THRESHOLDS = tuple(np.round(np.arange(0.05, 0.951, 0.05), 2))


def sweep(detector: Detector, dataset: IRSTDDataset, thresholds=THRESHOLDS):
    accs = [MetricAccumulator(threshold=float(t), curve_thresholds=()) for t in thresholds]
    for sample in dataset:
        probs = detector.probabilities(sample.image)
        for acc in accs:
            acc.update(probs, sample.mask)
    return [acc.summary() for acc in accs]


def choose(rows, fa_max: float, pd_min: float) -> dict:
    ok = [r for r in rows if r["fa"] <= fa_max and r["pd"] >= pd_min]
    if ok:
        return max(ok, key=lambda r: r["iou"])
    ok = [r for r in rows if r["pd"] >= pd_min]
    if ok:
        return min(ok, key=lambda r: (r["fa"], -r["iou"]))
    return max(rows, key=lambda r: r["iou"])


def checkpoint_split_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments every "score this checkpoint on this split" tool takes."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("weights")
    ap.add_argument("--model", default="lrrnet")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                    help="a model knob to score with (IRSTD-Diff's mode, steps: as they will ship)")
    return ap


def checkpoint_detector(model: str, weights: str, knobs: dict | None = None) -> Detector:
    """A Detector on an exported checkpoint, or on a run's own best.pt / last.pt, with ``knobs`` set.

    last.pt carries optimizer and RNG state that the inference loader refuses to
    unpickle, so its weights (the EMA where the run kept one) go through the same
    conversion ``export_weights`` uses.
    """
    knobs = dict(knobs or {})
    try:
        return Detector(DetectorConfig(model=model, weights=weights, knobs=knobs))
    except CheckpointError as first:
        try:
            state = checkpoint.load_training(weights)
        except checkpoint.CheckpointLoadError:
            raise first from None
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "weights.pt"
            torch.save(checkpoint.inference_state_from_training(state), path)
            return Detector(DetectorConfig(model=model, weights=str(path), knobs=knobs))


def run_tool(name: str, body, argv=None) -> int:
    """Run a checkpoint-on-a-split tool; a bad path, split or checkpoint is one line on stderr, exit 2."""
    try:
        return body(argv)
    except IRSTDError as exc:
        print(f"{name}: error: {one_line(exc)}", file=sys.stderr)
        return 2


def main(argv=None) -> int:
    return run_tool("calibrate", _main, argv)


def _main(argv=None) -> int:
    ap = checkpoint_split_parser(__doc__)
    ap.add_argument("--fa-max", type=float, default=2e-5)
    ap.add_argument("--pd-min", type=float, default=0.93)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.split == "test":
        raise IRSTDError("thresholds are chosen on a validation split, never on test")
    knobs = parse_knobs(args.knob)
    det = checkpoint_detector(args.model, args.weights, knobs)
    rows = sweep(det, IRSTDDataset(args.data, args.split, protocol="paper"))
    best = choose(rows, args.fa_max, args.pd_min)
    print(f"{'thr':>5} {'IoU':>7} {'nIoU':>7} {'Pd':>7} {'Fa':>10}")
    for r in rows:
        mark = "  <-" if r is best else ""
        print(f"{r['threshold']:5.2f} {r['iou']:7.4f} {r['niou']:7.4f} {r['pd']:7.4f} {r['fa']:10.3e}{mark}")
    if args.json:
        Path(args.json).write_text(json.dumps({"split": args.split, "fa_max": args.fa_max, "pd_min": args.pd_min,
                                               "knobs": knobs, "chosen": best, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
