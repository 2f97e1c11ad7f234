"""irstd-demo: the main job on its built-in default.

Starts the detector node (shipped LRRNet) as its own process, streams the
bundled sample of real SIRST-v1 test frames to it through a real ROS 2 graph at
a fixed rate, and prints what a user wants to see: detections per frame,
end-to-end latency, FPS, drops, and IoU / Pd / Fa against the sample's masks.
``--offline`` skips ROS and runs the same pipeline directly.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import IRSTDError, one_line
from ..eval.datasets import IRSTDDataset
from ..eval.metrics import MetricAccumulator, components
from . import add_engine_args, engine_config, engine_ros_args, knob_ros_args, parse_knobs
from .eval import format_table

SAMPLE = Path(__file__).resolve().parents[1] / "sample" / "sirst-v1"


def parse(argv):
    ap = argparse.ArgumentParser(prog="irstd-demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="lrrnet")
    ap.add_argument("--weights", default="")
    ap.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                    help="a model knob (e.g. mode=ce for irstd_diff); default: as shipped")
    add_engine_args(ap)
    ap.add_argument("--data", default=str(SAMPLE), help="dataset directory (default: the bundled sample)")
    ap.add_argument("--split", default="demo")
    ap.add_argument("--threshold", type=float, default=None,
                    help="default: the weights' calibrated threshold (model card), else 0.5")
    ap.add_argument("--rate", type=float, default=4.0, help="frames per second streamed to the node")
    ap.add_argument("--passes", type=int, default=2, help="times the sample is streamed")
    ap.add_argument("--offline", action="store_true", help="no ROS: run the pipeline directly")
    ap.add_argument("--shared-network", action="store_true",
                    help="use the caller's ROS discovery settings instead of a private localhost-only graph")
    return ap.parse_args(argv)


def offline(args) -> int:
    from ..runtime.detector import Detector, DetectorConfig
    from ..eval.runner import evaluate
    from ..runtime.pipeline import postprocess
    ds = IRSTDDataset(args.data, args.split, protocol="native")
    det = Detector(DetectorConfig(model=args.model, weights=args.weights or None, knobs=parse_knobs(args.knob),
                                  **engine_config(args)))
    det.warmup()
    print(f"irstd-demo (offline): {det.name}, weights {det.meta['path']}\n")

    def show(sample, probs):
        print(frame_line(sample, postprocess(probs, args.threshold)[1]))

    res = evaluate(det, ds, args.threshold, show)
    res.pop("_accumulator")
    print()
    print(format_table(res))
    return 0


def frame_line(sample, dets, latency_ms=None) -> str:
    h, w = sample.image.shape
    boxes = ", ".join(f"({d[0]:.0f},{d[1]:.0f} {d[2]:.0f}x{d[3]:.0f} p={d[4]:.2f})" if isinstance(d, tuple) else
                      f"({d.x},{d.y} {d.width}x{d.height} p={d.score:.2f})" for d in dets[:3])
    more = f" +{len(dets) - 3}" if len(dets) > 3 else ""
    lat = f"  {latency_ms:6.1f} ms" if latency_ms is not None else ""
    return (f"  {sample.name:<10} {w:>3}x{h:<3} targets {len(components(sample.mask)[1])}  "
            f"detections {len(dets)}{lat}: {boxes}{more}")


def live(args) -> int:
    if not args.shared_network:  # a private graph: the demo must not talk to a real robot's topics
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 50))
    os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="irstd-demo-log-"))
    from ..eval.runner import latency_summary
    from ..ros.stream_client import StreamClient, make_image, mask_from_msg, start_detector, stop

    ds = IRSTDDataset(args.data, args.split, protocol="native")
    samples = [ds.load(n) for n in ds.names]
    ns = f"irstd_demo_{os.getpid()}"
    print(f"irstd-demo: starting the detector node /{ns}/detector ({args.model})")
    node = start_detector(ns, args.model, args.weights or None, args.threshold,
                          knob_ros_args(args.model, args.knob) + engine_ros_args(args))
    client = StreamClient(namespace=ns)
    try:
        t0 = time.monotonic()
        if not client.wait_for_detector(timeout=180):
            raise IRSTDError("the detector node did not come up (see its log above)")
        print(f"node active after {time.monotonic() - t0:.1f} s (model load + warm-up); streaming "
              f"{len(samples)} frames x {args.passes} passes at {args.rate:g} Hz\n")
        keys = []
        period = 1.0 / args.rate
        start = time.monotonic()
        stamp0 = time.time_ns()
        for i in range(args.passes * len(samples)):
            s = samples[i % len(samples)]
            while time.monotonic() < start + i * period:
                time.sleep(0.001)
            img8 = np.round(s.image * 255).astype(np.uint8)
            keys.append((client.publish(make_image(img8, "mono8", stamp0 + i * 1_000_000, "thermal_demo")), s))
        client.wait_answers([k for k, _ in keys], timeout=60)
        answer_times = [client.detections[k][1] for k, _ in keys if k in client.detections]
        duration = (max(answer_times) if answer_times else time.monotonic()) - start
        acc = MetricAccumulator(threshold=0.5)
        latencies = []
        for i, (k, s) in enumerate(keys):
            if k not in client.detections:
                print(f"  {s.name:<10} dropped (a newer frame arrived before the node was free)")
                continue
            det, t_ans = client.detections[k]
            lat = 1e3 * (t_ans - client.sent[k])
            latencies.append(lat)
            boxes = [(d.bbox.center.position.x - d.bbox.size_x / 2, d.bbox.center.position.y - d.bbox.size_y / 2,
                      d.bbox.size_x, d.bbox.size_y, d.results[0].hypothesis.score) for d in det.detections]
            print(frame_line(s, boxes, lat))
            m = client.masks.get(k)
            if m is not None and i >= len(samples) * (args.passes - 1):  # score the last pass once
                acc.update(mask_from_msg(m).astype(np.float32), s.mask)
        answered = len(latencies)
        lat = latency_summary(latencies)
        res = acc.summary()
        print(f"\nframes sent {len(keys)}, answered {answered}, dropped {len(keys) - answered}; "
              f"{answered / duration:.1f} FPS over {duration:.1f} s")
        print(f"end-to-end latency (publish -> detections received): median {lat['latency_ms_median']:.1f} ms, "
              f"p95 {lat['latency_ms_p95']:.1f} ms, max {lat['latency_ms_max']:.1f} ms")
        print(f"against the sample masks (last pass, {res['n_images']} frames, {res['n_targets']} targets): "
              f"IoU {res['iou']:.4f}  nIoU {res['niou']:.4f}  Pd {res['pd']:.4f}  Fa {res['fa']:.2e}")
        return 0
    finally:
        client.close()
        stop(node)


def check_weights(model: str, weights: str) -> None:
    """Fail here, in one line, on weights the node could not load (it would stay unconfigured and
    the demo would wait for it): none shipped for the model, missing, corrupt, or another model's."""
    from ..runtime.checkpoints import read_checkpoint_for
    read_checkpoint_for(model, weights or None)


def main(argv=None) -> int:
    args = parse(argv)
    try:
        if args.threshold is None:
            from ..runtime.checkpoints import card_threshold
            args.threshold = card_threshold(args.model, args.weights or None)
        if not 0 < args.threshold < 1:
            raise IRSTDError("--threshold must be in (0, 1)")
        if args.rate <= 0 or args.passes < 1:
            raise IRSTDError("--rate must be > 0 and --passes >= 1")
        check_weights(args.model, args.weights)
        return offline(args) if args.offline else live(args)
    except (IRSTDError, ValueError, OSError) as exc:
        print(f"irstd-demo: error: {one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
