"""vision_msgs (built from interfaces/vision_msgs by scripts/build_interfaces.sh) matches upstream 4.1.1.

The type hashes are the ones a running rclpy publisher advertises in the ROS graph (RIHS01, computed
at build time by rosidl_generator_type_description and compiled into the C type support); a real
ROS 2 system with upstream's vision_msgs gives exactly these, so a mismatch means the .msg fields
differ from upstream's and our nodes could not talk to upstream subscribers.
"""

import importlib
import json
import os
import time
import uuid

import pytest

try:
    import vision_msgs.msg  # noqa: F401
except ImportError as exc:  # pragma: no cover - only when the build step was skipped
    raise ImportError(
        "vision_msgs is not importable: run `bash scripts/build_interfaces.sh` "
        f"(or `make install`) first ({exc})") from exc

import rclpy
from rclpy.serialization import deserialize_message, serialize_message

ALL_TYPES = [
    "BoundingBox2D", "BoundingBox2DArray", "BoundingBox3D", "BoundingBox3DArray",
    "Classification", "Detection2D", "Detection2DArray", "Detection3D", "Detection3DArray",
    "LabelInfo", "ObjectHypothesis", "ObjectHypothesisWithPose", "Point2D", "Pose2D",
    "VisionClass", "VisionInfo",
]

# upstream ros-perception/vision_msgs 4.1.1, as computed by a ROS 2 (Jazzy and later) build
UPSTREAM_HASHES = {
    "Detection2DArray": "RIHS01_214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968",
    "Detection2D": "RIHS01_0d12b69df5c593b3455b7346fac8205437a7d4bcb09b9e0e0b2dde787ded38ea",
    "LabelInfo": "RIHS01_3d37df4015cdf660cc851c51897f2acd957e1ca6205ba0a99aebffb9406b0783",
}


@pytest.fixture(scope="module")
def node():
    context = rclpy.Context()
    rclpy.init(context=context)
    n = rclpy.create_node(f"test_vision_msgs_{uuid.uuid4().hex[:8]}", context=context)
    try:
        yield n
    finally:
        n.destroy_node()
        rclpy.shutdown(context=context)


def _topic(name):
    return f"/test_vision_msgs_{uuid.uuid4().hex[:8]}/{name.lower()}"


@pytest.mark.parametrize("name", ALL_TYPES)
def test_all_message_types_import(name):
    cls = getattr(importlib.import_module("vision_msgs.msg"), name)
    msg = cls()
    # the C type support loads and converts (fails if a library is not found at run time)
    assert deserialize_message(serialize_message(msg), cls) == msg


@pytest.mark.parametrize("name", sorted(UPSTREAM_HASHES))
def test_type_hash_advertised_by_publisher_matches_upstream(node, name):
    cls = getattr(vision_msgs.msg, name)
    topic = _topic(name)
    pub = node.create_publisher(cls, topic, 10)
    try:
        infos = []
        deadline = time.monotonic() + 5.0
        while not infos and time.monotonic() < deadline:
            infos = node.get_publishers_info_by_topic(topic)
            if not infos:
                time.sleep(0.05)
        assert len(infos) == 1, f"publisher on {topic} not in the graph"
        assert infos[0].topic_type == f"vision_msgs/msg/{name}"
        assert str(infos[0].topic_type_hash) == UPSTREAM_HASHES[name]
    finally:
        node.destroy_publisher(pub)


@pytest.mark.parametrize("name", sorted(UPSTREAM_HASHES))
def test_type_description_json_matches_upstream(name):
    # share/vision_msgs/msg/<Name>.json next to the package's install prefix (venv or /opt/ros/<distro>)
    pkg_dir = os.path.dirname(os.path.realpath(vision_msgs.__file__))
    prefix = pkg_dir
    for _ in range(4):  # <prefix>/lib/pythonX.Y/site-packages/vision_msgs
        prefix = os.path.dirname(prefix)
    path = os.path.join(prefix, "share", "vision_msgs", "msg", f"{name}.json")
    if not os.path.isfile(path):
        pytest.skip(f"no type description file at {path}")
    with open(path, encoding="utf-8") as f:
        hashes = {h["type_name"]: h["hash_string"] for h in json.load(f)["type_hashes"]}
    assert hashes[f"vision_msgs/msg/{name}"] == UPSTREAM_HASHES[name]


def _detections():
    from geometry_msgs.msg import PoseWithCovariance
    from vision_msgs.msg import (
        BoundingBox2D, Detection2D, Detection2DArray, ObjectHypothesis, ObjectHypothesisWithPose)

    arr = Detection2DArray()
    arr.header.frame_id = "ir_camera"
    arr.header.stamp.sec = 1700000000
    arr.header.stamp.nanosec = 123456789
    for i, (cx, cy, w, h, score) in enumerate([(10.5, 20.25, 3.0, 4.0, 0.9), (100.0, 50.0, 7.5, 6.25, 0.42)]):
        det = Detection2D()
        det.header = arr.header
        det.id = f"target-{i}"
        det.bbox = BoundingBox2D()
        det.bbox.center.position.x = cx
        det.bbox.center.position.y = cy
        det.bbox.center.theta = 0.1 * i
        det.bbox.size_x = w
        det.bbox.size_y = h
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis = ObjectHypothesis(class_id="target", score=score)
        hyp.pose = PoseWithCovariance()
        hyp.pose.pose.position.x = cx
        hyp.pose.pose.position.y = cy
        hyp.pose.covariance[0] = 1.5 + i
        det.results.append(hyp)
        arr.detections.append(det)
    return arr


def test_detection2darray_serialization_round_trip():
    from vision_msgs.msg import Detection2DArray

    arr = _detections()
    data = serialize_message(arr)
    assert isinstance(data, bytes) and len(data) > 100
    back = deserialize_message(data, Detection2DArray)
    assert back == arr
    assert len(back.detections) == 2
    d1 = back.detections[1]
    assert d1.id == "target-1"
    assert (d1.bbox.center.position.x, d1.bbox.center.position.y) == (100.0, 50.0)
    assert (d1.bbox.size_x, d1.bbox.size_y) == (7.5, 6.25)
    assert d1.bbox.center.theta == pytest.approx(0.1)
    assert d1.results[0].hypothesis.class_id == "target"
    assert d1.results[0].hypothesis.score == 0.42
    assert d1.results[0].pose.covariance[0] == 2.5
    assert back.header.frame_id == "ir_camera"
    assert (back.header.stamp.sec, back.header.stamp.nanosec) == (1700000000, 123456789)


def test_detection2darray_publish_subscribe(node):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from vision_msgs.msg import Detection2DArray

    topic = _topic("detections")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    received = []
    sub = node.create_subscription(Detection2DArray, topic, received.append, qos)
    pub = node.create_publisher(Detection2DArray, topic, qos)
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        sent = _detections()
        deadline = time.monotonic() + 10.0
        while not received and time.monotonic() < deadline:
            if pub.get_subscription_count() > 0:
                pub.publish(sent)
            executor.spin_once(timeout_sec=0.1)
        assert received, f"no Detection2DArray received on {topic} through the middleware"
        assert received[0] == sent
    finally:
        executor.remove_node(node)
        executor.shutdown()
        node.destroy_subscription(sub)
        node.destroy_publisher(pub)
