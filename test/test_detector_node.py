"""The detector node on a real ROS 2 graph: a separate process, real frames, real services."""
from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from irstd_ros.runtime.detector import Detector, DetectorConfig
from irstd_ros.eval.metrics import components
from irstd_ros.runtime.pipeline import postprocess

from conftest import architectures, clean_sample_frame, tiny_checkpoint, visible_noise  # noqa: I100
from ros_harness import Harness, image_from_array, running_detector, start_detector, stamp_key, wait_log  # noqa: I100,E501

from lifecycle_msgs.msg import Transition  # noqa: E402
from rclpy.qos import ReliabilityPolicy  # noqa: E402


@pytest.fixture(scope="module")
def frame():
    """A bundled sample frame (SIRST-v1 test) whose target the shipped model finds offline (with no false alarm)."""
    img8, gt, _ = clean_sample_frame()
    return img8, gt


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    log = tmp_path_factory.mktemp("node") / "detector.log"
    with running_detector("-p", "publish_scores:=true", "-p", "threshold:=0.5", log=log) as (h, proc):
        yield h, proc, log


_next = [1_700_000_000_000_000_000]


def next_stamp() -> int:
    _next[0] += 33_333_333
    return _next[0]


def roundtrip(h, msg, timeout=60.0):
    key = h.send(msg)
    return h.wait_for(h.detections, key, timeout)


def test_encodings_give_exact_headers_and_boxes_in_original_pixels(graph, frame):
    h, _, _ = graph
    img8, gt = frame
    want_probs = Detector(DetectorConfig()).probabilities(img8.astype(np.float32) / np.float32(255))
    _, want = postprocess(want_probs, 0.5)
    assert want, "the shipped model should find the target in this frame"
    rgb = np.repeat(img8[..., None], 3, axis=2)
    cases = [("mono8", img8, 0), ("rgb8", rgb, 0), ("bgr8", rgb, 7), ("rgba8", np.dstack([rgb, rgb[..., :1]]), 0),
             ("32FC1", img8.astype(np.float32) / np.float32(255), 4)]
    for enc, arr, pad in cases:
        msg = image_from_array(arr, enc, next_stamp(), frame_id=f"cam_{enc}", pad=pad)
        out = roundtrip(h, msg)
        assert out is not None, f"no detections for {enc}"
        assert out.header.frame_id == f"cam_{enc}" and stamp_key(out.header.stamp) == stamp_key(msg.header.stamp)
        boxes = [(d.bbox.center.position.x - d.bbox.size_x / 2, d.bbox.center.position.y - d.bbox.size_y / 2,
                  d.bbox.size_x, d.bbox.size_y) for d in out.detections]
        assert boxes == [(w.x, w.y, w.width, w.height) for w in want], enc  # same as the pure pipeline
        for d in out.detections:
            assert d.header.frame_id == f"cam_{enc}" and d.results[0].hypothesis.class_id == "target"
            assert 0.5 < d.results[0].hypothesis.score <= 1.0
        mask = h.wait_for(h.masks, stamp_key(msg.header.stamp))
        assert (mask.height, mask.width, mask.encoding) == (*img8.shape, "mono8")
        assert mask.header.frame_id == f"cam_{enc}"
        scores = h.wait_for(h.scores, stamp_key(msg.header.stamp))
        assert scores.encoding == "32FC1" and (scores.height, scores.width) == img8.shape
    # the ground-truth target lies inside a reported box, in the frame's own pixel coordinates
    _, _, cents = components(gt)
    cx, cy = cents[0]
    assert any(b[0] <= cx <= b[0] + b[2] and b[1] <= cy <= b[1] + b[3] for b in boxes)
    ids = [d.id for d in out.detections]
    assert len(set(ids)) == len(ids)


def test_mono16_and_big_endian(graph, frame):
    h, _, _ = graph
    img8, gt = frame
    raw = img8.astype(np.uint16) * 40 + 7000  # thermal-like counts in a narrow band
    for big in (False, True):
        msg = image_from_array(raw, "mono16", next_stamp(), bigendian=big, pad=2)
        out = roundtrip(h, msg)
        assert out is not None and len(out.detections) >= 1, f"bigendian={big}"


