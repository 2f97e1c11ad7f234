"""int8 on the CPU engines: the shipped ranges belong to the shipped weights and passed their gate, they quantise
an export at a frame size they were never calibrated at, the node serves int8 on a real graph, and every way
int8 cannot run is refused with the reason."""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
import torch

from irstd_ros.runtime.backends import unavailable
from irstd_ros.runtime.backends.cache import EngineCache, weights_digest
from irstd_ros.runtime.backends.int8 import Int8Unavailable, quantize, ranges_path, read_ranges
from irstd_ros.runtime.checkpoints import card_threshold, default_weights
from irstd_ros.runtime.detector import Detector, DetectorConfig, config_problem
from irstd_ros.eval.metrics import components
from irstd_ros.ops.deploy import export_onnx
from irstd_ros.runtime.pipeline import postprocess

from conftest import clean_sample_frame  # noqa: I100
from ros_harness import image_from_array, running_detector, stamp_key  # noqa: I100
from test_backends import _mask_iou  # noqa: I100

LRRNET = default_weights("lrrnet")
ENGINES = [pytest.param(b, marks=pytest.mark.skipif(unavailable(b) is not None, reason=f"{b} is not installed"))
           for b in ("openvino", "onnxruntime")]


def test_the_shipped_ranges_belong_to_the_shipped_weights_and_passed_the_gate():
    doc = read_ranges(LRRNET)  # raises if the weights changed and the ranges were not re-made
    assert doc["weights_sha256"] == weights_digest(LRRNET) and doc["model"] == "lrrnet"
    gate = doc["gate"]
    assert gate["split"] == "val" and doc["calibration"]["split"] == "train" and gate["passed"]
    assert gate["int8"]["iou"] >= gate["torch_fp32"]["iou"] - 0.01 and gate["int8"]["pd"] >= gate["torch_fp32"]["pd"]
    assert gate["threshold"] == card_threshold("lrrnet")
    card = json.loads(LRRNET.with_suffix(".json").read_text())  # the card carries the summary, not the ranges
    assert card["int8"]["gate"] == gate and card["int8"]["test_metrics"] == doc["test"]
    assert doc["test"]["paper"]["precision"] == "int8" and doc["test"]["paper"]["split"] == "test"


def test_record_test_takes_only_an_int8_test_eval_of_the_same_model(tmp_path, capsys):
    from training import quantize
    weights = tmp_path / LRRNET.name
    for src in (LRRNET, LRRNET.with_suffix(".json"), ranges_path(LRRNET)):
        shutil.copy2(src, tmp_path / src.name)
    fp32 = tmp_path / "fp32.json"
    fp32.write_text(json.dumps({"model": "lrrnet", "precision": "fp32", "split": "test", "iou": 0.7}))
    assert quantize.main([str(weights), "--record-test", f"paper={fp32}"]) == 2
    assert "not lrrnet int8" in capsys.readouterr().err
    val = tmp_path / "val.json"
    val.write_text(json.dumps({"model": "lrrnet", "precision": "int8", "split": "val", "iou": 0.7}))
    assert quantize.main([str(weights), "--record-test", f"paper={val}"]) == 2
    assert "record test results only" in capsys.readouterr().err
    ok = tmp_path / "int8.json"
    ok.write_text(json.dumps({"model": "lrrnet", "precision": "int8", "split": "test", "iou": 0.5, "latency": 1}))
    assert quantize.main([str(weights), "--record-test", f"native={ok}"]) == 0
    doc = read_ranges(weights)
    assert doc["test"]["native"] == {"precision": "int8", "split": "test", "iou": 0.5}
    assert json.loads(weights.with_suffix(".json").read_text())["int8"]["test_metrics"]["native"]["iou"] == 0.5
    assert ranges_path(LRRNET).read_text() != ranges_path(weights).read_text()  # the shipped file untouched


