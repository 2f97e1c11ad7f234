"""A small rclpy client that streams frames to a detector and collects its answers by header stamp.

Used by the main job (``irstd-demo``); it is what an integration team's own
node does: publish ``sensor_msgs/Image``, subscribe ``detections`` and ``mask``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray

from . import image_codec
from .background_spin import BackgroundSpin


def stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def mask_from_msg(msg: Image) -> np.ndarray:
    """A mono8 0/255 ``mask`` message as a bool array (row padding honoured)."""
    return image_codec.to_array(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian),
                                msg.data) > 0


def start_detector(namespace: str, model: str = "lrrnet", weights: Optional[str] = None,
                   threshold: Optional[float] = None, extra: Sequence[str] = ()) -> subprocess.Popen:
    """The detector node in its own process under ``/<namespace>`` (no overlay, warnings only)."""
    cmd = [sys.executable, "-m", "irstd_ros.ros.detector_node", "--ros-args", "-r", f"__ns:=/{namespace}",
           "-p", f"model:={model}", "-p", "publish_overlay:=false", "--log-level", "warn", *extra]
    if threshold is not None:
        cmd += ["-p", f"threshold:={threshold}"]
    if weights:
        cmd += ["-p", f"weights:={weights}"]
    return subprocess.Popen(cmd, env=dict(os.environ))


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def make_image(arr: np.ndarray, encoding: str, stamp: int, frame_id: str) -> Image:
    data, step = image_codec.encode(arr, encoding)
    header = Header(stamp=Time(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000), frame_id=frame_id)
    return Image(header=header, height=arr.shape[0], width=arr.shape[1], encoding=encoding, is_bigendian=0,
                 step=step, data=data)


class StreamClient:
    def __init__(self, namespace: str = "irstd", image_topic: Optional[str] = None):
        if not rclpy.ok():
            rclpy.init()
        ns = "/" + namespace.strip("/")
        self.node = Node(f"irstd_stream_client_{os.getpid()}")
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.node.create_publisher(Image, image_topic or f"{ns}/image", qos)
        self._lock = threading.Lock()
        self.sent: Dict[int, float] = {}
        self.detections: Dict[int, Tuple[Detection2DArray, float]] = {}
        self.masks: Dict[int, Image] = {}
        self.node.create_subscription(Detection2DArray, f"{ns}/detections", self._on_det, qos)
        self.node.create_subscription(Image, f"{ns}/mask", self._on_mask, qos)
        self._spin = BackgroundSpin(self.node)

    def _on_det(self, msg):
        with self._lock:
            self.detections[stamp_ns(msg.header.stamp)] = (msg, time.monotonic())

    def _on_mask(self, msg):
        with self._lock:
            self.masks[stamp_ns(msg.header.stamp)] = msg

    def wait_for_detector(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pub.get_subscription_count() > 0:
                return True
            time.sleep(0.1)
        return False

    def publish(self, msg: Image) -> int:
        key = stamp_ns(msg.header.stamp)
        self.sent[key] = time.monotonic()
        self.pub.publish(msg)
        return key

    def wait_answers(self, keys, timeout: float, grace: float = 1.0) -> None:
        """Wait until every key is answered, or the last one is (the node always answers the newest
        frame; older ones may have been dropped) and ``grace`` seconds passed for stragglers."""
        keys = list(keys)
        deadline = time.monotonic() + timeout
        last_seen = None
        while time.monotonic() < deadline:
            with self._lock:
                if all(k in self.detections and k in self.masks for k in keys):
                    return
                if last_seen is None and keys and keys[-1] in self.detections:
                    last_seen = time.monotonic()
            if last_seen is not None and time.monotonic() - last_seen > grace:
                return
            time.sleep(0.02)

    def close(self):
        self._spin.close()
