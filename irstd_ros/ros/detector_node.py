"""The ROS 2 detector: a managed (lifecycle) node, thermal images in, masks and vision_msgs detections out.

Topics (relative to the node namespace, ``/irstd`` by default):

* sub ``image`` (sensor_msgs/Image; sensor-data QoS: best effort, keep last 1, overridable at start-up
  through ROS 2's standard ``qos_overrides./<ns>/image.subscription.<policy>`` parameters)
* pub ``detections`` (vision_msgs/Detection2DArray), ``mask`` (mono8 0/255),
  ``scores`` (32FC1, optional), ``overlay`` (rgb8, only while subscribed),
  ``label_info`` (vision_msgs/LabelInfo, transient local) and ``/diagnostics``.

Every output carries the input's header; boxes and masks are in the input's
pixels. Inference runs on a worker thread that always takes the newest frame
(:class:`~irstd_ros.ros.frame_slot.FrameSlot`), never on the executor.
"""
from __future__ import annotations

import importlib
import os
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, wait
from collections import deque
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2D, Detection2DArray, LabelInfo, ObjectHypothesisWithPose, VisionClass

from ..errors import ImageFormatError, one_line
from ..eval.plots import overlay as draw_overlay
from ..runtime.checkpoints import operating_threshold
from ..runtime.detector import Detector, DetectorConfig, config_problem, device_problem
from ..runtime.pipeline import Detection, postprocess
from . import image_codec
from .frame_slot import FrameSlot
from .node_params import PARAMS, knob_specs, split_knob, stride_problem, validate

RELOAD = tuple(p.name for p in PARAMS if p.effect == "reload")
ENGINE_PARAMS = ("model", "weights", "backend", "device", "precision")  # checked together: can this machine run them?
WARN_PERIOD_S = 2.0
RATE_WINDOW_S = 5.0   # rate_hz counts the frames published in this window, ending now
MIN_STALL_S = 5.0     # the liveness check never fires sooner: one slow frame on a loaded CPU is no stall
TEST_MODELS_ENV = "IRSTD_TEST_MODEL_MODULES"  # test-only: comma-separated modules that register fault models


