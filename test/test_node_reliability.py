"""The node never goes silent: refused devices, failed reloads and a dead worker on a real graph.

Faults are injected in the node's own process through ``test/fault_models.py``
(a registered test-only model whose checkpoint picks what it raises), never by
monkeypatching. SIGINT/SIGTERM tests each start their own process.
"""
from __future__ import annotations

import json
import shutil
import signal
import time

import numpy as np
import pytest
import torch

from irstd_ros.runtime.checkpoints import default_weights
from irstd_ros.eval.datasets import read_image

from ros_harness import FAULT_MODEL as FAULT, Harness, fault_checkpoint, image_from_array, start_detector  # noqa: I100
from ros_harness import running_detector, stop_detector, wait_log  # noqa: I100

from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState  # noqa: E402

SAMPLE = default_weights("lrrnet").parents[1] / "sample" / "sirst-v1"
DIAG_PERIOD = 0.2
_next = [1_800_000_000_000_000_000]


def stamp() -> int:
    _next[0] += 33_333_333
    return _next[0]


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    """A real frame (mono8) whose target the shipped model finds."""
    return (read_image(SAMPLE / "images" / "Misc_127.png") * 255).round().astype(np.uint8)


def probe_frame(bright_corner: bool = False) -> np.ndarray:
    """For the fault model: one 3x3 target, and optionally the bright top-left pixel that triggers its fault."""
    img = np.full((48, 64), 40, np.uint8)
    img[20:23, 30:33] = 255
    img[0, 0] = 255 if bright_corner else 40
    return img


def send(h, img: np.ndarray):
    return h.send(image_from_array(img, "mono8", stamp()))


def answered(h, img: np.ndarray, timeout: float = 60.0):
    return h.wait_for(h.detections, send(h, img), timeout)


def level_is(level):
    return lambda d: d["level"] == level


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    """A node with the fault models registered and no threshold set (so the model card's applies)."""
    log = tmp_path_factory.mktemp("node") / "detector.log"
    with running_detector("-p", f"diagnostics_period:={DIAG_PERIOD}", log=log, fault_models=True) as (h, proc):
        yield h, proc, log


def back_to_lrrnet(h):
    assert h.set_atomically(model="lrrnet", weights="").successful
    d = h.wait_diagnostics(lambda d: d.get("backend", "").startswith("lrrnet") and d["level"] != 2)
    assert d["backend"].startswith("lrrnet") and d["level"] != 2, d


@pytest.fixture
def faulty(graph, tmp_path):
    """Swaps the node to the fault model with the given arguments; back to LRRNet afterwards, pass or fail."""
    h = graph[0]

    def swap(**model_args) -> str:
        path = str(fault_checkpoint(tmp_path / "fault.pt", **model_args))
        assert h.set_atomically(model=FAULT, weights=path).successful
        d = h.wait_diagnostics(lambda d: d.get("weights") == path)
        assert d.get("weights") == path, d
        return path
    yield swap
    back_to_lrrnet(h)


def test_a_cuda_device_is_refused_where_torch_has_none(graph, frame):
    h, proc, _ = graph
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    bad = ["cuda:7", "cuda"] if count == 0 else [f"cuda:{count}"]
    for device in bad:
        r = h.set_param("device", device)
        assert not r.successful and "cannot be used" in r.reason and device in r.reason, (device, r.reason)
    assert h.param("device") == "cpu"
    out = answered(h, frame)
    assert out is not None and out.detections and proc.poll() is None


def test_a_reload_raising_an_unexpected_type_keeps_the_old_model_serving(graph, frame, tmp_path):
    h, proc, log = graph
    before = answered(h, frame)
    path = fault_checkpoint(tmp_path / "assert.pt", build_raises="AssertionError")
    assert h.set_atomically(model=FAULT, weights=str(path)).successful  # loads, then fails in the background
    d = h.wait_diagnostics(lambda d: "AssertionError" in d["message"])
    assert d["level"] == 2 and "reload failed" in d["message"] and d["backend"].startswith("lrrnet"), d
    after = answered(h, frame)  # the old model still answers, with the same boxes
    assert after is not None and [x.bbox for x in after.detections] == [x.bbox for x in before.detections]
    line = [x for x in log.read_text().splitlines() if "AssertionError" in x]
    assert len(line) == 1 and "Traceback" not in log.read_text(), line
    back_to_lrrnet(h)  # a later reload that succeeds clears the ERROR
    assert proc.poll() is None


