"""int8 ranges for a weights file: calibrated on train frames, gated on val, shipped beside the weights.

    python -m training.quantize irstd_ros/weights/lrrnet_sirst-v1.pt --model lrrnet \\
        --data ../shared/datasets/sirst-v1 [--frames 64] [--backend openvino]
    python -m training.quantize irstd_ros/weights/lrrnet_sirst-v1.pt --model lrrnet \\
        --record-test paper=eval_int8_paper.json     # after one irstd-eval ... --precision int8 --split test

MinMax activation ranges (:mod:`irstd_ros.runtime.backends.int8`) over ``--frames``
frames spread evenly over the ``train`` split (trainval less val, so the gate's
val frames never set a range), paper protocol. The gate (issue 16): the int8
model, run by ``--backend`` exactly as the node runs it, is accepted only if its
val IoU at the card's threshold is within 0.01 of torch fp32's and its Pd is no
lower. Only then is ``<weights>.int8.json`` written (ranges, calibration, gate);
on a fail nothing is written and the exit status is 1. ``--record-test`` adds an
``irstd-eval`` test result of the int8 model to that file, as export_weights
does for the card. Either way the weights' card gets an ``int8`` summary (the
file, the gate, the test results) so the card alone says what int8 costs.
Test frames are never read here.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from irstd_ros.runtime.backends.cache import weights_digest
from irstd_ros.runtime.backends.int8 import FORMAT, OP_TYPES, calibrate, export_fp32_for_int8, ranges_path, read_ranges
from irstd_ros.runtime.checkpoints import operating_threshold
from irstd_ros.eval.datasets import IRSTDDataset
from irstd_ros.runtime.detector import Detector, DetectorConfig
from irstd_ros.errors import IRSTDError
from irstd_ros.machine import machine_description
from irstd_ros.models import model_cfg
from irstd_ros.runtime.pipeline import preprocess

from .calibrate import run_tool, sweep

IOU_MARGIN = 0.01
TEST_KEYS = ("dataset", "split", "protocol", "threshold", "backend", "precision", "iou", "niou", "pd", "fa", "auc",
             "n_images", "n_targets", "ci95", "ci95_resamples", "latency_ms_median", "machine")


def calibration_frames(data: str, stride: int, count: int):
    """``count`` frames spread evenly over the train split, each as the model input list the export takes."""
    train = IRSTDDataset(data, "train", protocol="paper")
    picks = np.unique(np.linspace(0, len(train.names) - 1, num=min(count, len(train.names))).round().astype(int))
    names = [train.names[i] for i in picks]
    return names, [[preprocess(train.load(n).image, stride, None)[0].numpy()] for n in names]


def score(det: Detector, val: IRSTDDataset, threshold: float) -> dict:
    row = sweep(det, val, (threshold,))[0]
    return {k: row[k] for k in ("iou", "niou", "pd", "fa")}


def summarise_in_card(weights: Path, doc: dict) -> None:
    """The card's ``int8`` entry: where the ranges are and what they measured (the ranges themselves stay out)."""
    card_path = weights.with_suffix(".json")
    if not card_path.is_file():
        return
    card = json.loads(card_path.read_text())
    card["int8"] = {"ranges": ranges_path(weights).name, "scheme": doc["scheme"], "calibration": doc["calibration"],
                    "gate": doc["gate"], "test_metrics": doc["test"]}
    card_path.write_text(json.dumps(card, indent=2) + "\n")


