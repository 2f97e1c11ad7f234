"""Backends side by side: model x backend x precision x frame size, and the node end to end (a script, never a test).

    .venv/bin/python bench/bench_backends.py [--models lrrnet] [--backends torch openvino onnxruntime]
        [--precisions fp32 bf16 int8] [--sizes 256x256 640x512 1280x1024] [--runs 30] [--node 640x512]
        [--json bench/results/backends_cpu.json]

Every cell runs the shipped weights through :class:`Detector` (preprocess, model,
sigmoid, crop: what the node calls) on a real SIRST-v1 sample frame tiled to the
size, after warm-up: median and p90 latency, FPS, GFLOPs per frame (torch's
FlopCounterMode at the padded size) and the GFLOP/s that makes. For compiling
backends it also reports what a new frame size costs the first time: the compile
into an empty cache, and the load from that cache by a fresh Detector (a restart).
Pairs that cannot run here (bf16 on onnxruntime, tensorrt without a GPU, int8 for
weights shipped without int8 ranges) are listed as skipped with the reason. ``--node WxH`` then runs the detector node with
the fastest backend of the first model at that size and times publish -> detections
over a real Fast DDS graph, one frame in flight. Run it on an otherwise idle
machine; the machine is printed with the numbers. This machine's speed itself
drifts (shared physical cores: an fp32 matmul gives about 205 or 170 GFLOP/s
depending on when it runs, and OpenVINO int8 33 or 57 ms), so every cell also
records ``probe_gflops``: a 0.5 s numpy fp32 matmul measured just before it.
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
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(140 + os.getpid() % 20))
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp())

from bench_models import flops, size_arg  # noqa: E402
from timing import p90, times_ms  # noqa: E402
from irstd_ros.runtime.backends import BACKENDS  # noqa: E402
from irstd_ros.cli.demo import SAMPLE  # noqa: E402
from irstd_ros.eval.datasets import read_image  # noqa: E402
from irstd_ros.runtime.detector import Detector, DetectorConfig, config_problem  # noqa: E402
from irstd_ros.machine import machine_description  # noqa: E402
from irstd_ros.models import list_models  # noqa: E402
from irstd_ros.runtime.pipeline import preprocess  # noqa: E402


def frame(h: int, w: int) -> np.ndarray:
    """A real thermal frame (SIRST-v1 sample Misc_58) tiled to h x w."""
    img = read_image(SAMPLE / "images" / "Misc_58.png")
    reps = (-(-h // img.shape[0]), -(-w // img.shape[1]))
    return np.ascontiguousarray(np.tile(img, reps)[:h, :w])


def speed_probe(seconds: float = 0.5, n: int = 768) -> float:
    """GFLOP/s of a numpy fp32 n x n matmul over ``seconds``: which speed state the machine is in right now."""
    m = np.random.default_rng(0).random((n, n), dtype=np.float32)
    t0, k = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        m @ m
        k += 1
    return 2 * n ** 3 * k / (time.perf_counter() - t0) / 1e9


def bench_cell(model, backend, precision, hw, runs, budget_s, gflops, cache_root):
    cfg = DetectorConfig(model=model, backend=backend, precision=precision, cache_dir=str(cache_root))
    image = frame(*hw)
    row = {"model": model, "backend": backend, "precision": precision, "size": f"{hw[1]}x{hw[0]}"}
    det = Detector(cfg)
    row["precision"] = det.precision
    if det.compiled is not None:
        x, _ = preprocess(image, det.stride)
        row["compile_s"] = round(sum(lk.seconds for _, lk in det.compiled.compile(x)), 2)
        restart = Detector(cfg)
        row["cache_load_s"] = round(sum(lk.seconds for _, lk in restart.compiled.compile(x)), 3)
        det = restart
    row["probe_gflops"] = round(speed_probe(), 1)
    times = times_ms(lambda: det.probabilities(image), runs, warmup=2, budget_s=budget_s)
    med, n = statistics.median(times), len(times)
    row.update({"median_ms": round(med, 2), "p90_ms": round(p90(times), 2), "fps": round(1e3 / med, 1), "runs": n,
                "gflops": round(gflops, 2), "gflop_per_s": round(gflops / (med / 1e3), 1)})
    return row


def bench_node(model, backend, precision, hw, frames, cache_root):
    from irstd_ros.ros.stream_client import StreamClient, make_image, start_detector, stop
    image = (frame(*hw) * 255).round().astype(np.uint8)
    ns = f"irstd_bench_backends_{os.getpid()}"
    node = start_detector(ns, model, None, None, ["-p", f"backend:={backend}", "-p", f"precision:={precision}",
                                                  "-p", f"cache_dir:={cache_root}"])
    client = StreamClient(namespace=ns)
    try:
        assert client.wait_for_detector(300), "detector did not start"
        for i in range(3):  # warm-up at this size (the engine comes from the cache the cells filled)
            client.wait_answers([client.publish(make_image(image, "mono8", 1 + i, "bench"))], 300)
        e2e = []
        for i in range(frames):
            k = client.publish(make_image(image, "mono8", 1_000_000 + i, "bench"))
            client.wait_answers([k], 60)
            e2e.append((client.detections[k][1] - client.sent[k]) * 1e3)
    finally:
        client.close()
        stop(node)
    e2e.sort()
    med = statistics.median(e2e)
    return {"model": model, "backend": backend, "precision": precision, "size": f"{hw[1]}x{hw[0]}",
            "frames": frames, "median_ms": round(med, 2), "p90_ms": round(p90(e2e), 2),
            "fps": round(1e3 / med, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["lrrnet"], choices=list_models())
    ap.add_argument("--backends", nargs="+", default=["torch", "openvino", "onnxruntime"], choices=BACKENDS)
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "int8"])
    ap.add_argument("--sizes", type=size_arg, nargs="+", default=[(256, 256), (512, 640), (1024, 1280)],
                    help="WIDTHxHEIGHT")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--budget", type=float, default=20.0, help="seconds of timed runs per cell at most")
    ap.add_argument("--node", type=size_arg, default=(512, 640), help="node end to end at this size (0x0: skip)")
    ap.add_argument("--node-frames", type=int, default=40)
    ap.add_argument("--json")
    args = ap.parse_args()

    cache_root = Path(tempfile.mkdtemp(prefix="irstd-bench-engines-"))
    print(f"machine: {machine_description()}")
    rows, skipped = [], []
    node = None

    def save(complete: bool) -> None:
        """Written after every cell, so a run stopped part-way (IRMamba compiles for minutes) keeps its rows."""
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": machine_description(), "complete": complete,
                                                   "rows": rows, "skipped": skipped, "node": node}, indent=1) + "\n")

    for model in args.models:
        for hw in args.sizes:
            reference = Detector(DetectorConfig(model=model, precision="fp32"))
            x, _ = preprocess(frame(*hw), reference.stride)
            gflops = flops(reference.model, tuple(x.shape[-2:])) / 1e9
            del reference
            for backend in args.backends:
                for precision in args.precisions:
                    why = config_problem(DetectorConfig(model=model, backend=backend, precision=precision))
                    if why:
                        skipped.append({"model": model, "backend": backend, "precision": precision, "why": why})
                        continue
                    row = bench_cell(model, backend, precision, hw, args.runs, args.budget, gflops, cache_root)
                    rows.append(row)
                    save(complete=False)
                    extra = (f"  compile {row['compile_s']:.1f} s, cached load {row['cache_load_s']:.2f} s"
                             if "compile_s" in row else "")
                    print(f"  {model:10s} {row['size']:>9s} {backend:>11s}-{row['precision']:4s} median "
                          f"{row['median_ms']:8.1f} ms  p90 {row['p90_ms']:8.1f} ms {row['fps']:6.1f} FPS  "
                          f"{row['gflops']:6.1f} GFLOPs {row['gflop_per_s']:6.1f} GFLOP/s  probe "
                          f"{row['probe_gflops']:5.1f}{extra}", flush=True)
    for s in {(s["backend"], s["precision"], s["why"]) for s in skipped}:
        print(f"  skipped {s[0]}-{s[1]}: {s[2]}")
    if args.node != (0, 0) and rows:
        size = f"{args.node[1]}x{args.node[0]}"
        at = [r for r in rows if r["model"] == args.models[0] and r["size"] == size] or \
             [r for r in rows if r["model"] == args.models[0]]
        best = min(at, key=lambda r: r["median_ms"])
        node = bench_node(best["model"], best["backend"], best["precision"], args.node, args.node_frames, cache_root)
        print(f"  node end to end {node['model']} {node['backend']}-{node['precision']} {node['size']} mono8, one "
              f"frame in flight: median {node['median_ms']:.1f} ms, p90 {node['p90_ms']:.1f} ms ({node['fps']:.1f} FPS)")
    save(complete=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
