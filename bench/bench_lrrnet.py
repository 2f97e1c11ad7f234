"""Benchmark LRRNet inference latency per backend and input size (a script, never a test).

    .venv/bin/python bench/bench_lrrnet.py [--sizes 256 512] [--runs 30] [--json bench/results/lrrnet.json]

Prints the median and p90 of repeated single-frame runs after warm-up, the
machine, the thread count and the FLOPs per frame (multiply-adds x 2, counted by
torch's FlopCounterMode). Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from irstd_ros.cli.eval import machine_description  # noqa: E402
from irstd_ros.models import create_model  # noqa: E402
from irstd_ros.precision import autocast, cpu_has_fast_bf16  # noqa: E402


def flops(model, size: int) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 1, size, size))
    return counter.get_total_flops()


def time_backend(model, size: int, precision: str, runs: int, warmup: int = 5):
    x = torch.rand(1, 1, size, size).contiguous(memory_format=torch.channels_last)
    m = model.to(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode(), autocast(precision):
        for i in range(warmup + runs):
            t0 = time.perf_counter()
            m(x)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json")
    args = ap.parse_args()
    model = create_model("lrrnet").eval()
    backends = ["fp32"] + (["bf16"] if cpu_has_fast_bf16() else [])
    print(f"LRRNet ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params) on {machine_description()}")
    if "bf16" not in backends:
        print("  (no native bf16 on this CPU: torch bf16 skipped)")
    rows = []
    for size in args.sizes:
        gflops = flops(model, size) / 1e9
        for prec in backends:
            med, p90 = time_backend(model, size, prec, args.runs)
            rows.append({"backend": f"torch-{prec}", "size": size, "median_ms": round(med, 2),
                         "p90_ms": round(p90, 2), "fps": round(1e3 / med, 1), "gflops": round(gflops, 2)})
            print(f"  {size}x{size}  torch-{prec:<5} median {med:7.1f} ms  p90 {p90:7.1f} ms  "
                  f"{1e3 / med:6.1f} FPS  {gflops:.2f} GFLOPs/frame")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"machine": machine_description(), "runs": args.runs,
                                               "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
