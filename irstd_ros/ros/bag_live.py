"""Bags through a live ROS 2 graph: play (a minimal ``ros2 bag play``), record, and live evaluation.

Messages are published and recorded as raw CDR bytes, so what goes on the wire
is byte-for-byte what the bag holds.
"""
from __future__ import annotations

import importlib
import os
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

from .bags import BagError, BagReader


def message_class(msgtype: str):
    """``pkg/msg/Name`` -> the rclpy message class (there are no runtime-typed messages in rclpy)."""
    pkg, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError):
        raise BagError(f"message type {msgtype} is not installed for rclpy") from None


def ensure_rclpy():
    import rclpy
    if not rclpy.ok():
        rclpy.init()
    return rclpy


def play(bag: str | Path, topics: Optional[Sequence[str]] = None, rate: float = 1.0, clock: bool = False,
         remap: Optional[Dict[str, str]] = None, on_publish: Optional[Callable[[str, bytes], None]] = None,
         wait_subscribers: float = 10.0, node=None, delay: float = 1.0) -> int:
    """Publish a bag's messages at their recorded pace (``rate`` x real time); returns the count.

    Publishers are reliable, keep-last-100 (a best-effort subscriber still connects). With ``clock``,
    /clock carries the bag time before every message, for nodes with ``use_sim_time``.
    Playback starts ``delay`` s after every topic has a subscriber: DDS discovery is not
    symmetric, and a message sent the moment the publisher sees a reader can still miss
    a reader that has not yet matched the publisher (measured: 1 of 10 lost without it).
    """
    rclpy = ensure_rclpy()
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    if not rate > 0:
        raise BagError("--rate must be positive")
    remap = remap or {}
    own = node is None
    node = node or rclpy.create_node(f"irstd_bag_play_{os.getpid()}")
    try:
        with BagReader(bag) as reader:
            chosen = list(topics) if topics else list(reader.topics)
            for t in chosen:
                if t not in reader.topics:
                    raise BagError(f"topic {t} is not in {bag} (topics: {', '.join(sorted(reader.topics))})")
            qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
            pubs = {t: node.create_publisher(message_class(reader.topics[t]), remap.get(t, t), qos) for t in chosen}
            clock_pub = None
            if clock:
                from rosgraph_msgs.msg import Clock
                clock_pub = node.create_publisher(Clock, "/clock", 10)
            deadline = time.monotonic() + wait_subscribers
            while time.monotonic() < deadline and not all(p.get_subscription_count() for p in pubs.values()):
                time.sleep(0.05)
            time.sleep(delay)
            n = 0
            t0_bag = t0_wall = None
            for m in reader.messages(chosen):
                if t0_bag is None:
                    t0_bag, t0_wall = m.timestamp, time.monotonic()
                due = t0_wall + (m.timestamp - t0_bag) / 1e9 / rate
                while (delay := due - time.monotonic()) > 0:
                    time.sleep(min(delay, 0.01))
                if clock_pub is not None:
                    from rosgraph_msgs.msg import Clock
                    from builtin_interfaces.msg import Time
                    clock_pub.publish(Clock(clock=Time(sec=m.timestamp // 10**9, nanosec=m.timestamp % 10**9)))
                if on_publish is not None:
                    on_publish(m.topic, m.raw)
                pubs[m.topic].publish(m.raw)
                n += 1
            from rclpy.duration import Duration
            for p in pubs.values():  # reliable delivery: don't let the last messages die with the process
                p.wait_for_all_acked(Duration(seconds=5))
            return n
    finally:
        if own:
            node.destroy_node()


class Recorder:
    """Record topics into a bag through raw subscriptions (bytes as received), in a spinning thread."""

    def __init__(self, out: str | Path, topics: Dict[str, str], storage: str = "mcap"):
        from rosbags.rosbag2 import Writer
        from rosbags.rosbag2.writer import StoragePlugin
        from .background_spin import BackgroundSpin
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from .bags import typestore
        rclpy = ensure_rclpy()
        out = Path(out)
        if out.exists():
            raise BagError(f"{out} exists; rosbag2 bags are directories and are never overwritten")
        store = typestore()
        self.writer = Writer(out, version=9,
                             storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3)
        self.writer.open()
        self.node = rclpy.create_node(f"irstd_bag_record_{os.getpid()}")
        self.lock = threading.Lock()
        self.counts = {t: 0 for t in topics}
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        for topic, msgtype in topics.items():
            conn = self.writer.add_connection(topic, msgtype, typestore=store)
            self.node.create_subscription(message_class(msgtype), topic, self._writer_cb(conn, topic), qos, raw=True)
        self._spin = BackgroundSpin(self.node)

    def _writer_cb(self, conn, topic):
        def cb(raw: bytes):
            with self.lock:
                self.writer.write(conn, time.time_ns(), raw)
                self.counts[topic] += 1
        return cb

    def close(self) -> Dict[str, int]:
        self._spin.close()
        with self.lock:
            self.writer.close()
        return dict(self.counts)