def quantize_and_gate(args) -> int:
    cfg = model_cfg(args.model)
    if cfg.export_parts is not None:
        raise IRSTDError(f"{args.model} exports in parts; int8 calibration covers single-part models only")
    weights = Path(args.weights)
    fp32 = Detector(DetectorConfig(model=args.model, weights=str(weights), precision="fp32"))
    threshold = operating_threshold(fp32.meta)
    names, frames = calibration_frames(args.data, fp32.stride, args.frames)
    with tempfile.TemporaryDirectory(prefix="irstd-quantize-") as tmp:
        tmp = Path(tmp)
        onnx_path = export_fp32_for_int8(fp32.model.float(), (torch.from_numpy(frames[0][0]),), tmp / "fp32.onnx")
        ranges = calibrate(onnx_path, iter(frames))
        print(f"calibrated {len(ranges)} tensors on {len(frames)} train frames")
        doc = {"format": FORMAT, "model": args.model, "weights": weights.name,
               "weights_sha256": weights_digest(weights),
               "scheme": {"format": "ONNX QDQ (ONNX Runtime quantize_static)", "ops": list(OP_TYPES),
                          "weights": "int8 per output channel", "activations": "uint8 per tensor",
                          "ranges": "MinMax", "float_rest": "fp32"},
               "calibration": {"data": Path(args.data).name, "split": "train", "protocol": "paper",
                               "frames": len(frames), "first": names[0], "last": names[-1]},
               "parts": {"model": ranges}}
        # the candidate runs from a copy of the weights, so a failed gate leaves nothing beside the real ones
        cand = tmp / weights.name
        shutil.copy2(weights, cand)
        if weights.with_suffix(".json").is_file():
            shutil.copy2(weights.with_suffix(".json"), cand.with_suffix(".json"))
        ranges_path(cand).write_text(json.dumps(doc))
        val = IRSTDDataset(args.data, "val", protocol="paper")
        ref = score(fp32, val, threshold)
        int8 = Detector(DetectorConfig(model=args.model, weights=str(cand), backend=args.backend, precision="int8",
                                       cache_dir=str(tmp / "engines")))
        got = score(int8, val, threshold)
    passed = got["iou"] >= ref["iou"] - IOU_MARGIN and got["pd"] >= ref["pd"]
    doc["gate"] = {"split": "val", "frames": len(val.names), "threshold": threshold, "backend": args.backend,
                   "rule": f"int8 val IoU >= fp32 IoU - {IOU_MARGIN} and Pd >= fp32 Pd",
                   "torch_fp32": ref, "int8": got, "passed": passed, "machine": machine_description()}
    doc["test"] = {}
    print(f"val at threshold {threshold}: torch fp32 IoU {ref['iou']:.4f} Pd {ref['pd']:.4f} Fa {ref['fa']:.2e}; "
          f"{args.backend} int8 IoU {got['iou']:.4f} Pd {got['pd']:.4f} Fa {got['fa']:.2e}: "
          f"gate {'PASS' if passed else 'FAIL'}")
    if not passed:
        print(f"not written: {ranges_path(weights)}")
        return 1
    ranges_path(weights).write_text(json.dumps(doc, indent=1) + "\n")
    summarise_in_card(weights, doc)
    print(f"wrote {ranges_path(weights)}")
    return 0


def record_test(args) -> int:
    doc = read_ranges(args.weights)
    for item in args.record_test:
        name, _, path = item.partition("=")
        res = json.loads(Path(path).read_text())
        if res.get("precision") != "int8" or res.get("model") != doc["model"]:
            raise IRSTDError(f"{path} is a {res.get('model')} {res.get('precision')} eval, not {doc['model']} int8")
        if res.get("split") != "test":
            raise IRSTDError(f"{path} scores split {res.get('split')!r}; record test results only")
        doc["test"][name] = {k: res[k] for k in TEST_KEYS if k in res}
    ranges_path(args.weights).write_text(json.dumps(doc, indent=1) + "\n")
    summarise_in_card(Path(args.weights), doc)
    print(f"recorded {', '.join(doc['test'])} in {ranges_path(args.weights)}")
    return 0


def _main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights")
    ap.add_argument("--model", default="lrrnet")
    ap.add_argument("--data", help="dataset root (calibration: its train split; gate: its val split)")
    ap.add_argument("--frames", type=int, default=64, help="calibration frames (128 ran out of memory in ONNX "
                    "Runtime's entropy calibrator; MinMax keeps only ranges)")
    ap.add_argument("--backend", default="openvino", choices=("openvino", "onnxruntime"))
    ap.add_argument("--record-test", action="append", default=[], metavar="NAME=EVAL_JSON")
    args = ap.parse_args(argv)
    if args.record_test:
        return record_test(args)
    if not args.data:
        ap.error("--data is required to calibrate")
    if args.frames < 1:
        ap.error("--frames must be >= 1")
    return quantize_and_gate(args)


def main(argv=None) -> int:
    return run_tool("quantize", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
