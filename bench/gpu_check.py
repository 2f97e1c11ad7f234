"""What only a GPU can check: the ops' Triton/CUDA paths and every model's CUDA forward and backward.

    IRSTD_OPS_NO_CPP=1 TRITON_INTERPRET=0 python3 bench/gpu_check.py [--out results.json] [--parts ...]
    python3 bench/gpu_check.py --dry-run      # here, before spending device time: the models and shipped
                                              # parts on the CPU, tiny variants, against themselves

Each check compares against a CPU reference in float64 by ‖out − ref‖ / ‖ref‖ on fresh
random inputs (fp32 well under 1e-3; bf16 under 3e-2), then times the CUDA path
(median of CUDA-event timings). Prints one table and writes JSON. Exits 1 if any
check fails. Not part of the test suite: CI has no GPU.

Models are checked on their training loss (the path training differentiates), at the default (paper)
configuration and at the one their SIRST-v1 training config trains; shipped weights through the node's
own pipeline (``Detector``) on the GPU against the CPU, on the bundled sample frames.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from irstd_ros.cli.demo import SAMPLE  # noqa: E402
from irstd_ros.eval.datasets import read_image  # noqa: E402
from irstd_ros.models import create_model, list_models, model_cfg  # noqa: E402
from irstd_ros.ops import (haar_dwt2d, haar_dwt2d_reference, haar_idwt2d, selective_scan,  # noqa: E402
                           selective_scan_blocked, selective_scan_reference)
from irstd_ros.ops import triton_kernels  # noqa: E402
from irstd_ros.runtime.checkpoints import card_threshold, ships_weights  # noqa: E402
from irstd_ros.runtime.detector import Detector, DetectorConfig  # noqa: E402
from training.losses import build_loss  # noqa: E402
from check_export_parity import compare  # noqa: E402  (bench/, beside this script)

ROWS = []
DEVICE, TINY = "cuda", False      # --dry-run: "cpu", True
OUT_PATH, DEVICE_NAME = None, ""
MODELS: list = []                 # --models: only these (models and shipped parts)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if not torch.isfinite(a).all():
        return float("inf")
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def median_ms(fn, reps: int = 20) -> float:
    if DEVICE == "cpu":               # the dry run: wall clock
        fn()
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return sorted(times)[1]
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


def _objective(model, loss_fn, x: torch.Tensor, target: torch.Tensor, draw: dict) -> tuple:
    """(outputs, loss): the model's own training loss on (x, target), the path training differentiates.
    IRSTD-Diff's draw (t, noise) is fixed from ``draw`` instead of the device's generator, so every device sees
    the same one."""
    if hasattr(model, "training_outputs"):
        outputs = model.training_outputs(x, target, draw["t"].to(x.device), draw["noise"].to(x.device, x.dtype))
    else:
        outputs = loss_fn.predict(model, x, target)
    return outputs, loss_fn(outputs, x.float(), target)[0]


def _forward_backward(model, loss_fn, x, target, draw, precision: str, device: str):
    """Train-mode forward and backward of the training loss; (first output as float, {param: grad})."""
    model.zero_grad()
    with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
        outputs, loss = _objective(model, loss_fn, x.to(device), target.to(device), draw)
    loss.backward()
    first = outputs if isinstance(outputs, torch.Tensor) else next(iter(outputs.values()))
    return first.float(), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _grad_error(grads, ref) -> tuple:
    """Relative error of all gradients together, and the parameter with the largest absolute error."""
    keys = sorted(ref)
    flat = torch.cat([grads[k].double().cpu().flatten() for k in keys])
    flat_ref = torch.cat([ref[k].double().cpu().flatten() for k in keys])
    worst = max(keys, key=lambda k: float((grads[k].double().cpu() - ref[k].double().cpu()).abs().max()))
    return rel(flat, flat_ref), worst


def model_variants(tiny: bool):
    """(label, name, args): each registered model at its default (the paper's) configuration, and again at the
    configuration its SIRST-v1 training config trains where that differs (IRSTD-Diff's narrower one); smallest
    first, so a run cut short by its time limit has checked the most networks."""
    out = []
    for name in MODELS or list_models():
        cfg = model_cfg(name)
        if tiny:
            out.append((f"{name} (tiny)", name, dict(cfg.tiny_args)))
            continue
        out.append((name, name, {}))
        train_cfg = ROOT / "training" / "configs" / f"{name}_sirst-v1.yaml"
        if train_cfg.is_file():
            args = yaml.safe_load(train_cfg.read_text()).get("model_args") or {}
            if args:
                out.append((f"{name} (as trained: {args})", name, args))
    size = lambda v: sum(p.numel() for p in create_model(v[1], **v[2]).parameters())  # noqa: E731
    return sorted(out, key=size)


def check_models() -> None:
    for label, name, args in model_variants(TINY):
        torch.manual_seed(0)
        model = create_model(name, **args).train()
        loss_fn = build_loss(name, {})
        gen = torch.Generator().manual_seed(2)
        x = torch.rand(2, 1, 128, 160, generator=gen)
        target = (torch.rand(2, 1, 128, 160, generator=gen) > 0.995).float()   # a few target pixels
        draw = {"t": torch.randint(0, 100, (2,), generator=gen), "noise": torch.randn(2, 1, 128, 160, generator=gen)}
        if hasattr(model, "diffusion"):
            draw["t"] = draw["t"] % model.diffusion.T
        ref_out, ref_grads = _forward_backward(model.double(), loss_fn, x.double(), target.double(),
                                               {k: v.double() if v.is_floating_point() else v for k, v in draw.items()},
                                               "fp32", "cpu")
        cpu_out, cpu_grads = _forward_backward(model.float(), loss_fn, x, target, draw, "fp32", "cpu")
        cpu_err, cpu_worst = _grad_error(cpu_grads, ref_grads)
        check(f"{label} cpu fp32 vs fp64 backward (the floor)", cpu_err, 1e-2, note=f"worst {cpu_worst}")
        dev_model = model.float().to(DEVICE)
        for precision, bound in (("fp32", 1e-3), ("bf16", 3e-2)):
            out, grads = _forward_backward(dev_model, loss_fn, x, target, draw, precision, DEVICE)
            err, worst = _grad_error(grads, ref_grads)
            check(f"{label} {DEVICE} {precision} forward (train mode, 2x128x160)", rel(out, ref_out), bound)
            check(f"{label} {DEVICE} {precision} backward (training loss, all gradients)", err,
                  max(bound * 10, 3 * cpu_err), note=f"worst {worst}")
        dev_model.eval()
        for precision in ("fp32", "bf16"):
            for hw in ((256, 256),) if TINY else ((256, 256), (512, 640)):
                xx = torch.rand(1, 1, *hw, device=DEVICE)

                def fwd():
                    with torch.no_grad(), torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=precision == "bf16"):
                        dev_model(xx)
                ROWS.append({"check": f"{label} latency {precision} {hw}", "ms": median_ms(fwd), "ok": True})
                print(f"time {label} {precision} {hw}: {ROWS[-1]['ms']:.2f} ms", flush=True)
        del model, dev_model
        save()


def check_shipped() -> None:
    """The shipped weights through the node's own pipeline (:class:`Detector`, backend torch) on the GPU, against
    the CPU in fp32 on the ten bundled sample frames: what a Jetson or discrete-GPU user gets with device:=cuda."""
    names = (SAMPLE / "splits" / "demo.txt").read_text().split()
    frames = [read_image(SAMPLE / "images" / f"{n}.png") for n in names]
    for model in (m for m in MODELS or list_models() if ships_weights(m)):
        threshold = card_threshold(model)
        ref = Detector(DetectorConfig(model=model, precision="fp32"))
        # fp32: probabilities within 1e-3 and masks IoU >= 0.99, as the CPU engines' parity; bf16 and fp16 move
        # probabilities near the threshold by up to ~0.15 on the CPU too, so they are judged by the mask alone
        loose = float("inf")
        for precision, bound, min_iou in (("fp32", 1e-3, 0.99), ("bf16", loose, 0.98), ("fp16", loose, 0.98)):
            if DEVICE == "cpu" and precision == "fp16":
                continue                  # the dry run: torch on the CPU serves fp32 and bf16
            det = Detector(DetectorConfig(model=model, device=DEVICE, precision=precision))
            r = compare(ref, det, frames, threshold)
            worst, iou = r["max_abs_diff"], r["mask_iou"]
            ok = worst <= bound and iou >= min_iou
            ROWS.append({"check": f"shipped {model} {DEVICE} {precision} vs cpu fp32 (10 sample frames)",
                         **r, "bound": bound, "min_iou": min_iou, "ok": ok})
            print(f"{'ok  ' if ok else 'FAIL'} shipped {model:12s} {DEVICE} {precision}: max |p - p_cpu| {worst:.2e}"
                  f" (<= {bound:.0e}), mask IoU {iou:.4f} (>= {min_iou}) at {threshold:.2f}", flush=True)
            for hw in ((256, 256),) if TINY else ((256, 256), (512, 640)):
                frame = (np.random.default_rng(0).random(hw) * 255).astype(np.uint8)
                ms = median_ms(lambda: det.probabilities(frame), reps=10)
                ROWS.append({"check": f"shipped {model} {DEVICE} {precision} node pipeline {hw}", "ms": ms, "ok": True})
                print(f"time shipped {model} {precision} {hw} (preprocess + model + sigmoid, to numpy): {ms:.2f} ms",
                      flush=True)


def save() -> None:
    """The rows so far, so that a run stopped at its time limit still leaves what it checked."""
    if OUT_PATH is not None:
        OUT_PATH.write_text(json.dumps({"device": DEVICE_NAME, "torch": torch.__version__, "rows": ROWS}, indent=1))


PARTS = {"scan": check_scan, "haar": check_haar, "models": check_models, "shipped": check_shipped}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="gpu_check.json")
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    ap.add_argument("--dry-run", action="store_true",
                    help="the models and shipped parts on the CPU, tiny variants (checks this script, not a GPU)")
    ap.add_argument("--models", nargs="+", default=[], choices=list_models(), help="default: every registered model")
    ap.add_argument("--no-tf32", action="store_true", help="full fp32 matmuls and convolutions (TF32 is the default)")
    args = ap.parse_args()
    if args.no_tf32:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    global DEVICE, TINY, OUT_PATH, DEVICE_NAME, MODELS
    MODELS = args.models
    if args.dry_run:
        DEVICE, TINY = "cpu", True
        args.parts = [p for p in args.parts if p in ("models", "shipped")]
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here", file=sys.stderr)
        return 2
    name = DEVICE_NAME = "cpu (dry run)" if args.dry_run else torch.cuda.get_device_name()
    OUT_PATH = Path(args.out)
    print(f"{name} | torch {torch.__version__} | triton available {triton_kernels.AVAILABLE}"
          f" | {platform.python_version()} | TF32 {'off' if args.no_tf32 else 'on'}", flush=True)
    for part in (PARTS[p] for p in args.parts):
        try:
            part()
        except Exception:  # report and go on: one broken part must not hide the others' results
            traceback.print_exc()
            ROWS.append({"check": part.__name__, "ok": False, "note": traceback.format_exc(limit=3)})
        save()
    failed = any(not r["ok"] for r in ROWS)
    print(f"{sum(r['ok'] for r in ROWS)} passed, {sum(not r['ok'] for r in ROWS)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
