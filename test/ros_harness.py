"""A real ROS 2 graph for tests: the detector in its own process, a test node in this one.

The environment isolates each test session: localhost-only discovery, a
session-unique ROS_DOMAIN_ID and a temporary ROS_LOG_DIR.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="irstd-roslog-"))

import rclpy  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import GetParameters, SetParameters, SetParametersAtomically  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from vision_msgs.msg import Detection2DArray, LabelInfo  # noqa: E402

from irstd_ros.ros.background_spin import BackgroundSpin  # noqa: E402

DETECTOR = [sys.executable, "-m", "irstd_ros.ros.detector_node"]
TEST_DIR = Path(__file__).resolve().parent


def start_detector(*ros_args: str, name: str = "detector", namespace: str = "irstd",
                   log: Optional[Path] = None, fault_models: bool = False) -> subprocess.Popen:
    """The detector in its own process; ``fault_models`` registers ``test/fault_models.py`` in it."""
    cmd = [*DETECTOR, "--ros-args", "-r", f"__node:={name}", "-r", f"__ns:=/{namespace}", *ros_args]
    out = open(log, "w") if log else subprocess.DEVNULL
    env = dict(os.environ)
    if fault_models:
        env["IRSTD_TEST_MODEL_MODULES"] = "fault_models"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TEST_DIR), env.get("PYTHONPATH")]))
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)


@contextlib.contextmanager
def running_detector(*ros_args: str, log: Path, name: str = "detector", namespace: str = "irstd",
                     fault_models: bool = False):
    """A detector process and a harness on it, active with its image subscription matched; stopped after."""
    proc = start_detector(*ros_args, name=name, namespace=namespace, log=log, fault_models=fault_models)
    h = Harness(namespace=namespace, node_name=name)
    try:
        h.wait_state("active")
        h.wait_subscribed()
        yield h, proc
    finally:
        h.close()
        stop_detector(proc)


def wait_log(log: Path, needle: str, timeout: float = 30.0) -> str:
    """The node's log once ``needle`` appears in it (or when ``timeout`` runs out)."""
    deadline = time.time() + timeout
    while time.time() < deadline and needle not in log.read_text():
        time.sleep(0.2)
    return log.read_text()


FAULT_MODEL = "fault_probe"  # registered by test/fault_models.py, in the node's process only
FAULT_GAIN = 40.0


def fault_checkpoint(path: Path, **model_args) -> Path:
    """A checkpoint for the fault model: ``model_args`` choose its fault (see test/fault_models.py)."""
    torch.save({"model": FAULT_MODEL, "model_args": model_args, "state_dict": {"gain": torch.tensor(FAULT_GAIN)}},
               path)
    return path


def stop_detector(proc: subprocess.Popen, timeout: float = 30.0) -> Optional[int]:
    """SIGTERM, then the exit code (None if it had to be killed)."""
    proc.terminate()
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def parameter_value(value) -> ParameterValue:
    """A Python value as a ParameterValue of the matching type (lists by their first element's type)."""
    v = ParameterValue()
    if isinstance(value, bool):
        v.type, v.bool_value = ParameterType.PARAMETER_BOOL, value
    elif isinstance(value, int):
        v.type, v.integer_value = ParameterType.PARAMETER_INTEGER, value
    elif isinstance(value, float):
        v.type, v.double_value = ParameterType.PARAMETER_DOUBLE, value
    elif isinstance(value, str):
        v.type, v.string_value = ParameterType.PARAMETER_STRING, value
    elif isinstance(value, bytes):
        v.type, v.byte_array_value = ParameterType.PARAMETER_BYTE_ARRAY, [bytes([b]) for b in value]
    else:
        kinds = {bool: (ParameterType.PARAMETER_BOOL_ARRAY, "bool_array_value"),
                 int: (ParameterType.PARAMETER_INTEGER_ARRAY, "integer_array_value"),
                 float: (ParameterType.PARAMETER_DOUBLE_ARRAY, "double_array_value"),
                 str: (ParameterType.PARAMETER_STRING_ARRAY, "string_array_value")}
        v.type, field = kinds[type(value[0]) if value else str]
        setattr(v, field, list(value))
    return v


def python_value(v: ParameterValue):
    return {ParameterType.PARAMETER_BOOL: v.bool_value, ParameterType.PARAMETER_INTEGER: v.integer_value,
            ParameterType.PARAMETER_DOUBLE: v.double_value, ParameterType.PARAMETER_STRING: v.string_value}.get(
        v.type, None)


def stamp_key(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def image_from_array(arr: np.ndarray, encoding: str, stamp_ns: int, frame_id: str = "thermal",
                     pad: int = 0, bigendian: bool = False) -> Image:
    a = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder(">" if bigendian else "<"))
    row = a[0].nbytes
    step = row + pad
    buf = bytearray(step * a.shape[0])
    for y in range(a.shape[0]):
        buf[y * step:y * step + row] = a[y].tobytes()
    header = Header(stamp=Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000), frame_id=frame_id)
    return Image(header=header, height=a.shape[0], width=a.shape[1], encoding=encoding,
                 is_bigendian=int(bigendian), step=step, data=bytes(buf))


