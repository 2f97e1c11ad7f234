"""Inference backends: which engine runs a model, at which precision, on which device.

This module only names them and checks pairs; it imports neither torch nor an
engine, so the node's parameter table and the launch helper stay light. The
engines themselves (:mod:`.openvino_backend`, :mod:`.onnxruntime_backend`,
:mod:`.tensorrt_backend`) are imported on first use through :func:`engine`;
:class:`.compiled.CompiledModel` runs a model's export parts through one of them,
and :class:`.cache.EngineCache` keeps what they compile.
"""
from __future__ import annotations

import importlib
from typing import Dict, Optional, Sequence, Tuple

BACKENDS = ("torch", "openvino", "onnxruntime", "tensorrt")

# backend -> device kind -> precisions it runs there (fp16 on CPUs is slower than fp32 everywhere we measured,
# and ONNX Runtime's CPU provider has no bf16 kernels, so neither is offered); int8 needs ranges shipped with the
# weights (backends.int8), which config checks ask for
BACKEND_PRECISIONS: Dict[str, Dict[str, Tuple[str, ...]]] = {
    "torch": {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "bf16", "fp16")},
    "openvino": {"cpu": ("fp32", "bf16", "int8")},
    "onnxruntime": {"cpu": ("fp32", "int8")},
    "tensorrt": {"cuda": ("fp32", "fp16", "bf16")},
}

DESCRIPTION = ("torch: eager PyTorch (cpu or cuda); openvino and onnxruntime: CPU engines, compiled once per "
               "frame size and cached; tensorrt: Torch-TensorRT on an NVIDIA GPU (pip install .[tensorrt]).")


def pair_problem(backend: str, device: str = "cpu", precision: str = "auto",
                 model: Optional[str] = None, model_backends: Optional[Sequence[str]] = None) -> Optional[str]:
    """Why ``backend`` cannot run ``precision`` on ``device`` (or ``model``), else None. Pure: no imports."""
    if backend not in BACKENDS:
        return f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}"
    if model_backends is not None and backend not in model_backends:
        return f"{model or 'this model'} does not run under {backend}; it runs under {', '.join(model_backends)}"
    kind = device.partition(":")[0]
    table = BACKEND_PRECISIONS[backend]
    if kind not in table:
        return f"backend {backend} runs on {' or '.join(table)}, not on device={device!r}"
    if precision != "auto" and precision not in table[kind]:
        return f"backend {backend} on {kind} runs {', '.join(table[kind])}, not precision={precision!r}"
    return None


def engine(backend: str):
    """The engine module of a compiling backend (``openvino``, ``onnxruntime``, ``tensorrt``), imported now."""
    if backend == "torch" or backend not in BACKENDS:
        raise ValueError(f"{backend!r} is not a compiling backend")
    return importlib.import_module(f"{__name__}.{backend}_backend")


def unavailable(backend: str, device: str = "cpu") -> Optional[str]:
    """Why ``backend`` cannot run on this machine (its library missing, no GPU), else None. Imports it."""
    if backend == "torch":
        return None
    return engine(backend).unavailable(device)


def cpu_library_problem(library: str, label: str, device: str) -> Optional[str]:
    """Why a CPU engine cannot run: ``library`` does not import, or ``device`` is not the CPU; else None."""
    try:
        importlib.import_module(library)
    except Exception as exc:  # noqa: BLE001  ImportError, or a native library that fails to load
        return f"{library} is not importable ({exc.__class__.__name__}: {exc}); pip install {library}"
    if not device.startswith("cpu"):
        return f"this package runs {label} on the CPU only, not device={device!r}"
    return None
