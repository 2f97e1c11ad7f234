"""Is int8 worth it here? LRRNet post-training quantised, gated on validation as issue 16 asks.

    .venv/bin/python bench/bench_int8.py [--calibration 64] [--json bench/results/int8_cpu.json]
    # NNCF rows need `pip install nncf==3.4.0` (not part of the install: it brings SciPy and scikit-learn)

Calibrates on the first N SIRST-v1 trainval frames (paper protocol, 256x256) with
  * ONNX Runtime's QDQ quantiser (per-channel int8 weights, uint8 activations, Conv and MatMul):
    MinMax ranges; entropy ranges with the first and last conv left in float;
  * NNCF for OpenVINO (its default CPU scheme, MIXED preset): as is; and with the first and last
    conv in float and full bias correction;
runs the QDQ files under ONNX Runtime and under OpenVINO (its int8 kernels, the rest in fp32
or in bf16), scores every engine on the whole val split at the shipped card's threshold, and
applies the gate: an int8 model is accepted only if its val IoU is within 0.01 of torch fp32's and its Pd is
no lower. Latency: median over ``--runs`` runs of one val frame. A script, not a test; the
machine is printed with the numbers. No test frame is read.
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
from irstd_ros.runtime.checkpoints import load_model, operating_threshold  # noqa: E402
from irstd_ros.eval.datasets import IRSTDDataset  # noqa: E402
from irstd_ros.machine import machine_description  # noqa: E402
from irstd_ros.eval.metrics import MetricAccumulator  # noqa: E402
from irstd_ros.ops.deploy import quiet_exporter, export_onnx  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "sirst-v1"


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def onnxruntime_int8(fp32: Path, tmp: Path, calib: list) -> dict:
    """QDQ int8 ONNX files from ONNX Runtime's quantiser: {label: path}, and the seconds each took."""
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    name = ort.InferenceSession(str(fp32)).get_inputs()[0].name

    class Frames(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            a = next(self.it, None)
            return None if a is None else {name: a}

    convs = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "Conv"]
    out = {}
    for k, (label, method, exclude) in enumerate((("qdq minmax", CalibrationMethod.MinMax, []),
                                                  ("qdq entropy, ends float", CalibrationMethod.Entropy,
                                                   [convs[0], convs[-1]]))):
        t0 = time.perf_counter()
        with quiet_exporter():
            quantize_static(str(fp32), str(tmp / f"int8-{k}.onnx"), Frames(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=method, op_types_to_quantize=["Conv", "MatMul"], nodes_to_exclude=exclude)
        out[label] = (tmp / f"int8-{k}.onnx", round(time.perf_counter() - t0, 1))
    return out


def nncf_int8(fp32_ov, calib: list) -> dict:
    """NNCF-quantised OpenVINO models: {label: (model, seconds)}; {} with a note when NNCF is missing."""
    try:
        import nncf
    except ImportError:
        print("  NNCF rows skipped: nncf is not installed (pip install nncf==3.4.0)")
        return {}
    convs = [op.get_friendly_name() for op in fp32_ov.get_ordered_ops() if op.get_type_name() == "Convolution"]
    out = {}
    for label, kwargs in (("nncf", {}),
                          ("nncf, ends float, full bias correction",
                           {"ignored_scope": nncf.IgnoredScope(names=[convs[0], convs[-1]]),
                            "fast_bias_correction": False})):
        t0 = time.perf_counter()
        q = nncf.quantize(fp32_ov, nncf.Dataset(calib), subset_size=len(calib),
                          preset=nncf.QuantizationPreset.MIXED, **kwargs)
        out[label] = (q, round(time.perf_counter() - t0, 1))
    return out


def main() -> int:
    import onnxruntime as ort
    import openvino as ov
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--calibration", type=int, default=64)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json")
    args = ap.parse_args()

    model, meta = load_model("lrrnet")
    threshold = operating_threshold(meta)
    tmp = Path(tempfile.mkdtemp(prefix="irstd-int8-"))
    fp32 = export_onnx(model, (torch.zeros(1, 1, 256, 256),), tmp / "fp32.onnx")
    train = IRSTDDataset(args.data, "trainval", protocol="paper")
    calib = [train.load(n).image[None, None].astype(np.float32) for n in train.names[: args.calibration]]
    val = IRSTDDataset(args.data, "val", protocol="paper")
    samples = [val.load(n) for n in val.names]
    frames = [s.image[None, None].astype(np.float32) for s in samples]
    with torch.no_grad():
        refs = [torch.sigmoid(model(torch.from_numpy(f))).numpy()[0, 0] for f in frames]

    core = ov.Core()
    fp32_ov = core.read_model(str(fp32))
    input_name = ort.InferenceSession(str(fp32)).get_inputs()[0].name

    def ov_runner(m, hint):
        compiled = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": hint})
        return lambda a: compiled([a])[0]

    def ort_runner(path):
        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda a: s.run(None, {input_name: a})[0]

    print(f"machine: {machine_description()}")
    quantise_s = {}
    runners = {"torch-fp32": lambda a: model(torch.from_numpy(a)).numpy(),
               "onnxruntime-fp32": ort_runner(fp32), "openvino-fp32": ov_runner(fp32_ov, "f32"),
               "openvino-bf16": ov_runner(fp32_ov, "bf16")}
    for label, (path, secs) in onnxruntime_int8(fp32, tmp, calib).items():
        quantise_s[label] = secs
        runners[f"onnxruntime-int8 ({label})"] = ort_runner(path)
        for hint, rest in (("f32", "fp32"), ("bf16", "bf16")):
            runners[f"openvino-int8 ({label}; {rest} rest)"] = ov_runner(core.read_model(str(path)), hint)
    for label, (q, secs) in nncf_int8(fp32_ov, calib).items():
        quantise_s[label] = secs
        runners[f"openvino-int8 ({label}; bf16 rest)"] = ov_runner(q, "bf16")

    print(f"LRRNet 256x256 (paper protocol); int8 calibrated on {len(calib)} trainval frames (seconds: "
          f"{quantise_s}); scored on all {len(samples)} val frames at the card's threshold {threshold}")
    rows, gate = [], None
    for label, run in runners.items():
        acc = MetricAccumulator(threshold=threshold)
        inter = union = 0
        err = 0.0
        with torch.no_grad():
            for s, f, ref in zip(samples, frames, refs):
                p = sigmoid(run(f))[0, 0]
                acc.update(p, s.mask)
                err = max(err, float(np.abs(p - ref).max()))
                inter += int(np.logical_and(p > threshold, ref > threshold).sum())
                union += int(np.logical_or(p > threshold, ref > threshold).sum())
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                run(frames[0])
                times.append((time.perf_counter() - t0) * 1e3)
        m = acc.summary()
        if gate is None:  # torch fp32 is the reference the gate compares with
            gate = {"iou_at_least": m["iou"] - 0.01, "pd_at_least": m["pd"]}
        row = {"engine": label, "median_ms": round(float(np.median(times)), 1),
               "val_iou": round(m["iou"], 4), "val_pd": round(m["pd"], 4), "val_fa": float(f"{m['fa']:.3g}"),
               "max_prob_error": round(err, 4), "mask_iou_vs_torch_fp32": round(inter / max(union, 1), 4)}
        if "int8" in label:
            row["gate"] = "pass" if m["iou"] >= gate["iou_at_least"] and m["pd"] >= gate["pd_at_least"] else "fail"
        rows.append(row)
        print(f"  {label:62s} {row['median_ms']:6.1f} ms  val IoU {row['val_iou']:.4f} Pd {row['val_pd']:.4f} "
              f"Fa {row['val_fa']:.2e}  mask IoU vs fp32 {row['mask_iou_vs_torch_fp32']:.4f}"
              + (f"  gate {row['gate']}" if "gate" in row else ""), flush=True)
    print(f"gate: val IoU >= {gate['iou_at_least']:.4f} and Pd >= {gate['pd_at_least']:.4f} (torch fp32 - 0.01, same Pd)")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine_description(), "calibration_frames": len(calib),
                                               "quantise_s": quantise_s, "threshold": threshold, "gate": gate,
                                               "val_frames": len(samples), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
