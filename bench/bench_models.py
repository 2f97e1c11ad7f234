"""Benchmark every registered model's inference latency, side by side (a script, never a test).

    .venv/bin/python bench/bench_models.py [--models lrrnet irmamba] [--sizes 256x256 640x512]
                                           [--runs 20] [--json bench/results/models_cpu.json]

Each model at the configuration that ships (its shipped weights' model_args, serving knobs
included; else its SIRST-v1 training config's). For each: parameters, FLOPs per frame (multiply-adds x 2, torch's
FlopCounterMode; the selective scan counted as 7 FLOPs per channel, state and
step), and the median and p90 of repeated single-frame runs after warm-up, fp32
and bf16 (bf16 only where the CPU has it natively); slow configurations get fewer runs
(a minute's worth, at least 3). For models that scan
(IRMamba) it also reports the share of the forward spent in the scan op and the
same network with the scan swapped for the blocked torch scan (the no-compiler
fallback and export decomposition) and for the reference loop: the fused
kernel's worth end to end. Run it on an otherwise idle machine; the machine is
printed with the numbers.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from irstd_ros.machine import machine_description  # noqa: E402
from irstd_ros.layers import mamba2d  # noqa: E402
from irstd_ros.models import create_model, list_models  # noqa: E402
from irstd_ros.ops import selective_scan_blocked, selective_scan_reference  # noqa: E402
from irstd_ros.runtime.precision import autocast, cpu_has_fast_bf16  # noqa: E402


@register_flop_formula(torch.ops.irstd.selective_scan)
def _scan_flops(u_shape, delta_shape, A_shape, *args, **kwargs) -> int:
    b, d, length = u_shape
    return 7 * b * d * length * A_shape[1]


def size_arg(text: str):
    w, h = (int(v) for v in text.lower().split("x"))
    return h, w


def flops(model, hw) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 1, *hw))
    return counter.get_total_flops()


def shipped_args(name: str) -> dict:
    """The configuration that ships: the shipped weights' model_args (their card's, including the serving knobs
    chosen on val: IRSTD-Diff's mode and steps), else those of its SIRST-v1 training config, else the registry
    default. IRSTD-Diff ships a narrower network than the paper's (see its config)."""
    import json

    from irstd_ros.runtime.checkpoints import default_weights, ships_weights
    if ships_weights(name):
        card = default_weights(name).with_suffix(".json")
        if card.is_file():
            return dict(json.loads(card.read_text()).get("model_args") or {})
    path = Path(__file__).resolve().parents[1] / "training" / "configs" / f"{name}_sirst-v1.yaml"
    if not path.is_file():
        return {}
    import yaml
    return dict(yaml.safe_load(path.read_text()).get("model_args") or {})


def time_forward(model, hw, precision: str, runs: int, warmup: int = 3, budget_s: float = 60.0):
    """Median and p90 over ``runs`` frames, fewer when the first frame says ``runs`` would take over ``budget_s``."""
    x = torch.rand(1, 1, *hw).contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode(), autocast(precision):
        t0 = time.perf_counter()
        model(x)
        first = time.perf_counter() - t0
        if first * (warmup + runs) > budget_s:
            warmup, runs = 1, max(3, int(budget_s / first) - 1)
        for i in range(warmup - 1 + runs):
            t0 = time.perf_counter()
            model(x)
            if i >= warmup - 1:
                times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def scan_share(model, hw, precision: str) -> float:
    """Fraction of one forward's CPU time inside irstd::selective_scan (torch profiler)."""
    x = torch.rand(1, 1, *hw).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast(precision):
        model(x)
        with torch.profiler.profile() as prof:
            model(x)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    scan = sum(e.self_cpu_time_total for e in events if e.key == "irstd::selective_scan")
    return scan / total if total else 0.0


@contextlib.contextmanager
def scan_swapped(impl):
    """Run SS2D blocks with another selective-scan implementation."""
    saved = mamba2d.selective_scan_fn
    mamba2d.selective_scan_fn = impl
    try:
        yield
    finally:
        mamba2d.selective_scan_fn = saved


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list_models(), choices=list_models())
    ap.add_argument("--sizes", type=size_arg, nargs="+", default=[(256, 256), (512, 640)],
                    help="WxH, e.g. 256x256 640x512")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json")
    args = ap.parse_args()
    precisions = ["fp32"] + (["bf16"] if cpu_has_fast_bf16() else [])
    print(f"{machine_description()}" + ("" if "bf16" in precisions else " (no native bf16: bf16 skipped)"))
    rows = []
    for name in args.models:
        model = create_model(name, **shipped_args(name)).eval().to(memory_format=torch.channels_last)
        params = sum(p.numel() for p in model.parameters())
        scans = any(isinstance(m, mamba2d.SS2D) for m in model.modules())
        for hw in args.sizes:
            gflops = flops(model, hw) / 1e9
            for prec in precisions:
                med, p90 = time_forward(model, hw, prec, args.runs)
                row = {"model": name, "params_m": round(params / 1e6, 3), "size": f"{hw[1]}x{hw[0]}",
                       "backend": f"torch-{prec}", "median_ms": round(med, 2), "p90_ms": round(p90, 2),
                       "fps": round(1e3 / med, 1), "gflops": round(gflops, 2)}
                extra = ""
                if scans:
                    row["scan_share"] = round(scan_share(model, hw, prec), 3)
                    extra = f"  scan {100 * row['scan_share']:.0f}% of the time"
                rows.append(row)
                print(f"  {name:8s} {row['size']:>8s} torch-{prec:<5} median {med:7.1f} ms  p90 {p90:7.1f} ms  "
                      f"{row['fps']:5.1f} FPS  {gflops:6.2f} GFLOPs  {params / 1e6:5.2f} M params{extra}", flush=True)
        if scans:  # the op's worth end to end: same network, other scan implementations, 256x256 fp32
            hw = args.sizes[0]
            for label, impl, runs in (("blocked torch scan", selective_scan_blocked, 3),
                                      ("reference loop scan", selective_scan_reference, 1)):
                with scan_swapped(impl):
                    med, _ = time_forward(model, hw, "fp32", runs, warmup=1)
                rows.append({"model": name, "size": f"{hw[1]}x{hw[0]}", "backend": f"torch-fp32, {label}",
                             "median_ms": round(med, 2)})
                print(f"  {name:8s} {hw[1]}x{hw[0]} torch-fp32 with the {label}: {med:8.1f} ms")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"machine": machine_description(), "runs": args.runs,
                                               "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
