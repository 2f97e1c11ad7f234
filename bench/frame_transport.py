"""Count best-effort Image frames across two processes (run as: sub N TIMEOUT | pub N W H RATE).

A bare transport check, no detector: how many large frames does Fast DDS deliver?
"""
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

TOPIC = "/irstd_transport/image"
QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)

rclpy.init()
node = rclpy.create_node("irstd_transport_" + sys.argv[1])
if sys.argv[1] == "sub":
    n, timeout = int(sys.argv[2]), float(sys.argv[3])
    got = set()
    node.create_subscription(Image, TOPIC, lambda m: got.add(m.header.stamp.sec), QOS)
    print("ready", flush=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(got) < n:
        rclpy.spin_once(node, timeout_sec=0.1)
    print(f"received {len(got)}", flush=True)
else:
    n, w, h, rate = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    pub = node.create_publisher(Image, TOPIC, QOS)
    while pub.get_subscription_count() == 0:
        rclpy.spin_once(node, timeout_sec=0.1)
    time.sleep(1.0)
    data = np.random.default_rng(0).integers(0, 65535, (h, w)).astype(np.uint16).tobytes()
    for i in range(1, n + 1):
        msg = Image(height=h, width=w, encoding="mono16", step=2 * w, data=data)
        msg.header.stamp.sec = i
        pub.publish(msg)
        time.sleep(1.0 / rate)
    time.sleep(1.0)
    print(f"sent {n}", flush=True)
node.destroy_node()
rclpy.shutdown()
