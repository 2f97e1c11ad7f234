"""OpenVINO on CPUs: torch.export -> custom ops decomposed -> ONNX -> OpenVINO IR, compiled per precision.

The IR (``model.xml``/``.bin``) is what the cache keeps; OpenVINO's own compiled
blob cache (``CACHE_DIR``) sits beside it in the entry, so a restart skips the
plugin's graph compilation too. bf16 is OpenVINO's inference precision hint: the
IR stays fp32 and the CPU plugin runs bf16 kernels where the CPU has them. int8
is the QDQ model of :mod:`.int8` (its ranges shipped with the weights): OpenVINO
runs int8 kernels where the quantize pairs are, the rest in fp32.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np

from . import cpu_library_problem

HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: the float rest in fp32 (bf16 failed the gate)


def unavailable(device: str = "cpu") -> Optional[str]:
    return cpu_library_problem("openvino", "OpenVINO", device)


def version() -> str:
    import openvino
    return openvino.get_version()


def build(module, inputs: Sequence, entry: Path, precision: str, device: str = "cpu",
          int8_ranges: Optional[dict] = None) -> List[str]:
    """Write ``model.xml``/``model.bin`` for ``module`` at these example inputs' shapes (static); int8 needs
    the part's ``int8_ranges``."""
    import openvino as ov

    from .int8 import export_for

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_for(precision, module, inputs, Path(tmp) / "model.onnx", int8_ranges)
        ir = ov.convert_model(str(onnx_path))
    ov.save_model(ir, str(entry / "model.xml"), compress_to_fp16=False)
    return ["model.xml", "model.bin"]


def load(entry: Path, precision: str, device: str = "cpu") -> Callable[[List[np.ndarray]], List[np.ndarray]]:
    import openvino as ov

    core = ov.Core()
    core.set_property({"CACHE_DIR": str(entry / "compiled")})
    compiled = core.compile_model(str(entry / "model.xml"), "CPU", {
        "INFERENCE_PRECISION_HINT": HINTS[precision], "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    outputs = compiled.outputs

    def run(arrays: List[np.ndarray]) -> List[np.ndarray]:
        result = request.infer(arrays)
        return [np.array(result[o]) for o in outputs]
    return run