def test_live_threshold_change_and_refusals(graph, frame):
    h, _, _ = graph
    img8, _ = frame
    base = roundtrip(h, image_from_array(img8, "mono8", next_stamp()))
    base_mask = h.wait_for(h.masks, stamp_key(base.header.stamp))
    r = h.set_param("threshold", 0.999)
    assert r.successful, r.reason
    try:
        strict = roundtrip(h, image_from_array(img8, "mono8", next_stamp()))
        strict_mask = h.wait_for(h.masks, stamp_key(strict.header.stamp))
        assert np.count_nonzero(strict_mask.data) < np.count_nonzero(base_mask.data)
        for bad in (1.5, 0.0, -0.1, 1.0):
            r = h.set_param("threshold", bad)
            assert not r.successful and "threshold" in r.reason, bad
        r = h.set_param("threshold", "high")
        assert not r.successful
        r = h.set_param("min_area", -3)
        assert not r.successful and "min_area" in r.reason
        r = h.set_param("model", "yolo")
        assert not r.successful and "lrrnet" in r.reason
        r = h.set_param("weights", "/nonexistent/w.pt")
        assert not r.successful and "not found" in r.reason
    finally:
        assert h.set_param("threshold", 0.5).successful


def _malformed(img8):
    good = image_from_array(img8, "mono8", next_stamp())
    msgs = []
    m = image_from_array(img8, "mono8", next_stamp()); m.encoding = "yuv422"; msgs.append(m)            # noqa: E702
    m = image_from_array(img8, "mono8", next_stamp()); m.data = bytes(m.data[:100]); msgs.append(m)      # noqa: E702
    m = image_from_array(img8, "mono8", next_stamp()); m.step = m.width - 1; msgs.append(m)             # noqa: E702
    m = image_from_array(img8, "mono8", next_stamp()); m.height = 0; m.width = 0; m.step = 0; m.data = b""; msgs.append(m)  # noqa: E501,E702
    nan = img8.astype(np.float32) / 255
    nan[3, 3] = np.nan
    msgs.append(image_from_array(nan, "32FC1", next_stamp()))
    m = image_from_array(img8[:4, :4], "mono8", next_stamp()); m.height = m.width = 50000; msgs.append(m)  # noqa: E702
    return good, msgs


def test_bad_input_never_kills_the_node(graph, frame):
    h, proc, _ = graph
    img8, _ = frame
    rejected_before = int(h.fresh_diagnostics().get("frames_rejected", 0) or 0)
    _, bad = _malformed(img8)
    for msg in bad:
        key = h.send(msg)
        time.sleep(0.3)  # one at a time: the worker keeps only the newest frame
        assert proc.poll() is None, "the detector died"
        assert h.wait_for(h.detections, key, timeout=0.5) is None
        out = roundtrip(h, image_from_array(img8, "mono8", next_stamp()))
        assert out is not None and out.detections, "the node stopped answering good frames"
    d = h.fresh_diagnostics()
    assert int(d["frames_rejected"]) == rejected_before + len(bad)
    assert d["level"] == 1 and "malformed" in d["message"]  # WARN


