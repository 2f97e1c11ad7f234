"""Getting graphs that use the irstd ops into deployment toolchains.

- ``torch.export``: works as is (the ops have fake kernels); the exported
  program keeps ``irstd::selective_scan`` / ``irstd::haar_*`` as single nodes,
  which is what Torch-TensorRT's plugin path wants.
- ONNX Runtime / OpenVINO: :func:`decompose` rewrites those nodes into
  standard ops (strided slices for the DWT, the O(sqrt L) blocked scan for the
  selective scan) before :func:`export_onnx` writes the model. The scan's
  decomposition unrolls ~2*sqrt(L) steps, so its sequence length must be static.
- TensorRT: :func:`register_tensorrt_plugins` turns each op into a TensorRT
  plugin through Torch-TensorRT's Triton-kernel plugin generator
  (``torch_tensorrt.dynamo.conversion.plugins.custom_op``) when torch_tensorrt
  is importable; otherwise it says why and returns False.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Sequence

import torch

from ..layers.norm import reductions_for_export
from .haar import dwt_decomposed, idwt_decomposed
from .selective_scan import selective_scan_blocked

log = logging.getLogger("irstd_ros.ops")
OP_NAMES = ("irstd::selective_scan", "irstd::haar_dwt2d", "irstd::haar_idwt2d")


def decomposition_table() -> dict:
    """The default export decompositions plus ours for the irstd ops."""
    table = torch.export.default_decompositions()
    table[torch.ops.irstd.selective_scan.default] = selective_scan_blocked
    table[torch.ops.irstd.haar_dwt2d.default] = dwt_decomposed
    table[torch.ops.irstd.haar_idwt2d.default] = idwt_decomposed
    return table


def decompose(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """The same program with every irstd op replaced by standard aten ops."""
    return program.run_decompositions(decomposition_table())


def uses_irstd_ops(program: torch.export.ExportedProgram) -> bool:
    return any(n.op == "call_function" and getattr(n.target, "namespace", None) == "irstd"
               for n in program.graph.nodes)


@contextlib.contextmanager
def quiet_exporter():
    """The ONNX exporter logs every pass (hundreds of INFO lines, torchvision notes): keep them out of a node's
    log; its errors still raise."""
    names = ("torch.onnx", "torch.export", "onnx_ir", "onnxscript", "torch._export")
    saved = {n: logging.getLogger(n).level for n in names}
    try:
        for n in names:
            logging.getLogger(n).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def export_onnx(module: torch.nn.Module, args: Sequence[torch.Tensor], path: str | Path,
                opset: int = 18, optimize: bool = False) -> Path:
    """torch.export -> decompose -> ONNX file at ``path`` (static shapes).

    ``optimize`` runs onnxscript's graph optimizer: off by default because OpenVINO and ONNX Runtime fold and fuse
    the graph themselves (``bench/bench_export.py``, LRRNet 256x256: the same latency either way, 41-43 ms
    OpenVINO bf16, 92-97 ms ONNX Runtime fp32) and it costs 2-4 s of a 14 s export. int8 keeps it on: its
    calibrated ranges name tensors of the optimized graph."""
    path = Path(path)
    with quiet_exporter(), reductions_for_export():
        program = decompose(torch.export.export(module.eval(), tuple(args)))
        onnx_program = torch.onnx.export(program, tuple(args), dynamo=True, opset_version=opset, verbose=False,
                                         optimize=optimize)
        onnx_program.save(str(path))
    return path


def register_tensorrt_plugins(op_names: Sequence[str] = OP_NAMES) -> bool:
    """Register the ops as TensorRT plugins (Triton kernels inside the engine); False if impossible here."""
    try:
        import torch_tensorrt  # noqa: F401
        from torch_tensorrt.dynamo.conversion import plugins
    except Exception as exc:  # ImportError, or a TensorRT library that fails to load
        log.warning("irstd_ros.ops: Torch-TensorRT is not importable (%s); the TensorRT path is unavailable. "
                    "Use the ONNX/OpenVINO path (export_onnx) on this machine.", exc)
        return False
    from . import triton_kernels
    if not triton_kernels.AVAILABLE:
        log.warning("irstd_ros.ops: triton is missing; TensorRT plugins need the Triton kernels")
        return False
    for name in op_names:
        plugins.custom_op(name, supports_dynamic_shapes=True, requires_output_allocator=False)
    return True
