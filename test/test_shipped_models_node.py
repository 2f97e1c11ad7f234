"""Every model that ships weights, served by the node on a real graph with nothing but ``model:=<name>``.

MODELS.md asks this of each shipped model: the card's threshold applies when nobody set one (and
``label_info`` says so), the boxes land on the targets of a real frame, headers come back intact,
and a live threshold change takes effect on the next frame. Models without weights yet are listed
as skipped, so the gap shows in every test run.
"""
from __future__ import annotations

import numpy as np
import pytest

from irstd_ros.checkpoints import card_threshold, ships_weights
from irstd_ros.datasets import read_image, read_mask
from irstd_ros.detector import Detector, DetectorConfig
from irstd_ros.metrics import components
from irstd_ros.models import list_models
from irstd_ros.pipeline import postprocess

from ros_harness import image_from_array, running_detector, stamp_key  # noqa: I100


MODELS = [pytest.param(n, marks=() if ships_weights(n) else pytest.mark.skip(reason=f"{n} ships no weights yet"))
          for n in list_models()]


def _clean_frame(name: str, sirst_root, threshold: float, tries: int = 80):
    """A SIRST-v1 test frame with one target that ``name`` finds alone, offline, through the pure pipeline."""
    det = Detector(DetectorConfig(model=name))
    for frame in (sirst_root / "splits" / "test.txt").read_text().split()[:tries]:
        img8 = (read_image(sirst_root / "images" / f"{frame}.png") * 255).round().astype(np.uint8)
        _, _, cents = components(read_mask(sirst_root / "masks" / f"{frame}.png"))
        _, dets = postprocess(det.probabilities(img8.astype(np.float32) / np.float32(255)), threshold)
        if len(cents) == len(dets) == 1:
            (cx, cy), d = cents[0], dets[0]
            if d.x <= cx <= d.x + d.width and d.y <= cy <= d.y + d.height:
                return img8, dets, (cx, cy)
    pytest.fail(f"the shipped {name} finds no single-target frame alone in the first {tries} test frames")


@pytest.mark.parametrize("name", MODELS)
def test_the_shipped_model_serves_at_its_card_threshold_with_boxes_on_the_target(name, sirst_root, tmp_path):
    card = card_threshold(name)
    img8, want, (cx, cy) = _clean_frame(name, sirst_root, card)
    with running_detector("-p", f"model:={name}", log=tmp_path / "detector.log") as (h, _):
        assert h.param("threshold") == pytest.approx(card)  # nobody set one: the card's
        stamp = 1_700_000_000_123_456_789
        msg = image_from_array(img8, "mono8", stamp, frame_id="lwir")
        h.send(msg)
        out = h.wait_for(h.detections, stamp_key(msg.header.stamp), timeout=120)
        assert out is not None, f"{name}: no detections"
        assert out.header.frame_id == "lwir" and stamp_key(out.header.stamp) == stamp_key(msg.header.stamp)
        boxes = [(d.bbox.center.position.x - d.bbox.size_x / 2, d.bbox.center.position.y - d.bbox.size_y / 2,
                  d.bbox.size_x, d.bbox.size_y) for d in out.detections]
        assert boxes == [(w.x, w.y, w.width, w.height) for w in want]  # the node is the pure pipeline
        x, y, bw, bh = boxes[0]
        assert x <= cx <= x + bw and y <= cy <= y + bh  # on the ground-truth target
        assert h.label_infos and h.label_infos[-1].threshold == pytest.approx(card)
        mask = h.wait_for(h.masks, stamp_key(msg.header.stamp))
        lenient = np.count_nonzero(mask.data)

        assert h.set_param("threshold", 0.999).successful
        msg = image_from_array(img8, "mono8", stamp + 33_333_333, frame_id="lwir")
        h.send(msg)
        strict = h.wait_for(h.masks, stamp_key(msg.header.stamp), timeout=120)
        assert strict is not None and np.count_nonzero(strict.data) < lenient
        assert h.label_infos[-1].threshold == pytest.approx(0.999)