def test_burst_faster_than_inference_drops_and_keeps_latency_bounded(graph, frame):
    h, _, _ = graph
    img8, _ = frame
    single = []
    for _ in range(3):
        msg = image_from_array(img8, "mono8", next_stamp())
        t0 = time.monotonic()
        assert roundtrip(h, msg) is not None
        single.append(time.monotonic() - t0)
    per_frame = float(np.median(single))
    before = h.fresh_diagnostics()
    sent = {}
    for _ in range(40):  # 40 frames at ~200 Hz: far faster than the model
        msg = image_from_array(img8, "mono8", next_stamp())
        sent[h.send(msg)] = time.monotonic()
        time.sleep(0.005)
    last = max(sent)
    assert h.wait_for(h.detections, last, timeout=60) is not None, "the newest frame must always be answered"
    answered = [k for k in sent if k in h.detections]
    assert len(answered) < len(sent), "a burst this fast must drop frames"
    latencies = [h.arrival[k] - sent[k] for k in answered]
    # newest-frame policy: a frame waits at most for the inference in flight, then its own
    assert max(latencies) < 4 * per_frame + 1.0, (max(latencies), per_frame)
    after = h.fresh_diagnostics()
    dropped = int(after["frames_dropped"]) - int(before.get("frames_dropped", 0))
    assert dropped >= 1
    processed = int(after["frames_processed"]) - int(before.get("frames_processed", 0))
    assert processed == len(answered)
    # every frame that reached the node is either processed or dropped by it; with the default best-effort,
    # depth-1 subscription DDS itself may also overwrite a frame before the node takes it (never counted)
    received = int(after["frames_received"]) - int(before.get("frames_received", 0))
    assert dropped + processed == received, (dropped, processed, received)
    assert len(answered) < received <= len(sent)


def test_lifecycle_transitions(graph, frame):
    h, _, _ = graph
    img8, _ = frame
    assert h.transition(Transition.TRANSITION_DEACTIVATE)
    assert h.state() == "inactive"
    key = h.send(image_from_array(img8, "mono8", next_stamp()))
    assert h.wait_for(h.detections, key, timeout=2.0) is None
    assert h.transition(Transition.TRANSITION_CLEANUP)
    assert h.state() == "unconfigured"
    assert h.transition(Transition.TRANSITION_CONFIGURE)
    assert h.transition(Transition.TRANSITION_ACTIVATE)
    assert h.state() == "active"
    h.wait_subscribed()
    assert roundtrip(h, image_from_array(img8, "mono8", next_stamp())) is not None
    # the re-created subscription keeps the sensor-data profile and its (read-only) override parameters
    assert h.image_subscription_reliability() == [ReliabilityPolicy.BEST_EFFORT]
    assert h.param("qos_overrides./irstd/image.subscription.depth") == 1


def test_weights_swap_at_runtime_and_a_corrupt_swap_keeps_the_old_model(graph, frame, tmp_path):
    h, proc, log = graph
    img8, _ = frame
    from irstd_ros.runtime.checkpoints import default_weights
    copy = tmp_path / "copy.pt"
    shutil.copyfile(default_weights("lrrnet"), copy)
    assert h.set_param("weights", str(copy)).successful
    deadline = time.time() + 60
    while time.time() < deadline and str(copy) not in h.latest_diagnostics().get("weights", ""):
        time.sleep(0.2)
    assert h.latest_diagnostics()["weights"] == str(copy)
    assert roundtrip(h, image_from_array(img8, "mono8", next_stamp())).detections
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"garbage")
    assert h.set_param("weights", str(corrupt)).successful  # it exists; loading it fails in the background
    deadline = time.time() + 30
    while time.time() < deadline and "corrupt" not in h.latest_diagnostics().get("message", ""):
        time.sleep(0.2)
    d = h.latest_diagnostics()
    assert d["level"] == 2 and "corrupt" in d["message"] and d["weights"] == str(copy), d
    assert proc.poll() is None
    assert roundtrip(h, image_from_array(img8, "mono8", next_stamp())).detections
    assert h.set_param("weights", "").successful


def test_a_corrupt_checkpoint_fails_configure_with_a_clear_message(tmp_path):
    corrupt = tmp_path / "bad.pt"
    corrupt.write_bytes(b"\x00" * 64)
    log = tmp_path / "bad.log"
    proc = start_detector("-p", f"weights:={corrupt}", name="bad", namespace="irstd_bad", log=log)
    h = Harness(namespace="irstd_bad", node_name="bad")
    try:
        h.wait_state("unconfigured", timeout=60)
        text = wait_log(log, "configure failed")
        assert "configure failed" in text and "corrupt" in text and "Traceback" not in text
        assert proc.poll() is None, "the process stays up, ready for a fixed configuration"
    finally:
        h.close()
        proc.terminate()
        proc.wait(timeout=20)


