"""Fuzzing the detector node on a real graph: random frames, random parameter values, random transitions.

Seeded: ``IRSTD_FUZZ_SEED=<n>`` replays a run; the seed is in every failure
message. The counts below are what the README's reliability section quotes.

The node runs ``fault_probe`` (test/fault_models.py, configured not to fail):
a one-multiply network, so hundreds of frames of random sizes fit the time
budget on a loaded 2-core CPU, where LRRNet takes seconds per new frame size.
What is fuzzed is everything around the network: decoding, validation,
padding, postprocessing, publishing, parameters and transitions.
"""
from __future__ import annotations

import os
import random
import threading
import time

import numpy as np
import pytest

from irstd_ros.runtime.checkpoints import default_weights
from irstd_ros.eval.datasets import read_image
from irstd_ros.ros.node_params import PARAMS
from irstd_ros.runtime.pipeline import postprocess

from ros_harness import FAULT_GAIN, FAULT_MODEL as FAULT, fault_checkpoint, image_from_array  # noqa: I100
from ros_harness import rss_mb, running_detector, stamp_key  # noqa: I100

from lifecycle_msgs.msg import Transition  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

SEED = int(os.environ.get("IRSTD_FUZZ_SEED", random.SystemRandom().randrange(1 << 31)))
N_FRAMES = 300
MAX_PIXELS = 1 << 17       # the fuzzed node's max_image_pixels: bigger frames are malformed, and cheap to send
MEMORY_BOUND_MB = 32.0     # resident memory growth allowed over the frame fuzz, after a warm-up at the same sizes
VALUES_PER_TYPE = 2        # random values of each of the 9 parameter types, for every parameter
N_TRANSITIONS = 40
THRESHOLD = 0.5
# The sensor_msgs/Image contract as the README states it (independent of the codec's own table)
BYTES_PER_PIXEL = {"mono8": 1, "8UC1": 1, "mono16": 2, "16UC1": 2, "rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4,
                   "32FC1": 4}
UNSUPPORTED = ["yuv422", "bayer_rggb8", "mono32", "", "MONO8", "32FC3", "rgb16", "8UC3", "16SC1", "64FC1"]
SAMPLE = default_weights("lrrnet").parents[1] / "sample" / "sirst-v1"