def test_int8_is_refused_with_the_reason_where_it_cannot_run(tmp_path):
    assert "not precision='int8'" in config_problem(DetectorConfig(precision="int8"))  # torch has no int8
    if unavailable("openvino") is None:
        assert "no int8 ranges for irmamba_sirst-v1.pt" in config_problem(
            DetectorConfig(model="irmamba", backend="openvino", precision="int8"))
        # ranges beside other weights: the LRRNet file next to a modified copy of the LRRNet weights
        other = tmp_path / LRRNET.name
        shutil.copy2(LRRNET, other)
        with open(other, "ab") as f:
            f.write(b"\0")
        shutil.copy2(ranges_path(LRRNET), ranges_path(other))
        problem = config_problem(DetectorConfig(weights=str(other), backend="openvino", precision="int8"))
        assert "calibrated for other weights" in problem
        with pytest.raises(ValueError, match="calibrated for other weights"):
            Detector(DetectorConfig(weights=str(other), backend="openvino", precision="int8"))


def test_ranges_that_miss_a_tensor_of_the_graph_are_refused(tmp_path):
    fp32 = export_onnx(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 3)),
                       (torch.zeros(1, 1, 32, 32),), tmp_path / "tiny.onnx")
    with pytest.raises(Int8Unavailable, match="miss .* tensor"):
        quantize(fp32, tmp_path / "int8.onnx", {"unrelated": [0.0, 1.0]})


@pytest.mark.parametrize("backend", ENGINES)
def test_int8_at_a_new_frame_size_is_quantised_and_finds_the_targets_fp32_finds(backend, tmp_path):
    card = card_threshold("lrrnet")
    img8, gt, want = clean_sample_frame("lrrnet", card)  # native size, not the 256 calibrated at
    det = Detector(DetectorConfig(backend=backend, precision="int8", cache_dir=str(tmp_path)))
    probs = det.probabilities(img8.astype(np.float32) / np.float32(255))
    fp32 = Detector(DetectorConfig(precision="fp32")).probabilities(img8.astype(np.float32) / np.float32(255))
    assert _mask_iou(probs > card, fp32 > card) >= 0.8
    dets = postprocess(probs, card)[1]
    (cx, cy), = components(gt)[2]
    assert len(dets) == 1 and dets[0].x <= cx <= dets[0].x + dets[0].width and dets[0].y <= cy <= dets[0].y + dets[0].height
    # the engine really is int8: the cached graph has quantize/dequantize pairs on its convolutions
    (entry,) = EngineCache(tmp_path).entries()
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["key"]["precision"] == "int8" and "+int8:" in meta["key"]["weights_sha256"]
    if backend == "onnxruntime":
        ops = [n.op_type for n in onnx.load(str(entry / "model.onnx")).graph.node]
        assert ops.count("QuantizeLinear") >= 20 and ops.count("Conv") >= 20
    else:
        assert (entry / "model.xml").read_text().count('type="FakeQuantize"') >= 20


@pytest.mark.skipif(unavailable("openvino") is not None, reason="openvino is not installed")
def test_the_node_serves_int8_on_a_real_graph_and_refuses_a_model_without_ranges(tmp_path):
    card = card_threshold("lrrnet")
    img8, gt, _ = clean_sample_frame("lrrnet", card)
    (cx, cy), = components(gt)[2]
    with running_detector("-p", "backend:=openvino", "-p", "precision:=int8", "-p", f"cache_dir:={tmp_path}",
                          log=tmp_path / "detector.log") as (h, proc):
        d = h.wait_diagnostics(lambda d: d.get("backend", "").startswith("lrrnet/openvino"), timeout=120)
        assert d["backend"] == "lrrnet/openvino-int8" and d["level"] < 2, d
        msg = image_from_array(img8, "mono8", 1_000, frame_id="lwir")
        h.send(msg)
        out = h.wait_for(h.detections, stamp_key(msg.header.stamp), timeout=120)
        assert out is not None and len(out.detections) == 1
        box = out.detections[0].bbox
        assert abs(box.center.position.x - cx) <= box.size_x / 2 and abs(box.center.position.y - cy) <= box.size_y / 2
        refused = h.set_param("model", "irmamba")
        assert not refused.successful and "no int8 ranges for irmamba_sirst-v1.pt" in refused.reason
        assert h.param("model") == "lrrnet" and proc.poll() is None
        msg = image_from_array(img8, "mono8", 2_000, frame_id="lwir")
        h.send(msg)
        assert h.wait_for(h.detections, stamp_key(msg.header.stamp), timeout=60) is not None
