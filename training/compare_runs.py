"""Compare training runs on their validation curves (an ablation's table): best epoch and the last few.

    python -m training.compare_runs ~/irstd-runs/irsam_ablation_wpmd ~/irstd-runs/irsam_ablation_no-wpmd
    python -m training.compare_runs ~/irstd-runs/irsam_ablation_no-wpmd{,_seed1,_seed2} ... --arms

One seed's best epoch is noisy on an 85-frame val split, so each run also gets the mean and spread of
its last ``--last`` validations, where the schedule has settled. ``--arms`` then pools the repeats of
each arm (``train --seed N`` names them ``<arm>_seedN``; the run without a suffix is seed 0): the mean
and spread over seeds of the best and of the settled values, so that a difference between arms can be
set against the differences between seeds of one arm. ``--from-json`` adds runs summarised earlier by
``--json`` whose directories are gone. Reads only ``metrics.jsonl``: no test split is involved.
"""
from __future__ import annotations

import argparse
import json
import re
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


def recorded(path: Path, last: int) -> List[Dict]:
    """Summaries an earlier ``--json`` wrote, which must have averaged the same number of validations."""
    data = json.loads(path.read_text())
    runs = data["runs"] if isinstance(data, dict) else data
    for r in runs:
        if len(r["tail_epochs"]) != last:
            raise ValueError(f"{path}: {r['run']} averaged its last {len(r['tail_epochs'])} validations, not {last}")
    return runs


def arm_of(run_name: str) -> str:
    return re.sub(r"_seed\d+$", "", run_name)


def pool_arms(summaries: List[Dict]) -> List[Dict]:
    """Per arm, in order of first appearance: its runs, and the mean and spread over them of the best
    validation and of the settled (last-validations) mean."""
    arms: Dict[str, List[Dict]] = {}
    for s in summaries:
        arms.setdefault(arm_of(s["run"]), []).append(s)
    pooled = []
    for arm, runs in arms.items():
        row = {"arm": arm, "runs": [r["run"] for r in runs]}
        for part, src in (("best", "best"), ("settled", "tail_mean")):
            row[part] = {k: statistics.fmean(r[src][k] for r in runs) for k in KEYS}
            row[part + "_sd"] = {k: statistics.stdev([r[src][k] for r in runs]) if len(runs) > 1 else 0.0
                                 for k in KEYS}
        pooled.append(row)
    return pooled


def format_arm(a: Dict) -> str:
    def cell(part: str, k: str, fmt: str) -> str:
        return f"{a[part][k]:{fmt}}±{a[part + '_sd'][k]:{fmt}}"
    return (f"{a['arm']:<28} {len(a['runs']):>2} seed{'s' if len(a['runs']) > 1 else ' '} | best: IoU {cell('best', 'iou', '.4f')} "
            f"Pd {cell('best', 'pd', '.4f')} Fa {cell('best', 'fa', '.2e')} | settled: IoU "
            f"{cell('settled', 'iou', '.4f')} nIoU {cell('settled', 'niou', '.4f')} Pd {cell('settled', 'pd', '.4f')} "
            f"Fa {cell('settled', 'fa', '.2e')}")


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*", help="run directories (each with metrics.jsonl)")
    ap.add_argument("--from-json", action="append", default=[], metavar="FILE",
                    help="runs summarised earlier by --json (the list, or {runs, arms}), listed first")
    ap.add_argument("--last", type=int, default=5, help="validations averaged at the end of each run")
    ap.add_argument("--arms", action="store_true",
                    help="also pool each arm's seeds (<arm>, <arm>_seedN): mean ± sample sd over seeds")
    ap.add_argument("--json", help="also write the summaries here (with --arms: {runs, arms})")
    args = ap.parse_args(argv)
    try:
        summaries = [s for f in args.from_json for s in recorded(Path(f), args.last)]
        summaries += [summarise(Path(r).expanduser(), args.last) for r in args.runs]
        if not summaries:
            raise ValueError("no runs given")
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        print(f"compare_runs: error: {exc}", file=sys.stderr)
        return 2
    print("val split, paper protocol, threshold 0.5")
    for s in summaries:
        print(format_row(s))
    out = summaries
    if args.arms:
        arms = pool_arms(summaries)
        print("arms, mean ± sd over seeds (settled: each run's mean of its last validations)")
        for a in arms:
            print(format_arm(a))
        out = {"runs": summaries, "arms": arms}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