def seeded(msg: str) -> str:
    return f"{msg} [fuzz seed {SEED}: IRSTD_FUZZ_SEED={SEED} replays it]"


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return (read_image(SAMPLE / "images" / "Misc_127.png") * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> str:
    return str(fault_checkpoint(tmp_path_factory.mktemp("probe") / "probe.pt"))


QOS = "qos_overrides./irstd_fuzz/image.subscription"  # ROS 2's standard QoS override parameters


@pytest.fixture(scope="module")
def graph(tmp_path_factory, probe):
    print(f"fuzz seed: {SEED}")
    log = tmp_path_factory.mktemp("fuzz") / "detector.log"
    with running_detector("-p", f"model:={FAULT}", "-p", f"weights:={probe}", "-p", f"max_image_pixels:={MAX_PIXELS}",
                          "-p", f"{QOS}.reliability:=reliable", "-p", f"{QOS}.depth:=50", "-p", "diagnostics_period:=0.1",
                          "-p", f"threshold:={THRESHOLD}", "-p", "precision:=fp32", name="fuzz",
                          namespace="irstd_fuzz", log=log, fault_models=True) as (h, proc):
        yield h, proc, log


@pytest.fixture(scope="module")
def want(frame):
    """The boxes of the real frame under the probe model's definition, sigmoid(gain * (x - 0.5))."""
    probs = 1 / (1 + np.exp(-FAULT_GAIN * (frame.astype(np.float32) / np.float32(255) - 0.5)))
    boxes = [(d.x, d.y, d.width, d.height) for d in postprocess(probs, THRESHOLD)[1]]
    assert boxes, "the probe model should find the bright target"
    return boxes


_next = [1_900_000_000_000_000_000]


def stamp_header(frame_id: str = "fuzz") -> Header:
    _next[0] += 1_000_003
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = _next[0] // 1_000_000_000, _next[0] % 1_000_000_000
    return h


def _side(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.05:
        return 0
    if r < 0.6:
        return rng.randint(1, 64)
    if r < 0.85:
        return rng.randint(65, 512)
    return rng.choice([4096, rng.randint(513, 4096)])


def random_image(rng: random.Random) -> tuple[Image, bool]:
    """One random message and whether the contract accepts it."""
    enc = rng.choice(list(BYTES_PER_PIXEL)) if rng.random() < 0.75 else rng.choice(UNSUPPORTED)
    bpp = BYTES_PER_PIXEL.get(enc, rng.choice([1, 2, 3, 4]))
    h, w = _side(rng), _side(rng)
    if rng.random() < 0.5 and h * w > MAX_PIXELS:  # keep plenty of frames that fit
        h = max(1, MAX_PIXELS // max(w, 1) // rng.randint(1, 8)) if w else h
    row = w * bpp
    r = rng.random()
    step = row if r < 0.5 else row + rng.randint(1, 64) if r < 0.75 else \
        max(0, row - rng.randint(1, max(row, 1))) if r < 0.9 else rng.choice([0, 2**31, 2**32 - 1])
    need = step * (h - 1) + row if h else 0
    fits = 0 < h * w <= MAX_PIXELS
    is_bigendian = rng.randint(0, 1) if rng.random() < 0.9 else rng.randint(2, 255)  # any non-zero: big endian
    big_endian = is_bigendian != 0
    data = bytearray()
    pixels_finite = True
    if fits and step >= row and need <= 4 << 20:
        data = bytearray(rng.randbytes(need))
        if enc == "32FC1":
            vals = np.array([rng.uniform(-2, 2) for _ in range(min(h * w, 16))] * (h * w // min(h * w, 16) + 1),
                            np.float32)[:h * w]
            if rng.random() < 0.3:
                vals[rng.randrange(h * w)] = rng.choice([np.nan, np.inf, -np.inf])
            pixels_finite = bool(np.isfinite(vals).all())
            px = vals.astype(">f4" if big_endian else "<f4").reshape(h, w)
            for y in range(h):
                data[y * step:y * step + row] = px[y].tobytes()
    r = rng.random()
    if r < 0.15:
        data = data[:rng.randrange(len(data) + 1)] if data else bytearray(rng.randbytes(rng.randint(0, 64)))
    elif r < 0.3:
        data += rng.randbytes(rng.randint(1, 4096))  # long data is allowed: the extra bytes are ignored
    valid = (enc in BYTES_PER_PIXEL and fits and step >= row and len(data) >= need and pixels_finite)
    msg = Image(header=stamp_header(), height=h, width=w, encoding=enc, step=step, data=bytes(data),
                is_bigendian=is_bigendian)
    return msg, valid


def counters(d: dict) -> dict:
    return {k: int(d.get(k, 0)) for k in ("frames_received", "frames_processed", "frames_rejected", "frames_dropped",
                                          "worker_errors")}


def settled(h, received: int, timeout: float = 60.0) -> dict:
    """Diagnostics once the node has taken ``received`` frames and dealt with each one."""
    def done(d):
        c = counters(d)
        return c["frames_received"] >= received and \
            c["frames_processed"] + c["frames_rejected"] + c["worker_errors"] + c["frames_dropped"] == c["frames_received"]
    return counters(h.wait_diagnostics(done, timeout))


def boxes(out):
    return [(d.bbox.center.position.x - d.bbox.size_x / 2, d.bbox.center.position.y - d.bbox.size_y / 2,
             d.bbox.size_x, d.bbox.size_y) for d in out.detections]


def good_frame_answered_right(h, img8, want):
    msg = image_from_array(img8, "mono8", stamp_key(stamp_header().stamp), frame_id="good")
    out = h.wait_for(h.detections, h.send(msg), timeout=60)
    assert out is not None, seeded("the node no longer answers a good frame")
    assert out.header.frame_id == "good" and boxes(out) == want, seeded(f"{boxes(out)} != {want}")


def test_fuzz_frames(graph, frame, want):
    h, proc, _ = graph
    rng = random.Random(SEED)
    messages = [random_image(rng) for _ in range(N_FRAMES)]
    # warm-up: the same sizes once, so the memory check sees growth, not first-use caches
    warm = [m for m, ok in messages if ok][:40]
    base = settled(h, 0)
    for m in warm:
        h.send(m)
        base = settled(h, base["frames_received"] + 1)
    good_frame_answered_right(h, frame, want)
    rss0 = rss_mb(proc.pid)
    start = settled(h, base["frames_received"] + 1)
    sent_valid = 0
    for i, (msg, valid) in enumerate(messages):
        msg.header = stamp_header(f"fuzz{i}")
        key = h.send(msg)
        c = settled(h, start["frames_received"] + i + 1)
        assert c["frames_received"] == start["frames_received"] + i + 1, seeded(f"frame {i} never counted: {c}")
        if valid:
            sent_valid += 1
            out = h.wait_for(h.detections, key, timeout=30)
            assert out is not None and out.header.frame_id == f"fuzz{i}", seeded(
                f"valid frame {i} ({msg.encoding} {msg.width}x{msg.height} step {msg.step}) not answered")
        assert proc.poll() is None, seeded(f"the node died on frame {i}")
    end = settled(h, start["frames_received"] + N_FRAMES)
    delta = {k: end[k] - start[k] for k in end}
    n_bad = N_FRAMES - sent_valid
    assert delta == {"frames_received": N_FRAMES, "frames_processed": sent_valid, "frames_rejected": n_bad,
                     "frames_dropped": 0, "worker_errors": 0}, seeded(str(delta))
    good_frame_answered_right(h, frame, want)
    growth = rss_mb(proc.pid) - rss0
    print(f"frame fuzz: {N_FRAMES} frames, {sent_valid} valid, {n_bad} malformed; RSS growth {growth:.1f} MB")
    assert growth < MEMORY_BOUND_MB, seeded(f"resident memory grew {growth:.1f} MB over {N_FRAMES} frames")


def random_values(rng: random.Random, spec) -> list:
    """VALUES_PER_TYPE values of every parameter type, biased towards the edges of this parameter's range."""
    lo, hi = spec.range if spec.range else (0, 1)
    choices = list(spec.choices or []) + ["lrrnet", "cuda:7", "cuda", "cpu", "/etc/hostname", "/nonexistent.pt", ""]
    gens = [
        lambda: rng.random() < 0.5,
        lambda: rng.choice([int(lo), int(hi), int(lo) - 1, int(hi) + 1, 0, -1, 2**62, -2**62,
                            rng.randint(int(lo), int(hi))]),
        lambda: rng.choice([float(lo), float(hi), float("nan"), float("inf"), float("-inf"), -0.0, 1e300,
                            rng.uniform(float(lo), float(hi))]),
        lambda: rng.choice(choices + ["".join(chr(rng.randint(1, 0x2FF)) for _ in range(rng.randint(1, 20)))]),
        lambda: bytes(rng.randbytes(rng.randint(1, 8))),
        lambda: [rng.random() < 0.5 for _ in range(rng.randint(1, 4))],
        lambda: [rng.randint(-5, 5) for _ in range(rng.randint(1, 4))],
        lambda: [rng.uniform(-1, 2) for _ in range(rng.randint(1, 4))],
        lambda: [rng.choice(choices) for _ in range(rng.randint(1, 4))],
    ]
    return [g() for g in gens for _ in range(VALUES_PER_TYPE)]


def same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)


def test_fuzz_parameters(graph, frame, want):
    h, proc, _ = graph
    rng = random.Random(SEED + 1)
    names = [p.name for p in PARAMS]
    baseline = {n: h.param(n) for n in names}
    applied = refused = 0
    for spec in [*PARAMS, type(PARAMS[0])("autostart", True, "read-only")]:
        for value in random_values(rng, spec):
            before = h.param(spec.name)
            r = h.set_param(spec.name, value)
            after = h.param(spec.name)
            if r.successful:
                applied += 1
                assert same(after, value) or not isinstance(value, (bool, int, float, str)), \
                    seeded(f"{spec.name}={value!r} accepted but reads back {after!r}")
            else:
                refused += 1
                assert r.reason.strip(), seeded(f"{spec.name}={value!r} refused without a reason")
                assert same(after, before), seeded(f"{spec.name}={value!r} refused but changed to {after!r}")
            assert proc.poll() is None, seeded(f"the node died on {spec.name}={value!r}")
    print(f"parameter fuzz: {applied + refused} values ({applied} applied, {refused} refused with a reason)")
    changed = {n: v for n, v in baseline.items() if not same(h.param(n), v)}
    assert not changed or h.set_atomically(**changed).successful, changed  # back to the start: one reload at most
    d = h.wait_diagnostics(lambda d: d["level"] != 2 and d["backend"] == f"{FAULT}/torch-fp32")
    assert d["level"] != 2, seeded(str(d))
    good_frame_answered_right(h, frame, want)


def test_fuzz_lifecycle_while_frames_stream(graph, frame, want):
    h, proc, _ = graph
    rng = random.Random(SEED + 2)
    small = frame[:64, :64]
    sent = {}  # stamp -> send time
    stop = threading.Event()

    def stream():
        while not stop.is_set():
            msg = image_from_array(small, "mono8", stamp_key(stamp_header().stamp))
            sent[stamp_key(msg.header.stamp)] = time.monotonic()
            h.send(msg)
            time.sleep(0.05)

    ids = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE,
           "deactivate": Transition.TRANSITION_DEACTIVATE, "cleanup": Transition.TRANSITION_CLEANUP}
    inactive_windows = []  # (from, to): the node was certainly not active between these times
    not_active_since = None
    counts = {"succeeded": 0, "refused": 0}
    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    try:
        for _ in range(N_TRANSITIONS):
            name = rng.choice(list(ids))
            t0 = time.monotonic()
            if name == "activate" and not_active_since is not None:
                inactive_windows.append((not_active_since, t0))
            ok = h.transition(ids[name])  # raises TimeoutError after 30 s: a deadlock fails the test
            assert time.monotonic() - t0 < 30, seeded(f"{name} took {time.monotonic() - t0:.0f} s")
            counts["succeeded" if ok else "refused"] += 1
            state = h.state()
            if state != "active" and not_active_since is None:
                not_active_since = time.monotonic()
            elif state == "active":
                not_active_since = None
            assert proc.poll() is None, seeded(f"the node died on {name}")
            time.sleep(rng.uniform(0, 0.3))
    finally:
        stop.set()
        streamer.join()
    if not_active_since is not None:
        inactive_windows.append((not_active_since, time.monotonic()))
    time.sleep(1.0)
    with h.lock:
        answered = [k for k in sent if k in h.detections]
    late = [k for k in answered if any(a < sent[k] < b for a, b in inactive_windows)]
    assert not late, seeded(f"{len(late)} frames sent while the node was not active were answered")
    print(f"lifecycle fuzz: {N_TRANSITIONS} transitions ({counts['succeeded']} done, {counts['refused']} refused "
          f"as invalid), {len(sent)} frames streamed, {len(answered)} answered")
    for name in ("configure", "activate"):
        if h.state() != "active":
            h.transition(ids[name])
    assert h.state() == "active", seeded(h.state())
    h.wait_subscribed()
    good_frame_answered_right(h, frame, want)


def test_qos_overrides_reach_the_image_subscription(graph):
    """The fuzzer's reliable, depth-50 image subscription came from qos_overrides, the ROS 2 way."""
    from rclpy.qos import ReliabilityPolicy
    h, _, _ = graph
    assert h.image_subscription_reliability() == [ReliabilityPolicy.RELIABLE]
    assert h.param(f"{QOS}.depth") == 50 and h.param(f"{QOS}.reliability") == "reliable"
    assert not h.set_param(f"{QOS}.depth", 5).successful  # read-only, as everywhere in ROS 2
