"""Pick the compute precision at run time: what measured fastest where the frame runs.

On CPUs with AMX or AVX512-BF16, bf16 autocast roughly halves LRRNet latency;
elsewhere bf16 is emulated and slower than fp32, so we fall back to fp32. On a
GPU, torch runs fp32: one frame at a time these networks are launch-bound, and
on an H100 autocast's casts cost more than the bf16/fp16 math saves (shipped
LRRNet at 256x256: fp32 6.1 ms, fp16 9.2, bf16 9.4; ``bench/gpu_check.py``,
``bench/results/gpu_check_h100_2026-11-26.json``). TensorRT, which fuses the
casts away, runs fp16.

torch is imported inside the functions: the node's parameter table reads
:data:`PRECISIONS`, and the launch helper must not pay torch's import.
"""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")


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


def resolve_precision(precision: str, device="cpu", backend: str = "torch") -> str:
    """Map ``auto`` to what ``backend`` runs fastest on this machine; validate explicit choices.

    ``auto``: on a CPU, bf16 where it has native bf16 math, else fp32 (torch,
    OpenVINO); fp32 for ONNX Runtime (no bf16 CPU kernels); on a GPU fp32 for
    torch and fp16 for TensorRT.
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
        return "fp32"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def autocast(precision: str, device="cpu"):
    """The forward pass's context for a resolved precision: bf16 or fp16 autocast; for fp32, nothing on a CPU
    and IEEE fp32 on a GPU (TF32 off for convolutions and matmuls while it runs: torch's default TF32
    convolutions moved shipped LRRNet's probabilities 2.4e-3 from the CPU's on an H100, over the 1e-3 that
    fp32 parity means here; ``bench/gpu_check.py``)."""
    import torch

    dev = torch.device(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None and dev.type == "cuda":
        return _ieee_fp32()
    return torch.autocast(dev.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


@contextlib.contextmanager
def _ieee_fp32():
    import torch

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