def test_a_killed_worker_thread_is_detected_and_replaced(graph, faulty):
    h, proc, log = graph
    faulty(corner_raises="SystemExit")
    assert answered(h, probe_frame()) is not None
    send(h, probe_frame(bright_corner=True))  # SystemExit is no Exception: it ends the worker thread
    d = h.wait_diagnostics(lambda d: "worker thread ended" in d["message"], timeout=30)
    assert d["level"] == 2 and "SystemExit" in d["message"] and d["worker_restarts"] == "1", d
    out = answered(h, probe_frame())  # the replacement worker answers
    assert out is not None and len(out.detections) == 1
    assert h.wait_diagnostics(lambda d: d["level"] != 2)["level"] != 2
    assert "SystemExit: injected" in log.read_text()  # its traceback was logged
    assert proc.poll() is None


def test_a_failing_model_is_logged_once_counted_and_named_by_the_liveness_check(graph, faulty):
    h, proc, log = graph
    faulty(corner_raises="RuntimeError")
    tracebacks = log.read_text().count("Traceback")
    start = h.fresh_diagnostics()
    deadline = time.time() + 60
    d = start
    while time.time() < deadline and "model failed on every frame" not in d.get("message", ""):
        send(h, probe_frame(bright_corner=True))
        time.sleep(0.25)
        d = h.latest_diagnostics()
    assert d["level"] == 2 and "RuntimeError: injected" in d["message"], d
    errors = int(d["worker_errors"]) - int(start["worker_errors"])
    assert errors >= 3 and d["frames_rejected"] == start["frames_rejected"], d
    text = log.read_text()
    assert text.count("Traceback") == tracebacks + 1  # once, not once per frame
    assert "frame failed: RuntimeError: injected RuntimeError (test fault model)\nTraceback" in text
    out = answered(h, probe_frame())
    assert out is not None and len(out.detections) == 1  # the loop went on
    assert h.wait_diagnostics(level_is(0))["level"] == 0


def test_a_stalled_worker_is_named_by_the_liveness_check(graph, faulty):
    h, _, _ = graph
    faulty(corner_sleeps_s=12.0)
    deadline = time.time() + 30
    d = {}
    while time.time() < deadline and "worker stalled" not in d.get("message", ""):
        send(h, probe_frame(bright_corner=True))  # each one the worker takes holds it for 12 s
        time.sleep(0.3)
        d = h.latest_diagnostics()
    assert d["level"] == 2 and "inference on a 64x48 mono8 frame" in d["message"], d
    assert answered(h, probe_frame()) is not None  # once the slow frame is done, the newest is answered


def test_every_frame_rejected_is_named_by_the_liveness_check(graph, frame):
    h, _, _ = graph
    bad = image_from_array(frame, "mono8", stamp())
    bad.encoding = "yuv422"
    deadline = time.time() + 30
    d = {}
    while time.time() < deadline and "every frame rejected" not in d.get("message", ""):
        bad.header.stamp.nanosec = (bad.header.stamp.nanosec + 1) % 1_000_000_000
        h.pub.publish(bad)
        time.sleep(0.25)
        d = h.latest_diagnostics()
    assert d["level"] == 2 and "unsupported encoding 'yuv422'" in d["message"], d
    assert answered(h, frame) is not None
    assert h.wait_diagnostics(lambda d: d["level"] != 2)["level"] == 1  # back to WARN: malformed frames seen


def test_rate_falls_to_zero_once_the_stream_stops(graph, frame):
    h, _, _ = graph
    for _ in range(6):
        assert answered(h, frame) is not None
    assert float(h.fresh_diagnostics()["rate_hz"]) > 0
    time.sleep(6.0)  # longer than the 5 s rate window
    d = h.fresh_diagnostics()
    assert float(d["rate_hz"]) == 0.0, d


