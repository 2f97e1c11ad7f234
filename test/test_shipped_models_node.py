"""Every model that ships weights, served by the node on a real graph with nothing but ``model:=<name>``.

MODELS.md asks this of each shipped model: the card's threshold applies when nobody set one (and
``label_info`` says so), the boxes land on the targets of a real frame, headers come back intact,
and a live threshold change takes effect on the next frame. Models without weights yet are listed
as skipped, so the gap shows in every test run.
"""
from __future__ import annotations

import numpy as np
import pytest

from irstd_ros.runtime.checkpoints import card_threshold, ships_weights
from irstd_ros.eval.metrics import components
from irstd_ros.models import list_models

from conftest import clean_sample_frame  # noqa: I100
from ros_harness import image_from_array, running_detector, stamp_key  # noqa: I100


MODELS = [pytest.param(n, marks=() if ships_weights(n) else pytest.mark.skip(reason=f"{n} ships no weights yet"))
          for n in list_models()]


@pytest.mark.parametrize("name", MODELS)
def test_the_shipped_model_serves_at_its_card_threshold_with_boxes_on_the_target(name, tmp_path):
    card = card_threshold(name)
    img8, gt, want = clean_sample_frame(name, card)
    (cx, cy), = components(gt)[2]
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
