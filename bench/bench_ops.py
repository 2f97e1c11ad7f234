"""Benchmark the custom ops on the CPU (a script, never a test).

    .venv/bin/python bench/bench_ops.py [--lengths 1024 4096 16384] [--json bench/results/ops_cpu.json]

Selective scan at batch 1, dim 64, N 16 (Mamba's usual sizes; delta_softplus
and D on), for every CPU implementation: the Python-loop reference, the blocked
torch scan (the fallback and export decomposition), the fused C++ kernel
(forward, and forward + backward). Haar DWT: pywt, the depthwise-conv
formulation, and the op. Medians of repeated runs after warm-up, with the
speed-up over the reference. Triton kernels are not timed here: on a CPU they
only run under the interpreter, which says nothing about GPU speed.
Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timing import median_ms  # noqa: E402
from irstd_ros.machine import machine_description  # noqa: E402
from irstd_ros.ops import (cpu_extension, haar_dwt2d, haar_dwt2d_reference, haar_idwt2d,  # noqa: E402
                           selective_scan, selective_scan_blocked, selective_scan_reference)


def scan_inputs(length: int, dim: int = 64, n: int = 16, requires_grad: bool = False):
    g = torch.Generator().manual_seed(0)
    t = lambda *s: torch.randn(*s, generator=g).requires_grad_(requires_grad)
    return dict(u=t(1, dim, length), delta=t(1, dim, length), A=(-torch.rand(dim, n, generator=g) - 0.1),
                B=t(1, n, length), C=t(1, n, length), D=torch.ones(dim), delta_softplus=True)


def bench_scan(lengths, runs):
    rows = []
    for length in lengths:
        args = scan_inputs(length)
        ref_runs = max(1, min(runs, 40960 // length))
        row = {"L": length, "reference_ms": median_ms(lambda: selective_scan_reference(**args), ref_runs, 1)}
        with torch.no_grad():
            row["blocked_torch_ms"] = median_ms(lambda: selective_scan_blocked(**args), runs)
            if cpu_extension.load() is not None:
                row["cpp_fused_ms"] = median_ms(lambda: selective_scan(**args), runs)
        if cpu_extension.load() is not None:
            grad_args = scan_inputs(length, requires_grad=True)
            row["cpp_fused_fwd_bwd_ms"] = median_ms(lambda: selective_scan(**grad_args).sum().backward(), runs)
        for key in ("blocked_torch_ms", "cpp_fused_ms"):
            if key in row:
                row[key.replace("_ms", "_speedup")] = row["reference_ms"] / row[key]
        rows.append(row)
        print("  L={L:>6}: reference {reference_ms:8.1f} ms | blocked torch {blocked_torch_ms:7.1f} ms "
              "({blocked_torch_speedup:5.1f}x)".format(**row)
              + (" | C++ fused {cpp_fused_ms:6.2f} ms ({cpp_fused_speedup:5.1f}x), fwd+bwd {cpp_fused_fwd_bwd_ms:6.1f} ms"
                 .format(**row) if "cpp_fused_ms" in row else " | C++ kernels not built"), flush=True)
    return rows


def bench_haar(shapes, runs):
    import pywt
    rows = []
    for shape in shapes:
        x = torch.randn(*shape)
        xn = x.numpy()
        with torch.no_grad():
            row = {"shape": list(shape),
                   "pywt_ms": median_ms(lambda: pywt.dwt2(xn, "haar"), runs),
                   "conv_ms": median_ms(lambda: haar_dwt2d_reference(x), runs),
                   "op_dwt_ms": median_ms(lambda: haar_dwt2d(x), runs)}
            y = haar_dwt2d(x)
            row["op_idwt_ms"] = median_ms(lambda: haar_idwt2d(y), runs)
        row["op_speedup_over_pywt"] = row["pywt_ms"] / row["op_dwt_ms"]
        rows.append(row)
        print("  {shape}: pywt {pywt_ms:6.2f} ms | depthwise conv {conv_ms:6.2f} ms | op DWT {op_dwt_ms:6.2f} ms "
              "({op_speedup_over_pywt:4.1f}x pywt), IDWT {op_idwt_ms:6.2f} ms".format(**row), flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json")
    args = ap.parse_args()
    machine = machine_description()
    print(f"irstd ops on {machine}")
    print("selective scan, batch 1, dim 64, N 16 (medians):")
    scan = bench_scan(args.lengths, args.runs)
    print("Haar DWT/IDWT (medians):")
    haar = bench_haar([(1, 16, 256, 256), (1, 64, 128, 128), (1, 1, 512, 640)], args.runs)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"machine": machine, "torch": torch.__version__,
                                               "threads": torch.get_num_threads(),
                                               "selective_scan": scan, "haar": haar}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
