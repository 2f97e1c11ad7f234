"""int8 for the CPU engines: activation ranges calibrated once per weights file, applied at every frame size.

Post-training static quantisation in ONNX Runtime's QDQ format: int8 weights per
output channel, uint8 activations per tensor (MinMax ranges), on Conv and MatMul;
everything else stays float. ONNX Runtime runs the QDQ graph as it is; OpenVINO
runs its int8 kernels on it with the float rest at fp32 (a bf16 rest failed the
accuracy gate: ``bench/bench_int8.py``).

The ranges are measured on SIRST-v1 ``train`` frames (trainval less val) by ``python -m training.quantize``,
which ships them beside the weights as ``<weights>.int8.json`` only if the
quantised model passes the val gate. They are keyed by ONNX tensor name, and an
export at another frame size has the same tensor names, so one file serves every
frame size: each new size is exported in fp32 and quantised with the shipped
ranges (no data needed on the vehicle). A ranges file made for other weights, or
one that misses a tensor of the graph, is refused with the reason.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from ...errors import IRSTDError

FORMAT = 1
OP_TYPES = ("Conv", "MatMul")


class Int8Unavailable(IRSTDError, ValueError):
    """These weights have no usable int8 ranges (none shipped, other weights, another graph)."""


def ranges_path(weights_path: str | Path) -> Path:
    """Where the int8 ranges of a weights file live: ``lrrnet_sirst-v1.pt`` -> ``lrrnet_sirst-v1.int8.json``."""
    return Path(weights_path).with_suffix(".int8.json")


def _settings():
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    return dict(quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                op_types_to_quantize=list(OP_TYPES))


def read_ranges(weights_path: str | Path) -> Dict:
    """The int8 file of ``weights_path`` (checked against the weights' SHA-256); :class:`Int8Unavailable` if
    there is none or it belongs to other weights."""
    from .cache import weights_digest
    path = ranges_path(weights_path)
    if not path.is_file():
        raise Int8Unavailable(
            f"no int8 ranges for {Path(weights_path).name} (looked for {path.name}); make them with "
            f"python -m training.quantize {weights_path} --model <model> --data <dataset root>")
    try:
        doc = json.loads(path.read_text())
        parts, sha = doc["parts"], doc["weights_sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise Int8Unavailable(f"{path} is not an int8 ranges file ({exc.__class__.__name__}: {exc})") from None
    if doc.get("format") != FORMAT:
        raise Int8Unavailable(f"{path} has format {doc.get('format')!r}; this irstd_ros reads format {FORMAT}")
    if sha != weights_digest(weights_path):
        raise Int8Unavailable(f"{path.name} was calibrated for other weights (sha256 {sha[:12]}), not for "
                              f"{Path(weights_path).name}; re-run python -m training.quantize")
    return doc


def ranges_digest(parts: Dict) -> str:
    """A short hash of the ranges alone (not of the gate and test records beside them), for cache keys."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def int8_problem(weights_path: str | Path) -> Optional[str]:
    """Why these weights cannot run int8, else None."""
    try:
        read_ranges(weights_path)
    except Int8Unavailable as exc:
        return str(exc)
    return None


def _quantize_with(fp32_onnx: Path, out: Path, cache_json: Optional[Path], reader=None) -> Path:
    import logging

    from onnxruntime.quantization import quantize_static

    from ...ops.deploy import quiet_exporter
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # ORT's quantiser logs a pre-processing hint on the root logger at every call
    try:
        with quiet_exporter():
            quantize_static(str(fp32_onnx), str(out), reader, calibration_cache_path=cache_json, **_settings())
    finally:
        root.setLevel(level)
    return out


def calibrate(fp32_onnx: str | Path, frames: Iterable[Sequence[np.ndarray]]) -> Dict[str, List[float]]:
    """MinMax ranges ``{tensor: [low, high]}`` of an fp32 ONNX model over ``frames`` (each its input list)."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader
    from onnxruntime.quantization.calibrate import load_tensors_data

    names = [i.name for i in ort.InferenceSession(str(fp32_onnx), providers=["CPUExecutionProvider"]).get_inputs()]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(frames)

        def get_next(self):
            arrays = next(self.it, None)
            return None if arrays is None else dict(zip(names, arrays))

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "ranges.json"
        _quantize_with(Path(fp32_onnx), Path(tmp) / "int8.onnx", cache, Reader())
        data = load_tensors_data(cache).data
    return {name: [np.asarray(v, np.float32).item() for v in d.range_value] for name, d in sorted(data.items())}


def quantize(fp32_onnx: str | Path, out: str | Path, ranges: Dict[str, List[float]]) -> Path:
    """``fp32_onnx`` as a QDQ int8 model at ``out``, with ``ranges`` (from :func:`calibrate`, any frame size)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, TensorsData
    from onnxruntime.quantization.calibrate import save_tensors_data

    graph = onnx.load(str(fp32_onnx), load_external_data=False).graph
    constants = {i.name for i in graph.initializer}
    needed = {t for n in graph.node if n.op_type in OP_TYPES for t in list(n.input) + list(n.output)
              if t and t not in constants}
    missing = sorted(needed - set(ranges))
    if missing:
        raise Int8Unavailable(f"the int8 ranges miss {len(missing)} tensor(s) of this graph ({', '.join(missing[:3])}"
                              f"...): the model code changed since calibration; re-run python -m training.quantize")
    data = TensorsData(CalibrationMethod.MinMax,
                       {k: (np.array([v[0]], np.float32), np.array([v[1]], np.float32)) for k, v in ranges.items()})
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(data, cache)
        return _quantize_with(Path(fp32_onnx), Path(out), cache)


def export_fp32_for_int8(module, inputs: Sequence, out: str | Path) -> Path:
    """The fp32 graph int8 works on, both when calibrating (``training/quantize.py``) and when quantising a new
    frame size: exported with onnxscript's optimizer, because the calibrated ranges name that graph's tensors."""
    from ...ops.deploy import export_onnx
    return export_onnx(module, inputs, out, optimize=True)


def export_for(precision: str, module, inputs: Sequence, out: str | Path, int8_ranges: Optional[Dict] = None) -> Path:
    """The ONNX file a CPU engine builds from, at these inputs' shapes: fp32 for every precision but int8, whose
    fp32 export is then quantised with ``int8_ranges`` (bf16 is an engine hint, not a different graph)."""
    from ...ops.deploy import export_onnx
    if precision != "int8":
        return export_onnx(module, inputs, out)
    with tempfile.TemporaryDirectory() as tmp:
        return quantize(export_fp32_for_int8(module, inputs, Path(tmp) / "fp32.onnx"), out, int8_ranges)