def test_overlay_is_published_only_while_subscribed(graph, frame):
    h, _, _ = graph
    img8, _ = frame
    first = roundtrip(h, image_from_array(img8, "mono8", next_stamp()))
    assert h.wait_for(h.overlays, stamp_key(first.header.stamp), timeout=1.0) is None  # nobody listening yet
    sub = h.subscribe_overlay()
    try:
        deadline = time.time() + 30
        got = None
        while got is None and time.time() < deadline:  # until the node sees the new subscriber
            msg = image_from_array(img8, "mono8", next_stamp(), frame_id="ov")
            roundtrip(h, msg)
            got = h.wait_for(h.overlays, stamp_key(msg.header.stamp), timeout=1.0)
        assert got is not None, "no overlay while subscribed"
        assert (got.encoding, got.height, got.width, got.header.frame_id) == ("rgb8", *img8.shape, "ov")
        rgb = np.frombuffer(bytes(got.data), np.uint8).reshape(got.height, got.width, 3)
        assert ((rgb[..., 0] == 255) & (rgb[..., 1] == 0)).any()  # the predicted outline, in red
    finally:
        h.node.destroy_subscription(sub)


def _back_to_lrrnet(h) -> dict:
    """Swap back to the shipped LRRNet and wait until it serves with no ERROR (a failed swap's clears then; a WARN
    may remain: this module's graph has skipped malformed frames in an earlier test). Its last diagnostics."""
    assert h.set_atomically(model="lrrnet", weights="").successful
    return h.wait_diagnostics(lambda d: d.get("backend", "").startswith("lrrnet/") and d.get("level", 2) < 2,
                              timeout=180)


@pytest.mark.parametrize("name", [n for n in architectures() if n != "lrrnet"])
def test_hot_swap_to_each_model_and_back_and_a_corrupt_checkpoint_keeps_serving(graph, frame, tmp_path, name):
    """model:=<name> swaps in live (an untrained test-sized variant: this checks serving, not accuracy), a
    corrupt checkpoint of it fails in one line while it keeps answering, and LRRNet swaps back."""
    h, proc, log = graph
    img8, _ = frame
    ckpt = tiny_checkpoint(tmp_path / f"{name}_tiny.pt", name)
    assert h.set_atomically(model=name, weights=str(ckpt)).successful
    d = h.wait_diagnostics(lambda d: d.get("backend", "").startswith(f"{name}/"), timeout=180)
    assert d["backend"].startswith(f"{name}/") and d["weights"] == str(ckpt), d
    msg = image_from_array(img8, "mono8", next_stamp())
    out = roundtrip(h, msg)
    assert out.header.stamp == msg.header.stamp and out.header.frame_id == msg.header.frame_id

    corrupt = tmp_path / f"{name}_corrupt.pt"
    corrupt.write_bytes(ckpt.read_bytes()[:2000])       # truncated: torch.load fails
    assert h.set_param("weights", str(corrupt)).successful
    d = h.wait_diagnostics(lambda d: "corrupt" in d.get("message", ""), timeout=120)
    assert d["level"] == 2 and d["backend"].startswith(f"{name}/") and d["weights"] == str(ckpt), d
    lines = [line for line in log.read_text().splitlines() if f"{name}_corrupt" in line]
    assert lines and "Traceback" not in log.read_text().split(str(corrupt))[-1][:2000]
    assert proc.poll() is None
    out = roundtrip(h, image_from_array(img8, "mono8", next_stamp()))
    assert out is not None                                # the model still answers

    d = _back_to_lrrnet(h)
    assert d["backend"].startswith("lrrnet/") and d["level"] < 2, d
    assert roundtrip(h, image_from_array(img8, "mono8", next_stamp())).detections


def _scores(h, img8):
    msg = image_from_array(img8, "mono8", next_stamp())
    key = h.send(msg)
    got = h.wait_for(h.scores, key, 120)
    return np.frombuffer(bytes(got.data), np.float32).reshape(got.height, got.width)


