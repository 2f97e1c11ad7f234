"""How open IRSAM's WPMD branches are in a checkpoint: per block, the learnt diffusion constant k and the
gain γ of the BatchNorm that scales the branch's output before it joins the encoder stage.

    .venv/bin/python bench/wpmd_gates.py ~/irstd-runs/irsam_ablation_wpmd/best.pt [more checkpoints]

A branch whose |γ| stays near 0 (its initial value) adds almost nothing to the stage (the other BN gains
of the encoder sit near 1, printed for scale); k near 1 means the diffusion kept its initial constant.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.checkpoint import weights_from  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    args = ap.parse_args(argv)
    for path in args.checkpoints:
        state = weights_from(path)
        blocks = sorted({k.split(".")[1] for k in state if k.startswith("wpmd.")})
        others = [v.float().abs().mean() for k, v in state.items()
                  if k.startswith("encoder.") and k.endswith("bn.weight")]
        print(f"{path}: {len(blocks)} WPMD blocks; encoder BN |γ| mean {float(torch.stack(others).mean()):.3f}")
        for b in blocks:
            k = state[f"wpmd.{b}.log_k"].float().exp()
            g = state[f"wpmd.{b}.proj.bn.weight"].float().abs()
            print(f"  block {b}: k median {float(k.median()):.3f} [{float(k.min()):.3f}, {float(k.max()):.3f}]"
                  f"   |γ| mean {float(g.mean()):.4f} max {float(g.max()):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
