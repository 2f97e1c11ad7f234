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

from irstd_ros.models import create_model, list_models, model_cfg  # noqa: E402
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
        # backward on CUDA: autograd through the decomposition, against float64 on the CPU
        leaves = {k: v.clone().requires_grad_(True) if isinstance(v, torch.Tensor) else v for k, v in cuda.items()}
        leaves64 = {k: v.detach().double().cpu().requires_grad_(True) if isinstance(v, torch.Tensor) else v
                    for k, v in cuda.items()}
        grad = torch.randn_like(cuda["u"])
        selective_scan(**leaves).backward(grad)
        selective_scan_blocked(**leaves64).backward(grad.double().cpu())
        worst = max(rel(leaves[k].grad, leaves64[k].grad) for k, v in leaves.items() if isinstance(v, torch.Tensor))
        check(f"scan bwd cuda {shape}", worst, 1e-3)


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
        haar_dwt2d(xg).square().sum().backward()
        check(f"haar dwt grad cuda {size} (orthonormal: 2x)", rel(xg.grad, 2 * x), 1e-5)


def check_models() -> None:
    for name in list_models():
        torch.manual_seed(0)
        model = create_model(name).train()
        x = torch.rand(2, 1, 128, 160)
        ref = model.double()(x.double())
        ref.square().mean().backward()
        ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        model.zero_grad()
        cuda_model = model.float().cuda()
        for precision, bound in (("fp32", 1e-3), ("bf16", 3e-2)):
            cuda_model.zero_grad()
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
                out = cuda_model(x.cuda())
            out.float().square().mean().backward()
            grad_err = max(rel(p.grad, ref_grads[n]) for n, p in cuda_model.named_parameters())
            check(f"{name} cuda {precision} forward (train mode, 2x128x160)", rel(out.float(), ref), bound)
            check(f"{name} cuda {precision} backward (worst parameter)", grad_err, bound * 10)
        cuda_model.eval()
        for precision in ("fp32", "bf16"):
            for hw in ((256, 256), (512, 640)):
                xx = torch.rand(1, 1, *hw, device="cuda")

                def fwd():
                    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
                        cuda_model(xx)
                ROWS.append({"check": f"{name} latency {precision} {hw}", "ms": median_ms(fwd), "ok": True})
                print(f"time {name} {precision} {hw}: {ROWS[-1]['ms']:.2f} ms", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="gpu_check.json")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here", file=sys.stderr)
        return 2
    print(f"{torch.cuda.get_device_name()} | torch {torch.__version__} | triton available {triton_kernels.AVAILABLE}"
          f" | {platform.python_version()}", flush=True)
    failed = False
    for part in (check_scan, check_haar, check_models):
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
