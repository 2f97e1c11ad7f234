"""irstd-eval: score a model on a dataset split (IoU, nIoU, Pd, Fa, AUC, FPS).

    irstd-eval --model lrrnet --data ../shared/datasets/sirst-v1 --split test --protocol paper --json out.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ..errors import IRSTDError, one_line
from ..eval.datasets import PROTOCOLS, IRSTDDataset
from ..eval.metrics import bootstrap_ci
from ..eval.runner import MaskWriter, evaluate
from ..machine import machine_description
from ..models import list_models
from ..runtime.checkpoints import operating_threshold
from ..runtime.detector import Detector, DetectorConfig
from . import add_engine_args, engine_config, parse_knobs

JSON_KEYS = ("iou", "niou", "pd", "fa", "auc", "n_images", "n_targets", "fps", "latency_ms_median")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="irstd-eval", description="Evaluate an IRSTD model on a dataset split.")
    ap.add_argument("--model", default="lrrnet", choices=list_models())
    ap.add_argument("--weights", help="checkpoint path (default: the shipped weights)")
    ap.add_argument("--data", required=True, help="dataset directory with images/ masks/ splits/")
    ap.add_argument("--split", default="test")
    ap.add_argument("--protocol", default="paper", choices=PROTOCOLS,
                    help="paper: resize to the papers' size; native: pad to the stride, never resize")
    ap.add_argument("--threshold", type=float, default=None,
                    help="probability threshold in (0, 1); default: the weights' calibrated threshold (model card), else 0.5")
    add_engine_args(ap)
    ap.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                    help="a model knob, e.g. --knob mode=ce --knob sampling_steps=4 (irstd_diff); default: as shipped")
    ap.add_argument("--json", help="write the metrics here")
    ap.add_argument("--save-masks", help="write one binary PNG per image here, at native size")
    ap.add_argument("--plots", help="write the ROC / Pd-Fa curves and a few overlays here")
    ap.add_argument("--limit", type=int, default=0, help="evaluate only the first N images")
    ap.add_argument("--bootstrap", type=int, default=0, metavar="N",
                    help="also give 95%% confidence intervals from N resamples of the images (e.g. 2000)")
    return ap


def format_table(res: dict) -> str:
    rows = [("IoU", f"{res['iou']:.4f}"), ("nIoU", f"{res['niou']:.4f}"), ("Pd", f"{res['pd']:.4f}"),
            ("Fa", f"{res['fa']:.3e}  ({res['fa'] * 1e6:.2f} x 1e-6)"), ("AUC", "n/a (binary masks)" if res["auc"] is None else f"{res['auc']:.4f}"),
            ("images", str(res["n_images"])), ("targets", str(res["n_targets"])),
            ("latency", f"{res['latency_ms_median']:.1f} ms median, {res['latency_ms_p95']:.1f} ms p95"),
            ("FPS", f"{res['fps']:.1f}")]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def run(args) -> dict:
    if args.threshold is not None and (not 0.0 < args.threshold < 1.0 or math.isnan(args.threshold)):
        raise IRSTDError(f"--threshold must be in (0, 1), got {args.threshold}")
    if args.limit < 0:
        raise IRSTDError("--limit must be >= 0")
    if args.bootstrap < 0:
        raise IRSTDError("--bootstrap must be >= 0")
    ds = IRSTDDataset(args.data, args.split, protocol=args.protocol)
    det = Detector(DetectorConfig(model=args.model, weights=args.weights, knobs=parse_knobs(args.knob),
                                  **engine_config(args)))
    if args.threshold is None:
        args.threshold = operating_threshold(det.meta)
    det.warmup(*((ds.size, ds.size) if args.protocol == "paper" else (256, 256)), compile_missing=args.protocol == "paper")
    names = ds.names[: args.limit] if args.limit else ds.names
    writer = MaskWriter(args.save_masks, ds, args.threshold) if args.save_masks else None
    overlays = []

    def on_prediction(sample, probs):
        if writer:
            writer(sample, probs)
        if args.plots and len(overlays) < 6:
            from ..eval.plots import overlay
            overlays.append((sample.name, overlay(sample.image, sample.mask, probs > args.threshold)))

    res = evaluate(det, (ds.load(n) for n in names), args.threshold, on_prediction, total=len(names))
    acc = res.pop("_accumulator")
    if args.bootstrap:
        res["ci95"] = bootstrap_ci(acc, args.bootstrap)
        res["ci95_resamples"] = args.bootstrap
    res.update({"model": args.model, "weights": det.meta["path"], "backend": det.cfg.backend,
                "precision": det.precision, "engine": det.name, "knobs": det.knob_values(),
                "dataset": str(Path(args.data).resolve().name), "split": args.split, "protocol": args.protocol,
                "input_size": ds.size if args.protocol == "paper" else "native",
                "machine": machine_description()})
    print(f"{args.model} on {res['dataset']}/{args.split} ({args.protocol} protocol, threshold {args.threshold}, "
          f"{det.name})")
    print(format_table(res))
    if args.bootstrap:
        ci = res["ci95"]
        print(f"  95% CI over images ({args.bootstrap} resamples): IoU {ci['iou'][0]:.4f}-{ci['iou'][1]:.4f}  "
              f"nIoU {ci['niou'][0]:.4f}-{ci['niou'][1]:.4f}  Pd {ci['pd'][0]:.4f}-{ci['pd'][1]:.4f}  "
              f"Fa {ci['fa'][0]:.2e}-{ci['fa'][1]:.2e}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    if args.plots:
        from ..eval.plots import write_plots
        write_plots(args.plots, acc, f"{args.model} on {res['dataset']}/{args.split} ({args.protocol})", overlays)
    return res


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (IRSTDError, ValueError, OSError) as exc:
        print(f"irstd-eval: error: {one_line(exc)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
