"""The ROS 2 detector: a managed (lifecycle) node, thermal images in, masks and vision_msgs detections out.

Topics (relative to the node namespace, ``/irstd`` by default):

* sub ``image`` (sensor_msgs/Image; sensor-data QoS, depth 1 by default)
* pub ``detections`` (vision_msgs/Detection2DArray), ``mask`` (mono8 0/255),
  ``scores`` (32FC1, optional), ``overlay`` (rgb8, only while subscribed),
  ``label_info`` (vision_msgs/LabelInfo, transient local) and ``/diagnostics``.

Every output carries the input's header; boxes and masks are in the input's
pixels. Inference runs on a worker thread that always takes the newest frame
(:class:`~irstd_ros.frame_slot.FrameSlot`), never on the executor.
"""
from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections import deque
from typing import List, Optional

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2D, Detection2DArray, LabelInfo, ObjectHypothesisWithPose, VisionClass

from . import image_codec
from .detector import Detector, DetectorConfig
from .errors import ImageFormatError, IRSTDError
from .frame_slot import FrameSlot
from .node_params import PARAMS, validate
from .pipeline import Detection, postprocess
from .plots import overlay as draw_overlay

RELOAD = tuple(p.name for p in PARAMS if p.effect == "reload")
WARN_PERIOD_S = 2.0


def _descriptor(spec) -> ParameterDescriptor:
    d = ParameterDescriptor(name=spec.name, description=spec.description)
    extra = []
    if spec.choices:
        extra.append(f"one of: {', '.join(spec.choices)}")
    if spec.effect != "live":
        extra.append({"reload": "changing it reloads the model in the background",
                      "configure": "applies at the next configure"}[spec.effect])
    d.additional_constraints = "; ".join(extra)
    if spec.range is not None and not isinstance(spec.default, bool):
        lo, hi = spec.range
        if isinstance(spec.default, int):
            d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
        else:
            d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    return d


def build_detections(header, dets: List[Detection], class_name: str, seq: int) -> Detection2DArray:
    """vision_msgs detections in the input's pixel frame (pixel i spans [i, i+1))."""
    out = Detection2DArray(header=header)
    for k, d in enumerate(dets):
        det = Detection2D(header=header, id=f"{seq}-{k}")
        det.bbox.center.position.x = d.x + d.width / 2.0
        det.bbox.center.position.y = d.y + d.height / 2.0
        det.bbox.size_x = float(d.width)
        det.bbox.size_y = float(d.height)
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = class_name
        hyp.hypothesis.score = float(d.score)
        hyp.pose.pose.position.x = d.cx + 0.5  # intensity centroid of the component
        hyp.pose.pose.position.y = d.cy + 0.5
        det.results.append(hyp)
        out.detections.append(det)
    return out


def image_msg(header, arr: np.ndarray, encoding: str) -> Image:
    data, step = image_codec.encode(arr, encoding)
    return Image(header=header, height=arr.shape[0], width=arr.shape[1], encoding=encoding, is_bigendian=0,
                 step=step, data=data)


