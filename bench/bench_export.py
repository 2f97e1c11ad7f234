"""What onnxscript's graph optimizer buys at export: export time, graph size and engine latency with and without.

``irstd_ros.ops.deploy.export_onnx`` exports unoptimized (``optimize=False``) for fp32/bf16 engines, because
OpenVINO and ONNX Runtime fold and fuse the graph themselves; this is the measurement behind that choice.

    python bench/bench_export.py [--model lrrnet] [--size 256] [--repeats 2] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch

from irstd_ros.runtime.checkpoints import load_model
from irstd_ros.machine import machine_description
from irstd_ros.ops.deploy import export_onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import median_ms  # noqa: E402


def measure(model: torch.nn.Module, x: torch.Tensor, optimize: bool, out: Path, want: np.ndarray) -> dict:
    import onnxruntime as ort
    import openvino as ov
    t = time.perf_counter()
    export_onnx(model, (x,), out, optimize=optimize)
    export_s = time.perf_counter() - t
    xs = x.numpy()
    t = time.perf_counter()
    compiled = ov.Core().compile_model(str(out), "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    ov_compile_s = time.perf_counter() - t
    request = compiled.create_infer_request()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    got = session.run(None, {name: xs})[0]
    return {"optimize": optimize, "export_s": round(export_s, 2), "onnx_nodes": len(onnx.load(str(out)).graph.node),
            "openvino_compile_s": round(ov_compile_s, 2),
            "openvino_bf16_ms": round(median_ms(lambda: request.infer({0: xs}), 15), 1),
            "onnxruntime_fp32_ms": round(median_ms(lambda: session.run(None, {name: xs}), 8), 1),
            "onnxruntime_max_abs_diff": float(np.abs(got - want).max())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="lrrnet")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2, help="alternating runs of each setting")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    model, _ = load_model(args.model)
    model.eval()
    x = torch.rand(1, 1, args.size, args.size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(x)
    want = (want[0] if isinstance(want, (tuple, list)) else want).numpy()
    print(f"machine: {machine_description()}; {args.model} {args.size}x{args.size}, shipped weights")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats):
            for optimize in (True, False):
                r = measure(model, x, optimize, Path(tmp) / f"m{k}{optimize}.onnx", want)
                rows.append(r)
                print(f"  optimize={str(optimize):5s} export {r['export_s']:5.1f} s  {r['onnx_nodes']:5d} nodes  "
                      f"OpenVINO compile {r['openvino_compile_s']:.1f} s, bf16 {r['openvino_bf16_ms']:.1f} ms  "
                      f"ONNX Runtime fp32 {r['onnxruntime_fp32_ms']:.1f} ms (max diff {r['onnxruntime_max_abs_diff']:.1e})",
                      flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine_description(), "model": args.model,
                                               "size": args.size, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
