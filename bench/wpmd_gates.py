"""How open IRSAM's WPMD branches are in a checkpoint: per block, the learnt diffusion constant k and the
gain γ of the BatchNorm that scales the branch's output before it joins the encoder stage; with ``--data``,
also how the diffusion acts on real frames: the distribution of Perona-Malik's conductance g over the
features each block sees.

    .venv/bin/python bench/wpmd_gates.py ~/irstd-runs/irsam_ablation_wpmd/best.pt [more checkpoints]
    .venv/bin/python bench/wpmd_gates.py irstd_ros/weights/irsam_sirst-v1.pt --data ../shared/datasets/sirst-v1

A branch whose |γ| stays near 0 (its initial value) adds almost nothing to the stage (the other BN gains
of the encoder sit near 1, printed for scale); k near 1 means the diffusion kept its initial constant.
g near 1 everywhere would be plain smoothing (the detail bands removed), near 0 everywhere no diffusion
at all; Perona-Malik is the case between: g near 1 on flat feature regions, small at their edges.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from irstd_ros.eval.datasets import IRSTDDataset  # noqa: E402
from irstd_ros.ops.haar import haar_dwt2d  # noqa: E402
from irstd_ros.runtime.checkpoints import load_model  # noqa: E402
from irstd_ros.runtime.pipeline import preprocess  # noqa: E402
from training.checkpoint import weights_from  # noqa: E402


def static_gates(path: str, state: dict) -> None:
    blocks = sorted({k.split(".")[1] for k in state if k.startswith("wpmd.")})
    others = [v.float().abs().mean() for k, v in state.items()
              if k.startswith("encoder.") and k.endswith("bn.weight")]
    print(f"{path}: {len(blocks)} WPMD blocks; encoder BN |γ| mean {float(torch.stack(others).mean()):.3f}")
    for b in blocks:
        k = state[f"wpmd.{b}.log_k"].float().exp()
        g = state[f"wpmd.{b}.proj.bn.weight"].float().abs()
        print(f"  block {b}: k median {float(k.median()):.3f} [{float(k.min()):.3f}, {float(k.max()):.3f}]"
              f"   |γ| mean {float(g.mean()):.4f} max {float(g.max()):.4f}")


def conductance_on_frames(path: str, data: str, split: str, frames: int, size: int) -> None:
    """g of each block's first diffusion step over the features of ``frames`` frames of ``split``."""
    model, _ = load_model("irsam", path)  # built with the checkpoint's own model_args
    seen = {name: [] for name in model.wpmd}

    def record(name):
        def hook(block, inputs):
            _, lh, hl, _ = haar_dwt2d(inputs[0]).chunk(4, 1)
            g = block.conductance(lh, hl).flatten()
            seen[name].append(g[torch.randperm(g.numel())[:200_000]])  # a uniform sample keeps quantile() cheap
        return hook

    for name, block in model.wpmd.items():
        block.register_forward_pre_hook(record(name))
    ds = IRSTDDataset(data, split, protocol="paper", size=size)
    step = max(1, len(ds) // frames)
    names = ds.names[::step][:frames]
    torch.manual_seed(0)
    with torch.no_grad():
        for name in names:
            x, _ = preprocess(ds.load(name).image, model.stride, size)
            model(x)
    print(f"  conductance g on {len(names)} {Path(data).name} {split} frames at {size}x{size} "
          f"(quantiles over each block's feature pixels and channels):")
    for name, parts in seen.items():
        g = torch.cat(parts)
        q = [float(torch.quantile(g, p)) for p in (0.1, 0.5, 0.9)]
        print(f"  block {name}: g p10 {q[0]:.3f}  median {q[1]:.3f}  p90 {q[2]:.3f}   "
              f"g > 0.8 (diffused) {float((g > 0.8).float().mean()):.2f}  g < 0.2 (kept) "
              f"{float((g < 0.2).float().mean()):.2f}  between {float(((g >= 0.2) & (g <= 0.8)).float().mean()):.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--data", help="a dataset root: also measure g on its frames")
    ap.add_argument("--split", default="val", help="never test: this is for understanding, not scoring")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    for path in args.checkpoints:
        state = weights_from(path)
        static_gates(path, state)
        if args.data:
            conductance_on_frames(path, args.data, args.split, args.frames, args.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
