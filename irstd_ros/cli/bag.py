"""irstd-bag: make rosbag2 bags from datasets, play and record them, and score a detector on them.

    irstd-bag make --data DIR --split test --out BAG [--encoding mono8|mono16|rgb8] [--rate 10] [--storage mcap|sqlite3]
    irstd-bag play BAG [--topics T ...] [--rate FACTOR] [--clock]
    irstd-bag record --out BAG --topics /irstd/detections /irstd/mask [--duration S]
    irstd-bag eval BAG --model lrrnet --mode offline|live [--rate FACTOR] [--json OUT] [--overlay DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import IRSTDError, one_line
from ..eval.metrics import MetricAccumulator
from ..eval.runner import latency_summary
from ..machine import machine_description
from ..progress import progress
from ..ros import image_codec
from ..ros.bags import BAG_ENCODINGS, STORAGES, BagError, BagReader, find_topic, make_bag
from ..runtime.pipeline import postprocess
from . import add_engine_args, engine_config, engine_ros_args, knob_ros_args, parse_knobs
from .eval import format_table

PROG = "irstd-bag"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=PROG, description="rosbag2 tools for irstd_ros.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="write a dataset split as a bag (frames + ground-truth masks)")
    m.add_argument("--data", required=True)
    m.add_argument("--split", default="test")
    m.add_argument("--out", required=True)
    m.add_argument("--encoding", default="mono8", choices=BAG_ENCODINGS)
    m.add_argument("--rate", type=float, default=10.0, help="frames per second of bag time")
    m.add_argument("--storage", default="mcap", choices=STORAGES)
    m.add_argument("--image-topic", default="/thermal/image_raw")
    m.add_argument("--gt-topic", default="/thermal/ground_truth")
    m.add_argument("--frame-id", default="thermal")
    m.add_argument("--limit", type=int, default=0, help="only the first N frames")
    p = sub.add_parser("play", help="publish a bag's topics (a minimal ros2 bag play)")
    p.add_argument("bag")
    p.add_argument("--topics", nargs="*")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    p.add_argument("--clock", action="store_true", help="publish /clock with the bag time")
    p.add_argument("--delay", type=float, default=1.0, help="seconds between subscribers appearing and playback")
    p.add_argument("--remap", nargs="*", default=[], metavar="FROM:=TO")
    r = sub.add_parser("record", help="record topics into a bag through raw subscriptions")
    r.add_argument("--out", required=True)
    r.add_argument("--topics", nargs="+", required=True, metavar="TOPIC[:TYPE]",
                   help="e.g. /irstd/detections (type looked up on the graph) or /x:sensor_msgs/msg/Image")
    r.add_argument("--duration", type=float, default=0, help="seconds; 0 = until Ctrl-C")
    r.add_argument("--storage", default="mcap", choices=STORAGES)
    e = sub.add_parser("eval", help="score a detector on a bag (offline pipeline or the live node)")
    e.add_argument("bag")
    e.add_argument("--model", default="lrrnet")
    e.add_argument("--weights", default="")
    e.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                   help="a model knob (e.g. mode=ce for irstd_diff); default: as shipped")
    add_engine_args(e)
    e.add_argument("--mode", default="offline", choices=("offline", "live"))
    e.add_argument("--rate", type=float, default=1.0, help="live: playback speed factor")
    e.add_argument("--threshold", type=float, default=None,
                   help="default: the weights' calibrated threshold (model card), else 0.5")
    e.add_argument("--image-topic")
    e.add_argument("--gt-topic")
    e.add_argument("--normalization", default="stretch", choices=image_codec.NORMALIZATIONS,
                   help="16-bit frames, as the node's mono16_normalization")
    e.add_argument("--json")
    e.add_argument("--overlay", help="write a PNG strip of the first frames' overlays here")
    return ap


# ---------------------------------------------------------------------------------------------- eval
def _grey(img, normalization: str, stamp: int) -> np.ndarray:
    try:
        return image_codec.decode(img.encoding, img.height, img.width, img.step, bool(img.is_bigendian),
                                  np.asarray(img.data, np.uint8), normalization)
    except IRSTDError as exc:
        raise BagError(f"frame at stamp {stamp}: {exc}") from None


def _gt_mask(img, stamp: int) -> np.ndarray:
    if img.encoding not in ("mono8", "8UC1"):
        raise BagError(f"ground truth at stamp {stamp} is {img.encoding}; masks must be mono8")
    return _grey(img, "full_range", stamp) > 0.5


class Scorer:
    """Metrics for frames matched to ground truth by header stamp, and detection statistics for all."""

    def __init__(self, threshold: float, gts: dict):
        self.acc = MetricAccumulator(threshold=threshold)
        self.gts = gts
        self.threshold = threshold
        self.frames = 0
        self.detections = 0
        self.with_detections = 0
        self.unmatched = 0
        self.overlays = []

    def add(self, stamp: int, grey: np.ndarray, scores: np.ndarray, keep_overlay: bool = False):
        _, dets = postprocess(scores, self.threshold)
        self.frames += 1
        self.detections += len(dets)
        self.with_detections += bool(dets)
        gt = self.gts.get(stamp)
        if gt is not None:
            if gt.shape != scores.shape:
                raise BagError(f"ground truth at stamp {stamp} is {gt.shape[::-1]}, the frame {scores.shape[::-1]}")
            self.acc.update(scores, gt)
        elif self.gts:
            self.unmatched += 1
        if keep_overlay and len(self.overlays) < 8:
            from ..eval.plots import overlay
            self.overlays.append(overlay(grey, gt, scores > self.threshold))

    def summary(self) -> dict:
        s = self.acc.summary()
        out = {"frames_scored": s["n_images"], "frames_without_gt": self.unmatched,
               "detections_total": self.detections, "frames_with_detections": self.with_detections,
               "detections_per_frame": self.detections / self.frames if self.frames else 0.0}
        if self.gts:
            out.update({k: s[k] for k in ("iou", "niou", "pd", "fa", "auc", "n_images", "n_targets", "threshold")})
        return out


def eval_offline(args, reader: BagReader, img_topic: str, gts: dict) -> dict:
    from ..runtime.detector import Detector, DetectorConfig
    det = Detector(DetectorConfig(model=args.model, weights=args.weights or None, knobs=parse_knobs(args.knob),
                                  **engine_config(args)))
    det.warmup()
    scorer = Scorer(args.threshold, gts)
    lat = []
    for stamp, img in progress(reader.images(img_topic), total=reader.count(img_topic), desc="bag eval"):
        grey = _grey(img, args.normalization, stamp)
        t0 = time.perf_counter()
        probs = det.probabilities(grey)
        lat.append(1e3 * (time.perf_counter() - t0))
        scorer.add(stamp, grey, probs, keep_overlay=bool(args.overlay))
    n = scorer.frames
    return {**scorer.summary(), **latency_summary(lat), "frames_sent": n, "frames_answered": n, "dropped": 0,
            "backend": det.cfg.backend, "precision": det.precision, "engine": det.name, "overlays": scorer.overlays}


def eval_live(args, reader: BagReader, img_topic: str, gts: dict) -> dict:
    os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="irstd-bag-log-"))
    from ..ros.bag_live import play
    from ..ros.stream_client import StreamClient, mask_from_msg, start_detector, stop
    frames = {stamp: img for stamp, img in reader.images(img_topic)}
    order = list(frames)
    ns = f"irstd_bag_eval_{os.getpid()}"
    node = start_detector(ns, args.model, args.weights or None, args.threshold,
                          ["-p", f"mono16_normalization:={args.normalization}",
                           *knob_ros_args(args.model, args.knob), *engine_ros_args(args)])
    client = StreamClient(namespace=ns)
    try:
        if not client.wait_for_detector(timeout=180):
            raise BagError("the detector node did not come up")
        sent = iter(order)

        def on_publish(topic, raw):
            client.sent[next(sent)] = time.monotonic()

        t_start = time.monotonic()
        play(reader.path, [img_topic], rate=args.rate, remap={img_topic: f"/{ns}/image"}, on_publish=on_publish,
             node=client.node)
        client.wait_answers(order, timeout=120, grace=2.0)
        duration = time.monotonic() - t_start
    finally:
        client.close()
        stop(node)
    scorer = Scorer(args.threshold, gts)
    lat = []
    for stamp in progress(order, desc="bag eval (live)"):
        if stamp not in client.detections or stamp not in client.masks:
            continue
        lat.append(1e3 * (client.detections[stamp][1] - client.sent[stamp]))
        mask = mask_from_msg(client.masks[stamp])
        img = frames[stamp]
        scorer.add(stamp, _grey(img, args.normalization, stamp) if args.overlay else None, mask.astype(np.float32),
                   keep_overlay=bool(args.overlay))
    answered = scorer.frames
    out = {**scorer.summary(), **latency_summary(lat), "frames_sent": len(order), "frames_answered": answered,
           "dropped": len(order) - answered, "backend": args.backend, "precision": args.precision,
           "engine": "detector node", "overlays": scorer.overlays}
    out["fps"] = answered / duration if duration > 0 else 0.0  # live: throughput, not 1/latency
    if "auc" in out:
        out["auc"] = None  # the node publishes binary masks, not scores: no ROC from a live run
    return out


def cmd_eval(args) -> int:
    if args.threshold is None:
        from ..runtime.checkpoints import card_threshold
        args.threshold = card_threshold(args.model, args.weights or None)
    if not 0 < args.threshold < 1:
        raise BagError("--threshold must be in (0, 1)")
    if not args.rate > 0:
        raise BagError("--rate must be positive")
    with BagReader(args.bag) as reader:
        img_topic = find_topic(reader, args.image_topic, "image")
        gt_topic = find_topic(reader, args.gt_topic, "gt")
        gts = {stamp: _gt_mask(img, stamp) for stamp, img in reader.images(gt_topic)} if gt_topic else {}
        res = eval_offline(args, reader, img_topic, gts) if args.mode == "offline" else \
            eval_live(args, reader, img_topic, gts)
    overlays = res.pop("overlays")
    res.update({"bag": str(Path(args.bag).resolve()), "mode": args.mode, "model": args.model,
                "image_topic": img_topic, "gt_topic": gt_topic, "machine": machine_description()})
    print(f"{args.model} on {args.bag} ({args.mode}; {res['frames_answered']}/{res['frames_sent']} frames answered, "
          f"{res['dropped']} dropped)")
    if gts:
        print(format_table(res))
    else:
        print(f"  no ground truth: {res['detections_total']} detections in {res['frames_with_detections']} of "
              f"{res['frames_answered']} frames; latency {res['latency_ms_median']:.1f} ms median")
    print(f"  latency p50 {res['latency_ms_p50']:.1f} ms, p95 {res['latency_ms_p95']:.1f} ms, "
          f"max {res['latency_ms_max']:.1f} ms")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    if args.overlay and overlays:
        import cv2
        h = max(o.shape[0] for o in overlays)
        strip = np.concatenate([np.pad(o, ((0, h - o.shape[0]), (0, 2), (0, 0))) for o in overlays], axis=1)
        Path(args.overlay).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(Path(args.overlay) / "overlay_strip.png"), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    return 0


# ---------------------------------------------------------------------------------------------- others
def cmd_make(args) -> int:
    made = make_bag(args.data, args.split, args.out, args.encoding, args.rate, args.storage, args.image_topic,
                    args.gt_topic, args.frame_id, limit=args.limit)
    print(f"wrote {made.path}: {made.frames} frames ({args.encoding}) on {made.image_topic}, masks on "
          f"{made.gt_topic}, {made.duration_s:.1f} s at {args.rate:g} Hz, {args.storage}")
    return 0


def cmd_play(args) -> int:
    from ..ros.bag_live import play
    remap = dict(item.split(":=", 1) for item in args.remap)
    n = play(args.bag, args.topics, args.rate, args.clock, remap, delay=args.delay)
    print(f"published {n} messages")
    return 0


def cmd_record(args) -> int:
    from ..ros.bag_live import Recorder, ensure_rclpy
    rclpy = ensure_rclpy()
    topics = {}
    probe = rclpy.create_node(f"irstd_bag_probe_{os.getpid()}")
    try:
        for item in args.topics:
            topic, _, msgtype = item.partition(":")
            deadline = time.monotonic() + 10
            while not msgtype and time.monotonic() < deadline:
                types = dict(probe.get_topic_names_and_types()).get(topic)
                msgtype = types[0] if types else ""
                if not msgtype:
                    time.sleep(0.2)
            if not msgtype:
                raise BagError(f"topic {topic} is not on the graph; give its type as {topic}:pkg/msg/Type")
            topics[topic] = msgtype
    finally:
        probe.destroy_node()
    rec = Recorder(args.out, topics, args.storage)
    print(f"recording {', '.join(topics)} into {args.out}", flush=True)
    try:
        deadline = time.monotonic() + args.duration if args.duration else float("inf")
        while time.monotonic() < deadline:
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    counts = rec.close()
    print(f"wrote {args.out}: " + ", ".join(f"{t} {n}" for t, n in counts.items()))
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"make": cmd_make, "play": cmd_play, "record": cmd_record, "eval": cmd_eval}[args.cmd](args)
    except (IRSTDError, ValueError, OSError) as exc:
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
