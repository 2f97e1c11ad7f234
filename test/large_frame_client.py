"""Publish one large best-effort mono16 frame until the detector answers (run as its own process).

Usage: python large_frame_client.py NAMESPACE WIDTH HEIGHT TIMEOUT_S ; prints 'answered' or 'no answer'.
"""
import sys
import time

import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from irstd_ros.ros.stream_client import StreamClient, make_image

ns, w, h, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
client = StreamClient(namespace=ns)
best_effort = client.node.create_publisher(Image, f"/{ns}/image", QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
frame = (np.random.default_rng(0).integers(7000, 7100, (h, w))).astype(np.uint16)
frame[h // 2:h // 2 + 3, w // 2:w // 2 + 3] = 9000
client.wait_for_detector(60)
deadline = time.monotonic() + timeout
answered = False
i = 0
while time.monotonic() < deadline and not answered:
    i += 1
    msg = make_image(frame, "mono16", i, "big")
    best_effort.publish(msg)
    t = time.monotonic()
    while time.monotonic() - t < 2.0:
        if i in client.detections or any(k <= i for k in client.detections):
            answered = True
            break
        time.sleep(0.02)
print("answered" if answered else "no answer", flush=True)
client.close()
