"""Pick the CPU compute precision at run time: bf16 only where the CPU has native bf16 math.

On CPUs with AMX or AVX512-BF16, bf16 autocast roughly halves LRRNet latency;
elsewhere bf16 is emulated and slower than fp32, so we fall back to fp32.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_fast_bf16() -> bool:
    flags = cpu_flags()
    return bool({"amx_bf16", "avx512_bf16"} & flags)


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """Map ``auto`` to ``bf16`` or ``fp32`` for this machine; validate explicit choices."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    dev = torch.device(device)
    if precision != "auto":
        return precision
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def autocast(precision: str, device: str | torch.device = "cpu"):
    """An autocast context for a resolved precision (a no-op for fp32)."""
    dev = torch.device(device)
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")
