"""Node overhead: end-to-end detector-node latency beside the bare pipeline's, in the same run.

    .venv/bin/python bench/bench_node.py [--frames 60]

Bare: ``Detector.probabilities`` + ``postprocess`` on the decoded frame in this
process. Node: publish a mono8 frame, wait for its detections (one frame in
flight at a time, so nothing is dropped), through a real Fast DDS graph to the
detector in its own process. Both use the bundled sample frames at native size.
The ratio node/bare is the node's overhead (transport, conversion, messages).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(120 + os.getpid() % 20))
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp())

from irstd_ros.cli.demo import SAMPLE  # noqa: E402
from irstd_ros.machine import machine_description  # noqa: E402
from irstd_ros.datasets import IRSTDDataset  # noqa: E402
from irstd_ros.detector import Detector, DetectorConfig  # noqa: E402
from irstd_ros.pipeline import postprocess  # noqa: E402
from irstd_ros.stream_client import StreamClient, make_image, start_detector, stop  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=60)
    args = ap.parse_args()
    ds = IRSTDDataset(SAMPLE, "demo", protocol="native")
    frames = [np.round(ds.load(n).image * 255).astype(np.uint8) for n in ds.names]
    seq = [frames[i % len(frames)] for i in range(args.frames)]

    det = Detector(DetectorConfig())
    for f in frames:
        det.probabilities(f.astype(np.float32) / 255)
    bare = []
    for f in seq:
        t0 = time.perf_counter()
        postprocess(det.probabilities(f.astype(np.float32) / np.float32(255)), 0.5)
        bare.append(time.perf_counter() - t0)
    del det

    ns = f"irstd_bench_{os.getpid()}"
    node = start_detector(ns)
    client = StreamClient(namespace=ns)
    from diagnostic_msgs.msg import DiagnosticArray
    diags = []
    client.node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    try:
        assert client.wait_for_detector(180), "detector did not start"
        for i, f in enumerate(frames):  # warm every size through the node too
            k = client.publish(make_image(f, "mono8", 1 + i, "bench"))
            client.wait_answers([k], 60)
        e2e = []
        for i, f in enumerate(seq):
            k = client.publish(make_image(f, "mono8", 1_000_000 + i, "bench"))
            client.wait_answers([k], 60)
            e2e.append(client.detections[k][1] - client.sent[k])
        time.sleep(2.5)
        inside = None
        for arr in reversed(diags):
            for st in arr.status:
                if st.name.startswith(f"/{ns}/"):
                    inside = {kv.key: kv.value for kv in st.values}
            if inside:
                break
    finally:
        client.close()
        stop(node)
    b, n = statistics.median(bare) * 1e3, statistics.median(e2e) * 1e3
    print(f"machine: {machine_description()}")
    print(f"{args.frames} frames of the bundled sample (native sizes), mono8, one in flight")
    print(f"  bare pipeline (decode-free model + postprocess): median {b:.1f} ms  ({1e3 / b:.1f} FPS)")
    print(f"  node end to end (publish -> detections):         median {n:.1f} ms  ({1e3 / n:.1f} FPS)")
    print(f"  node / bare = {n / b:.3f}  (overhead {100 * (n / b - 1):+.1f} %)")
    if inside:
        print(f"  inside the node (receipt -> published, last 200 frames): median {float(inside['latency_ms_p50']):.1f} ms;"
              f" transport + client: {n - float(inside['latency_ms_p50']):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
