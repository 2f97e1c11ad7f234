"""rosbag2 bags (mcap or sqlite3) without rosbag2: written and read with the ``rosbags`` library.

Bags hold CDR-serialised messages with their type hashes, exactly as ``ros2 bag
record`` writes them, so ``ros2 bag info/play`` and plain mcap readers open them.
This module has no rclpy in it: the live tools (play, record, live eval) are in
:mod:`irstd_ros.ros.bag_live`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from ..errors import IRSTDError
from ..eval.datasets import IRSTDDataset

STORAGES = ("mcap", "sqlite3")
BAG_ENCODINGS = ("mono8", "mono16", "rgb8")
IMAGE_TYPE = "sensor_msgs/msg/Image"
DETECTIONS_TYPE = "vision_msgs/msg/Detection2DArray"
INTERFACES = Path(__file__).resolve().parents[2] / "interfaces" / "vision_msgs" / "msg"


class BagError(IRSTDError):
    """A bag is missing, corrupt, truncated, or lacks what was asked of it."""


def typestore():
    """A rosbags type store for Kilted, with our vision_msgs registered when its .msg files are at hand."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    store = get_typestore(Stores.ROS2_KILTED)
    msg_dir = INTERFACES
    if msg_dir.is_dir() and DETECTIONS_TYPE not in store.types:
        types = {}
        for f in sorted(msg_dir.glob("*.msg")):
            types.update(get_types_from_msg(f.read_text(), f"vision_msgs/msg/{f.stem}"))
        store.register(types)
    return store


def _stamp(ns: int):
    return ns // 1_000_000_000, ns % 1_000_000_000


def stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def encode_frame(image: np.ndarray, encoding: str) -> Tuple[np.ndarray, int]:
    """Grey [0, 1] float -> message bytes for a bag encoding (8-bit values kept exact)."""
    v8 = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    if encoding == "mono8":
        arr = v8
    elif encoding == "mono16":
        arr = v8.astype("<u2") * 257  # 8-bit data spread over the full 16-bit range
    elif encoding == "rgb8":
        arr = np.repeat(v8[..., None], 3, axis=2)
    else:
        raise BagError(f"bag encoding must be one of {', '.join(BAG_ENCODINGS)}, not {encoding!r}")
    arr = np.ascontiguousarray(arr)
    return arr.view(np.uint8).reshape(-1), arr.shape[1] * (arr.itemsize * (3 if arr.ndim == 3 else 1))


@dataclass
class MadeBag:
    path: Path
    frames: int
    image_topic: str
    gt_topic: str
    duration_s: float


def make_bag(data: str | Path, split: str, out: str | Path, encoding: str = "mono8", rate: float = 10.0,
             storage: str = "mcap", image_topic: str = "/thermal/image_raw", gt_topic: str = "/thermal/ground_truth",
             frame_id: str = "thermal", start_ns: int = 1_700_000_000_000_000_000, limit: int = 0) -> MadeBag:
    """Write a dataset split as a bag: frames on ``image_topic`` and mono8 masks on ``gt_topic``, same headers."""
    from rosbags.rosbag2 import Writer
    from rosbags.rosbag2.writer import StoragePlugin

    if storage not in STORAGES:
        raise BagError(f"--storage must be one of {', '.join(STORAGES)}")
    if not rate > 0:
        raise BagError("--rate must be positive")
    if encoding not in BAG_ENCODINGS:
        raise BagError(f"--encoding must be one of {', '.join(BAG_ENCODINGS)}")
    out = Path(out)
    if out.exists():
        raise BagError(f"{out} exists; rosbag2 bags are directories and are never overwritten")
    ds = IRSTDDataset(data, split, protocol="native")
    names = ds.names[:limit] if limit else ds.names
    store = typestore()
    Image = store.types[IMAGE_TYPE]
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    period = int(round(1e9 / rate))
    try:
        with Writer(out, version=9, storage_plugin=plugin) as writer:
            img_conn = writer.add_connection(image_topic, IMAGE_TYPE, typestore=store)
            gt_conn = writer.add_connection(gt_topic, IMAGE_TYPE, typestore=store)
            for i, name in enumerate(names):
                s = ds.load(name)
                t = start_ns + i * period
                header = Header(stamp=Time(*_stamp(t)), frame_id=frame_id)
                data_bytes, step = encode_frame(s.image, encoding)
                h, w = s.image.shape
                frame = Image(header=header, height=h, width=w, encoding=encoding, is_bigendian=0, step=step,
                              data=data_bytes)
                writer.write(img_conn, t, store.serialize_cdr(frame, IMAGE_TYPE))
                mask = Image(header=header, height=h, width=w, encoding="mono8", is_bigendian=0, step=w,
                             data=(s.mask.astype(np.uint8) * 255).reshape(-1))
                writer.write(gt_conn, t, store.serialize_cdr(mask, IMAGE_TYPE))
    except Exception:
        import shutil
        shutil.rmtree(out, ignore_errors=True)
        raise
    return MadeBag(out, len(names), image_topic, gt_topic, len(names) * period / 1e9)