class DetectorNode(LifecycleNode):
    def __init__(self, node_name: str = "detector", namespace: str = "irstd", **kwargs):
        super().__init__(node_name, namespace=namespace, **kwargs)
        self.declare_parameter("autostart", True, ParameterDescriptor(
            description="Configure and activate at start-up.", read_only=True))
        for spec in PARAMS:
            self.declare_parameter(spec.name, spec.default, _descriptor(spec))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)
        self.detector: Optional[Detector] = None
        self._detector_lock = threading.Lock()
        # Every torch call (load, warm-up, inference, reload) runs on this one thread: torch's OpenMP
        # pool is per calling thread, and two threads driving it on a small CPU measured ~35 % slower.
        self._torch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="irstd-torch")
        self._pending_reload: Optional[DetectorConfig] = None
        self._slot = FrameSlot()
        self._worker = None  # the streaming loop's future on the torch thread
        self._sub = None
        self._pubs = {}
        self._diag_pub = None
        self._diag_timer = None
        self._reload_error = ""
        self._stats_lock = threading.Lock()
        self._latencies = deque(maxlen=200)
        self._done_times = deque(maxlen=200)
        self.processed = 0
        self.rejected = 0
        self._seq = 0
        self._last_shape = (256, 256)

    # ---------------------------------------------------------------- parameters
    def p(self, name: str):
        return self.get_parameter(name).value

    def _on_set_parameters(self, params) -> SetParametersResult:
        for prm in params:
            if prm.name == "autostart":
                continue
            reason = validate(prm.name, prm.value)
            if reason is None and prm.name == "weights" and prm.value:
                from pathlib import Path
                if not Path(prm.value).is_file():
                    reason = f"weights file not found: {prm.value}"
            if reason is not None:
                self.get_logger().warning(f"refused parameter: {reason}")
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _after_set_parameters(self, params) -> None:
        if any(prm.name in RELOAD for prm in params) and self.detector is not None:
            self._start_reload()

    def _detector_config(self) -> DetectorConfig:
        return DetectorConfig(model=self.p("model"), weights=self.p("weights") or None, backend=self.p("backend"),
                              device=self.p("device"), precision=self.p("precision"))

    def _start_reload(self) -> None:
        """Queue a model swap: the torch thread loads it between frames (or at once when idle)."""
        cfg = self._detector_config()
        self.get_logger().info(f"loading {cfg.model} ({cfg.weights or 'shipped weights'}) in the background")
        self._pending_reload = cfg
        if self._worker is None:
            self._torch.submit(self._reload_now)
        else:
            self._slot.wake()

    def _reload_now(self) -> None:
        cfg, self._pending_reload = self._pending_reload, None
        if cfg is None:
            return
        try:
            new = Detector(cfg)
            new.warmup(*self._last_shape)
        except (IRSTDError, ValueError, RuntimeError, OSError) as exc:
            self._reload_error = f"model reload failed, keeping {self.detector.name}: {exc}"
            self.get_logger().error(self._reload_error)
            return
        with self._detector_lock:
            self.detector = new
        self._reload_error = ""
        self.get_logger().info(f"now running {new.name} ({new.meta['path']})")

    # ---------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        cfg = self._detector_config()
        try:
            self.detector = self._torch.submit(Detector, cfg).result()
        except (IRSTDError, ValueError, RuntimeError, OSError) as exc:
            self.get_logger().error(f"configure failed: cannot load model {cfg.model!r}: {exc}")
            return TransitionCallbackReturn.FAILURE
        out_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        self._pubs = {
            "detections": self.create_lifecycle_publisher(Detection2DArray, "detections", out_qos),
            "mask": self.create_lifecycle_publisher(Image, "mask", out_qos),
            "scores": self.create_lifecycle_publisher(Image, "scores", out_qos),
            "overlay": self.create_lifecycle_publisher(Image, "overlay", out_qos),
            "label_info": self.create_lifecycle_publisher(
                LabelInfo, "label_info",
                QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)),
        }
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.get_logger().info(f"configured {self.detector.name} from {self.detector.meta['path']}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        t0 = time.perf_counter()
        self._torch.submit(self.detector.warmup, *self._last_shape).result()
        self.get_logger().info(f"warm-up {1e3 * (time.perf_counter() - t0):.0f} ms")
        ret = super().on_activate(state)
        self._pubs["label_info"].publish(LabelInfo(
            class_map=[VisionClass(class_id=0, class_name=self.p("class_name"))], threshold=float(self.p("threshold"))))
        reliability = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}
        qos = QoSProfile(depth=self.p("qos_depth"), history=HistoryPolicy.KEEP_LAST,
                         reliability=reliability[self.p("qos_reliability")], durability=DurabilityPolicy.VOLATILE)
        self._slot.reopen()
        self._worker = self._torch.submit(self._work)
        self._sub = self.create_subscription(Image, "image", self._on_image, qos)
        self._diag_timer = self.create_timer(self.p("diagnostics_period"), self._publish_diagnostics)
        self.get_logger().info(f"active: listening on {self._sub.topic_name}")
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_stream()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_stream()
        self._destroy_outputs()
        self.detector = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_stream()
        self._destroy_outputs()
        return TransitionCallbackReturn.SUCCESS

    def _stop_stream(self) -> None:
        if self._sub is not None:
            self.destroy_subscription(self._sub)
            self._sub = None
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        self._slot.close()
        if self._worker is not None:
            self._worker.result(timeout=60)
            self._worker = None

    def _destroy_outputs(self) -> None:
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None

    # ---------------------------------------------------------------- streaming
    def _on_image(self, msg: Image) -> None:
        self._slot.put((msg, time.monotonic()))

    def _work(self) -> None:
        while True:
            item = self._slot.take()
            if self._pending_reload is not None:
                self._reload_now()
            if item is None:
                if self._slot.closed:
                    return
                continue
            msg, t_recv = item
            try:
                self._process(msg, t_recv, self._seq)
                self._seq += 1  # detection ids stay unique across re-activations
            except ImageFormatError as exc:
                self.rejected += 1
                self.get_logger().warning(f"skipped frame (stamp {msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}): "
                                          f"{exc}", throttle_duration_sec=WARN_PERIOD_S)
            except Exception as exc:  # never let one frame kill the stream
                self.rejected += 1
                self.get_logger().error(f"frame failed: {exc.__class__.__name__}: {exc}",
                                        throttle_duration_sec=WARN_PERIOD_S)

    def _process(self, msg: Image, t_recv: float, seq: int) -> None:
        grey = image_codec.decode(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian), msg.data,
                                  self.p("mono16_normalization"), self.p("max_image_pixels"))
        with self._detector_lock:
            det = self.detector
        probs = det.probabilities(grey, self.p("input_size"))
        mask, dets = postprocess(probs, self.p("threshold"), self.p("min_area"), self.p("max_area"),
                                 self.p("max_detections"))
        header = msg.header
        pubs = self._pubs
        pubs["detections"].publish(build_detections(header, dets, self.p("class_name"), seq))
        if self.p("publish_mask"):
            pubs["mask"].publish(image_msg(header, mask, "mono8"))
        if self.p("publish_scores"):
            pubs["scores"].publish(image_msg(header, probs.astype(np.float32), "32FC1"))
        if self.p("publish_overlay") and pubs["overlay"].get_subscription_count() > 0:
            pubs["overlay"].publish(image_msg(header, draw_overlay(grey, None, mask > 0), "rgb8"))
        done = time.monotonic()
        self._last_shape = grey.shape
        with self._stats_lock:
            self.processed += 1
            self._latencies.append(done - t_recv)
            self._done_times.append(done)

    # ---------------------------------------------------------------- diagnostics
    def stats(self) -> dict:
        with self._stats_lock:
            lat = sorted(self._latencies)
            times = list(self._done_times)
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        return {
            "frames_received": self._slot.received, "frames_processed": self.processed,
            "frames_dropped": self._slot.dropped, "frames_rejected": self.rejected, "rate_hz": rate,
            "latency_ms_p50": 1e3 * lat[len(lat) // 2] if lat else 0.0,
            "latency_ms_max": 1e3 * lat[-1] if lat else 0.0,
        }

    def _publish_diagnostics(self) -> None:
        s = self.stats()
        det = self.detector
        level, message = DiagnosticStatus.OK, "running"
        if self._reload_error:
            level, message = DiagnosticStatus.ERROR, self._reload_error
        elif s["frames_rejected"]:
            level, message = DiagnosticStatus.WARN, f"{s['frames_rejected']} malformed frames skipped"
        values = [KeyValue(key=k, value=f"{v:.2f}" if isinstance(v, float) else str(v)) for k, v in s.items()]
        values += [KeyValue(key="backend", value=det.name if det else "none"),
                   KeyValue(key="weights", value=det.meta["path"] if det else "")]
        status = DiagnosticStatus(level=level, name=f"{self.get_fully_qualified_name()}: irstd detector",
                                  message=message, hardware_id=det.name if det else "", values=values)
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(arr)


def main(args=None) -> int:
    # Our own SIGINT/SIGTERM handling: the handler only sets a flag, and the executor wakes every
    # 0.1 s to look at it. With rclpy's handler, a SIGTERM that landed during start-up was
    # sometimes lost and the process never exited (seen in 2 of 10 tries).
    import signal
    from rclpy.signals import SignalHandlerOptions

    stop = threading.Event()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    node = DetectorNode()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        if node.p("autostart") and not stop.is_set():
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error("autostart: configure failed; the node stays unconfigured "
                                        "(fix the parameters and call the configure transition)")
            elif node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error("autostart: activate failed")
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    finally:
        node._stop_stream()
        node._torch.shutdown(wait=False, cancel_futures=True)
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
