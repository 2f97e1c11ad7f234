"""Node overhead: end-to-end detector-node latency beside the bare pipeline's, in the same run.

    .venv/bin/python bench/bench_node.py [--model lrrnet] [--frames 60]
        [--size 640x512 --backend openvino --precision bf16]
        [--rounds 3] [--json out.json]

Bare: ``Detector.probabilities`` + ``postprocess`` on the decoded frame in this
process. Node: publish a mono8 frame, wait for its detections (one frame in
flight at a time, so nothing is dropped), through a real Fast DDS graph to the
detector in its own process. Default frames: the bundled sample at native size;
``--size`` tiles one sample frame to that size. This machine's speed drifts
between two states (see bench_backends.py), so bare and node alternate in
``--rounds``, each with a speed probe: compare within a round. The node's own
receipt -> published latency (from /diagnostics) splits the rest into the node's
work and transport + client.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(120 + os.getpid() % 20))
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp())

from bench_backends import frame, speed_probe  # noqa: E402
from bench_models import size_arg  # noqa: E402
from irstd_ros.runtime.checkpoints import card_threshold  # noqa: E402
from irstd_ros.cli.demo import SAMPLE  # noqa: E402
from irstd_ros.machine import machine_description  # noqa: E402
from irstd_ros.eval.datasets import IRSTDDataset  # noqa: E402
from irstd_ros.runtime.detector import Detector, DetectorConfig  # noqa: E402
from irstd_ros.runtime.pipeline import postprocess  # noqa: E402
from irstd_ros.ros.stream_client import StreamClient, make_image, start_detector, stop  # noqa: E402


def node_diagnostics(diags, ns: str):
    """The newest /diagnostics values of the node under ``ns``."""
    for arr in reversed(diags):
        for st in arr.status:
            if st.name.startswith(f"/{ns}/"):
                return {kv.key: kv.value for kv in st.values}
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="lrrnet", help="a registered model, with its shipped weights")
    ap.add_argument("--frames", type=int, default=60, help="frames per round, bare and node each")
    ap.add_argument("--size", type=size_arg, help="WxH: one sample frame tiled to this size (default: the ten "
                    "sample frames at their own sizes)")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.size:
        frames = [(frame(*args.size) * 255).round().astype(np.uint8)]
        what = f"a sample frame tiled to {args.size[1]}x{args.size[0]}"
    else:
        ds = IRSTDDataset(SAMPLE, "demo", protocol="native")
        frames = [np.round(ds.load(n).image * 255).astype(np.uint8) for n in ds.names]
        what = "the bundled sample (native sizes)"
    seq = [frames[i % len(frames)] for i in range(args.frames)]
    cache = tempfile.mkdtemp(prefix="irstd-bench-node-")
    threshold = card_threshold(args.model)

    det = Detector(DetectorConfig(model=args.model, backend=args.backend, precision=args.precision, cache_dir=cache))
    for f in frames:  # compiles each size into the cache the node then loads from
        det.probabilities(f.astype(np.float32) / 255)

    def bare_ms() -> float:
        times = []
        for f in seq:
            t0 = time.perf_counter()
            postprocess(det.probabilities(f.astype(np.float32) / np.float32(255)), threshold)
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3

    ns = f"irstd_bench_{os.getpid()}"
    node = start_detector(ns, model=args.model, extra=["-p", f"backend:={args.backend}", "-p",
                                                       f"precision:={args.precision}", "-p", f"cache_dir:={cache}"])
    client = StreamClient(namespace=ns)
    from diagnostic_msgs.msg import DiagnosticArray
    diags = []
    client.node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    rounds, stamp = [], 1_000_000
    try:
        assert client.wait_for_detector(300), "detector did not start"
        for i, f in enumerate(frames):  # warm every size through the node too
            client.wait_answers([client.publish(make_image(f, "mono8", 1 + i, "bench"))], 300)
        for _ in range(args.rounds):
            probe = speed_probe()
            bare = bare_ms()
            e2e = []
            for f in seq:
                stamp += 1
                k = client.publish(make_image(f, "mono8", stamp, "bench"))
                client.wait_answers([k], 60)
                e2e.append(client.detections[k][1] - client.sent[k])
            rounds.append({"probe_gflops": round(probe, 1), "bare_ms": round(bare, 2),
                           "node_ms": round(statistics.median(e2e) * 1e3, 2)})
        time.sleep(2.5)
        inside = node_diagnostics(diags, ns)
    finally:
        client.close()
        stop(node)
    print(f"machine: {machine_description()}")
    print(f"{args.model}: {args.frames} frames a round of {what}, mono8, one in flight; {args.backend} "
          f"{args.precision}")
    for k, r in enumerate(rounds):
        print(f"  round {k + 1}: probe {r['probe_gflops']:5.1f} GFLOP/s | bare pipeline {r['bare_ms']:7.1f} ms | "
              f"node end to end {r['node_ms']:7.1f} ms | node / bare {r['node_ms'] / r['bare_ms']:.3f}")
    result = {"machine": machine_description(), "model": args.model, "frames": what, "backend": args.backend,
              "precision": args.precision, "rounds": rounds}
    if inside:
        node_p50 = statistics.median(r["node_ms"] for r in rounds)
        result["inside_node_p50_ms"] = float(inside["latency_ms_p50"])
        print(f"  inside the node (receipt -> published, last 200 frames): median {float(inside['latency_ms_p50']):.1f}"
              f" ms; transport + client: {node_p50 - float(inside['latency_ms_p50']):.1f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