def test_irstd_diff_serves_both_modes_and_its_knobs_apply_live_or_are_refused(graph, frame, tmp_path):
    """model:=irstd_diff (an untrained test-sized variant) in diffusion mode and CE mode: the knob parameters
    apply on the next frame, a value this model cannot run is refused with the reason, and the seeded sampling
    gives the same scores for the same frame."""
    h, proc, _ = graph
    img8, _ = frame
    ckpt = tiny_checkpoint(tmp_path / "irstd_diff_tiny.pt", "irstd_diff", prepare=visible_noise)
    try:
        assert h.set_atomically(model="irstd_diff", weights=str(ckpt)).successful
        d = h.wait_diagnostics(lambda d: d.get("backend", "").startswith("irstd_diff/"), timeout=180)
        assert d["weights"] == str(ckpt), d
        first, again = _scores(h, img8), _scores(h, img8)
        assert np.array_equal(first, again)                         # seeded: same frame, same scores
        refused = h.set_param("irstd_diff.sampling_steps", 21)      # the tiny variant's T is 20
        assert not refused.successful and "sampling_steps must be in [1, 20]" in refused.reason
        assert not h.set_param("irstd_diff.mode", "gan").successful
        assert h.set_param("irstd_diff.mode", "ce").successful
        ce = _scores(h, img8)
        assert not np.array_equal(ce, first)                        # the next frame already runs the CE alone
        assert h.set_param("irstd_diff.mode", "auto").successful   # back to the weights' own setting
        assert np.array_equal(_scores(h, img8), first)
        assert h.set_param("irstd_diff.seed", 3).successful
        assert not np.array_equal(_scores(h, img8), first)
        assert proc.poll() is None
    finally:
        h.set_param("irstd_diff.seed", 0)
        _back_to_lrrnet(h)


def test_a_long_diffusion_sampling_drops_frames_and_keeps_the_node_responsive(graph, frame, tmp_path):
    """IRSTD-Diff sampling every DDPM step (slow by design): frames arriving meanwhile are dropped and counted,
    never queued, the newest is answered, parameters can be set while a frame is sampled, and a new sampler and
    step count apply from the next frame."""
    h, proc, _ = graph
    img8, _ = frame
    ckpt = tiny_checkpoint(tmp_path / "irstd_diff_ddpm.pt", "irstd_diff", prepare=visible_noise, sampler="ddpm")
    try:
        assert h.set_atomically(model="irstd_diff", weights=str(ckpt)).successful
        h.wait_diagnostics(lambda d: d.get("weights") == str(ckpt), timeout=180)
        ddpm = _scores(h, img8)
        before = h.fresh_diagnostics()
        sent = []
        for _ in range(12):  # spaced so that the node's executor takes each (a depth-1 best-effort DDS queue
            sent.append(h.send(image_from_array(img8, "mono8", next_stamp())))  # would overwrite a back-to-back burst)
            time.sleep(0.05)
        assert h.set_param("irstd_diff.seed", 0).successful      # the parameter service answers mid-sampling
        assert h.wait_for(h.detections, sent[-1], timeout=120) is not None, "the newest frame is answered"
        after = h.fresh_diagnostics()
        dropped = int(after["frames_dropped"]) - int(before.get("frames_dropped", 0))
        processed = int(after["frames_processed"]) - int(before.get("frames_processed", 0))
        received = int(after["frames_received"]) - int(before.get("frames_received", 0))
        assert dropped + processed == received and processed < received, (dropped, processed, received)
        assert dropped >= 1, (dropped, processed, received)
        assert h.set_atomically(**{"irstd_diff.sampler": "ddim", "irstd_diff.sampling_steps": 1}).successful
        assert not np.array_equal(_scores(h, img8), ddpm)         # the next frame samples one DDIM step
        assert proc.poll() is None
    finally:
        h.set_atomically(**{"irstd_diff.sampler": "auto", "irstd_diff.sampling_steps": 0})
        _back_to_lrrnet(h)
