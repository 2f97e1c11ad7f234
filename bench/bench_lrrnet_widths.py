"""Which LRRNet width and depth reach 10 FPS at 640x512 on this CPU (a design sweep, a script, never a test).

    .venv/bin/python bench/bench_lrrnet_widths.py [--sizes 640x512 256x256] [--precisions bf16 fp32]
        [--json bench/results/lrrnet_widths_cpu.json]

The paper's LRRNet (16/32/64/128 wide, 2 ResBlocks per encoder stage) is 72.5 GFLOPs a
frame at 640x512, about 210 ms under OpenVINO bf16 here: a third of the 10 FPS the
issue asks for through the node, and the node itself adds about 1 ms. So the only way
there is fewer FLOPs. Each candidate runs with random weights (latency does not depend
on them) through the same OpenVINO export and engine the node uses, with a speed probe
before each cell (the machine has two speed states; see bench_backends.py).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_backends import speed_probe  # noqa: E402
from bench_models import flops, size_arg  # noqa: E402
from timing import p90, times_ms  # noqa: E402
from irstd_ros.runtime.backends import openvino_backend  # noqa: E402
from irstd_ros.machine import machine_description  # noqa: E402
from irstd_ros.models import create_model  # noqa: E402

CANDIDATES = {
    "paper 16/32/64/128 d2": {"channels": (16, 32, 64, 128), "depth": 2},
    "16/32/64/128 d1": {"channels": (16, 32, 64, 128), "depth": 1},
    "12/24/48/96 d1": {"channels": (12, 24, 48, 96), "depth": 1},
    "8/16/32/64 d2": {"channels": (8, 16, 32, 64), "depth": 2},
    "8/16/32/64 d1": {"channels": (8, 16, 32, 64), "depth": 1},
    "16/16/32/64 d1": {"channels": (16, 16, 32, 64), "depth": 1},
    "16/16/32/64 d2": {"channels": (16, 16, 32, 64), "depth": 2},
    "16/32/32/64 d1": {"channels": (16, 32, 32, 64), "depth": 1},
    "16/16/32/32 d1": {"channels": (16, 16, 32, 32), "depth": 1},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=size_arg, default=[(512, 640)], help="WIDTHxHEIGHT")
    ap.add_argument("--precisions", nargs="+", default=["bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    print(f"machine: {machine_description()}", flush=True)
    for name in args.candidates:
        model = create_model("lrrnet", **CANDIDATES[name]).eval()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        for hw in args.sizes:
            gf = flops(model, hw) / 1e9
            x = np.random.default_rng(0).random((1, 1, *hw), dtype=np.float32)
            with tempfile.TemporaryDirectory() as tmp:
                openvino_backend.build(model, (torch.from_numpy(x),), Path(tmp), "fp32")
                for precision in args.precisions:
                    run = openvino_backend.load(Path(tmp), precision)
                    probe = speed_probe()
                    times = times_ms(lambda: run([x]), args.runs)
                    med, slow = statistics.median(times), p90(times)
                    row = {"candidate": name, **{k: list(v) if isinstance(v, tuple) else v
                                                 for k, v in CANDIDATES[name].items()},
                           "params_m": round(params, 3), "size": f"{hw[1]}x{hw[0]}", "precision": precision,
                           "gflops": round(gf, 2), "median_ms": round(med, 1), "p90_ms": round(slow, 1),
                           "fps": round(1e3 / med, 1), "probe_gflops": round(probe, 1)}
                    rows.append(row)
                    print(f"  {name:22s} {row['size']:>9s} openvino-{precision}  {params:5.2f} M params "
                          f"{gf:6.1f} GFLOPs  median {med:6.1f} ms  p90 {slow:6.1f} ms  {1e3 / med:5.1f} FPS  "
                          f"probe {probe:5.1f}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine_description(), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