class Harness:
    """Publishes frames to ``/<ns>/image`` and collects every output by stamp, spinning in a thread."""

    def __init__(self, namespace: str = "irstd", node_name: str = "detector"):
        if not rclpy.ok():
            rclpy.init()
        self.ns = namespace
        self.fqn = f"/{namespace}/{node_name}"
        self.node = Node(f"irstd_test_{os.getpid()}_{namespace}")
        q = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.node.create_publisher(Image, f"/{namespace}/image", q)
        self.lock = threading.Lock()
        self.detections: Dict[int, Detection2DArray] = {}
        self.masks: Dict[int, Image] = {}
        self.scores: Dict[int, Image] = {}
        self.overlays: Dict[int, Image] = {}
        self.arrival: Dict[int, float] = {}
        self.diagnostics: List[DiagnosticArray] = []
        self.label_infos: List[LabelInfo] = []
        self.node.create_subscription(Detection2DArray, f"/{namespace}/detections", self._store(self.detections, True), q)
        self.node.create_subscription(Image, f"/{namespace}/mask", self._store(self.masks), q)
        self.node.create_subscription(Image, f"/{namespace}/scores", self._store(self.scores), q)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diag, q)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(LabelInfo, f"/{namespace}/label_info", self._label_info, latched)
        self.set_params = self.node.create_client(SetParameters, f"{self.fqn}/set_parameters")
        self.set_params_atomically = self.node.create_client(SetParametersAtomically,
                                                             f"{self.fqn}/set_parameters_atomically")
        self.get_params = self.node.create_client(GetParameters, f"{self.fqn}/get_parameters")
        self.change_state = self.node.create_client(ChangeState, f"{self.fqn}/change_state")
        self.get_state = self.node.create_client(GetState, f"{self.fqn}/get_state")
        self._spin = BackgroundSpin(self.node)

    def _store(self, table, arrival=False):
        def cb(msg):
            with self.lock:
                k = stamp_key(msg.header.stamp)
                table[k] = msg
                if arrival:
                    self.arrival[k] = time.monotonic()
        return cb

    def _diag(self, msg):
        with self.lock:
            self.diagnostics.append(msg)

    def _label_info(self, msg):
        with self.lock:
            self.label_infos.append(msg)

    def subscribe_overlay(self):
        q = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        return self.node.create_subscription(Image, f"/{self.ns}/overlay", self._store(self.overlays), q)

    def close(self):
        self._spin.close()

    # ------------------------------------------------------------ calls
    def call(self, client, request, timeout: float = 30.0):
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {client.srv_name} not available")
        fut = client.call_async(request)
        deadline = time.time() + timeout
        while not fut.done() and time.time() < deadline:
            time.sleep(0.01)
        if not fut.done():
            raise TimeoutError(f"no answer from {client.srv_name}")
        return fut.result()

    def state(self) -> str:
        return self.call(self.get_state, GetState.Request()).current_state.label

    def wait_state(self, label: str, timeout: float = 120.0) -> None:
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                last = self.state()
                if last == label:
                    return
            except TimeoutError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.fqn} did not reach {label!r} (last: {last})")

    def transition(self, transition_id: int) -> bool:
        return self.call(self.change_state, ChangeState.Request(transition=Transition(id=transition_id))).success

    def set_param(self, name: str, value):
        res = self.call(self.set_params, SetParameters.Request(parameters=[Parameter(name=name, value=parameter_value(value))]))
        return res.results[0]

    def set_atomically(self, **values):
        """Several parameters in one request: one on-set callback, so one model reload."""
        params = [Parameter(name=k, value=parameter_value(v)) for k, v in values.items()]
        return self.call(self.set_params_atomically, SetParametersAtomically.Request(parameters=params)).result

    def param(self, name: str):
        return python_value(self.call(self.get_params, GetParameters.Request(names=[name])).values[0])

    def wait_diagnostics(self, predicate, timeout: float = 60.0) -> Dict[str, str]:
        """The first diagnostics (newest first) that satisfy ``predicate``; the last seen if none did in time."""
        deadline = time.time() + timeout
        d = {}
        while time.time() < deadline:
            d = self.latest_diagnostics()
            if d and predicate(d):
                return d
            time.sleep(0.05)
        return d

    # ------------------------------------------------------------ frames
    def send(self, msg: Image) -> int:
        self.pub.publish(msg)
        return stamp_key(msg.header.stamp)

    def wait_for(self, table: dict, key: int, timeout: float = 30.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if key in table:
                    return table[key]
            time.sleep(0.01)
        return None

    def image_subscription_reliability(self) -> list:
        """The reliability policy of each image subscription the detector node holds, as the graph reports it."""
        node = self.fqn.rsplit("/", 1)[1]
        return [i.qos_profile.reliability for i in self.node.get_subscriptions_info_by_topic(f"/{self.ns}/image")
                if i.node_name == node]

    def wait_subscribed(self, timeout: float = 30.0) -> None:
        deadline = time.time() + timeout
        while self.pub.get_subscription_count() == 0:
            if time.time() > deadline:
                raise TimeoutError("the detector never subscribed to the image topic")
            time.sleep(0.05)

    def fresh_diagnostics(self, timeout: float = 10.0) -> Dict[str, str]:
        """Diagnostics published after this call (two new messages, so none was composed before it)."""
        with self.lock:
            n = len(self.diagnostics)
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if len(self.diagnostics) >= n + 2:
                    break
            time.sleep(0.05)
        return self.latest_diagnostics()

    def latest_diagnostics(self) -> Dict[str, str]:
        with self.lock:
            for arr in reversed(self.diagnostics):
                for st in arr.status:
                    if st.name.startswith(self.fqn):
                        return {"level": int.from_bytes(st.level, "little") if isinstance(st.level, bytes) else int(st.level),
                                "message": st.message, **{kv.key: kv.value for kv in st.values}}
        return {}
