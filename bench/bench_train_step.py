"""One model's training step: time and peak memory (a script, never a test).

    .venv/bin/python bench/bench_train_step.py --model irmamba --batch 8 --crop 256 --precision fp32

Runs a few optimiser steps of the model's registered loss, at the configuration that ships (its
SIRST-v1 training config's model_args), on random frames with
sparse targets (the training loop's forward, loss, backward and Adam step, no data
loading) and prints the median step time after the first (warm-up) step and the
process's peak resident memory (ru_maxrss), with the machine. Each configuration
runs in a fresh process so the peak is its own.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from irstd_ros.machine import machine_description  # noqa: E402
from irstd_ros.models import create_model, list_models  # noqa: E402
from irstd_ros.runtime.precision import autocast  # noqa: E402
from training.losses import build_loss  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_models import shipped_args  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="irmamba", choices=list_models())
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = create_model(args.model, **shipped_args(args.model)).train().to(memory_format=torch.channels_last)
    loss_fn = build_loss(args.model, {"bce_weight": 1.0, "bce_pos_weight": 5.0})
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.rand(args.batch, 1, args.crop, args.crop).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(args.batch, 1, args.crop, args.crop) > 0.999).float()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        with autocast(args.precision):
            out = loss_fn.predict(model, x, y)
        loss, _ = loss_fn(out, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2   # ru_maxrss is in KiB on Linux
    result = {"model": args.model, "batch": args.batch, "crop": args.crop, "precision": args.precision,
              "step_s_median": round(statistics.median(times[1:]), 2), "first_step_s": round(times[0], 2),
              "peak_rss_gib": round(rss_gb, 2), "machine": machine_description()}
    print(f"{args.model} train step, batch {args.batch} x {args.crop}x{args.crop}, {args.precision}: "
          f"median {result['step_s_median']:.2f} s (first {result['first_step_s']:.2f} s), "
          f"peak RSS {rss_gb:.2f} GiB | {result['machine']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
