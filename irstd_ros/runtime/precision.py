"""Pick the compute precision at run time: bf16 only where the hardware has native bf16 math.

On CPUs with AMX or AVX512-BF16, bf16 autocast roughly halves LRRNet latency;
elsewhere bf16 is emulated and slower than fp32, so we fall back to fp32. On
CUDA, native bf16 starts with compute capability 8.0 (Ampere);
``torch.cuda.is_bf16_supported()`` also says yes where it is only emulated.

torch is imported inside the functions: the node's parameter table reads
:data:`PRECISIONS`, and the launch helper must not pay torch's import.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional, Tuple

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
CUDA_NATIVE_BF16 = (8, 0)  # compute capability of Ampere, the first with bf16 tensor cores


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


def resolve_precision(precision: str, device="cpu", cuda_capability: Optional[Tuple[int, int]] = None,
                      backend: str = "torch") -> str:
    """Map ``auto`` to what ``backend`` runs fastest on this machine; validate explicit choices.

    ``auto``: bf16 where the CPU or GPU has native bf16 math, else fp32 (torch,
    OpenVINO); fp32 for ONNX Runtime (no bf16 CPU kernels); fp16 for TensorRT.
    ``cuda_capability`` overrides the queried GPU's (major, minor), so the
    decision can be tested without that GPU.
    """
    import torch

    from .backends import pair_problem

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    dev = torch.device(device)
    problem = pair_problem(backend, dev.type, precision)
    if problem:
        raise ValueError(problem)
    if precision != "auto":
        return precision
    if backend == "onnxruntime":
        return "fp32"
    if backend == "tensorrt":
        return "fp16"
    if dev.type == "cuda":
        capability = cuda_capability or torch.cuda.get_device_capability(dev)
        return "bf16" if tuple(capability) >= CUDA_NATIVE_BF16 else "fp32"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def autocast(precision: str, device="cpu"):
    """An autocast context for a resolved precision (a no-op for fp32)."""
    import torch

    dev = torch.device(device)
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")