def test_threshold_follows_the_model_card_after_a_swap_unless_the_user_set_one(graph, frame, tmp_path):
    h, _, _ = graph
    shipped = json.loads(default_weights("lrrnet").with_suffix(".json").read_text())["threshold"]
    assert h.param("threshold") == pytest.approx(shipped)  # nobody set one: the card's
    recalibrated = tmp_path / "recal.pt"
    shutil.copyfile(default_weights("lrrnet"), recalibrated)
    recalibrated.with_suffix(".json").write_text(json.dumps({"threshold": 0.7}))
    assert h.set_param("weights", str(recalibrated)).successful
    deadline = time.time() + 60
    while time.time() < deadline and h.param("threshold") != pytest.approx(0.7):
        time.sleep(0.2)
    assert h.param("threshold") == pytest.approx(0.7)
    deadline = time.time() + 10
    while time.time() < deadline and not (h.label_infos and h.label_infos[-1].threshold == pytest.approx(0.7)):
        time.sleep(0.1)
    assert h.label_infos[-1].threshold == pytest.approx(0.7)
    assert h.set_param("threshold", 0.6).successful  # now the user's choice wins over any card
    assert h.set_param("weights", "").successful
    h.wait_diagnostics(lambda d: d["weights"] == str(default_weights("lrrnet")))
    time.sleep(1.0)
    assert h.param("threshold") == pytest.approx(0.6) and h.label_infos[-1].threshold == pytest.approx(0.6)
    assert answered(h, frame) is not None


def test_configure_fails_with_its_reason_in_one_line(tmp_path):
    """A refused device at start-up, then a configure whose model raises an unexpected type."""
    log = tmp_path / "node.log"
    proc = start_detector("-p", "device:=cuda:7", name="cfg", namespace="irstd_cfg", log=log, fault_models=True)
    h = Harness(namespace="irstd_cfg", node_name="cfg")
    try:
        h.wait_state("unconfigured", timeout=60)
        lines = [x for x in wait_log(log, "configure failed").splitlines() if "configure failed" in x]
        assert len(lines) == 1 and "device='cuda:7' cannot be used" in lines[0], lines
        path = fault_checkpoint(tmp_path / "assert.pt", build_raises="AssertionError")
        assert h.set_atomically(device="cpu", model=FAULT, weights=str(path)).successful
        assert not h.transition(Transition.TRANSITION_CONFIGURE)
        d = h.wait_diagnostics(lambda d: "AssertionError" in d["message"], timeout=10)
        assert d["level"] == 2 and "configure failed" in d["message"], d
        assert h.set_atomically(model="lrrnet", weights="").successful
        assert h.transition(Transition.TRANSITION_CONFIGURE) and h.state() == "inactive"
        text = log.read_text()
        assert "Traceback" not in text and text.count("configure failed") == 2
    finally:
        h.close()
        assert stop_detector(proc) == 0


def test_a_start_up_value_outside_its_range_fails_configure_not_the_process(tmp_path):
    """rclpy raises while declaring it; the node reports it as its configure failure instead."""
    log = tmp_path / "node.log"
    proc = start_detector("-p", "threshold:=5.0", name="rng", namespace="irstd_rng", log=log)
    h = Harness(namespace="irstd_rng", node_name="rng")
    try:
        h.wait_state("unconfigured", timeout=60)
        lines = [x for x in log.read_text().splitlines() if "configure failed" in x]
        assert len(lines) == 1 and "threshold" in lines[0] and "out of range" in lines[0], lines
        assert "Traceback" not in log.read_text() and proc.poll() is None
        assert h.set_param("threshold", 0.5).successful and h.transition(Transition.TRANSITION_CONFIGURE)
    finally:
        h.close()
        assert stop_detector(proc) == 0


# each signal in one phase (both go through the same handler): two node starts instead of four, for CI time
@pytest.mark.parametrize("sig, during", [(signal.SIGTERM, "reload"), (signal.SIGINT, "configure")],
                         ids=["SIGTERM-reload", "SIGINT-configure"])
def test_a_signal_during_a_reload_or_a_transition_exits_cleanly(tmp_path, sig, during):
    slow = str(fault_checkpoint(tmp_path / "slow.pt", build_sleeps_s=4.0))  # loading it takes 4 s
    log = tmp_path / f"{during}.log"
    proc = start_detector("-p", f"autostart:={'true' if during == 'reload' else 'false'}", name="sig",
                          namespace="irstd_sig", log=log, fault_models=True)
    h = Harness(namespace="irstd_sig", node_name="sig")
    try:
        h.wait_state("active" if during == "reload" else "unconfigured", timeout=60)
        assert h.set_atomically(model=FAULT, weights=slow).successful
        if during == "configure":
            h.change_state.call_async(ChangeState.Request(transition=Transition(id=Transition.TRANSITION_CONFIGURE)))
        time.sleep(1.5)  # well inside the 4 s load
        proc.send_signal(sig)
        rc = proc.wait(timeout=60)
    finally:
        h.close()
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert rc == 0 and "Traceback" not in text, (during, rc, text[-2000:])
    started = "loading fault_probe" if during == "reload" else "configured fault_probe"
    assert started in text, (during, text[-2000:])  # the signal came while it ran
