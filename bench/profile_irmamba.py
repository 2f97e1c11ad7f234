"""The measurements behind IRMamba's design choices (a script, never a test).

    .venv/bin/python bench/profile_irmamba.py levels [--variant "ssm_ratio=2.0"] [--variant "lrm_stages=(1,2,3,4)"]
    .venv/bin/python bench/profile_irmamba.py bf16-grad

``levels``: forward + backward time of each encoder level (conv and VSS branch) and
decoder level (and its LRM) on batch 2 of 192x192 activations under bf16 autocast, and
the inference time of one 256x256 frame, for the shipped configuration and any
``--variant`` (keyword=value, Python literals).

``bf16-grad``: cosine between the bf16-autocast and fp32 gradients of every registered
model on one real-sized batch with a small target (its training loss), then for
IRMamba with parts of the network forced to fp32, to locate the loss of precision.
Quote the machine with the numbers; run on an idle machine.
"""
from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from irstd_ros.layers import BasicResBlock, ChannelAttention, LayerNorm2d, SpatialAttention  # noqa: E402
from irstd_ros.machine import machine_description  # noqa: E402
from irstd_ros.models import create_model, list_models  # noqa: E402
from irstd_ros.models.irmamba import DecoderLevel, DualLevel, LayerRestoration  # noqa: E402
from training.losses import build_loss  # noqa: E402


def _fwd_bwd_seconds(fn, *inputs) -> float:
    def once():
        xs = [t.detach().requires_grad_() for t in inputs]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fn(*xs)
        (out if isinstance(out, torch.Tensor) else out[-1]).float().sum().backward()
    once()
    t0 = time.perf_counter()
    once()
    return time.perf_counter() - t0


def levels(args) -> None:
    variants = [{}] + [dict([(k, ast.literal_eval(v)) for k, v in (kv.split("=", 1) for kv in spec.split(";"))])
                       for spec in args.variant]
    for variant in variants:
        torch.manual_seed(0)
        m = create_model("irmamba", **variant).to(memory_format=torch.channels_last)
        x = torch.rand(2, 1, 192, 192).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            skips = [m.stem(x)]
            skips.append(m.down(skips[0]))
            c = mm = skips[1]
            level_inputs = []
            for level in m.levels:
                level_inputs.append((c, mm))
                c, mm, fused = level(c, mm)
                skips.append(fused)
            y, dec_inputs = skips[-1], []
            for level, skip in zip(m.decoder, reversed(skips[:-1])):
                dec_inputs.append((y, skip))
                y = level(y, skip)
        total = _fwd_bwd_seconds(lambda t: m.down(m.stem(t)), x)
        print(f"variant {variant or 'shipped'}: stem+down {total:.2f} s")
        for i, (level, (ci, mi)) in enumerate(zip(m.levels, level_inputs)):
            conv = _fwd_bwd_seconds(lambda t: level.conv_blocks(level.conv_down(t)), ci)
            vss = _fwd_bwd_seconds(lambda t: level.mamba_blocks(level.mamba_down(t)), mi)
            print(f"  encoder level {i}: conv branch {conv:.2f} s, VSS branch {vss:.2f} s")
            total += conv + vss
        for i, (level, (yi, si)) in enumerate(zip(m.decoder, dec_inputs)):
            whole = _fwd_bwd_seconds(level, yi, si)
            with torch.no_grad():
                high = level.block(level.expand(yi))
            lrm = _fwd_bwd_seconds(level.lrm, high, si)
            print(f"  decoder level {i} ({len(level.lrm.stages)} LRM stages): {whole:.2f} s, of which LRM {lrm:.2f} s")
            total += whole
        print(f"  sum {total:.2f} s (batch 2, 192x192, bf16 autocast, forward + backward)")
        m.eval()
        frame = torch.rand(1, 1, 256, 256).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            for _ in range(2):
                m(frame)
            times = []
            for _ in range(7):
                t0 = time.perf_counter()
                m(frame)
                times.append(time.perf_counter() - t0)
        print(f"  inference, one 256x256 frame, bf16: median {1000 * sorted(times)[3]:.1f} ms")


def _fp32(module: nn.Module) -> None:
    forward = module.forward

    def run(*a, **k):
        with torch.autocast("cpu", enabled=False):
            return forward(*[t.float() if isinstance(t, torch.Tensor) else t for t in a], **k)
    module.forward = run


def _gradient_cosine(name: str, fp32_parts=()) -> float:
    torch.manual_seed(0)
    m = create_model(name).train()
    for mod in m.modules():
        if isinstance(mod, fp32_parts):
            _fp32(mod)
    loss_fn = build_loss(name, {"bce_weight": 1.0, "bce_pos_weight": 5.0})
    x = torch.rand(2, 1, 96, 96)
    y = torch.zeros_like(x)
    y[:, :, 40:44, 50:53] = 1
    grads = {}
    for precision in ("fp32", "bf16"):
        m.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = loss_fn.predict(m, x, y)
        loss, _ = loss_fn(out, x, y)
        loss.backward()
        grads[precision] = torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None])
    return float(torch.nn.functional.cosine_similarity(grads["fp32"], grads["bf16"], 0))


def bf16_grad(args) -> None:
    for name in list_models():
        print(f"{name}: cosine(bf16 gradient, fp32 gradient) = {_gradient_cosine(name):.4f}")
    for label, parts in (("norms", (nn.BatchNorm2d, LayerNorm2d)), ("attention maps", (ChannelAttention, SpatialAttention)),
                         ("ResNet blocks", (BasicResBlock,)), ("LRMs", (LayerRestoration,)),
                         ("encoder levels", (DualLevel,)), ("decoder levels", (DecoderLevel,))):
        print(f"irmamba with its {label} in fp32: {_gradient_cosine('irmamba', parts):.4f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    lv = sub.add_parser("levels")
    lv.add_argument("--variant", action="append", default=[], help='e.g. "lrm_stages=(1,2,3,4)"; ";" joins several')
    sub.add_parser("bf16-grad")
    args = ap.parse_args()
    print(machine_description())
    {"levels": levels, "bf16-grad": bf16_grad}[args.what](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
