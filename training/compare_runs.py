"""Compare training runs on their validation curves (an ablation's table): best epoch and the last few.

    python -m training.compare_runs ~/irstd-runs/irsam_ablation_wpmd ~/irstd-runs/irsam_ablation_no-wpmd

One seed's best epoch is noisy on an 85-frame val split, so each run also gets the mean and spread of
its last ``--last`` validations, where the schedule has settled. Reads only ``metrics.jsonl``: no
test split is involved.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Dict, List

KEYS = ("iou", "niou", "pd", "fa")


def summarise(run: Path, last: int, metric: str = "iou") -> Dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    vals = [(r["epoch"], r["val"]) for r in rows if "val" in r]
    if not vals:
        raise ValueError(f"{run} has no validation rows")
    best_epoch, best = max(vals, key=lambda ev: ev[1][metric])
    tail_epochs, tail = zip(*vals[-last:])
    return {"run": run.name, "epochs": rows[-1]["epoch"], "hours": sum(r["epoch_time_s"] for r in rows) / 3600,
            "best_epoch": best_epoch, "best": {k: best[k] for k in KEYS},
            "tail_epochs": list(tail_epochs),
            "tail_mean": {k: statistics.fmean(v[k] for v in tail) for k in KEYS},
            "tail_sd": {k: statistics.pstdev([v[k] for v in tail]) for k in KEYS}}


def format_row(s: Dict) -> str:
    b, m, sd = s["best"], s["tail_mean"], s["tail_sd"]
    return (f"{s['run']:<28} {s['epochs']:>4} ep {s['hours']:5.2f} h wall | best ep {s['best_epoch']:>3}: IoU {b['iou']:.4f} "
            f"nIoU {b['niou']:.4f} Pd {b['pd']:.4f} Fa {b['fa']:.2e} | last {len(s['tail_epochs'])}: IoU "
            f"{m['iou']:.4f}±{sd['iou']:.4f} nIoU {m['niou']:.4f} Pd {m['pd']:.4f}±{sd['pd']:.4f} Fa {m['fa']:.2e}")


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="run directories (each with metrics.jsonl)")
    ap.add_argument("--last", type=int, default=5, help="validations averaged at the end of each run")
    ap.add_argument("--json", help="also write the summaries here")
    args = ap.parse_args(argv)
    try:
        summaries = [summarise(Path(r).expanduser(), args.last) for r in args.runs]
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        print(f"compare_runs: error: {exc}", file=sys.stderr)
        return 2
    print("val split, paper protocol, threshold 0.5")
    for s in summaries:
        print(format_row(s))
    if args.json:
        Path(args.json).write_text(json.dumps(summaries, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