@dataclass
class BagMessage:
    topic: str
    msgtype: str
    timestamp: int
    raw: bytes


class BagReader:
    """Open a bag with a clear error on anything wrong; iterate raw messages or decoded images."""

    def __init__(self, path: str | Path):
        from rosbags.rosbag2 import Reader
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"bag not found: {self.path}")
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except Exception as exc:
            raise BagError(f"cannot open bag {self.path}: {exc}") from None
        self.store = typestore()
        self.topics: Dict[str, str] = {c.topic: c.msgtype for c in self._reader.connections}

    def close(self) -> None:
        self._reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def require(self, topic: str, msgtype: str = IMAGE_TYPE) -> None:
        if topic not in self.topics:
            have = ", ".join(f"{t} ({m})" for t, m in sorted(self.topics.items())) or "none"
            raise BagError(f"topic {topic} is not in {self.path} (topics: {have})")
        if self.topics[topic] != msgtype:
            raise BagError(f"topic {topic} in {self.path} holds {self.topics[topic]}, not {msgtype}")

    def messages(self, topics: Optional[List[str]] = None) -> Iterator[BagMessage]:
        conns = [c for c in self._reader.connections if topics is None or c.topic in topics]
        try:
            for conn, t, raw in self._reader.messages(connections=conns):
                yield BagMessage(conn.topic, conn.msgtype, t, bytes(raw))
        except Exception as exc:
            raise BagError(f"{self.path} is corrupt or truncated: {exc.__class__.__name__}: {exc}") from None

    def decode(self, m: BagMessage):
        try:
            return self.store.deserialize_cdr(m.raw, m.msgtype)
        except Exception as exc:
            raise BagError(f"cannot decode a {m.msgtype} message on {m.topic} at t={m.timestamp}: {exc}") from None

    def count(self, topic: str) -> int:
        """How many messages the bag's index says ``topic`` has."""
        return sum(c.msgcount for c in self._reader.connections if c.topic == topic)

    def images(self, topic: str) -> Iterator[Tuple[int, object]]:
        """(header stamp in ns, decoded sensor_msgs/Image) for every message on ``topic``."""
        self.require(topic)
        for m in self.messages([topic]):
            img = self.decode(m)
            yield stamp_ns(img.header), img


def find_topic(reader: BagReader, preferred: Optional[str], role: str) -> Optional[str]:
    """The image or ground-truth topic: the one asked for, else a guess from the bag's Image topics."""
    if preferred:
        reader.require(preferred)
        return preferred
    images = [t for t, m in reader.topics.items() if m == IMAGE_TYPE]
    gt = [t for t in images if "truth" in t or t.endswith("/mask") or "gt" in t.split("/")[-1]]
    if role == "gt":
        return gt[0] if gt else None
    frames = [t for t in images if t not in gt]
    if len(frames) != 1:
        raise BagError(f"cannot tell the image topic among {frames or images or 'no Image topics'}; pass --image-topic")
    return frames[0]
