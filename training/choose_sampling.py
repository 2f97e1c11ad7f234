"""Choose IRSTD-Diff's serving mode and sampling steps on a validation split (never test).

    python -m training.choose_sampling runs/irstd_diff_sirst-v1/best.pt --data ../shared/datasets/sirst-v1 \\
        --split val --json sampling.json

Scores, on the split, at one threshold (``--threshold``, else the weights' card, else 0.5): CE alone;
diffusion with DDIM at N = 1, 2, 4, 8, 16, 32 and DDPM over all T (``--max-steps`` caps N); and the
authors' CE + sample blend at the same N as the chosen diffusion setting (the best diffusion setting when CE
alone is chosen), against that sample alone. Each row
has IoU, nIoU, Pd, Fa and the median latency a frame. The default is the fastest setting within ``--tolerance``
(0.01) IoU of the best. ``training.export_weights --knobs-from sampling.json`` writes it into the weights.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from irstd_ros.runtime.checkpoints import operating_threshold
from irstd_ros.eval.datasets import IRSTDDataset, PROTOCOLS
from irstd_ros.errors import IRSTDError, one_line
from irstd_ros.eval.runner import evaluate
from irstd_ros.machine import machine_description

from .calibrate import checkpoint_detector


def settings(T: int, max_steps: int):
    yield {"mode": "ce"}
    for n in (1, 2, 4, 8, 16, 32):
        if n <= min(T, max_steps):
            yield {"mode": "diffusion", "sampler": "ddim", "sampling_steps": n}
    if T <= max_steps:
        yield {"mode": "diffusion", "sampler": "ddpm", "sampling_steps": T}


def label(knobs: dict) -> str:
    if knobs["mode"] == "ce":
        return "CE alone"
    name = "fused (CE + sample)" if knobs["mode"] == "fused" else "diffusion"
    steps = f"DDPM {knobs['sampling_steps']}" if knobs.get("sampler") == "ddpm" else f"DDIM {knobs['sampling_steps']}"
    return f"{name}, {steps}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--protocol", default="paper", choices=PROTOCOLS)
    ap.add_argument("--threshold", type=float)
    ap.add_argument("--tolerance", type=float, default=0.01)
    ap.add_argument("--max-steps", type=int, default=100)
    ap.add_argument("--limit", type=int, default=0, help="only the first N images (smoke tests)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    try:
        if args.split == "test":
            raise IRSTDError("choose on a validation split; the test split is for the final score only")
        ds = IRSTDDataset(args.data, args.split, protocol=args.protocol)
        det = checkpoint_detector("irstd_diff", args.weights)      # an exported checkpoint, best.pt or last.pt
        threshold = args.threshold if args.threshold is not None else operating_threshold(det.meta)
        names = ds.names[: args.limit] if args.limit else ds.names
        rows = []
        print(f"{det.name} on {Path(args.data).name}/{args.split} ({args.protocol}), threshold {threshold}, "
              f"{machine_description()}")

        def score(knobs: dict, note: str = "") -> dict:
            det.set_knobs({"seed": 0, "sampler": "ddim", **knobs})
            det.warmup(*((ds.size, ds.size) if args.protocol == "paper" else (256, 256)), runs=1)
            res = evaluate(det, (ds.load(n) for n in names), threshold)
            res.pop("_accumulator")
            row = {"knobs": knobs, "label": label(knobs), **{k: res[k] for k in ("iou", "niou", "pd", "fa")},
                   "latency_ms": res["latency_ms_median"]}
            print(f"  {row['label']:<28} IoU {row['iou']:.4f}  nIoU {row['niou']:.4f}  Pd {row['pd']:.4f}  "
                  f"Fa {row['fa']:.2e}  {row['latency_ms']:7.1f} ms{note}", flush=True)
            return row

        for knobs in settings(det.model.diffusion.T, args.max_steps):
            rows.append(score(knobs))
        best = max(r["iou"] for r in rows)
        chosen = min((r for r in rows if r["iou"] >= best - args.tolerance), key=lambda r: r["latency_ms"])
        # the authors' blend against the sample alone, at the chosen steps (or the best diffusion setting's)
        sampled = [r for r in rows if r["knobs"]["mode"] == "diffusion"]
        if sampled:
            at = chosen if chosen["knobs"]["mode"] == "diffusion" else max(sampled, key=lambda r: r["iou"])
            rows.append(score({**at["knobs"], "mode": "fused"}, " (not a candidate: measured against the sample)"))
        print(f"default: {chosen['label']} (the fastest within {args.tolerance} IoU of the best, {best:.4f})")
        if args.json:
            Path(args.json).write_text(json.dumps({
                "weights": str(args.weights), "data": Path(args.data).name, "split": args.split, "protocol": args.protocol,
                "threshold": threshold, "tolerance": args.tolerance, "rows": rows, "default": chosen["knobs"],
                "machine": machine_description()}, indent=2) + "\n")
    except (IRSTDError, ValueError, OSError) as exc:
        print(f"choose_sampling: error: {one_line(exc)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
