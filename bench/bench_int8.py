"""Is int8 worth it here? LRRNet post-training quantised with ONNX Runtime's QDQ quantiser, against fp32/bf16.

    .venv/bin/python bench/bench_int8.py [--calibration 64] [--frames 20] [--json bench/results/int8_cpu.json]

Calibrates on the first N SIRST-v1 trainval frames (paper protocol, 256x256;
per-channel int8 weights, uint8 activations, Conv and MatMul quantised: the
quantiser refuses LRRNet's shared constants otherwise) in two variants: MinMax
ranges on every conv, and entropy ranges with the first and last conv left in
float (the usual remedy for a quantised stem and head); then runs
the first ``--frames`` val frames through ONNX Runtime and OpenVINO (which
executes the QDQ graph with int8 kernels) and reports median latency and how far
the probabilities and the 0.5 masks are from torch fp32. A script, not a test;
the machine is printed with the numbers. No test frame is read.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from irstd_ros.checkpoints import load_model  # noqa: E402
from irstd_ros.datasets import IRSTDDataset  # noqa: E402
from irstd_ros.machine import machine_description  # noqa: E402
from irstd_ros.ops.deploy import _quiet_exporter, export_onnx  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "sirst-v1"


def main() -> int:
    import onnxruntime as ort
    import openvino as ov
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--calibration", type=int, default=64)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--json")
    args = ap.parse_args()

    model, _ = load_model("lrrnet")
    tmp = Path(tempfile.mkdtemp(prefix="irstd-int8-"))
    fp32 = export_onnx(model, (torch.zeros(1, 1, 256, 256),), tmp / "fp32.onnx")
    train = IRSTDDataset(args.data, "trainval", protocol="paper")
    calib = [train.load(n).image[None, None].astype(np.float32) for n in train.names[: args.calibration]]
    name = ort.InferenceSession(str(fp32)).get_inputs()[0].name

    class Frames(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            a = next(self.it, None)
            return None if a is None else {name: a}

    convs = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "Conv"]
    variants = {"minmax": (CalibrationMethod.MinMax, []),
                "entropy, first/last conv float": (CalibrationMethod.Entropy, [convs[0], convs[-1]])}
    quantise_s = {}
    for k, (label, (method, exclude)) in enumerate(variants.items()):
        t0 = time.perf_counter()
        with _quiet_exporter():
            quantize_static(str(fp32), str(tmp / f"int8-{k}.onnx"), Frames(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=method, op_types_to_quantize=["Conv", "MatMul"], nodes_to_exclude=exclude)
        quantise_s[label] = round(time.perf_counter() - t0, 1)

    val = IRSTDDataset(args.data, "val", protocol="paper")
    frames = [val.load(n).image[None, None].astype(np.float32) for n in val.names[: args.frames]]
    with torch.no_grad():
        refs = [torch.sigmoid(model(torch.from_numpy(f))).numpy() for f in frames]
    core = ov.Core()

    def ov_runner(path, hint):
        compiled = core.compile_model(ov.convert_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": hint})
        return lambda a: compiled([a])[0]

    def ort_runner(path):
        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda a: s.run(None, {name: a})[0]

    runners = {"onnxruntime-fp32": ort_runner(fp32), "openvino-fp32": ov_runner(fp32, "f32"),
               "openvino-bf16": ov_runner(fp32, "bf16")}
    for k, label in enumerate(variants):
        int8 = tmp / f"int8-{k}.onnx"
        runners[f"onnxruntime-int8 ({label})"] = ort_runner(int8)
        runners[f"openvino-int8 ({label}; f32 rest)"] = ov_runner(int8, "f32")
        runners[f"openvino-int8 ({label}; bf16 rest)"] = ov_runner(int8, "bf16")
    rows = []
    print(f"machine: {machine_description()}")
    print(f"LRRNet 256x256; int8 calibrated on {len(calib)} trainval frames ({quantise_s} s); "
          f"{len(frames)} val frames")
    for label, run in runners.items():
        run(frames[0])
        times, inter, union, err = [], 0, 0, 0.0
        for f, ref in zip(frames, refs):
            t0 = time.perf_counter()
            logits = run(f)
            times.append((time.perf_counter() - t0) * 1e3)
            p = 1 / (1 + np.exp(-logits))
            err = max(err, float(np.abs(p - ref).max()))
            inter += int(np.logical_and(p > 0.5, ref > 0.5).sum())
            union += int(np.logical_or(p > 0.5, ref > 0.5).sum())
        row = {"engine": label, "median_ms": round(float(np.median(times)), 1), "max_prob_error": round(err, 4),
               "mask_iou_vs_fp32": round(inter / max(union, 1), 4)}
        rows.append(row)
        print(f"  {label:58s} median {row['median_ms']:6.1f} ms  max |p - p_fp32| {row['max_prob_error']:.4f}  "
              f"mask IoU vs torch fp32 {row['mask_iou_vs_fp32']:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine_description(), "calibration_frames": len(calib),
                                               "quantise_s": quantise_s,
                                               "val_frames": len(frames), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
