"""What only a GPU can check: the ops' Triton/CUDA paths and every model's CUDA forward and backward.

    IRSTD_OPS_NO_CPP=1 TRITON_INTERPRET=0 python3 bench/gpu_check.py [--out results.json]

Each check compares against a CPU reference in float64 by ‖out − ref‖ / ‖ref‖ on fresh
random inputs (fp32 well under 1e-3; bf16 under 3e-2), then times the CUDA path
(median of CUDA-event timings). Prints one table and writes JSON. Exits 1 if any
check fails. Not part of the test suite: CI has no GPU.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from irstd_ros.models import create_model, list_models  # noqa: E402
from irstd_ros.ops import (haar_dwt2d, haar_dwt2d_reference, haar_idwt2d, selective_scan,  # noqa: E402
                           selective_scan_blocked, selective_scan_reference)
from irstd_ros.ops import triton_kernels  # noqa: E402

ROWS = []


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if not torch.isfinite(a).all():
        return float("inf")
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def median_ms(fn, reps: int = 20) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def check(name: str, error: float, bound: float, ms: float | None = None, note: str = "") -> None:
    ok = error <= bound
    ROWS.append({"check": name, "rel_error": error, "bound": bound, "ok": ok, "ms": ms, "note": note})
    print(f"{'ok  ' if ok else 'FAIL'} {name:55s} err {error:.2e} (<= {bound:.0e})"
          + (f"  {ms:8.3f} ms" if ms is not None else "") + (f"  {note}" if note else ""), flush=True)


def scan_args(b, d, n, length, groups, neighbor, device, seed):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)
    bc = (b, groups, n, length) if groups else (b, n, length)
    args = dict(u=r(b, d, length), delta=r(b, d, length) * 0.5, A=-(torch.rand(d, n, generator=g) + 0.1),
                B=r(*bc), C=r(*bc), D=r(d), z=r(b, d, length), delta_bias=r(d) * 0.1, delta_softplus=True)
    if neighbor == 3:
        args["neighbor"] = r(b, d, length)
    elif neighbor == 4:
        args["neighbor"] = r(b, d, n, length)
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in args.items()}


def check_scan() -> None:
    for shape in [(2, 6, 4, 37, None, None), (2, 64, 8, 300, 4, 3), (1, 16, 16, 4096, 4, 4), (2, 512, 8, 2304, 4, 3)]:
        cuda = scan_args(*shape, "cuda", seed=sum(shape[:4]))
        cpu64 = {k: v.double().cpu() if isinstance(v, torch.Tensor) else v for k, v in cuda.items()}
        ref = selective_scan_reference(**cpu64) if shape[3] <= 300 else selective_scan_blocked(**cpu64)
        out = torch.full_like(cuda["u"], float("nan"))
        out.copy_(selective_scan(**cuda))          # dispatches to the Triton kernel on CUDA
        ms = median_ms(lambda: selective_scan(**cuda))
        ms_torch = median_ms(lambda: selective_scan_blocked(**cuda))
        check(f"scan fwd triton {shape}", rel(out, ref), 1e-4, ms, f"blocked torch scan {ms_torch:.3f} ms")
        # backward on CUDA: the Triton backward kernel (the op's CUDA autograd), against float64 on the CPU
        leaves = {k: v.clone().requires_grad_(True) if isinstance(v, torch.Tensor) else v for k, v in cuda.items()}
        leaves64 = {k: v.detach().double().cpu().requires_grad_(True) if isinstance(v, torch.Tensor) else v
                    for k, v in cuda.items()}
        grad = torch.randn_like(cuda["u"])
        selective_scan(**leaves).backward(grad)
        selective_scan_blocked(**leaves64).backward(grad.double().cpu())
        worst = max(rel(leaves[k].grad, leaves64[k].grad) for k, v in leaves.items() if isinstance(v, torch.Tensor))
        def fwd_bwd(fn):
            return lambda: fn(**leaves).backward(grad)
        ms_bwd, ms_bwd_torch = median_ms(fwd_bwd(selective_scan)), median_ms(fwd_bwd(selective_scan_blocked))
        check(f"scan bwd cuda {shape}", worst, 1e-3, ms_bwd,
              f"forward + backward; blocked torch scan {ms_bwd_torch:.3f} ms")


def check_haar() -> None:
    for size in [(8, 8), (31, 40), (256, 256), (512, 640)]:
        x = torch.randn(2, 16, *size, device="cuda")
        ref = haar_dwt2d_reference(x.double().cpu())
        y = haar_dwt2d(x)
        ms = median_ms(lambda: haar_dwt2d(x))
        check(f"haar dwt triton {size}", rel(y, ref), 1e-6, ms)
        back = haar_idwt2d(y, size)
        check(f"haar idwt triton round trip {size}", rel(back, x), 1e-6, median_ms(lambda: haar_idwt2d(y, size)))
        xg = x.clone().requires_grad_(True)
        x64 = x.double().cpu().requires_grad_(True)
        weight = torch.randn_like(y)
        (haar_dwt2d(xg) * weight).sum().backward()
        (haar_dwt2d(x64) * weight.double().cpu()).sum().backward()
        check(f"haar dwt grad cuda {size}", rel(xg.grad, x64.grad), 1e-6)


def _forward_backward(model, x, precision: str, device: str):
    """Train-mode forward and backward of a fixed random objective; (output, {param: grad})."""
    model.zero_grad()
    with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
        out = model(x.to(device))
    weight = torch.Generator().manual_seed(1)
    w = torch.randn(out.shape, generator=weight).to(device, out.dtype if precision != "bf16" else torch.float32)
    (out.float() * w).mean().backward()
    return out.float(), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _grad_error(grads, ref) -> tuple:
    """Relative error of all gradients together, and the parameter with the largest absolute error."""
    keys = sorted(ref)
    flat = torch.cat([grads[k].double().cpu().flatten() for k in keys])
    flat_ref = torch.cat([ref[k].double().cpu().flatten() for k in keys])
    worst = max(keys, key=lambda k: float((grads[k].double().cpu() - ref[k].double().cpu()).abs().max()))
    return rel(flat, flat_ref), worst


def check_models() -> None:
    for name in list_models():
        torch.manual_seed(0)
        model = create_model(name).train()
        x = torch.rand(2, 1, 128, 160)
        ref_out, ref_grads = _forward_backward(model.double(), x.double(), "fp32", "cpu")
        cpu_out, cpu_grads = _forward_backward(model.float(), x, "fp32", "cpu")
        cpu_err, cpu_worst = _grad_error(cpu_grads, ref_grads)
        check(f"{name} cpu fp32 vs fp64 backward (the floor)", cpu_err, 1e-2, note=f"worst {cpu_worst}")
        cuda_model = model.float().cuda()
        for precision, bound in (("fp32", 1e-3), ("bf16", 3e-2)):
            out, grads = _forward_backward(cuda_model, x, precision, "cuda")
            err, worst = _grad_error(grads, ref_grads)
            check(f"{name} cuda {precision} forward (train mode, 2x128x160)", rel(out, ref_out), bound)
            check(f"{name} cuda {precision} backward (all gradients)", err, max(bound * 10, 3 * cpu_err),
                  note=f"worst {worst}")
        cuda_model.eval()
        for precision in ("fp32", "bf16"):
            for hw in ((256, 256), (512, 640)):
                xx = torch.rand(1, 1, *hw, device="cuda")

                def fwd():
                    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
                        cuda_model(xx)
                ROWS.append({"check": f"{name} latency {precision} {hw}", "ms": median_ms(fwd), "ok": True})
                print(f"time {name} {precision} {hw}: {ROWS[-1]['ms']:.2f} ms", flush=True)


PARTS = {"scan": check_scan, "haar": check_haar, "models": check_models}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="gpu_check.json")
    ap.add_argument("--parts", nargs="+", default=["scan", "haar", "models"], choices=["scan", "haar", "models"])
    ap.add_argument("--no-tf32", action="store_true", help="full fp32 matmuls and convolutions (TF32 is the default)")
    args = ap.parse_args()
    if args.no_tf32:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here", file=sys.stderr)
        return 2
    print(f"{torch.cuda.get_device_name()} | torch {torch.__version__} | triton available {triton_kernels.AVAILABLE}"
          f" | {platform.python_version()} | TF32 {'off' if args.no_tf32 else 'on'}", flush=True)
    for part in (PARTS[p] for p in args.parts):
        try:
            part()
        except Exception:  # report and go on: one broken part must not hide the others' results
            traceback.print_exc()
            ROWS.append({"check": part.__name__, "ok": False, "note": traceback.format_exc(limit=3)})
    failed = any(not r["ok"] for r in ROWS)
    Path(args.out).write_text(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                                          "rows": ROWS}, indent=1))
    print(f"{sum(r['ok'] for r in ROWS)} passed, {sum(not r['ok'] for r in ROWS)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
