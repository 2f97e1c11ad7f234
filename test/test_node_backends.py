"""The node's backend on a real ROS 2 graph: a live swap to OpenVINO that answers like torch, refused pairs that
leave it serving, and a restart that loads the compiled engine from the cache instead of compiling it."""
from __future__ import annotations

import re

import numpy as np
import pytest

from irstd_ros.runtime.backends import unavailable
from irstd_ros.eval.datasets import read_image
from irstd_ros.runtime.detector import Detector, DetectorConfig
from irstd_ros.runtime.pipeline import postprocess

from ros_harness import image_from_array, running_detector, wait_log  # noqa: I100

from test_backends import SAMPLE  # noqa: I100

pytestmark = pytest.mark.skipif(unavailable("openvino") is not None, reason="openvino is not installed")
ENGINE_LINE = re.compile(r"lrrnet/model for openvino-(\w+) at (\d+x\d+): (compiled|loaded from the engine cache) "
                         r"in ([0-9.]+) s")


def _frame() -> np.ndarray:
    """A real SIRST-v1 sample frame cropped to 320x240 (not the 256x256 the node warms up at by default)."""
    img = read_image(SAMPLE / "Misc_58.png")
    return (img[:240, :320] * 255).round().astype(np.uint8)


def _boxes(out):
    return sorted((round(d.bbox.center.position.x), round(d.bbox.center.position.y)) for d in out.detections)


def _ask(h, img8, stamp, timeout=120.0):
    return h.wait_for(h.detections, h.send(image_from_array(img8, "mono8", stamp)), timeout)


def test_live_swap_to_openvino_then_a_restart_loads_the_engine_from_the_cache(tmp_path):
    img8 = _frame()
    want = postprocess(Detector(DetectorConfig(precision="fp32")).probabilities(img8 / np.float32(255)), 0.5)[1]
    want = sorted((round(d.x + d.width / 2), round(d.y + d.height / 2)) for d in want)
    assert want, "the shipped model finds the target in this crop"
    cache = tmp_path / "engines"
    log1, log2 = tmp_path / "first.log", tmp_path / "second.log"
    with running_detector("-p", f"cache_dir:={cache}", "-p", "threshold:=0.5", log=log1) as (h, proc):
        assert _boxes(_ask(h, img8, 1_000)) == want

        res = h.set_param("backend", "onnxruntime")
        res2 = h.set_atomically(backend="openvino", precision="fp16")
        assert not res2.successful and "openvino on cpu runs fp32, bf16, int8, not precision='fp16'" in res2.reason
        assert res.successful
        d = h.wait_diagnostics(lambda d: d.get("backend", "").startswith("lrrnet/onnxruntime"), timeout=180)
        assert d["backend"] == "lrrnet/onnxruntime-fp32" and d["level"] < 2, d
        assert h.set_param("backend", "openvino").successful
        d = h.wait_diagnostics(lambda d: d.get("backend", "").startswith("lrrnet/openvino"), timeout=180)
        assert d["level"] < 2 and "built" in d["engine"], d
        assert _boxes(_ask(h, img8, 2_000)) == want

        refused = h.set_param("backend", "tensorrt")
        assert not refused.successful and "tensorrt runs on cuda" in refused.reason
        assert h.param("backend") == "openvino" and proc.poll() is None
        assert _boxes(_ask(h, img8, 3_000)) == want
    first = [m.groups() for m in ENGINE_LINE.finditer(wait_log(log1, "lrrnet/model for openvino"))]
    assert first == [(first[0][0], "320x240", "compiled", first[0][3])], log1.read_text()[-2000:]

    with running_detector("-p", f"cache_dir:={cache}", "-p", "backend:=openvino", "-p", "threshold:=0.5",
                          log=log2) as (h, proc):
        d = h.wait_diagnostics(lambda d: d.get("backend", "").startswith("lrrnet/openvino"), timeout=60)
        assert "hit" in d["engine"], d
        assert _boxes(_ask(h, img8, 4_000)) == want
    second = [m.groups() for m in ENGINE_LINE.finditer(wait_log(log2, "lrrnet/model for openvino"))]
    # the restart loads the camera's size from the cache and compiles nothing, not even its 256x256 warm-up
    assert second == [(first[0][0], "320x240", "loaded from the engine cache", second[0][3])], log2.read_text()[-2000:]
    # the node's own clock on compile vs load (seconds apart, not a benchmark): loading is the fast path
    assert float(second[0][3]) < float(first[0][3]), (first, second)