def describe(exc: BaseException) -> str:
    """``Type: message`` on one line, so a log line or a diagnostic names what was raised."""
    text = one_line(exc)
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


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
        self._startup_problems: Dict[str, str] = {}  # overrides that break a descriptor, until set again
        for spec in list(PARAMS) + list(knob_specs().values()):
            try:
                self.declare_parameter(spec.name, spec.default, _descriptor(spec))
            except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
                self._startup_problems[spec.name] = f"{spec.name}: {one_line(exc)}"
                self.declare_parameter(spec.name, spec.default, _descriptor(spec), ignore_override=True)
        # MODELS.md: the model card's threshold applies unless the user set one (at start-up or later)
        self._threshold_from_user = "threshold" in self._parameter_overrides
        self._syncing_threshold = False
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
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = None
        # a reload's result reaches the executor thread through this, to sync the threshold and label_info
        self._swapped = self.create_guard_condition(self._after_swap)
        self._closing = False
        self._reload_error = ""
        self._worker_fault = ""      # set when the worker thread ended; cleared by the next published frame
        self._seen_failures = set()  # (type, file, line) of unexpected frame errors already logged in full
        self._busy: Optional[tuple] = None  # (what, since) while the torch thread works on one thing
        self._stats_lock = threading.Lock()
        self._latencies = deque(maxlen=200)
        self._done_times = deque(maxlen=200)
        self._typical_s = MIN_STALL_S / 5  # inference time until frames measure it (warm-up sets it)
        self._silent_since: Optional[float] = None  # first frame received after the last published one
        self._since_output = {"rejected": 0, "failed": 0, "last": ""}
        self.processed = 0
        self.rejected = 0
        self.worker_errors = 0
        self.worker_restarts = 0
        self._seq = 0
        self._last_shape = (256, 256)

    # ---------------------------------------------------------------- parameters
    def p(self, name: str):
        return self.get_parameter(name).value

    def _refusal(self, name: str, value) -> Optional[str]:
        """Why ``value`` cannot be used for ``name`` on this machine, else None (table, file, device)."""
        reason = validate(name, value)
        if reason is None and name == "weights" and value and not Path(value).is_file():
            reason = f"weights file not found: {value}"
        if reason is None and name == "device":
            reason = device_problem(value)
        if reason is None and name == "input_size":
            reason = stride_problem(self.p("model"), value)
        if reason is None and name == "model":
            reason = stride_problem(value, self.p("input_size"))
        knob = split_knob(name) if reason is None else None
        det = self.detector
        if knob and det is not None and knob[0] == det.cfg.model:
            reason = det.knob_problem({knob[1]: value})   # e.g. more sampling steps than this model's T
        return reason

    def _knobs(self, model: str) -> Dict[str, object]:
        """The current values of ``model``'s knob parameters."""
        return {name.split(".", 1)[1]: self.p(name) for name in knob_specs() if name.startswith(f"{model}.")}

    def _engine_refusal(self, values: Dict[str, object]) -> Optional[str]:
        """Why the model, backend, device and precision (current values overridden by ``values``) cannot run
        together on this machine, else None."""
        cur = {name: values.get(name, self.p(name)) for name in ENGINE_PARAMS}
        return config_problem(DetectorConfig(model=cur["model"], weights=cur["weights"] or None,
                                             backend=cur["backend"], device=cur["device"], precision=cur["precision"]))

    def _on_set_parameters(self, params) -> SetParametersResult:
        for prm in params:
            reason = None if prm.name == "autostart" else self._refusal(prm.name, prm.value)
            if reason is not None:
                break
        else:
            values = {prm.name: prm.value for prm in params}
            reason = self._engine_refusal(values) if values.keys() & set(ENGINE_PARAMS) else None
        if reason is not None:
            self.get_logger().warning(f"refused parameter: {reason}")
            return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _after_set_parameters(self, params) -> None:
        names = {prm.name for prm in params}
        for name in names:
            self._startup_problems.pop(name, None)
        if "threshold" in names and not self._syncing_threshold:
            self._threshold_from_user = True
        if names & {"threshold", "class_name"}:
            self._publish_label_info()
        if names & set(RELOAD) and self.detector is not None:
            self._start_reload()
        elif self.detector is not None and any(split_knob(n) and n.startswith(f"{self.detector.cfg.model}.")
                                               for n in names):
            det = self.detector
            try:
                det.set_knobs(self._knobs(det.cfg.model))   # read by the worker from the next frame on
            except ValueError as exc:
                self.get_logger().error(f"knob change not applied: {exc}")

    def _threshold(self, det: Detector) -> float:
        return self.p("threshold") if self._threshold_from_user else operating_threshold(det.meta)

    def _sync_threshold(self) -> bool:
        """Show the model card's threshold in the parameter when the user has not set one; True if it changed."""
        det = self.detector
        if det is None or self._threshold_from_user or self.p("threshold") == operating_threshold(det.meta):
            return False
        self._syncing_threshold = True
        try:
            self.set_parameters([Parameter("threshold", value=operating_threshold(det.meta))])
        finally:
            self._syncing_threshold = False
        return True

    def _publish_label_info(self) -> None:
        det = self.detector
        if det is None or self._sub is None:  # label_info is a lifecycle publisher: only while active
            return
        self._pubs["label_info"].publish(LabelInfo(
            class_map=[VisionClass(class_id=0, class_name=self.p("class_name"))], threshold=float(self._threshold(det))))

    def _engine_report(self, line: str, warning: bool) -> None:
        """A compiling backend's one line per engine: compiled, loaded from the cache, or rebuilt (and why)."""
        (self.get_logger().warning if warning else self.get_logger().info)(line)

    def _detector_config(self) -> DetectorConfig:
        return DetectorConfig(model=self.p("model"), weights=self.p("weights") or None, backend=self.p("backend"),
                              device=self.p("device"), precision=self.p("precision"), knobs=self._knobs(self.p("model")),
                              cache_dir=self.p("cache_dir") or None)

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
        """Load the pending model; whatever that raises, the running one keeps serving and the reason is shown."""
        cfg, self._pending_reload = self._pending_reload, None
        if cfg is None:
            return
        self._busy = (f"loading {cfg.model}", time.monotonic())
        try:
            new = Detector(cfg, report=self._engine_report)
            new.warmup(*self._last_shape, compile_missing=True)  # the size frames are arriving at
        except Exception as exc:  # noqa: BLE001  any failure, e.g. AssertionError from a CUDA-less torch
            running = self.detector.name if self.detector is not None else "none"
            self._reload_error = f"model reload failed, keeping {running}: {describe(exc)}"
            self.get_logger().error(self._reload_error)
            return
        finally:
            self._busy = None
        with self._detector_lock:
            if self.detector is None or self._closing:
                return  # cleaned up (or stopping) while it loaded: nothing to swap into
            self.detector = new
        self._reload_error = ""
        self.get_logger().info(f"now running {new.name} ({new.meta['path']})")
        self._swapped.trigger()

    def _after_swap(self) -> None:
        if not self._closing and not self._sync_threshold():  # a threshold change republishes label_info itself
            self._publish_label_info()

    # ---------------------------------------------------------------- lifecycle
    def _configure_problem(self) -> Optional[str]:
        """Start-up overrides are not seen by the on-set callback: check every value before loading."""
        if self._startup_problems:
            return "; ".join(self._startup_problems.values())
        for spec in list(PARAMS) + list(knob_specs().values()):
            reason = self._refusal(spec.name, self.p(spec.name))
            if reason:
                return reason
        return self._engine_refusal({})

    def _fail(self, step: str, reason: str) -> TransitionCallbackReturn:
        """One line with the reason, in the log and in /diagnostics."""
        msg = f"{step} failed: {reason}"
        if step == "configure":
            msg += "; the node stays unconfigured (fix the parameters and call the configure transition)"
        self.get_logger().error(msg)
        self._publish_status(DiagnosticStatus.ERROR, msg, {})
        return TransitionCallbackReturn.FAILURE

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        problem = self._configure_problem()
        if problem:
            return self._fail("configure", problem)
        cfg = self._detector_config()
        try:
            self.detector = self._torch.submit(Detector, cfg, self._engine_report).result()
            out_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
            self._pubs = {name: self.create_lifecycle_publisher(kind, name, out_qos) for name, kind in (
                ("detections", Detection2DArray), ("mask", Image), ("scores", Image), ("overlay", Image))}
            self._pubs["label_info"] = self.create_lifecycle_publisher(LabelInfo, "label_info", QoSProfile(
                depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        except Exception as exc:  # noqa: BLE001  e.g. a message type whose type support cannot be loaded
            self._destroy_outputs()
            self.detector = None
            return self._fail("configure", f"cannot load model {cfg.model!r}: {describe(exc)}")
        self._reload_error = ""
        self._sync_threshold()
        self.get_logger().info(f"configured {self.detector.name} from {self.detector.meta['path']}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            t0 = time.perf_counter()
            self._torch.submit(self.detector.warmup, *self._last_shape).result()
            self._typical_s = (time.perf_counter() - t0) / 2  # two warm-up runs
            self.get_logger().info(f"warm-up {1e3 * (time.perf_counter() - t0):.0f} ms")
            ret = super().on_activate(state)
            # the sensor-data profile (a best-effort subscription also takes a reliable camera's frames);
            # users change it the ROS 2 way, with qos_overrides.<topic>.subscription.* (read-only, as in image_proc)
            qos = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT,
                             durability=DurabilityPolicy.VOLATILE)
            self._slot.reopen()
            self._silent_since = None
            self._worker = self._torch.submit(self._work)
            self._sub = self.create_subscription(Image, "image", self._on_image, qos,
                                                 qos_overriding_options=QoSOverridingOptions.with_default_policies())
            self._diag_timer = self.create_timer(self.p("diagnostics_period"), self._publish_diagnostics)
            self._publish_label_info()
        except Exception as exc:  # noqa: BLE001  e.g. out of memory in the warm-up
            self._stop_stream()
            super().on_deactivate(state)
            return self._fail("activate", describe(exc))
        self.get_logger().info(f"active: listening on {self._sub.topic_name}")
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_stream()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_stream()
        self._destroy_outputs()
        with self._detector_lock:
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
            wait([self._worker], timeout=60)  # never re-raises what ended the worker
            self._worker = None

    def _destroy_outputs(self) -> None:
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}

    # ---------------------------------------------------------------- streaming
    def _on_image(self, msg: Image) -> None:
        now = time.monotonic()
        with self._stats_lock:
            if self._silent_since is None:
                self._silent_since = now
        self._slot.put((msg, now))

    def _work(self) -> None:
        """The streaming loop: no exception ends it; one that does anyway is caught by the watchdog."""
        while True:
            item = self._slot.take()
            if self._pending_reload is not None:
                self._reload_now()
            if item is None:
                if self._slot.closed:
                    return
                continue
            msg, t_recv = item
            self._busy = (f"inference on a {msg.width}x{msg.height} {msg.encoding} frame", time.monotonic())
            try:
                self._process(msg, t_recv, self._seq)
                self._seq += 1  # detection ids stay unique across re-activations
            except ImageFormatError as exc:
                self._count_silent("rejected", f"malformed frame: {exc}")
                self.get_logger().warning(f"skipped frame (stamp {msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}): "
                                          f"{exc}", throttle_duration_sec=WARN_PERIOD_S)
            except Exception as exc:  # noqa: BLE001  never let one frame kill the stream
                self._count_silent("failed", f"frame failed: {describe(exc)}")
                self._log_failure(exc)
            finally:
                self._busy = None

    def _count_silent(self, kind: str, why: str) -> None:
        """Count a frame that produced no output, and remember why for the liveness check."""
        with self._stats_lock:
            if kind == "rejected":
                self.rejected += 1
            else:
                self.worker_errors += 1
            self._since_output[kind] += 1
            self._since_output["last"] = why

    def _log_failure(self, exc: Exception) -> None:
        """The first failure from each place in full with its traceback, then one throttled line."""
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        key = (exc.__class__, where.filename if where else "", where.lineno if where else 0)
        if key not in self._seen_failures:
            self._seen_failures.add(key)
            self.get_logger().error(f"frame failed: {describe(exc)}\n{''.join(traceback.format_exception(exc))}")
        else:
            self.get_logger().error(f"frame failed: {describe(exc)} ({self.worker_errors} so far)",
                                    throttle_duration_sec=WARN_PERIOD_S)

    def _process(self, msg: Image, t_recv: float, seq: int) -> None:
        grey = image_codec.decode(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian), msg.data,
                                  self.p("mono16_normalization"), self.p("max_image_pixels"))
        with self._detector_lock:
            det = self.detector
        probs = det.probabilities(grey, self.p("input_size"))
        mask, dets = postprocess(probs, self._threshold(det), self.p("min_area"), self.p("max_area"),
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
            self._silent_since = None
            self._since_output = {"rejected": 0, "failed": 0, "last": ""}
            self._worker_fault = ""

    # ---------------------------------------------------------------- supervision and diagnostics
    def _check_worker(self) -> None:
        """A worker that ended while the stream is open is reported and replaced (runs every diagnostics period)."""
        worker = self._worker
        if worker is None or not worker.done() or self._slot.closed:
            return
        exc = worker.exception()
        self.worker_restarts += 1
        self._worker_fault = f"worker thread ended ({describe(exc) if exc else 'returned'}); restarted " \
                             f"({self.worker_restarts} restarts)"
        trace = "".join(traceback.format_exception(exc)) if exc else ""
        self.get_logger().error(f"{self._worker_fault}\n{trace}".rstrip())
        self._worker = self._torch.submit(self._work)

    def stats(self, now: Optional[float] = None) -> dict:
        now = time.monotonic() if now is None else now
        with self._stats_lock:
            lat = sorted(self._latencies)
            recent = [t for t in self._done_times if t > now - RATE_WINDOW_S]
            rejected, errors = self.rejected, self.worker_errors
        # counted up to now, so a stream that stopped decays to 0 instead of repeating its old rate
        rate = (len(recent) - 1) / (now - recent[0]) if len(recent) > 1 and now > recent[0] else 0.0
        return {
            "frames_received": self._slot.received, "frames_processed": self.processed,
            "frames_dropped": self._slot.dropped, "frames_rejected": rejected, "worker_errors": errors,
            "worker_restarts": self.worker_restarts, "rate_hz": rate,
            "latency_ms_p50": 1e3 * lat[len(lat) // 2] if lat else 0.0,
            "latency_ms_max": 1e3 * lat[-1] if lat else 0.0,
        }

    def _stall(self, now: float) -> Optional[str]:
        """Frames arrive but nothing was published for longer than ``stall_periods`` typical inferences: why."""
        with self._stats_lock:
            since, silent = self._silent_since, dict(self._since_output)
            lat = sorted(self._latencies)
        typical = lat[len(lat) // 2] if lat else self._typical_s
        limit = max(MIN_STALL_S, self.p("stall_periods") * typical)
        if since is None or now - since <= limit:
            return None
        busy = self._busy
        if busy is not None and now - busy[1] > limit:
            cause = f"worker stalled: {busy[0]} for {now - busy[1]:.1f} s"
        elif silent["failed"] and not silent["rejected"]:
            cause = f"model failed on every frame ({silent['failed']}); last: {silent['last']}"
        elif silent["rejected"] and not silent["failed"]:
            cause = f"every frame rejected ({silent['rejected']}); last: {silent['last']}"
        elif silent["rejected"] or silent["failed"]:
            cause = f"{silent['rejected']} frames rejected, {silent['failed']} failed; last: {silent['last']}"
        else:
            cause = "worker stalled: frames are received but not taken"
        return f"no output for {now - since:.1f} s while frames arrive (limit {limit:.1f} s): {cause}"

    def _publish_diagnostics(self) -> None:
        self._check_worker()
        now = time.monotonic()
        s = self.stats(now)
        stall = self._stall(now)
        level, message = DiagnosticStatus.OK, "running"
        if self._reload_error:
            level, message = DiagnosticStatus.ERROR, self._reload_error
        elif self._worker_fault:
            level, message = DiagnosticStatus.ERROR, self._worker_fault
        elif stall:
            level, message = DiagnosticStatus.ERROR, stall
        elif s["frames_rejected"]:
            level, message = DiagnosticStatus.WARN, f"{s['frames_rejected']} malformed frames skipped"
        self._publish_status(level, message, s)

    def _publish_status(self, level, message: str, values: dict) -> None:
        det = self.detector
        kvs = [KeyValue(key=k, value=f"{v:.2f}" if isinstance(v, float) else str(v)) for k, v in values.items()]
        kvs += [KeyValue(key="backend", value=det.name if det else "none"),
                KeyValue(key="engine", value=det.compiled.last_lookup() if det and det.compiled else ""),
                KeyValue(key="weights", value=det.meta["path"] if det else "")]
        status = DiagnosticStatus(level=level, name=f"{self.get_fully_qualified_name()}: irstd detector",
                                  message=message, hardware_id=det.name if det else "", values=kvs)
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(arr)


def import_test_models() -> None:
    """Test-only: import the modules named in $IRSTD_TEST_MODEL_MODULES so they register fault-injection models.

    The node runs in its own process, so its tests cannot monkeypatch it; they
    register a model that raises on command instead. Unset in normal use.
    """
    for name in filter(None, os.environ.get(TEST_MODELS_ENV, "").split(",")):
        importlib.import_module(name.strip())


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
    import_test_models()
    node = DetectorNode()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        if node.p("autostart") and not stop.is_set():
            # a failed transition has logged its one-line reason already
            if node.trigger_configure() == TransitionCallbackReturn.SUCCESS and not stop.is_set():
                node.trigger_activate()
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    finally:
        node._closing = True
        node._stop_stream()
        node._torch.shutdown(wait=False, cancel_futures=True)
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
