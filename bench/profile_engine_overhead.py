"""Where a compiled frame's time goes outside the engine (a script, never a test).

    .venv/bin/python bench/profile_engine_overhead.py [--precision int8] [--runs 40]

LRRNet under OpenVINO on the sample frame tiled to the size, medians over ``--runs``:
  * 256x256: the bare compiled part; ``Detector.probabilities`` as shipped (sigmoid in
    numpy); the same pipeline with ``torch.sigmoid`` between engine calls, as it was
    before (one torch kernel wakes torch's OpenMP workers, which spin beside the engine);
  * 640x512: the node's steps around the model, in-process: decoding a mono8
    ``sensor_msgs/Image`` payload, and thresholding + components (``postprocess``).
Each line carries bench_backends' matmul probe (this machine has a fast and a slow state).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_backends import frame, speed_probe  # noqa: E402
from timing import median_ms  # noqa: E402
from irstd_ros.ros import image_codec  # noqa: E402
from irstd_ros.runtime.detector import Detector, DetectorConfig  # noqa: E402
from irstd_ros.machine import machine_description  # noqa: E402
from irstd_ros.runtime.pipeline import postprocess, preprocess, restore  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()
    det = Detector(DetectorConfig(backend="openvino", precision=args.precision,
                                  cache_dir=tempfile.mkdtemp(prefix="irstd-overhead-")))
    print(f"machine: {machine_description()}; lrrnet openvino-{det.precision}")
    image = frame(256, 256)
    x, geom = preprocess(image, det.stride)
    part = det.compiled.parts_for(x)["model"]

    def torch_sigmoid_path():
        xx, g = preprocess(image, det.stride)
        return restore(torch.sigmoid(det.compiled(xx).float())[0, 0].numpy(), g)

    for label, fn in (("256x256 bare engine part", lambda: part(x)),
                      ("256x256 Detector.probabilities (numpy sigmoid)", lambda: det.probabilities(image)),
                      ("256x256 same pipeline with torch.sigmoid", torch_sigmoid_path)):
        probe = speed_probe()
        print(f"  {label:48s} {median_ms(fn, args.runs, warmup=1):7.2f} ms  probe {probe:5.1f} GFLOP/s", flush=True)
    big = (frame(512, 640) * 255).round().astype(np.uint8)
    payload = big.tobytes()
    grey = image_codec.decode("mono8", 512, 640, 640, False, payload)
    probs = det.probabilities(grey)
    for label, fn in (("640x512 decode mono8 payload", lambda: image_codec.decode("mono8", 512, 640, 640, False,
                                                                                 payload)),
                      ("640x512 postprocess (threshold, components)", lambda: postprocess(probs, 0.95))):
        print(f"  {label:48s} {median_ms(fn, args.runs, warmup=1):7.2f} ms", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
