"""IRSTD-Diff's cost by mode and sampling steps, and what running the CE once per frame saves (a script).

    .venv/bin/python bench/bench_diffusion.py [--size 256x256] [--json bench/results/irstd_diff_cpu.json]

For the configuration that ships (``training/configs/irstd_diff_sirst-v1.yaml``) and the paper's (Table I/II):
the median latency of the per-frame condition (CE + LIW) and of one denoising step, GFLOPs of each, and the
whole frame in CE mode and in diffusion mode with DDIM at N = 1, 2, 4, 8, 16, 32 and DDPM over all T (the
shipped configuration; the paper's only up to what a minute allows). The CE-caching saving is what the
authors' code spends recomputing the condition at every step: (N - 1) x the condition's latency. bf16 where
the CPU has it natively, else fp32. The machine is printed with the numbers.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_models import shipped_args, size_arg  # noqa: E402
from timing import median_ms  # noqa: E402
from irstd_ros.machine import machine_description  # noqa: E402
from irstd_ros.models import create_model  # noqa: E402
from irstd_ros.runtime.precision import autocast, cpu_has_fast_bf16  # noqa: E402


def gflops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=size_arg, default=(256, 256), help="WxH")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json")
    args = ap.parse_args()
    prec = "bf16" if cpu_has_fast_bf16() else "fp32"
    h, w = args.size
    print(f"{machine_description()}, {prec}, {w}x{h}")
    rows = []
    for label, model_args in (("shipped", shipped_args("irstd_diff")), ("paper", {})):
        net = create_model("irstd_diff", **model_args).eval().to(memory_format=torch.channels_last)
        params = sum(p.numel() for p in net.parameters()) / 1e6
        x = torch.rand(1, 1, h, w).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(prec):
            _, cond = net.condition(x)
            x_t = torch.randn(1, 1, h, w).to(cond.dtype)
            t = torch.tensor([net.diffusion.T // 2])
            cond_ms = median_ms(lambda: net.condition(x), args.runs, warmup=2, budget_s=30.0)
            step_ms = median_ms(lambda: net.denoise(x_t, t, cond), args.runs, warmup=2, budget_s=30.0)
            cond_gf = gflops(lambda: net.condition(x))
            step_gf = gflops(lambda: net.denoise(x_t, t, cond))
            row = {"config": label, "params_m": round(params, 2), "condition_ms": round(cond_ms, 1),
                   "condition_gflops": round(cond_gf, 2), "step_ms": round(step_ms, 1), "step_gflops": round(step_gf, 2),
                   "frames": []}
            print(f"{label}: {params:.2f} M params; condition (CE + LIW) {cond_ms:.1f} ms, {cond_gf:.1f} GFLOPs; "
                  f"one denoising step {step_ms:.1f} ms, {step_gf:.1f} GFLOPs")
            settings = [("ce", "ddim", 1)] + [("diffusion", "ddim", n) for n in (1, 2, 4, 8, 16, 32)]
            settings.append(("diffusion", "ddpm", net.diffusion.T))
            for mode, sampler, n in settings:
                expected_s = (cond_ms + (0 if mode == "ce" else n * step_ms)) / 1e3
                if label == "paper" and expected_s > 60:
                    print(f"  {mode} {sampler} {n}: skipped (about {expected_s:.0f} s a frame)")
                    continue
                net.configure(mode=mode, sampler=sampler, sampling_steps=min(n, net.diffusion.T))
                ms = median_ms(lambda: net(x), 3 if expected_s > 2 else args.runs, warmup=2, budget_s=60.0)
                saving = 0.0 if mode == "ce" else (n - 1) * cond_ms
                row["frames"].append({"mode": mode, "sampler": sampler, "steps": n, "frame_ms": round(ms, 1),
                                      "ce_cache_saving_ms": round(saving, 1)})
                what = "CE alone" if mode == "ce" else f"diffusion, {sampler.upper()} {n} step(s)"
                extra = "" if mode == "ce" else f"; the CE cached saves {saving:.0f} ms ({100 * saving / (ms + saving):.0f} %)"
                print(f"  {what}: {ms:.1f} ms a frame{extra}", flush=True)
            rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine_description(), "precision": prec,
                                               "size": f"{w}x{h}", "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
