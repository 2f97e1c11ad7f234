"""Plot a run's metrics.jsonl: training losses and validation IoU / Pd / Fa per epoch.

    python -m training.plot_metrics runs/lrrnet_sirst-v1/metrics.jsonl [--out runs/lrrnet_sirst-v1/metrics.png]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("log")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    path = Path(args.log)
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        print(f"plot_metrics: error: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    ep = [r["epoch"] for r in rows]
    skip = {"epoch", "step", "lr", "epoch_time_s", "machine", "val"}
    for key in [k for k in rows[0] if k not in skip and isinstance(rows[0][k], (int, float))]:
        ax[0].plot(ep, [r.get(key, float("nan")) for r in rows], label=key)  # each loss's own parts
    ax[0].set_yscale("log")
    ax[0].set_title("training loss")
    ax[0].legend()
    val = [r for r in rows if "val" in r]
    vep = [r["epoch"] for r in val]
    for key in ("iou", "niou", "pd"):
        ax[1].plot(vep, [r["val"][key] for r in val], label=key)
    ax[1].set_title("validation")
    ax[1].legend()
    ax[2].plot(vep, [r["val"]["fa"] for r in val])
    ax[2].set_yscale("log")
    ax[2].set_title("validation Fa (fraction)")
    for a in ax:
        a.set_xlabel("epoch")
    fig.tight_layout()
    out = Path(args.out) if args.out else path.with_suffix(".png")
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
