"""ONNX Runtime on CPUs: torch.export -> custom ops decomposed -> ONNX, run by the CPU execution provider.

The cache keeps the ONNX file; the session's graph optimisation at load is
ONNX Runtime's whole "compile" and takes well under a second for these models.
int8 is the QDQ model of :mod:`.int8`, quantised with the ranges shipped beside the weights.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np

from . import cpu_library_problem


def unavailable(device: str = "cpu") -> Optional[str]:
    return cpu_library_problem("onnxruntime", "ONNX Runtime", device)


def version() -> str:
    import onnxruntime
    return onnxruntime.__version__


def build(module, inputs: Sequence, entry: Path, precision: str, device: str = "cpu",
          int8_ranges: Optional[dict] = None) -> List[str]:
    from .int8 import export_for

    export_for(precision, module, inputs, entry / "model.onnx", int8_ranges)
    return ["model.onnx"]


def load(entry: Path, precision: str, device: str = "cpu") -> Callable[[List[np.ndarray]], List[np.ndarray]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # errors only: its constant folder warns once per CastLike it cannot fold in the unoptimized exports (IRMamba:
    # 18 lines a session), which says nothing to a user; a failed load still raises
    options.log_severity_level = 3
    session = ort.InferenceSession(str(entry / "model.onnx"), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(arrays: List[np.ndarray]) -> List[np.ndarray]:
        return session.run(None, dict(zip(names, arrays)))
    return run
