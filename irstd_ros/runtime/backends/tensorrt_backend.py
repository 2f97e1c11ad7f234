"""Torch-TensorRT on NVIDIA GPUs (dynamo path), with the irstd ops as TensorRT plugins.

The program is exported with ``irstd::selective_scan`` and the Haar pair kept as
single nodes; :func:`irstd_ros.ops.deploy.register_tensorrt_plugins` turns each
into a plugin around its Triton kernel. fp16/bf16 cast the module and its float
inputs (explicit typing, Torch-TensorRT's default). The engine is saved as an
ExportedProgram (``engine.ep``) and loaded with ``torch.export.load``.

Needs a CUDA build of torch, ``torch_tensorrt`` and a GPU: ``pip install .[tensorrt]``.
On CPU-only machines :func:`unavailable` says so, and the node refuses the backend.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def unavailable(device: str = "cuda") -> Optional[str]:
    if not device.startswith("cuda"):
        return f"TensorRT runs on an NVIDIA GPU: set device=cuda (not {device!r})"
    if not torch.cuda.is_available():
        return "TensorRT needs a CUDA build of torch and an NVIDIA GPU; none is visible here"
    try:
        import torch_tensorrt  # noqa: F401
    except Exception as exc:  # noqa: BLE001  ImportError, or a TensorRT library that fails to load
        return f"torch_tensorrt is not importable ({exc.__class__.__name__}: {exc}); pip install .[tensorrt]"
    return None


def version() -> str:
    import tensorrt
    import torch_tensorrt
    return f"torch_tensorrt {torch_tensorrt.__version__}, TensorRT {tensorrt.__version__}"


def _cast(inputs: Sequence[torch.Tensor], dtype: torch.dtype, device: torch.device) -> tuple:
    return tuple(i.to(device, dtype) if i.is_floating_point() else i.to(device) for i in inputs)


def build(module, inputs: Sequence, entry: Path, precision: str, device: str = "cuda") -> List[str]:
    import torch_tensorrt

    from ...ops.deploy import register_tensorrt_plugins, uses_irstd_ops

    dev = torch.device(device)
    net = copy.deepcopy(module).to(dev, DTYPES[precision]).eval()
    args = _cast(inputs, DTYPES[precision], dev)
    program = torch.export.export(net, args)
    if uses_irstd_ops(program) and not register_tensorrt_plugins():
        raise RuntimeError("the irstd ops could not be registered as TensorRT plugins (see the log)")
    compiled = torch_tensorrt.dynamo.compile(program, arg_inputs=args, device=dev, min_block_size=1)
    torch_tensorrt.save(compiled, str(entry / "engine.ep"), arg_inputs=args)
    return ["engine.ep"]


def load(entry: Path, precision: str, device: str = "cuda") -> Callable[[List[np.ndarray]], List[np.ndarray]]:
    import torch_tensorrt  # noqa: F401  registers the TensorRT runtime ops the saved program calls

    dev = torch.device(device)
    module = torch.export.load(str(entry / "engine.ep")).module()

    def run(arrays: List[np.ndarray]) -> List[np.ndarray]:
        args = _cast([torch.from_numpy(np.asarray(a)) for a in arrays], DTYPES[precision], dev)
        with torch.no_grad():
            out = module(*args)
        return [o.float().cpu().numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]
    return run
