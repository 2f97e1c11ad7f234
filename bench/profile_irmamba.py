"""The measurements behind IRMamba's design choices (a script, never a test).

    .venv/bin/python bench/profile_irmamba.py levels [--variant "ssm_ratio=2.0"] [--variant "lrm_stages=(1,2,3,4)"]
    .venv/bin/python bench/profile_irmamba.py bf16-grad [--weights irmamba=~/irstd-runs/irmamba_sirst-v1/best.pt]
        [--trained-only]

``levels``: forward + backward time of each encoder level (conv and VSS branch) and
decoder level (and its LRM) on batch 2 of 192x192 activations under bf16 autocast, and
the inference time of one 256x256 frame, for the shipped configuration and any
``--variant`` (keyword=value, Python literals).

``bf16-grad``: cosine between the bf16-autocast and fp32 gradients of every registered
model's training loss on a real batch (four 192x192 crops of SIRST-v1 `train` frames with
their masks), at initialisation and, with ``--weights``, at trained weights. At
initialisation the measure is pessimistic: the loss gradient is nearly the same at every
background pixel, BatchNorm's backward subtracts its mean, and what is left is small enough
for bf16's rounding to dominate.
Quote the machine with the numbers; run on an idle machine.
"""
from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from irstd_ros.machine import machine_description  # noqa: E402
from irstd_ros.models import create_model, list_models  # noqa: E402
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


def _real_batch(n: int = 4, crop: int = 192):
    """The first ``n`` SIRST-v1 `train` frames at the paper size, centre-cropped, with their masks."""
    import numpy as np
    from irstd_ros.eval.datasets import IRSTDDataset
    ds = IRSTDDataset(str(Path(__file__).resolve().parents[2] / "shared" / "datasets" / "sirst-v1"), "train",
                      protocol="paper", size=256)
    o = (256 - crop) // 2
    samples = [ds.load(name) for name in ds.names[:n]]
    x = torch.from_numpy(np.stack([s.image[o:o + crop, o:o + crop] for s in samples]))[:, None].float()
    y = torch.from_numpy(np.stack([s.mask[o:o + crop, o:o + crop] for s in samples]).astype(np.float32))[:, None]
    return x, y


def _gradient_cosine(name: str, weights: str | None = None) -> float:
    """Cosine between the bf16-autocast and the fp32 gradient of the model's training loss on a real batch,
    at initialisation or at ``weights`` (a run's best.pt / last.pt)."""
    from training.checkpoint import load, weights_from
    torch.manual_seed(0)
    model_args, loss_cfg = {}, {"bce_weight": 1.0, "bce_pos_weight": 5.0}
    if weights:  # the network and loss the run trained (a narrower IRSTD-Diff, say), not the paper's defaults
        cfg = load(weights).get("config") or {}
        model_args, loss_cfg = cfg.get("model_args") or {}, cfg.get("loss") or loss_cfg
    m = create_model(name, **model_args).train()
    if weights:
        m.load_state_dict(weights_from(weights))
    loss_fn = build_loss(name, loss_cfg)
    x, y = _real_batch()
    grads = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(1)  # the same draw in both passes where the loss samples (IRSTD-Diff's t and noise)
        m.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = loss_fn.predict(m, x, y)
        loss, _ = loss_fn(out, x, y)
        loss.backward()
        grads[precision] = torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None])
    return float(torch.nn.functional.cosine_similarity(grads["fp32"], grads["bf16"], 0))


def bf16_grad(args) -> None:
    for name in ([] if args.trained_only else list_models()):
        print(f"{name}, initialised: cosine(bf16 gradient, fp32 gradient) = {_gradient_cosine(name):.4f}", flush=True)
    for item in args.weights:
        name, _, path = item.partition("=")
        print(f"{name}, trained ({path}): cosine = {_gradient_cosine(name, path):.4f}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    lv = sub.add_parser("levels")
    lv.add_argument("--variant", action="append", default=[], help='e.g. "lrm_stages=(1,2,3,4)"; ";" joins several')
    bg = sub.add_parser("bf16-grad")
    bg.add_argument("--weights", action="append", default=[], metavar="NAME=PATH",
                    help="also at trained weights, e.g. irmamba=~/irstd-runs/irmamba_sirst-v1/best.pt (the network "
                    "and loss are built from the checkpoint's config)")
    bg.add_argument("--trained-only", action="store_true", help="skip the registered models at initialisation")
    args = ap.parse_args()
    print(machine_description())
    {"levels": levels, "bf16-grad": bf16_grad}[args.what](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
